"""The README's animation: live editing in the workbench's Features view, recorded from a real browser.

    make demo-gif                      # = python scripts/demo_gif.py --sae saes/l15-k64 --out docs/demo.gif
    python scripts/demo_gif.py --sae saes/l15-k64 --prompt "..." [--feature N] --out docs/demo.gif

Serves smollm2-135m with the SAE attached (a temporary workspace), opens a feature in the Features view in
Debian's Chromium (headless, through Playwright), and takes frames while the feature's patch is toggled on and
off: the next-token chart and the patch-effect bars move as the live LoRA edit switches. Without ``--feature``
the feature is the one, among the 16 most active at the prompt's last token, whose removal changes the
next-token distribution most (KL with its decoder direction projected out of the residual stream up to the
SAE's layer, the hooked equivalent of the view's "ablate" edit). Pillow assembles the
frames into a GIF (a shared adaptive palette, identical frames merged). The SAE comes from the README's
pipeline (`neuroscope train-sae ... --out saes/l15-k64` and `neuroscope sae-features`). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

CHROMIUM = os.environ.get("NEUROSCOPE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PROMPT = "To read the file line by line, open it and iterate over the"


def pick_feature(model, sae_dir: Path, prompt: str, candidates: int = 16) -> int:
    import torch

    from neuroscope.interventions import ProjectOut
    from neuroscope.sae.io import load_sae

    sae = load_sae(sae_dir).eval()
    hook = model.resolve_hook_name(sae.cfg.hook_name)
    layer = int(hook.split(".")[1]) + (1 if hook.endswith("resid_post") else 0)
    with torch.no_grad():
        logits, cache = model.run_with_cache(prompt, names=[hook])
        acts = sae.encode(cache[hook][0, -1].float())
        base = torch.log_softmax(logits[0, -1].float(), -1)
        best, best_kl = int(acts.argmax()), -1.0
        for f in acts.topk(candidates).indices.tolist():
            # the hooked twin of the view's closed-form "ablate" edit: the decoder direction removed from the
            # residual stream up to the SAE's layer (docs/features/README.md: equal to float32 noise)
            d = sae.W_dec[f].float()
            out = model(
                prompt, interventions=[ProjectOut(d, layers=list(range(layer + 1)), site="resid_pre")]
            )
            q = torch.log_softmax(out[0, -1].float(), -1)
            kl = float((base.exp() * (base - q)).sum())
            if kl > best_kl:
                best, best_kl = f, kl
    print(f"feature {best}: next-token KL {best_kl:.3f} nats when removed", file=sys.stderr)
    return best


def record(base: str, sae_name: str, feature: int, prompt: str, width: int) -> list[tuple[bytes, int]]:
    """(PNG, milliseconds to show it) frames: still, toggling on, patched, toggling off, unpatched."""
    from playwright.sync_api import sync_playwright

    frames: list[tuple[bytes, int]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": width, "height": 1000}).new_page()
        page.set_default_timeout(180_000)
        page.goto(f"{base}/?prompt={quote(prompt)}#/features/{quote(sae_name)}/{feature}")
        toggle = page.get_by_test_id("patch-toggle")
        toggle.wait_for()
        page.wait_for_selector(
            "[data-testid=feature-next-token][aria-busy=false] [data-testid=next-token-row]", state="attached"
        )
        page.wait_for_function("() => !document.querySelector('[data-testid=patch-toggle]').disabled")
        time.sleep(1.0)  # let the chart settle
        boxes = [
            page.get_by_test_id(t).bounding_box()
            for t in ("feature-summary", "feature-next-token", "patch-effect")
        ]
        x0 = min(b["x"] for b in boxes if b) - 6
        y0 = min(b["y"] for b in boxes if b) - 6
        x1 = max(b["x"] + b["width"] for b in boxes if b) + 6
        y1 = max(b["y"] + b["height"] for b in boxes if b) + 6
        clip = {"x": max(0, x0), "y": max(0, y0), "width": x1 - max(0, x0), "height": y1 - max(0, y0)}

        def shot(ms: int) -> None:
            frames.append((page.screenshot(clip=clip), ms))

        def flip(on: bool) -> None:
            toggle.hover()
            shot(500)
            toggle.click()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # frames while the live run comes back
                shot(120)
                pressed = toggle.get_attribute("aria-pressed") == ("true" if on else "false")
                busy = page.get_by_test_id("feature-next-token").get_attribute("aria-busy") == "true"
                effect = page.get_by_test_id("patch-effect-bars").count() > 0
                if pressed and not busy and effect == on:
                    break
            time.sleep(0.8)  # the chart's transition
            shot(2200)

        shot(1500)
        flip(True)
        flip(False)
        browser.close()
    return frames


def assemble(frames: list[tuple[bytes, int]], out: Path, scale: float) -> None:
    from PIL import Image

    images, durations = [], []
    for png, ms in frames:
        im = Image.open(io.BytesIO(png)).convert("RGB")
        if scale != 1.0:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        if images and im.tobytes() == images[-1].tobytes():
            durations[-1] += ms  # identical frame: hold the previous one longer
            continue
        images.append(im)
        durations.append(ms)
    # one adaptive palette for every frame (from a strip of all of them), so colours do not flicker
    strip = Image.new("RGB", (images[0].width, images[0].height * len(images)))
    for i, im in enumerate(images):
        strip.paste(im, (0, i * im.height))
    palette = strip.quantize(colors=96, method=Image.Quantize.MEDIANCUT)
    quantized = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    quantized[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=quantized[1:],
        duration=durations,
        loop=0,
        optimize=True,
    )
    tmp.replace(out)
    print(f"{out}: {len(quantized)} frames, {out.stat().st_size / 1024:.0f} KiB", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sae", default="saes/l15-k64", help="SAE folder (with features/) for the Features view")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--feature", type=int, default=None)
    ap.add_argument("--out", default="docs/demo.gif")
    ap.add_argument("--width", type=int, default=1280, help="browser viewport width")
    ap.add_argument("--scale", type=float, default=0.85, help="frame scale in the GIF")
    args = ap.parse_args(argv)
    sae_dir = Path(args.sae)
    if not (sae_dir / "cfg.json").is_file():
        print(
            f"No SAE at {sae_dir}: make one with the README's pipeline (neuroscope trace ... --out acts/l15, "
            "neuroscope train-sae --acts acts/l15 --k 64 --out saes/l15-k64, neuroscope sae-features ...) "
            "or pass --sae DIR.",
            file=sys.stderr,
        )
        return 2

    import neuroscope as ns
    from neuroscope.server.app import STATIC, create_app
    from neuroscope.server.background import serve_in_thread
    from neuroscope.server.settings import Settings

    if not (STATIC / "index.html").exists():
        print("The UI is not built: run `make ui`.", file=sys.stderr)
        return 2
    model = ns.load_model(args.model, device="cpu")
    feature = args.feature if args.feature is not None else pick_feature(model, sae_dir, args.prompt)
    with tempfile.TemporaryDirectory() as ws:
        settings = Settings(model=args.model, saes=(str(sae_dir),), workspace=ws, max_prompt_tokens=64)
        with serve_in_thread(create_app(settings, model=model)) as base:
            frames = record(base, sae_dir.resolve().name, feature, args.prompt, args.width)
    assemble(frames, Path(args.out), args.scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
