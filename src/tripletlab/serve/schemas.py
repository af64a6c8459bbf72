"""The JSON bodies of the service (pydantic models: validation and the OpenAPI docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = [
    "EmbedResponse",
    "EnrolResponse",
    "ErrorResponse",
    "HealthResponse",
    "IdentifyResponse",
    "IdentitiesResponse",
    "IdentityOut",
    "MatchOut",
    "QueryResult",
    "RemoveResponse",
    "VerifyResponse",
]


class ErrorResponse(BaseModel):
    """Every error: a one-line message and the HTTP status."""

    message: str = Field(examples=["no identity 'bob' in the gallery"])
    status: int = Field(examples=[404])


class EmbedResponse(BaseModel):
    dim: int
    embeddings: list[list[float]] = Field(description="one row per input, in upload order")


class MatchOut(BaseModel):
    identity: str
    distance: float = Field(description="to the identity's nearest enrolled image")
    image_id: int = Field(description="that image; its thumbnail: thumbnail_url")
    thumbnail_url: str
    within_threshold: bool | None = Field(
        description="distance ≤ identification threshold (None: no threshold)"
    )


class QueryResult(BaseModel):
    file: str
    identity: str = Field(description="the nearest identity, or 'unknown' beyond the threshold")
    distance: float | None
    matches: list[MatchOut]


class IdentifyResponse(BaseModel):
    threshold: float | None = Field(description="identification distance threshold")
    metric: str
    results: list[QueryResult]


class VerifyResponse(BaseModel):
    distance: float
    threshold: float
    same: bool = Field(description="distance ≤ threshold")


class EnrolResponse(BaseModel):
    identity: str
    image_ids: list[int]


class RemoveResponse(BaseModel):
    identity: str
    removed_images: int


class IdentityOut(BaseModel):
    identity: str
    images: int
    thumbnail_url: str | None


class IdentitiesResponse(BaseModel):
    identities: list[IdentityOut]


class HealthResponse(BaseModel):
    status: str = "ok"
    model: str
    input_kind: str
    embedding_dim: int
    metric: str
    verification_threshold: float | None
    identification_threshold: float | None
    identities: int
    images: int
    writes_enabled: bool
    max_upload_bytes: int
