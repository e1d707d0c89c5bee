"""A workbench soak: many clients for a long time against one `neuroscope ui`, checking that nothing fails, that
no client ever sees another's edits, and that the server's memory stays flat.

    python -m benchmarks.soak --model smollm2-135m --sae saes/soak-suite/L15 --sae-suite saes/soak-suite \
        --seconds 3600 --out benchmarks/results/soak.json

Each of ``clients`` threads holds a WebSocket and, between short pauses, toggles its own feature edits and head
ablations and reads the next-token answer; now and then it opens the Features table and a feature's detail, the
embedding map and neighbours, a provenance graph (with a suite) and the plain REST run. One more thread runs
adversarial suffix searches back to back over ``/ws/attack`` for the whole soak. Cross-talk: every answer for a
(prompt, edits, heads) must equal the first answer seen for it (a row batched beside other clients' rows
must not move); ``verify_against_library`` then recomputes a sample of them in this process. Memory: the RSS of
the server and its children, sampled every ``sample_every`` seconds; growth compares the median of the last
tenth of the run with the median of the tenth after a warm-up tenth. The tests run the same code for seconds
(tests/unit/test_soak.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.sync.client import connect

PROMPT = "client {k} asks the workbench what the model will say next"
WORDS = ["king", "queen", "man", "woman", "paris", "france", "apple", "river"]


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 3600.0
    clients: int = 20
    pause: float = 0.5  # seconds a client waits between requests (a person clicking, not a flood)
    sample_every: float = 5.0
    attack_steps: int = 20
    attack_width: int = 16
    graphs: bool = True  # provenance requests (needs --sae-suite on the server)
    seed: int = 0


@dataclass
class SoakResult:
    config: dict[str, Any]
    seconds: float
    requests: dict[str, int]
    latency_ms: dict[str, dict[str, float]]
    errors: list[str]
    n_errors: int
    crosstalk: list[str]
    distinct_answers: int
    attacks_finished: int
    attack_steps: int
    rss_mb: list[tuple[float, float]]
    rss_baseline_mb: float
    rss_final_mb: float
    rss_growth: float
    verified: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def serve(model: str, *args: str, timeout: float = 300.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`neuroscope ui --model MODEL ARGS` on a free port, offline, with `make run`'s defaults for whatever ARGS
    leave out; yields its base URL and process once /api/health answers, and stops it afterwards. A server
    that dies while starting raises with its stderr."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "neuroscope.server.cli", "--model", model, "--port", str(port)]
    cmd += list(args)
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(
                        server.stderr.read().decode() if server.stderr else "server exited"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not come up") from None
                time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _http(base: str, path: str, body: dict | None = None, timeout: float = 300) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data, {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=timeout).read())


def edit_specs(base: str, sae: str, prompt: str) -> list[dict[str, Any]]:
    """Five edits on features that fire on the clients' prompt: ablations of 1-3 features and two clamps."""
    acts = _http(base, f"/api/features/{sae}/prompt", {"prompt": prompt, "k": 16})
    order = [a["feature"] for a in acts.get("active") or []] or list(range(8))
    order += [f for f in range(8) if f not in order]
    return [
        {"features": order[:1], "method": "ablate", "rank": 4},
        {"features": order[1:3], "method": "ablate", "rank": 4},
        {"features": order[:1], "method": "clamp", "value": 4.0},
        {"features": order[3:6], "method": "ablate", "rank": 8},
        {"features": order[2:3], "method": "clamp", "value": 2.0},
    ]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _rss(pid: int) -> float:
    try:
        p = psutil.Process(pid)
        return sum(c.memory_info().rss for c in [p, *p.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


class _Soak:
    def __init__(
        self, base: str, pid: int, cfg: SoakConfig, sae: str | None, edits: list[str], n_layers: int
    ):
        self.base, self.pid, self.cfg, self.sae, self.edits, self.n_layers = (
            base,
            pid,
            cfg,
            sae,
            edits,
            n_layers,
        )
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.crosstalk: list[str] = []
        self.answers: dict[tuple, tuple] = {}
        self.requests: dict[str, int] = {}
        self.latency: dict[str, list[float]] = {}
        self.attacks = self.attack_steps = 0
        self.rss: list[tuple[float, float]] = []

    def _note(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            self.latency.setdefault(kind, []).append(seconds * 1000)

    def _fail(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def _answer(self, key: tuple, got: tuple) -> None:
        with self.lock:
            first = self.answers.setdefault(key, got)
        if first[0] != got[0] or max(abs(a - b) for a, b in zip(first[1], got[1], strict=True)) > 1e-5:
            with self.lock:
                self.crosstalk.append(f"{key}: {first} then {got}")

    def _side_request(self, rng: random.Random, k: int) -> None:
        try:
            self._side(rng, k)
        except urllib.error.HTTPError as e:
            self._fail(f"client {k}: {e.url} {e.code}: {e.read()[:300]!r}")

    def _side(self, rng: random.Random, k: int) -> None:
        roll = rng.random()
        t0 = time.monotonic()
        if self.sae and roll < 0.4:
            kind = "features"
            page = _http(self.base, f"/api/features/{self.sae}/table?limit=20&sort=density&descending=true")
            rows = page.get("rows", [])
            if rows:
                _http(self.base, f"/api/features/{self.sae}/feature/{rows[rng.randrange(len(rows))]['id']}")
        elif roll < 0.7:
            kind = "embeddings"
            words = rng.sample(WORDS, 4)
            _http(self.base, "/api/embeddings/map", {"words": words})
            _http(self.base, "/api/embeddings/neighbours", {"word": words[0], "k": 5})
        elif self.cfg.graphs and self.sae and roll < 0.8 and k < 2:
            kind = "provenance"
            suite = _http(self.base, "/api/graphs/suite")
            layer = suite["layers"][-1]  # the suite's own layers (the soak once asked for one it lacked)
            top = _http(
                self.base, "/api/graphs/top-features", {"prompt": PROMPT.format(k=k), "layer": layer, "k": 1}
            )
            feats = top.get("features", [])
            if feats:
                f = feats[0]["feature"] if isinstance(feats[0], dict) else feats[0]
                _http(
                    self.base,
                    "/api/graphs/provenance",
                    {"prompt": PROMPT.format(k=k), "layer": layer, "feature": f, "depth": 1},
                )
        else:
            kind = "run"
            _http(self.base, "/api/run", {"prompt": PROMPT.format(k=k), "top_k": 5})
        self._note(kind, time.monotonic() - t0)

    def client(self, k: int, stop_at: float) -> None:
        rng = random.Random(self.cfg.seed * 1000 + k)
        prompt = PROMPT.format(k=k)
        active: set[str] = set()
        heads: set[tuple[int, int]] = set()
        seq = 0
        while time.monotonic() < stop_at:
            try:
                with connect(self.base.replace("http", "ws") + "/ws", open_timeout=60) as ws:
                    for _ in range(rng.randrange(50, 200)):  # reconnect now and then, as tabs do
                        if time.monotonic() >= stop_at:
                            return
                        if rng.random() < 0.15:
                            self._side_request(rng, k)
                        if self.edits and rng.random() < 0.7:
                            active ^= {rng.choice(self.edits)}
                        else:
                            heads ^= {(rng.randrange(min(2, self.n_layers)), rng.randrange(2))}
                        seq += 1
                        spec = {"edits": sorted(active), "heads": sorted(heads)}
                        t0 = time.monotonic()
                        ws.send(json.dumps({"id": seq, "prompt": prompt, "interventions": spec, "top_k": 5}))
                        reply = json.loads(ws.recv(timeout=300))
                        self._note("ws", time.monotonic() - t0)
                        if reply.get("type") != "result" or reply.get("id") != seq:
                            self._fail(f"client {k}: {str(reply)[:300]}")
                            continue
                        got = (
                            tuple(t["token_id"] for t in reply["top"]),
                            tuple(t["prob"] for t in reply["top"]),
                        )
                        self._answer((prompt, tuple(spec["edits"]), tuple(map(tuple, spec["heads"]))), got)
                        time.sleep(rng.uniform(0, 2 * self.cfg.pause))
            except Exception as e:  # every failure is counted and reported, never hidden
                self._fail(f"client {k}: {type(e).__name__}: {e}")
                time.sleep(1)

    def attacker(self, stop_at: float) -> None:
        seed = 0
        while time.monotonic() < stop_at:
            try:
                with connect(self.base.replace("http", "ws") + "/ws/attack", open_timeout=60) as ws:
                    ws.send(json.dumps({
                        "type": "start", "prompt": "Tell me about rivers.", "target": "Sure",
                        "steps": self.cfg.attack_steps, "width": self.cfg.attack_width, "suffix_len": 8,
                        "seed": seed, "topk": 32, "max_new_tokens": 16,
                    }))  # fmt: skip
                    seed += 1
                    while True:
                        msg = json.loads(ws.recv(timeout=600))
                        if msg["type"] == "step":
                            with self.lock:
                                self.attack_steps += 1
                        if msg["type"] == "error":
                            self._fail(f"attack: {msg}")
                            break
                        if msg["type"] == "done":
                            with self.lock:
                                self.attacks += 1
                            break
                        if time.monotonic() >= stop_at:
                            ws.send(json.dumps({"type": "stop"}))
            except Exception as e:
                self._fail(f"attack: {type(e).__name__}: {e}")
                time.sleep(1)

    def sampler(self, t_start: float, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            self.rss.append((round(time.monotonic() - t_start, 1), round(_rss(self.pid), 1)))
            time.sleep(self.cfg.sample_every)


def run_soak(
    base: str, pid: int, cfg: SoakConfig, sae: str | None, n_layers: int
) -> tuple[SoakResult, dict[tuple, tuple]]:
    """Drive the server at ``base`` (process ``pid``) for ``cfg.seconds``; see the module docstring. Returns the
    result and every distinct answer seen, keyed by (prompt, edit names, heads)."""
    specs = edit_specs(base, sae, PROMPT.format(k=0)) if sae else []
    edits = [_http(base, "/api/edits", {"sae": sae, **s})["name"] for s in specs]
    soak = _Soak(base, pid, cfg, sae, edits, n_layers)
    t_start = time.monotonic()
    stop_at = t_start + cfg.seconds
    threads = [threading.Thread(target=soak.client, args=(k, stop_at)) for k in range(cfg.clients)]
    threads += [threading.Thread(target=soak.attacker, args=(stop_at,))]
    threads += [threading.Thread(target=soak.sampler, args=(t_start, stop_at))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    soak.rss.append((round(time.monotonic() - t_start, 1), round(_rss(pid), 1)))
    n = len(soak.rss)
    vals = [m for _, m in soak.rss]
    # the first tenth is warm-up (first compilations, caches, the first edits); compare the next tenth with the last
    base_win = vals[max(1, n // 10) : max(2, n // 5)] or vals
    final_win = vals[-max(1, n // 10) :]
    baseline, final = statistics.median(base_win), statistics.median(final_win)
    lat = {
        k: {
            "n": len(v),
            "p50": round(_pct(v, 0.5), 1),
            "p95": round(_pct(v, 0.95), 1),
            "max": round(max(v), 1),
        }
        for k, v in soak.latency.items()
    }
    return SoakResult(
        config=asdict(cfg),
        seconds=round(time.monotonic() - t_start, 1),
        requests=dict(soak.requests),
        latency_ms=lat,
        errors=soak.errors[:20],
        n_errors=len(soak.errors),
        crosstalk=soak.crosstalk[:20],
        distinct_answers=len(soak.answers),
        attacks_finished=soak.attacks,
        attack_steps=soak.attack_steps,
        rss_mb=soak.rss,
        rss_baseline_mb=baseline,
        rss_final_mb=final,
        rss_growth=round(final / baseline - 1, 4),
        extra={"edits": [{"name": n, **s} for n, s in zip(edits, specs, strict=True)]},
    ), soak.answers


def verify_against_library(
    model_spec: str, sae_dir: str, edits: list[dict[str, Any]], answers: dict, n: int, workspace: Path
) -> int:
    """Recompute ``n`` sampled (prompt, edits, heads) answers with the library in this process, the edits
    prepared again from their specs (``SoakResult.extra["edits"]``); raises on a mismatch. Returns how many
    were checked."""
    import torch

    from neuroscope import load_model
    from neuroscope.interventions import Ablate
    from neuroscope.lab.lab import Lab
    from neuroscope.lab.live import run_with_edits

    torch.set_num_threads(1)
    model = load_model(model_spec, device="cpu")
    lab = Lab(model, workspace)
    sae_name = lab.attach_folder(Path(sae_dir)).name
    for e in edits:
        got = lab.prepare_edit(sae_name, e["features"], e["method"], e.get("value"), e.get("rank", 8)).name
        if got != e["name"]:
            raise AssertionError(f"the library named edit {e} {got!r}")
    keys = random.Random(0).sample(sorted(answers), min(n, len(answers)))
    with torch.no_grad():
        for prompt, names, heads in keys:
            ivs = [Ablate(heads=list(heads))] if heads else []
            probs = torch.softmax(run_with_edits(model, prompt, list(names), ivs)[0, -1].float(), -1)
            vals, idx = probs.topk(5)
            ids, got = answers[(prompt, names, heads)]
            if (
                list(ids) != idx.tolist()
                or max(abs(a - b) for a, b in zip(got, vals.tolist(), strict=True)) > 1e-5
            ):
                raise AssertionError(f"server answer differs from the library for {(prompt, names, heads)}")
    return len(keys)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import machine_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sae", required=True, help="an SAE folder for the Features view and the edits")
    p.add_argument("--sae-suite", default=None, help="a suite for the provenance requests")
    p.add_argument("--seconds", type=float, default=3600)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--pause", type=float, default=0.5)
    p.add_argument("--verify", type=int, default=200, help="answers recomputed by the library afterwards")
    p.add_argument("--workspace", default="workspace/soak")
    p.add_argument("--out", default="benchmarks/results/soak.json")
    args = p.parse_args(argv)
    cfg = SoakConfig(
        seconds=args.seconds, clients=args.clients, pause=args.pause, graphs=bool(args.sae_suite)
    )
    # --no-prepare: the soak measures the workbench with the SAEs it is given, no background preparation
    ui = ["--sae", args.sae, "--workspace", str(Path(args.workspace) / "server"), "--no-prepare"]
    if args.sae_suite:
        ui += ["--sae-suite", args.sae_suite]
    before = machine_info()
    with serve(args.model, *ui) as (base, server):
        sae = json.loads(urllib.request.urlopen(base + "/api/features").read())["saes"][0]["name"]
        n_layers = json.loads(urllib.request.urlopen(base + "/api/model").read())["n_layers"]
        result, answers = run_soak(base, server.pid, cfg, sae, n_layers)
    result.verified = verify_against_library(
        args.model, args.sae, result.extra["edits"], answers, args.verify, Path(args.workspace) / "library"
    )
    out = {"machine_before": before, "machine_after": machine_info(), "model": args.model, **result.to_dict()}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"{sum(result.requests.values())} requests, {result.n_errors} errors, {len(result.crosstalk)} cross-talk, "
        f"{result.attacks_finished} attacks; RSS {result.rss_baseline_mb:.0f} -> {result.rss_final_mb:.0f} MB "
        f"({100 * result.rss_growth:+.1f}%); {result.verified} answers checked against the library"
    )
    return 0 if result.n_errors == 0 and not result.crosstalk else 1


if __name__ == "__main__":
    raise SystemExit(main())
