"""A static Plotly drawing of a graph document (the CLI's ``--html``); the workbench draws the same JSON
with D3. Layers are horizontal bands; x is the token position (or the head index when there is none)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

COLORS = {
    "feature": "#4c78a8",
    "error": "#9d9d9d",
    "head": "#f58518",
    "mlp": "#54a24b",
    "token": "#b279a2",
    "embed": "#b279a2",
    "logits": "#e45756",
}


def layout(doc: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """x, y per node: y = band; x = position (spread when several nodes share a band and position)."""
    groups: dict[tuple[float, float], list[str]] = defaultdict(list)
    for n in doc["nodes"]:
        x = n.get("pos")
        if x is None:
            x = n.get("head", 0) or 0
        groups[(n["band"], float(x))].append(n["id"])
    out = {}
    for (band, x), ids in groups.items():
        k = len(ids)
        for i, nid in enumerate(ids):
            out[nid] = (x + (i - (k - 1) / 2) * (0.8 / max(k, 1)), band)
    return out


def graph_figure(doc: dict[str, Any]):
    import plotly.graph_objects as go

    pos = layout(doc)
    fig = go.Figure()
    weights = [abs(e["weight"]) for e in doc["edges"]] or [1.0]
    wmax = max(weights) or 1.0
    for e in doc["edges"]:
        (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={
                    "width": 0.5 + 5 * abs(e["weight"]) / wmax,
                    "color": "rgba(200,60,60,0.5)" if e["weight"] < 0 else "rgba(60,90,200,0.5)",
                },
                hoverinfo="text",
                text=f"{e['source']} → {e['target']}: {e['weight']:.4g} ({e['path']})",
                showlegend=False,
            )
        )
    amax = max((abs(n.get("attribution", 0.0)) for n in doc["nodes"]), default=1.0) or 1.0
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in doc["nodes"]:
        by_type[n["type"]].append(n)
    for typ, nodes in by_type.items():
        fig.add_trace(
            go.Scatter(
                x=[pos[n["id"]][0] for n in nodes],
                y=[pos[n["id"]][1] for n in nodes],
                mode="markers",
                marker={
                    "size": [8 + 24 * (abs(n.get("attribution", 0.0)) / amax) ** 0.5 for n in nodes],
                    "color": COLORS.get(typ, "#333"),
                    "line": {"width": 1, "color": "#222"},
                },
                name=typ,
                hoverinfo="text",
                text=[f"{n['label']}<br>attribution {n.get('attribution', 0):.3g}" for n in nodes],
            )
        )
    tokens = doc.get("tokens")
    fig.update_layout(
        title=doc.get("title", ""),
        template="plotly_white",
        yaxis={
            "tickvals": [b["band"] for b in doc["bands"]],
            "ticktext": [b["label"] for b in doc["bands"]],
        },
        xaxis=(
            {"tickvals": list(range(len(tokens))), "ticktext": [repr(t) for t in tokens]}
            if tokens
            else {"title": "head"}
        ),
        height=700,
    )
    return fig
