"""scripts/demo_gif.py's assembly step (no browser, no model): frames become one looping GIF, identical
consecutive frames are merged into one longer frame, and the output goes only where it is told (tmp_path)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from PIL import Image, ImageSequence

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_gif.py"


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), color).save(buf, format="PNG")
    return buf.getvalue()


def test_assemble_merges_identical_frames(tmp_path):
    spec = importlib.util.spec_from_file_location("demo_gif", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    red, blue = _png((200, 30, 30)), _png((30, 30, 200))
    out = tmp_path / "demo.gif"
    mod.assemble([(red, 100), (red, 200), (blue, 300), (red, 400)], out, scale=0.5)
    gif = Image.open(out)
    durations, pixels = [], []
    for f in ImageSequence.Iterator(gif):  # the iterator seeks one image object: read each frame as it comes
        durations.append(f.info["duration"])
        pixels.append(f.convert("RGB").getpixel((5, 5)))
    assert gif.size == (20, 10) and gif.info["loop"] == 0
    assert durations == [300, 300, 400]
    first = pixels[0]
    assert abs(first[0] - 200) < 16 and abs(first[2] - 30) < 16 and pixels[1][2] > 150
