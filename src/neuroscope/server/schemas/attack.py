"""Messages of ``/ws/attack`` (adversarial suffix search) and ``/api/attack/status``.

Bounds here only keep one request from claiming the server for hours; what a value means (an empty target,
a width of 0, a suffix longer than 100) is checked by the library, which names the error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from neuroscope.server.schemas.common import PROMPT_MAX_CHARS, Strict


class AttackStart(Strict):
    type: Literal["start"]
    prompt: str = Field(max_length=PROMPT_MAX_CHARS, description="the user message the suffix is appended to")
    target: str = Field(max_length=400, description="what the model's answer must start with")
    method: Literal["gcg", "genetic", "gradient-free"] = "gcg"
    steps: int = Field(default=100, ge=0, le=2000)
    width: int = Field(default=64, ge=0, le=1024, description="candidates per step (genetic: population)")
    suffix_len: int = Field(default=20, ge=0, le=200)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    topk: int = Field(default=64, ge=1, le=4096)
    chat: bool | None = Field(
        default=None, description="suffix in the chat template's user turn (null: auto)"
    )
    max_new_tokens: int = Field(default=24, ge=0, le=128)


class AttackStop(Strict):
    type: Literal["stop"]


class AttackStarted(BaseModel):
    type: Literal["started"] = "started"
    config: dict[str, Any]
    chat: bool
    init_loss: float
    init_suffix: str
    rendered_prompt: str


class AttackStep(BaseModel):
    type: Literal["step"] = "step"
    step: int
    loss: float = Field(description="lowest loss among this step's candidates")
    best_loss: float
    best_suffix: str
    rendered_prompt: str = Field(description="the full prompt text with the best suffix (what Apply uses)")
    output: str | None = Field(
        description="greedy output for the best suffix (null: unchanged since last step)"
    )
    candidates: int
    matched: int
    verified: bool
    seconds: float


class AttackDone(BaseModel):
    type: Literal["done"] = "done"
    reason: Literal["success", "budget", "stopped"]
    result: dict[str, Any] = Field(description="AttackResult.to_dict(): best_suffix, verified_output, ...")


class AttackError(BaseModel):
    type: Literal["error"] = "error"
    status: int
    detail: str


class AttackStatus(BaseModel):
    running: bool
    method: str | None = None
    step: int | None = None
    steps: int | None = None


ATTACK_WS_MODELS = (AttackStart, AttackStop, AttackStarted, AttackStep, AttackDone, AttackError)
