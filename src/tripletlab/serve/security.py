"""Who may write, and how much may be sent: the bearer token and the upload size limit.

* The write token comes from an explicit value, a token file (first line) or the
  ``TRIPLETLAB_TOKEN`` environment variable, in that order. With none configured, every
  write (enrol, remove) is refused and reads still work — a server is never writable by
  accident. The comparison is constant-time (``hmac.compare_digest``), so the response time
  does not reveal how much of a guessed token was right.
* :class:`BodySizeLimit` is pure ASGI middleware: a request whose ``Content-Length`` is over
  the limit is answered 413 before its body is read; a chunked body is counted as it arrives
  and cut off at the limit.

Example:
    >>> check_bearer("Bearer s3cret-token", "s3cret-token")
    >>> check_bearer("Bearer wrong", "s3cret-token")
    Traceback (most recent call last):
    ...
    tripletlab.serve.security.AuthError: missing or wrong bearer token
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from tripletlab.errors import ConfigError, TripletlabError

__all__ = ["TOKEN_ENV", "AuthError", "BodySizeLimit", "check_bearer", "resolve_token"]

TOKEN_ENV = "TRIPLETLAB_TOKEN"


class AuthError(TripletlabError):
    """A write without a valid token (``status`` 401), or with writes disabled (403)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def resolve_token(
    token: str | None = None,
    token_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The configured write token, or None (writes disabled). ConfigError if a given source
    is unusable (missing file, empty token)."""
    if token is None and token_file is not None:
        path = Path(token_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
        token = lines[0] if lines else ""
        if not token.strip():
            raise ConfigError(f"the token file {path} is empty")
    if token is None:
        token = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if token is None:
        return None
    token = token.strip()
    if not token:
        raise ConfigError("the write token is empty")
    return token


def check_bearer(header: str | None, expected: str | None) -> None:
    """Pass when ``header`` is ``Bearer <expected>``; raise AuthError otherwise."""
    if expected is None:
        raise AuthError(
            f"writes are disabled on this server: no token is configured (set {TOKEN_ENV} or "
            "pass a token file)",
            status=403,
        )
    scheme, _, given = (header or "").partition(" ")
    ok = hmac.compare_digest(given.strip().encode(), expected.encode())
    if scheme.lower() != "bearer" or not ok:
        raise AuthError("missing or wrong bearer token")


class BodySizeLimit:
    """ASGI middleware refusing request bodies over ``limit`` bytes with a JSON 413."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # An HTTPException passes through FastAPI's body parsing unchanged (any
                    # other exception there becomes a 400 "error parsing the body").
                    raise HTTPException(413, self._message)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as exc:  # raised by counting_receive outside a route
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send)

    @property
    def _message(self) -> str:
        return f"the request body is over the limit of {self.limit} bytes"

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"message": self._message, "status": 413}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
