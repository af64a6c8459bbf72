"""Every error as JSON ``{"message": …, "status": …}``: one handler per kind of failure.

User-caused problems (:class:`~tripletlab.errors.TripletlabError`: a bad image, a bad
name, an unknown identity, a missing token) get 4xx with their one-line message; a bug gets
500 with the exception's type only (the traceback goes to the server log, not the client).
"""

from __future__ import annotations

import logging
from typing import Any

from tripletlab.deploy.gallery_store import UnknownIdentityError
from tripletlab.errors import TripletlabError
from tripletlab.serve.security import AuthError

__all__ = ["install_error_handlers"]

_log = logging.getLogger("tripletlab.serve")


def _body(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"message": message, "status": status}, status_code=status, headers=headers)


def install_error_handlers(app: Any) -> None:
    """Register the JSON error handlers on a FastAPI ``app``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, exc: HTTPException) -> Any:
        return _body(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, exc: RequestValidationError) -> Any:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return _body(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(TripletlabError)
    async def user_error(request: Any, exc: TripletlabError) -> Any:
        if isinstance(exc, AuthError):
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return _body(exc.status, str(exc), headers)
        status = 404 if isinstance(exc, UnknownIdentityError) else 400
        return _body(status, str(exc))

    @app.exception_handler(Exception)
    async def bug(request: Any, exc: Exception) -> Any:
        _log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _body(500, f"internal server error ({type(exc).__name__})")
