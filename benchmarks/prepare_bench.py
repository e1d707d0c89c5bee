"""The first `make run`: seconds until the workbench serves, until the Features view has a trained SAE's
features (the default suite prepared in the background, from an empty prepare cache), click-to-logits
latency while it prepares, and a second start that reads the cache.

Starts ``neuroscope ui --model smollm2-135m`` as `make run` does (its own process, default settings) with
``NEUROSCOPE_PREPARE_DIR`` pointing at an empty temporary folder (the converted model itself stays cached).
While the suite is prepared, one WebSocket client ablates a random head every ~0.3 s on a 32-token prompt and
times send -> reply; the same clicks are timed again after it is ready (no preparation running).
Writes ``benchmarks/results/prepare.json``. ``python -m benchmarks.prepare_bench [--model M] [--tokens N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.latency_bench import TEXT, _summary

RESULTS = Path(__file__).resolve().parent / "results" / "prepare.json"
ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


class Server:
    def __init__(self, model: str, prepare_dir: Path, tokens: int | None, log: Path):
        self.port = _port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "NEUROSCOPE_PREPARE_DIR": str(prepare_dir)}
        if tokens:
            env["NEUROSCOPE_PREPARE_TOKENS"] = str(tokens)
        cmd = [sys.executable, "-m", "neuroscope.server.cli", "--model", model, "--port", str(self.port)]
        self.t0 = time.monotonic()
        self.log = open(log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_serving(self, timeout: float = 600) -> float:
        while time.monotonic() - self.t0 < timeout:
            assert self.proc.poll() is None, "the server exited"
            try:
                _get(self.base + "/api/health")
                return time.monotonic() - self.t0
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("the server did not serve")

    def features_ready(self) -> bool:
        saes = _get(self.base + "/api/features")["saes"]
        for s in saes:
            if s["has_features"]:
                page = _get(
                    f"{self.base}/api/features/{s['name']}/table?limit=5&sort=density&descending=true"
                )
                return bool(page["rows"]) and page["rows"][0]["density"] is not None
        return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def _clicks(
    base: str, prompt: str, n_layers: int, n_heads: int, until: Any, max_n: int, rng: random.Random
) -> list[float]:
    from websockets.sync.client import connect

    out: list[float] = []
    with connect(base.replace("http", "ws") + "/ws", open_timeout=120) as ws:
        ws.send(json.dumps({"id": 0, "prompt": prompt}))
        reply = json.loads(ws.recv(timeout=300))
        assert reply["type"] == "result", reply
        i = 0
        while len(out) < max_n and not until():
            i += 1
            t0 = time.perf_counter()
            ws.send(
                json.dumps(
                    {
                        "id": i,
                        "prompt": prompt,
                        "interventions": {"heads": [[rng.randrange(n_layers), rng.randrange(n_heads)]]},
                    }
                )
            )
            reply = json.loads(ws.recv(timeout=300))
            assert reply["type"] == "result" and reply["id"] == i, reply
            out.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.3)
    return out


def run(
    model: str = "smollm2-135m", tokens: int | None = None, clicks: int = 400, out: Path | None = RESULTS
) -> dict[str, Any]:
    from benchmarks.common import machine_info

    rng = random.Random(0)
    # ~32 tokens of smollm2's tokenizer (a tiny model's byte tokenizer: a short prompt)
    prompt = (
        " ".join(TEXT.split()[:26]) if not model.startswith("tiny:") else "When Mary and John went to the"
    )
    tmp = Path(tempfile.mkdtemp(prefix="prepare-bench-"))
    loads: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []

    first = Server(model, tmp / "prepared", tokens, tmp / "first.log")
    serve_s = first.wait_serving()
    info = _get(first.base + "/api/model")
    n_layers, n_heads = info["n_layers"], info["n_heads"]
    features_s: float | None = None
    last_stage = None

    def ready() -> bool:
        nonlocal features_s, last_stage
        st = _get(first.base + "/api/prepare")
        if st.get("stage") != last_stage:
            last_stage = st.get("stage")
            stages.append(
                {"t_s": round(time.monotonic() - first.t0, 1), "state": st["state"], "stage": last_stage}
            )
            loads.append(
                {"t_s": round(time.monotonic() - first.t0, 1), "load_1min": round(os.getloadavg()[0], 2)}
            )
        if st["state"] == "failed":
            raise RuntimeError(st.get("message"))
        if st["state"] == "ready" and features_s is None and first.features_ready():
            features_s = time.monotonic() - first.t0
        return features_s is not None

    during = _clicks(first.base, prompt, n_layers, n_heads, ready, clicks, rng)
    while not ready():
        time.sleep(1.0)
    after = _clicks(
        first.base, prompt, n_layers, n_heads, lambda: False, min(100, max(20, len(during) // 4)), rng
    )
    status = _get(first.base + "/api/prepare")
    first.stop()

    second = Server(model, tmp / "prepared", tokens, tmp / "second.log")
    serve2 = second.wait_serving()
    while _get(second.base + "/api/prepare")["state"] in ("checking", "waiting", "running"):
        time.sleep(0.1)
    ready2 = time.monotonic() - second.t0
    second_ok = second.features_ready()
    second.stop()
    suite_meta = json.loads((Path(status["path"]) / "prepared.json").read_text())
    evals = json.loads((Path(status["path"]) / "suite.json").read_text())["eval"]
    result = {
        "benchmark": "first `neuroscope ui` (as make run) with an empty prepare cache: serve, features, clicks meanwhile",
        "model": model,
        "machine_info": machine_info(),
        "note": "a shared 2-core machine with other work running: see the load averages beside the figures",
        "plan": suite_meta["plan"],
        "first_start": {
            "seconds_to_serve": round(serve_s, 1),
            "seconds_to_features": round(features_s or -1, 1),
            "stages": stages,
            "load_average_1min_samples": loads,
        },
        "clicks_while_preparing": {**_summary(during), "n": len(during)},
        "clicks_after_ready": {**_summary(after), "n": len(after)},
        "second_start": {
            "seconds_to_serve": round(serve2, 1),
            "seconds_to_ready": round(ready2, 1),
            "features": second_ok,
        },
        "suite_eval": evals,
        "targets": {
            "features_within_600s": bool(features_s and features_s <= 600),
            "p95_while_preparing_below_400ms": _summary(during)["p95_ms"] < 400 if during else None,
        },
    }
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument(
        "--tokens", type=int, default=None, help="prepare this many tokens (default: the model's plan)"
    )
    ap.add_argument("--clicks", type=int, default=400)
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    print(json.dumps(run(a.model, a.tokens, a.clicks, Path(a.out)), indent=2))
