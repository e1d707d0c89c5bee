"""The embedding explorer in Chromium: the seed's four words in 3D, neighbours on click, an analogy ranked."""

from __future__ import annotations

import pytest

from neuroscope.analysis import embeddings

pytestmark = pytest.mark.browser

WORDS = ["king", "queen", "man", "woman"]

# Screen position of point i of trace 0 in Plotly's WebGL scene: data → scaled → model·view·projection → pixels.
PROJECT = """i => {
  const gd = document.querySelector('[data-testid=embedding-3d]');
  const sc = gd._fullLayout.scene._scene, cam = sc.glplot.cameraParams, ds = sc.dataScale, d = gd.data[0];
  const mul = (m, v) => [0, 1, 2, 3].map(r => m[r] * v[0] + m[4 + r] * v[1] + m[8 + r] * v[2] + m[12 + r] * v[3]);
  let v = [d.x[i] * ds[0], d.y[i] * ds[1], d.z[i] * ds[2], 1];
  v = mul(cam.projection, mul(cam.view, mul(cam.model, v)));
  const rect = sc.glplot.canvas.getBoundingClientRect();
  return [rect.left + (v[0] / v[3] + 1) / 2 * rect.width, rect.top + (1 - v[1] / v[3]) / 2 * rect.height];
}"""
LISTEN = """() => {
  window.__hovered = -1;
  const gd = document.querySelector('[data-testid=embedding-3d]');
  gd.on('plotly_hover', e => { window.__hovered = e.points[0].curveNumber === 0 ? e.points[0].pointNumber : -1; });
  gd.on('plotly_unhover', () => { window.__hovered = -1; });
}"""


def open_explorer(page) -> None:
    page.goto(page.base + "#/embeddings/" + "%20".join(WORDS))
    page.wait_for_function(
        "() => { const g = document.querySelector('[data-testid=embedding-3d]');"
        " return g && g.data && g.data[0] && g.data[0].x.length === 4; }"
    )


def plotted(page) -> dict:
    return page.evaluate(
        "() => { const d = document.querySelector('[data-testid=embedding-3d]').data[0];"
        " return {x: d.x, y: d.y, z: d.z, text: d.text, color: d.marker.color}; }"
    )


def test_four_words_in_3d_with_clusters_neighbours_and_analogy(page, smollm):
    open_explorer(page)
    lib = embeddings.embedding_map(smollm, WORDS)
    got = plotted(page)
    assert got["text"] == WORDS
    for axis, k in (("x", 0), ("y", 1), ("z", 2)):
        assert got[axis] == pytest.approx([c[k] for c in lib.coords], abs=1e-4)
    # king/queen and man/woman form two similarity clusters, drawn in two colours
    assert lib.clusters == [0, 0, 1, 1]
    assert got["color"][0] == got["color"][1] != got["color"][2] == got["color"][3]
    cells = page.locator("[data-testid=similarity-cell]").all_text_contents()
    assert [float(c) for c in cells] == pytest.approx([v for row in lib.similarity for v in row], abs=0.006)

    # rotate with the mouse: a drag across the 3D scene moves the camera
    plot = page.get_by_test_id("embedding-3d")
    box = plot.bounding_box()
    eye = "() => JSON.stringify(document.querySelector('[data-testid=embedding-3d]')._fullLayout.scene.camera.eye)"
    before = page.evaluate(eye)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 120, cy + 40, steps=8)
    page.mouse.up()
    page.wait_for_function(f"prev => ({eye})() !== prev", arg=before)

    # click the point labelled king: project it to the screen with the scene's camera, confirm by hovering
    spot = page.evaluate(PROJECT, 0)
    page.evaluate(LISTEN)
    found = None
    for dx, dy in [(0, 0)] + [(dx, dy) for r in (2, 4, 6) for dx in (-r, 0, r) for dy in (-r, 0, r)]:
        page.mouse.move(spot[0] + dx, spot[1] + dy)
        if page.evaluate("() => window.__hovered") == 0:
            found = (spot[0] + dx, spot[1] + dy)
            break
    assert found is not None, f"hovering near the projected point {spot} shows no 'king'"
    spot = found
    # Plotly's WebGL scene reports a click from its render loop while the button is down: hold it briefly
    page.mouse.move(*spot)
    page.mouse.down()
    page.wait_for_timeout(300)
    page.mouse.up()
    rows = page.locator("[data-testid=neighbour-row]")
    rows.first.wait_for()
    ids = [int(r.get_attribute("data-token-id")) for r in rows.all()]
    want = embeddings.word_neighbours(smollm, "king", k=12)
    assert ids == [i for _, i, _ in want.neighbours]
    assert smollm.to_string([ids[0]]).strip().lower() == "king"  # " King" is king's nearest neighbour

    # the analogy panel ranks king − man + woman; queen comes first
    page.get_by_test_id("analogy-run").click()
    rank = page.get_by_test_id("analogy-rank")
    rank.wait_for()
    assert rank.get_attribute("data-rank") == str(
        embeddings.analogy(smollm, "king", "man", "woman", "queen").expected_rank
    )
    assert rank.get_attribute("data-rank") == "1"
