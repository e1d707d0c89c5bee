"""Figures for the induction report: plotly HTML (interactive) and, when matplotlib is installed, PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuroscope.train.formation import FormationResult


def formation_figure(result: FormationResult) -> Any:
    """Two panels against step: per-head scores (top), training and in-context losses (bottom)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n_layers = len(result.induction[0])
    n_heads = len(result.induction[0][0])
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("Head scores on BOS + X + X", "Loss"),
    )
    for layer in range(1, n_layers):
        for h in range(n_heads):
            main = (layer, h) == result.induction_head
            fig.add_trace(
                go.Scatter(
                    x=result.steps,
                    y=result.head_series((layer, h)),
                    name=f"induction L{layer}H{h}",
                    line=dict(width=3 if main else 1),
                ),
                row=1,
                col=1,
            )
    for h in range(n_heads):
        main = (0, h) == result.prev_token_head
        fig.add_trace(
            go.Scatter(
                x=result.steps,
                y=result.head_series((0, h), "prev"),
                name=f"prev-token L0H{h}",
                line=dict(width=3 if main else 1, dash="dot"),
            ),
            row=1,
            col=1,
        )
    fig.add_trace(go.Scatter(x=result.steps, y=result.train_loss, name="training loss"), row=2, col=1)
    fig.add_trace(go.Scatter(x=result.steps, y=result.first_half_loss, name="loss, first half"), row=2, col=1)
    fig.add_trace(
        go.Scatter(x=result.steps, y=result.repeated_half_loss, name="loss, repeated half"), row=2, col=1
    )
    span = result.rise()["score_span_10_90"]
    if span["start"] is not None:
        for row in (1, 2):
            fig.add_vrect(
                x0=span["start"], x1=span["end"], fillcolor="gray", opacity=0.15, line_width=0, row=row, col=1
            )
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_yaxes(title_text="mean attention", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="cross-entropy (nats)", row=2, col=1)
    fig.update_layout(height=700, width=900, title="Induction-head formation")
    return fig


def write_formation_png(result: FormationResult, path: Path) -> bool:
    """The same figure with matplotlib (no browser needed); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    n_layers, n_heads = len(result.induction[0]), len(result.induction[0][0])
    for layer in range(1, n_layers):
        for h in range(n_heads):
            main = (layer, h) == result.induction_head
            ax1.plot(
                result.steps,
                result.head_series((layer, h)),
                lw=2.5 if main else 1,
                label=f"induction L{layer}H{h}",
            )
    for h in range(n_heads):
        main = (0, h) == result.prev_token_head
        ax1.plot(
            result.steps,
            result.head_series((0, h), "prev"),
            ls=":",
            lw=2.5 if main else 1,
            label=f"prev-token L0H{h}",
        )
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("mean attention")
    ax1.set_title("Head scores on BOS + X + X")
    ax1.legend(fontsize=7, ncol=2)
    steps = result.steps
    ax2.plot(steps, [v if v is not None else float("nan") for v in result.train_loss], label="training loss")
    ax2.plot(steps, result.first_half_loss, label="loss, first half")
    ax2.plot(steps, result.repeated_half_loss, label="loss, repeated half")
    ax2.set_xlabel("training step")
    ax2.set_ylabel("cross-entropy (nats)")
    ax2.legend(fontsize=8)
    span = result.rise()["score_span_10_90"]
    if span["start"] is not None:
        for ax in (ax1, ax2):
            ax.axvspan(span["start"], span["end"], color="gray", alpha=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def pattern_figure(patterns: dict[str, Any], labels: list[str]) -> Any:
    """Side-by-side attention heatmaps, ``patterns`` mapping a title to a ``[q, k]`` array."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(patterns), subplot_titles=list(patterns))
    for i, (_, p) in enumerate(patterns.items(), start=1):
        fig.add_trace(
            go.Heatmap(z=p, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1, showscale=i == 1),
            row=1,
            col=i,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    fig.update_layout(height=480, width=480 * len(patterns), title="Attention patterns (query ↓, key →)")
    return fig


def write_pattern_png(patterns: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(patterns), figsize=(5 * len(patterns), 4.6))
    for ax, (title, p) in zip(axes, patterns.items(), strict=True):
        im = ax.imshow(p, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
