"""What a search returns: per-step records and the outcome, as JSON (``to_dict``) and a loss curve (``figure``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepRecord:
    step: int  # 1-based
    loss: float  # lowest loss among this step's candidates
    best_loss: float  # lowest loss so far
    best_suffix: str  # the best suffix so far (what the next step starts from)
    candidates: int  # candidates scored this step
    matched: int  # of them, teacher-forced exact matches of the target
    verified: bool  # a match verified by greedy decoding this step
    seconds: float  # since the search started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AttackResult:
    config: dict[str, Any]
    model: str
    prompt: str
    target: str
    chat: bool
    rendered_prompt: str  # the full text the model saw (chat template applied), suffix included
    prompt_with_suffix: str  # the user's message with the suffix appended
    best_suffix: str  # the verified suffix on success, else the lowest-loss one
    best_suffix_ids: list[int]
    best_loss: float
    init_loss: float
    verified_output: str  # greedy output for best_suffix, from the re-tokenised rendered prompt
    success: bool
    success_step: int | None  # first step with a verified success
    history: list[StepRecord] = field(default_factory=list)
    seconds: float = 0.0
    seconds_to_success: float | None = None
    forward_rows: int = 0  # candidate rows scored (the initial suffix included)
    gradient_passes: int = 0
    rows_to_success: int | None = None

    @property
    def losses(self) -> list[float]:
        return [r.loss for r in self.history]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        history = d.pop("history")
        return {
            "best_suffix": self.best_suffix,
            "verified_output": self.verified_output,
            "success": self.success,
            "steps": len(self.history),
            "losses": self.losses,
            "seconds": self.seconds,
            **{
                k: v
                for k, v in d.items()
                if k not in ("best_suffix", "verified_output", "success", "seconds")
            },
            "best_losses": [r["best_loss"] for r in history],
            "best_suffixes": [r["best_suffix"] for r in history],
            "step_seconds": [r["seconds"] for r in history],
            "history": history,
        }

    def figure(self):
        import plotly.graph_objects as go

        steps = [r.step for r in self.history]
        fig = go.Figure()
        fig.add_scatter(x=steps, y=self.losses, mode="lines+markers", name="step's best loss")
        fig.add_scatter(x=steps, y=[r.best_loss for r in self.history], mode="lines", name="best so far")
        if self.success_step is not None:
            fig.add_vline(x=self.success_step, line_dash="dash", annotation_text="verified success")
        fig.update_layout(
            title=f"{self.config['method']}: target {self.target!r} ({'success' if self.success else 'no success'})",
            xaxis_title="step",
            yaxis_title=f"target loss ({self.config['loss']})",
        )
        return fig
