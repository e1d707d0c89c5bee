"""Messages of ``/ws/evaluate`` (the Features view's evaluation panel).

Bounds keep one request interactive; what a value means (an empty kind of prompts, an unknown edit name, a
response longer than the budget) is checked by the library, which names the error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import Strict

EvalPrompt = str  # each checked for length below
MAX_EVAL_PROMPTS = 128


class EvalPrompts(Strict):
    """A user's prompt set, as in a prompt file ``{"triggered": [...], "clean": [...]}``."""

    triggered: list[str] = Field(default_factory=list, max_length=MAX_EVAL_PROMPTS)
    clean: list[str] = Field(default_factory=list, max_length=MAX_EVAL_PROMPTS)
    response: str | None = Field(
        default=None,
        max_length=400,
        description="the text whose appearance is an attack (default: the organism's)",
    )


class EvaluateRequest(Strict):
    type: Literal["evaluate"] = "evaluate"
    id: int | str | None = None
    edits: list[str] = Field(default_factory=list, max_length=32, description="prepared edit names")
    prompts: EvalPrompts | None = Field(default=None, description="null: the organism's held-out prompts")
    max_new_tokens: int = Field(default=16, ge=1, le=64)
    batch_size: int = Field(default=8, ge=1, le=32)


class EffectsRequest(Strict):
    """The top features by causal effect on the organism's response for one prompt (the current prompt)."""

    type: Literal["effects"] = "effects"
    id: int | str | None = None
    prompt: str | None = Field(
        default=None,
        max_length=4000,
        description="plain prompt holding the trigger (null: the first held-out one)",
    )
    top: int = Field(default=10, ge=1, le=50)


class EvalEffects(BaseModel):
    type: Literal["effects"] = "effects"
    id: int | str | None
    result: dict[str, Any] = Field(description="PromptEffects.to_dict(): features ranked by effect")
    seconds: float


class EvalReady(BaseModel):
    type: Literal["ready"] = "ready"
    prompts: dict[str, Any] | None = Field(description="the default prompt set (null: none; send your own)")


class EvalProgress(BaseModel):
    type: Literal["progress"] = "progress"
    id: int | str | None
    done: int
    total: int


class EvalResult(BaseModel):
    type: Literal["result"] = "result"
    id: int | str | None
    result: dict[str, Any] = Field(
        description="PanelResult.to_dict(): asr, clean_agreement, false_trigger, ..."
    )
    seconds: float


class EvalError(BaseModel):
    type: Literal["error"] = "error"
    id: int | str | None = None
    status: int
    detail: str


EVALUATE_WS_MODELS = (
    EvaluateRequest,
    EvalReady,
    EvalProgress,
    EvalResult,
    EvalError,
    EffectsRequest,
    EvalEffects,
)
