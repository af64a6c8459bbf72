"""The HTTP API against a running server (uvicorn on a loopback port, httpx as the client)."""

from __future__ import annotations

import io

import pytest

from deploy_helpers import BUNDLE_THRESHOLD, make_onnx_bundle, noise_png
from serve_helpers import running

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tripletlab.errors import ConfigError  # noqa: E402
from tripletlab.serve.app import create_app  # noqa: E402
from tripletlab.serve.security import resolve_token  # noqa: E402

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _png(seed: int) -> tuple[str, bytes, str]:
    return (f"{seed}.png", noise_png(seed), "image/png")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bundle = make_onnx_bundle(tmp_path_factory.mktemp("serve"))
    app = create_app(bundle, token=TOKEN, max_upload_bytes=200_000, max_pixels=1_000_000)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_health_and_page(server):
    health = server.get("/health").json()
    assert health["status"] == "ok" and health["writes_enabled"] is True
    assert health["embedding_dim"] == 8 and health["identification_threshold"] == BUNDLE_THRESHOLD
    page = server.get("/")
    assert page.status_code == 200 and "drop-zone" in page.text
    assert "http" not in page.text.split("<footer")[0]  # no CDN, nothing fetched elsewhere
    assert server.get("/static/app.js").status_code == 200
    schema = server.get("/openapi.json").json()
    assert {"/embed", "/identify", "/verify", "/identities", "/health"} <= set(schema["paths"])


def test_enrol_identify_verify_remove(server):
    files = [("files", _png(11)), ("files", _png(12))]
    enrolled = server.post("/identities", data={"identity": "alice"}, files=files, headers=AUTH)
    assert enrolled.status_code == 201, enrolled.text
    alice_ids = enrolled.json()["image_ids"]
    assert len(alice_ids) == 2
    assert (
        server.post(
            "/identities", data={"identity": "bob"}, files=[("files", _png(13))], headers=AUTH
        ).status_code
        == 201
    )
    listed = {i["identity"]: i for i in server.get("/identities").json()["identities"]}
    assert listed["alice"]["images"] == 2 and listed["bob"]["images"] == 1
    thumb = server.get(listed["alice"]["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/png" and thumb.content[:4] == b"\x89PNG"

    answer = server.post(
        "/identify", files=[("files", _png(12)), ("files", _png(77))], data={"top_k": "2"}
    ).json()
    known, stranger = answer["results"]
    assert known["identity"] == "alice" and known["matches"][0]["image_id"] == alice_ids[1]
    assert known["matches"][0]["within_threshold"] is True and len(known["matches"]) == 2
    assert stranger["identity"] == "unknown" and stranger["distance"] > BUNDLE_THRESHOLD

    same = server.post("/verify", files={"a": _png(5), "b": _png(5)}).json()
    differ = server.post("/verify", files={"a": _png(5), "b": _png(6)}).json()
    assert same["same"] is True and differ["same"] is False

    embedded = server.post("/embed", files=[("files", _png(1)), ("files", _png(2))]).json()
    assert embedded["dim"] == 8 and len(embedded["embeddings"]) == 2

    removed = server.delete("/identities/bob", headers=AUTH)
    assert removed.json() == {"identity": "bob", "removed_images": 1}
    assert "bob" not in {i["identity"] for i in server.get("/identities").json()["identities"]}


def _assert_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and fragment in body["message"]


def test_writes_need_the_token(server):
    files = [("files", _png(1))]
    _assert_error(
        server.post("/identities", data={"identity": "eve"}, files=files), 401, "bearer token"
    )
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    _assert_error(
        server.post("/identities", data={"identity": "eve"}, files=files, headers=wrong),
        401,
        "wrong",
    )
    _assert_error(
        server.delete("/identities/alice", headers={"Authorization": TOKEN}), 401, "bearer"
    )
    _assert_error(server.delete("/identities/nobody", headers=AUTH), 404, "no identity 'nobody'")


def test_every_error_is_json_with_a_message(server):
    from PIL import Image

    _assert_error(
        server.post("/identify", files=[("files", ("x.png", b"not an image", "image/png"))]),
        400,
        "cannot read the image",
    )
    _assert_error(
        server.post("/identify", data={"top_k": "0"}, files=[("files", _png(1))]), 422, "top_k"
    )
    _assert_error(server.post("/identify"), 422, "files")
    _assert_error(server.get("/nowhere"), 404, "Not Found")
    _assert_error(server.get("/images/99999/thumbnail"), 404, "no thumbnail")
    _assert_error(
        server.post(
            "/identities", data={"identity": "a/b"}, files=[("files", _png(1))], headers=AUTH
        ),
        400,
        "'/'",
    )
    big = io.BytesIO()
    Image.new("L", (2000, 2000)).save(big, format="PNG")  # 4 M pixels > 1 M, in a few kB
    _assert_error(
        server.post("/identify", files=[("files", ("bomb.png", big.getvalue(), "image/png"))]),
        400,
        "decompression bomb",
    )
    _assert_error(
        server.post("/embed", files=[("files", ("big.bin", b"\0" * 300_000, "image/png"))]),
        413,
        "over the limit",
    )


def test_a_server_without_a_token_refuses_writes_and_serves_reads(tmp_path, monkeypatch):
    monkeypatch.delenv("TRIPLETLAB_TOKEN", raising=False)
    app = create_app(make_onnx_bundle(tmp_path))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        refused = client.post(
            "/identities", data={"identity": "x"}, files=[("files", _png(1))], headers=AUTH
        )
        _assert_error(refused, 403, "writes are disabled")
        assert client.get("/health").json()["writes_enabled"] is False
        assert (
            client.post("/identify", files=[("files", _png(1))]).json()["results"][0]["identity"]
            == "unknown"
        )


def test_token_sources(tmp_path):
    path = tmp_path / "token.txt"
    path.write_text("  from-file \nsecond line\n")
    assert resolve_token(token_file=path, environ={"TRIPLETLAB_TOKEN": "env"}) == "from-file"
    assert resolve_token(environ={"TRIPLETLAB_TOKEN": "env"}) == "env"
    assert resolve_token(environ={}) is None
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_token(token_file=tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="cannot read the token file"):
        resolve_token(token_file=tmp_path / "missing.txt")


def test_a_chunked_upload_is_cut_off_at_the_limit(server):
    boundary = "tripletlab-boundary"

    def body():  # no Content-Length: the server must count what arrives
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(40):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    _assert_error(server.post("/embed", content=body(), headers=headers), 413, "over the limit")
