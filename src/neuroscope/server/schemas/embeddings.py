"""The embedding explorer: words in 3D, neighbours, analogies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import Strict

WordText = Annotated[str, Field(min_length=1, max_length=100, description="a word as typed")]
Matrix = Literal["W_E", "W_U"]


class WordInfo(BaseModel):
    text: str
    token_ids: list[int]
    tokens: list[str] = Field(description="the token(s) that stand for the word (mean vector when several)")
    multi_token: bool


class EmbeddingMapRequest(Strict):
    words: list[WordText] = Field(min_length=2, max_length=64)
    matrix: Matrix = "W_E"
    threshold: float | None = Field(
        default=None, ge=-1, le=1, description="cluster merge cosine (default: cut at the widest gap)"
    )


class EmbeddingMapResponse(BaseModel):
    words: list[WordInfo]
    coords: list[list[float]] = Field(description="[word] -> [pc1, pc2, pc3]")
    explained_variance_ratio: list[float]
    similarity: list[list[float]] = Field(description="[word][word] cosine similarity")
    clusters: list[int] = Field(description="similarity cluster of each word (average linkage)")
    matrix: str


class NeighboursRequest(Strict):
    word: WordText
    k: int = Field(default=10, ge=1, le=100)
    matrix: Matrix = "W_E"


class Neighbour(BaseModel):
    token: str
    token_id: int
    cosine: float


class NeighboursResponse(BaseModel):
    word: WordInfo
    neighbours: list[Neighbour]


class AnalogyRequest(Strict):
    a: WordText
    b: WordText
    c: WordText
    expected: WordText | None = None
    k: int = Field(default=10, ge=1, le=100)
    matrix: Matrix = "W_E"


class AnalogyResponse(BaseModel):
    a: WordInfo
    b: WordInfo
    c: WordInfo
    expected: WordInfo | None
    ranked: list[Neighbour] = Field(description="a − b + c's nearest tokens by cosine; a, b, c left out")
    expected_rank: int | None = Field(description="1-based rank of the expected word among all tokens")
    expected_cosine: float | None
    offset_cosine: float | None = Field(description="cos(a − b, expected − c)")
