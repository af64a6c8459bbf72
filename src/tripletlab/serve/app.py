"""The HTTP service over a :class:`~tripletlab.deploy.recognizer.Recognizer` (FastAPI).

Endpoints (uploads are ``multipart/form-data``; every answer and every error is JSON):

=========================  ===========================================================  =======
``POST /embed``            ``files``: images (or ``.npy``) → embeddings                  read
``POST /identify``         ``files``, ``top_k`` → per file the top-k identities, the     read
                           answer (``unknown`` beyond the identification threshold)
``POST /verify``           ``a``, ``b`` (one file each) → distance, threshold, same      read
``POST /identities``       ``identity``, ``files`` → enrol (new or existing identity)    write
``DELETE /identities/ID``  remove an identity and its images                             write
``GET /identities``        the enrolled identities                                       read
``GET /images/ID/thumbnail``  an enrolled image's PNG thumbnail                          read
``GET /health``            model, thresholds, gallery size, whether writes are enabled   read
``GET /``                  the web page (static HTML + JS; no CDN, no build step)        read
=========================  ===========================================================  =======

Writes need ``Authorization: Bearer <token>`` (see :mod:`tripletlab.serve.security`); the
OpenAPI schema is at ``/openapi.json`` and its interactive docs at ``/docs``.

Example:
    >>> from tripletlab.serve import create_app
    >>> app = create_app("bundle/")  # doctest: +SKIP
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures'
# annotations at run time, and the module-level aliases below must be real objects.
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from tripletlab.deploy.gallery_store import Match
from tripletlab.deploy.images import DEFAULT_MAX_PIXELS
from tripletlab.deploy.recognizer import Recognizer
from tripletlab.errors import DataError
from tripletlab.serve.errors import install_error_handlers
from tripletlab.serve.schemas import (
    EmbedResponse,
    EnrolResponse,
    ErrorResponse,
    HealthResponse,
    IdentifyResponse,
    IdentitiesResponse,
    IdentityOut,
    MatchOut,
    QueryResult,
    RemoveResponse,
    VerifyResponse,
)
from tripletlab.serve.security import BodySizeLimit, check_bearer, resolve_token

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "MAX_FILES", "MAX_TOP_K", "create_app"]

#: 16 MiB a request: a handful of full-resolution photos; far below memory trouble.
DEFAULT_MAX_UPLOAD_BYTES = 16 * 1024 * 1024
#: Files in one request: bounds the work one request can ask for.
MAX_FILES = 32
MAX_TOP_K = 100
STATIC_DIR = Path(__file__).with_name("static")

Files = Annotated[list[UploadFile], File(description="images (or .npy arrays)")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 500)
}


def create_app(
    target: str | Path | Recognizer,
    *,
    gallery: str | Path | None = None,
    token: str | None = None,
    token_file: str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int | None = None,
) -> FastAPI:
    """The FastAPI app serving ``target`` (a bundle, an exported folder, a run directory or a
    :class:`Recognizer`).

    Args:
        gallery: the gallery store file (default: ``<target>/gallery.sqlite``).
        token, token_file: the write token (else ``TRIPLETLAB_TOKEN``; none → writes refused).
        max_upload_bytes: largest request body (413 beyond).
        max_pixels: largest decoded image (decompression bombs are refused).
        threads: onnxruntime intra-op threads (default: onnxruntime's).
    """
    expected_token = resolve_token(token, token_file)
    recognizer = (
        target
        if isinstance(target, Recognizer)
        else Recognizer.open(target, gallery=gallery, threads=threads, max_pixels=max_pixels)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        recognizer.close()

    app = FastAPI(
        title="tripletlab recognizer",
        summary="Identify, verify and enrol with a triplet-loss embedding model.",
        version="1",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.recognizer = recognizer
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=max_upload_bytes)
    _add_read_routes(app, recognizer, expected_token is not None, max_upload_bytes)
    _add_write_routes(app, recognizer, expected_token)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _read_all(files: list[UploadFile]) -> tuple[list[str], list[bytes]]:
    if not files:
        raise DataError("no file uploaded")
    if len(files) > MAX_FILES:
        raise DataError(f"at most {MAX_FILES} files a request; got {len(files)}")
    names = [f.filename or f"file{i}" for i, f in enumerate(files)]
    return names, [await f.read() for f in files]


def _match_out(match: Match, threshold: float | None) -> MatchOut:
    return MatchOut(
        identity=match.identity,
        distance=match.distance,
        image_id=match.image_id,
        thumbnail_url=f"/images/{match.image_id}/thumbnail",
        within_threshold=None if threshold is None else match.distance <= threshold,
    )


def _add_read_routes(
    app: FastAPI, recognizer: Recognizer, writes_enabled: bool, max_upload_bytes: int
) -> None:
    info = recognizer.info

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.post("/embed", response_model=EmbedResponse, tags=["recognition"])
    async def embed(files: Files) -> EmbedResponse:
        """Embeddings of the uploaded inputs, in upload order."""
        _, blobs = await _read_all(files)
        rows = await run_in_threadpool(recognizer.embed, blobs)
        return EmbedResponse(dim=int(rows.shape[1]), embeddings=rows.tolist())

    @app.post("/identify", response_model=IdentifyResponse, tags=["recognition"])
    async def identify(
        files: Files, top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 5
    ) -> IdentifyResponse:
        """Per uploaded image, the ``top_k`` nearest identities and the answer."""
        names, blobs = await _read_all(files)
        answers = await run_in_threadpool(recognizer.identify, blobs, top_k)
        threshold = info.identification_threshold
        results = [
            QueryResult(
                file=name,
                identity=answer.identity,
                distance=answer.distance,
                matches=[_match_out(m, threshold) for m in answer.matches],
            )
            for name, answer in zip(names, answers, strict=True)
        ]
        return IdentifyResponse(threshold=threshold, metric=info.metric, results=results)

    @app.post("/verify", response_model=VerifyResponse, tags=["recognition"])
    async def verify(
        a: Annotated[UploadFile, File()],
        b: Annotated[UploadFile, File()],
        threshold: Annotated[float | None, Form(ge=0)] = None,
    ) -> VerifyResponse:
        """Whether ``a`` and ``b`` show the same identity (distance ≤ threshold)."""
        _, (blob_a, blob_b) = await _read_all([a, b])
        result = await run_in_threadpool(recognizer.verify, blob_a, blob_b, threshold)
        return VerifyResponse(
            distance=result.distance, threshold=result.threshold, same=result.same
        )

    @app.get("/identities", response_model=IdentitiesResponse, tags=["gallery"])
    def identities() -> IdentitiesResponse:
        """Every enrolled identity with its number of images."""
        return IdentitiesResponse(
            identities=[
                IdentityOut(
                    identity=i.identity,
                    images=i.images,
                    thumbnail_url=None
                    if i.first_image_id is None
                    else f"/images/{i.first_image_id}/thumbnail",
                )
                for i in recognizer.identities()
            ]
        )

    @app.get(
        "/images/{image_id}/thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
        tags=["gallery"],
    )
    def thumbnail(image_id: int) -> Response:
        """The PNG thumbnail kept when the image was enrolled."""
        png = recognizer.store.thumbnail(image_id)
        if png is None:
            raise HTTPException(404, f"no thumbnail for image {image_id}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    def health() -> HealthResponse:
        """Liveness, the model and the gallery's size."""
        counts = recognizer.store.counts()
        return HealthResponse(
            model=info.description,
            input_kind=recognizer.preprocess.kind,
            embedding_dim=info.embedding_dim,
            metric=info.metric,
            verification_threshold=info.verification_threshold,
            identification_threshold=info.identification_threshold,
            identities=counts["identities"],
            images=counts["images"],
            writes_enabled=writes_enabled,
            max_upload_bytes=max_upload_bytes,
        )


def _add_write_routes(app: FastAPI, recognizer: Recognizer, expected_token: str | None) -> None:
    def writer(authorization: Annotated[str | None, Header()] = None) -> None:
        check_bearer(authorization, expected_token)

    @app.post(
        "/identities",
        response_model=EnrolResponse,
        status_code=201,
        dependencies=[Depends(writer)],
        tags=["gallery"],
    )
    async def enrol(
        identity: Annotated[str, Form(min_length=1, max_length=200)],
        files: Annotated[list[UploadFile], File(description="images of this identity")],
    ) -> EnrolResponse:
        """Enrol images of ``identity`` (new or existing); answered once stored on disk."""
        names, blobs = await _read_all(files)
        ids = await run_in_threadpool(recognizer.enrol, identity, blobs, names)
        return EnrolResponse(identity=identity.strip(), image_ids=ids)

    @app.delete(
        "/identities/{identity}",
        response_model=RemoveResponse,
        dependencies=[Depends(writer)],
        tags=["gallery"],
    )
    def remove(identity: Annotated[str, PathParam(min_length=1)]) -> RemoveResponse:
        """Remove ``identity`` and all its images."""
        return RemoveResponse(identity=identity, removed_images=recognizer.remove(identity))
