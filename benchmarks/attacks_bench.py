"""Adversarial suffix search side by side with nanoGCG 0.3.0 (``benchmarks/results/attacks.json``).

Same model (smollm2-135m, float32, CPU), message, target, initial suffix (20 x " x"), seeds 0-4, and budget:
``STEPS`` steps of ``WIDTH`` candidates with top-k ``TOPK`` for both GCGs; the genetic search gets the same
number of candidate rows (population 256, 16 elites: 240 new rows per generation). Every run is its own
subprocess with one torch thread (``OMP_NUM_THREADS=1``), two streams at a time (the GCGs, sides interleaved in
a shuffled order per seed; the genetic seeds), and resumable (finished runs are kept under ``test-artifacts/attacks_bench/``).

Success is judged identically for both: the suffix string a method holds is rendered into the chat template,
re-tokenised and decoded greedily by :func:`neuroscope.attacks.verify`; the output must start with the target.
nanoGCG runs its own loop (``nanogcg.gcg.GCG(model, tokenizer, GCGConfig(...)).run(messages, target)``, what ``nanogcg.run`` calls) on a
plain Hugging Face model, with ``use_prefix_cache=False`` (its prefix cache indexes ``past_key_values`` as a
tuple, which transformers 5's ``DynamicCache`` is not) and ``early_stop=False`` (its early stop fires on any
teacher-forced match among the candidates but returns the lowest-loss one, which may not match). After each of
its steps a handler on its ``nanogcg`` logger (its per-step "buffer:" record carries the kept string) verifies
the kept suffix and sets its ``stop_flag`` once it is verified; the verification's time is subtracted.
One adjustment, noted in the results: nanoGCG strips ``tokenizer.bos_token`` from the rendered template with
``str.replace``, and SmolLM2's BOS text is ``<|im_start|>``, so every turn marker would vanish from the prompt it
optimises; it gets a copy of the tokenizer with ``bos_token`` unset, so it optimises the prompt it is judged on.

``python -m benchmarks.attacks_bench`` runs what is missing and writes the summary;
``python -m benchmarks.attacks_bench one SIDE SEED`` runs one (SIDE: ours-gcg, nanogcg, ours-genetic);
``python -m benchmarks.attacks_bench summarise [RUNS_DIR]`` writes the summary from the runs finished so far.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "test-artifacts" / "attacks_bench"
SEEDS = (0, 1, 2, 3, 4)
SIDES = ("ours-gcg", "nanogcg", "ours-genetic")
WIDTH, TOPK, STEPS = 128, 64, 60
INIT = " x" * 20
POPULATION, ELITES = 256, 16
GENERATIONS = STEPS * WIDTH // (POPULATION - ELITES)  # the same candidate rows as STEPS x WIDTH


def _example() -> tuple[str, str]:
    from neuroscope.attacks.cli import example

    ex = example()
    return ex["prompt"], ex["target"]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _common(model: Any) -> tuple[Any, int]:
    from neuroscope.attacks import AttackConfig, AttackProblem
    from neuroscope.attacks.verify import check_budget

    prompt, target = _example()
    cfg = AttackConfig(init_suffix=INIT)
    problem = AttackProblem(model, prompt, target, cfg)
    return problem, check_budget(problem, cfg.max_new_tokens)


def run_ours(method: str, seed: int) -> dict[str, Any]:
    import neuroscope as ns
    from neuroscope.attacks import Attack, AttackConfig

    model = ns.load_model("smollm2-135m", device="cpu")
    prompt, target = _example()
    genetic = method == "genetic"
    cfg = AttackConfig(
        method=method,
        steps=GENERATIONS if genetic else STEPS,
        width=POPULATION if genetic else WIDTH,
        elites=ELITES,
        topk=TOPK,
        init_suffix=INIT,
        seed=seed,
    )
    w0, c0 = _clock()
    attack = Attack(model, prompt, target, cfg)
    steps = []
    while not attack.done:
        r = attack.step()
        w, c = _clock()
        steps.append({"step": r.step, "loss": r.loss, "suffix": r.best_suffix, "wall": w - w0, "cpu": c - c0})
        print(f"{method} seed {seed} step {r.step} loss {r.loss:.3f} wall {w - w0:.0f}s", flush=True)
    res = attack.result()
    ok = res.success
    return {
        "success": ok,
        "success_step": res.success_step,
        "wall_to_success": steps[res.success_step - 1]["wall"] if ok and res.success_step else None,
        "cpu_to_success": steps[res.success_step - 1]["cpu"] if ok and res.success_step else None,
        "rows_to_success": res.rows_to_success,
        "rows": res.forward_rows,
        "gradient_passes": res.gradient_passes,
        "suffix": res.best_suffix,
        "output": res.verified_output,
        "steps": steps,
        "config": cfg.to_dict(),
    }


class _NanoGCGSteps(logging.Handler):
    """Reads the kept string from nanoGCG's per-step "buffer:" log record, verifies it, stops on success."""

    def __init__(
        self, gcg: Any, model: Any, problem: Any, budget: int, w0: float, c0: float, rows: dict[str, int]
    ):
        super().__init__(logging.INFO)
        self.gcg, self.model, self.problem, self.budget, self.rows = gcg, model, problem, budget, rows
        self.w0, self.c0 = w0, c0
        self.seen = 0
        self.overhead = [0.0, 0.0]  # wall, cpu spent verifying (not nanoGCG's time)
        self.steps: list[dict[str, Any]] = []
        self.success_step: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        from neuroscope.attacks.verify import verify

        msg = record.getMessage()
        if not msg.startswith("buffer:"):
            return
        w, c = _clock()
        self.seen += 1
        if self.seen == 1:  # the initial buffer, before the first step
            return
        m = re.match(r"buffer:\nloss: (\S+) \| string: (.*)", msg, re.S)
        assert m, msg[:200]
        loss, text = float(m.group(1)), m.group(2).split("\nloss: ")[0]
        # undo its escaping ("\\" -> "\\\\", then "\n" -> "\\n") in one left-to-right pass
        text = re.sub(r"\\(\\|n)", lambda g: "\\" if g.group(1) == "\\" else "\n", text)
        ok = verify(self.model, self.problem, text, self.budget).success
        step = {
            "step": len(self.steps) + 1,
            "loss": loss,
            "suffix": text,
            "wall": w - self.w0 - self.overhead[0],
            "cpu": c - self.c0 - self.overhead[1],
            "verified": ok,
            "rows": self.rows["rows"],
        }
        self.steps.append(step)
        print(f"nanogcg step {step['step']} loss {loss:.3f} wall {step['wall']:.0f}s", flush=True)
        if ok and self.success_step is None:
            self.success_step = step["step"]
            self.gcg.stop_flag = True  # its own flag: the loop ends after this step
        w2, c2 = _clock()
        self.overhead[0] += w2 - w
        self.overhead[1] += c2 - c


def run_nanogcg(seed: int) -> dict[str, Any]:
    import copy

    import nanogcg
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import neuroscope as ns
    from neuroscope.models.loading import alias_path, convert_gguf

    folder = convert_gguf(alias_path("smollm2-135m"))
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tok_for_gcg = copy.deepcopy(tok)
    tok_for_gcg.bos_token = None  # see the module docstring
    judge = ns.load_model("smollm2-135m", device="cpu")  # the same verifier as ours
    problem, budget = _common(judge)
    prompt, target = _example()
    rows = {"rows": 0, "gradient_passes": 0}

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        x = kwargs.get("inputs_embeds")
        if x is not None:
            rows["gradient_passes" if torch.is_grad_enabled() else "rows"] += x.shape[0]

    hf.register_forward_pre_hook(count, with_kwargs=True)
    config = nanogcg.GCGConfig(
        num_steps=STEPS,
        optim_str_init=INIT,
        search_width=WIDTH,
        topk=TOPK,
        seed=seed,
        use_prefix_cache=False,
        early_stop=False,
        verbosity="INFO",
    )
    w0, c0 = _clock()
    gcg = nanogcg.gcg.GCG(hf, tok_for_gcg, config)
    handler = _NanoGCGSteps(gcg, judge, problem, budget, w0, c0, rows)
    logging.getLogger("nanogcg").addHandler(handler)
    result = gcg.run([{"role": "user", "content": prompt + "{optim_str}"}], target)
    s = handler.success_step
    final = handler.steps[s - 1]["suffix"] if s else result.best_string
    from neuroscope.attacks.verify import verify

    return {
        "success": s is not None,
        "success_step": s,
        "wall_to_success": handler.steps[s - 1]["wall"] if s else None,
        "cpu_to_success": handler.steps[s - 1]["cpu"] if s else None,
        "rows_to_success": handler.steps[s - 1]["rows"] if s else None,
        "rows": rows["rows"],
        "gradient_passes": rows["gradient_passes"],
        "suffix": final,
        "output": verify(judge, problem, final, 24).output,
        "steps": handler.steps,
        "config": {k: v for k, v in vars(config).items() if k != "probe_sampling_config"},
        "note": "use_prefix_cache=False (its cache breaks on transformers 5); tokenizer copy with bos_token unset",
    }


def one(side: str, seed: int) -> Path:
    import torch

    torch.set_num_threads(1)
    load0 = os.getloadavg()
    out = run_nanogcg(seed) if side == "nanogcg" else run_ours(side.split("-", 1)[1], seed)
    out.update(side=side, seed=seed, load_average_start=load0, load_average_end=os.getloadavg())
    RUNS.mkdir(parents=True, exist_ok=True)
    path = RUNS / f"{side}-{seed}.json"
    path.write_text(json.dumps(out, indent=1))
    return path


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in SIDES:
        rs = [r for r in runs if r["side"] == side]
        if not rs:
            continue
        ok = [r for r in rs if r["success"]]
        n_steps = sum(len(r["steps"]) for r in rs)
        wall = sum(r["steps"][-1]["wall"] for r in rs if r["steps"])
        cpu = sum(r["steps"][-1]["cpu"] for r in rs if r["steps"])
        out[side] = {
            "seeds": [r["seed"] for r in rs],
            "success_rate": len(ok) / len(rs),
            "successes": f"{len(ok)}/{len(rs)}",
            "median_steps_to_success": _median([r["success_step"] for r in ok]),
            "median_wall_s_to_success": _median([r["wall_to_success"] for r in ok]),
            "median_cpu_s_to_success": _median([r["cpu_to_success"] for r in ok]),
            "median_rows_to_success": _median([r["rows_to_success"] for r in ok]),
            "wall_s_per_step": wall / n_steps if n_steps else None,
            "cpu_s_per_step": cpu / n_steps if n_steps else None,
            "steps_per_s_wall": n_steps / wall if wall else None,
            "per_seed": {
                r["seed"]: {
                    k: r[k]
                    for k in (
                        "success",
                        "success_step",
                        "wall_to_success",
                        "cpu_to_success",
                        "rows_to_success",
                    )
                }
                for r in rs
            },
        }
    ours, peer = out.get("ours-gcg"), out.get("nanogcg")
    if ours and peer and ours["median_wall_s_to_success"] and peer["median_wall_s_to_success"]:
        out["ratios_ours_gcg_to_nanogcg"] = {
            "median_wall_to_success": ours["median_wall_s_to_success"] / peer["median_wall_s_to_success"],
            "median_cpu_to_success": ours["median_cpu_s_to_success"] / peer["median_cpu_s_to_success"],
            "cpu_per_step": ours["cpu_s_per_step"] / peer["cpu_s_per_step"],
            "success_rate_at_least_peer": ours["success_rate"] >= peer["success_rate"],
        }
    return out


def run() -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # two streams of one-thread runs, one per core: the two GCGs interleaved seed by seed in a shuffled order,
    # and the genetic search (reported beside them)
    gcgs = []
    for seed in SEEDS:
        pair = ["ours-gcg", "nanogcg"]
        rng.shuffle(pair)
        gcgs += [(side, seed) for side in pair]
    genetic = [("ours-genetic", seed) for seed in SEEDS]

    def stream(order: list[tuple[str, int]]) -> None:
        for side, seed in order:
            if not (RUNS / f"{side}-{seed}.json").exists():
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.attacks_bench", "one", side, str(seed)],
                    cwd=ROOT,
                    env=env,
                    check=True,
                )

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(stream, gcgs), pool.submit(stream, genetic)]:
            done.result()
    return write_summary()


def write_summary(runs_dir: Path = RUNS) -> dict[str, Any]:
    """``attacks.json`` from the finished runs in ``runs_dir`` (missing ones are listed, not invented)."""
    from benchmarks.common import write

    paths = {(side, seed): runs_dir / f"{side}-{seed}.json" for seed in SEEDS for side in SIDES}
    runs = [json.loads(p.read_text()) for p in paths.values() if p.exists()]
    missing = [f"{side}-{seed}" for (side, seed), p in paths.items() if not p.exists()]
    summary = summarise(runs)
    prompt, target = _example()
    loads = [x for r in runs for x in (r["load_average_start"][0], r["load_average_end"][0])]
    payload = {
        "setup": {
            "model": "smollm2-135m (float32, CPU, 1 torch thread per run)",
            "message": prompt,
            "target": target,
            "init_suffix": INIT,
            "seeds": list(SEEDS),
            "budget": f"{STEPS} steps x {WIDTH} candidates (top-k {TOPK}); genetic: {GENERATIONS} generations "
            f"of {POPULATION} ({ELITES} elites, {POPULATION - ELITES} new rows each)",
            "success": "greedy decode of the re-tokenised rendered prompt starts with the target",
            "peer": "nanogcg 0.3.0, use_prefix_cache=False, early_stop=False, verified after every step; "
            "tokenizer copy with bos_token unset (it would strip every <|im_start|> otherwise)",
            "order": "each run its own one-thread process, two at a time on the 2 cores: the GCGs seed by seed "
            "(shuffled within a seed) in one stream, the genetic seeds (then, once they were done, reruns of "
            "any GCG run measured under load) in the other",
            "load_average_1min_range": [min(loads), max(loads)] if loads else None,
            "note": "a shared 2-core machine: wall times depend on the load; CPU seconds (time.process_time, one "
            "torch thread) are the load-robust measure of work",
        },
        "summary": summary,
        "missing_runs": missing,
        "runs": runs,
    }
    write("attacks", payload)
    return {"summary": summary}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "one":
        print(one(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) in (2, 3) and sys.argv[1] == "summarise":
        print(
            json.dumps(write_summary(Path(sys.argv[2]) if len(sys.argv) == 3 else RUNS)["summary"], indent=1)
        )
    else:
        print(json.dumps(run()["summary"], indent=1))
