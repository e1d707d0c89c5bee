"""Plotly helpers shared by the analyses (imported lazily so the analyses load without plotly)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def heatmap(
    z: Any,
    x: Sequence[Any] | None = None,
    y: Sequence[Any] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    diverging: bool = True,
    text: Sequence[Sequence[str]] | None = None,
):
    import plotly.graph_objects as go

    arr = np.asarray(z, dtype=float)
    # unique labels: plotly merges duplicated category names (repeated tokens) into one column
    xs = [f"{i}:{v}" for i, v in enumerate(x)] if x is not None else None
    ys = [f"{i}:{v}" for i, v in enumerate(y)] if y is not None else None
    kw: dict[str, Any] = dict(colorscale="RdBu", zmid=0) if diverging else dict(colorscale="Viridis")
    if text is not None:
        kw.update(text=text, texttemplate="%{text}", textfont={"size": 9})
    fig = go.Figure(go.Heatmap(z=arr, x=xs, y=ys, **kw))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig


def bars(
    x: Sequence[Any],
    y: Sequence[float],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    error: Any = None,
):
    import plotly.graph_objects as go

    err = None
    if error is not None:
        lo, hi = np.asarray(error[0], float), np.asarray(error[1], float)
        yy = np.asarray(y, float)
        err = dict(type="data", symmetric=False, array=hi - yy, arrayminus=yy - lo)
    fig = go.Figure(go.Bar(x=[str(v) for v in x], y=list(y), error_y=err))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig


def lines(
    x: Sequence[Any],
    series: dict[str, Sequence[float]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    bands: dict[str, tuple] | None = None,
):
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=list(x), y=list(ys), mode="lines+markers", name=name))
        if bands and name in bands:
            lo, hi = bands[name]
            fig.add_trace(
                go.Scatter(
                    x=list(x) + list(x)[::-1],
                    y=list(hi) + list(lo)[::-1],
                    fill="toself",
                    opacity=0.2,
                    line={"width": 0},
                    showlegend=False,
                    name=f"{name} CI",
                )
            )
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig


def scatter(
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
):
    import plotly.graph_objects as go

    mode = "markers+text" if labels is not None and len(labels) <= 60 else "markers"
    fig = go.Figure(
        go.Scatter(
            x=list(x), y=list(y), mode=mode, text=list(labels) if labels else None, textposition="top center"
        )
    )
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel)
    return fig


def write(fig: Any, path: str | Path, plotlyjs: bool | str = True) -> Path:
    """Write a figure as standalone HTML (by default plotly.js is inlined from the installed package: works offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=plotlyjs, full_html=True)
    return path
