"""``neuroscope sae-bench real``: downstream evaluation of SAEs on the real model, offline.

Several SAEs are scored side by side on the same labelled texts, the same splits and the same residual probes
(the reference): sparse probing with k latents (:mod:`.probing`), SCR and TPP (:mod:`.scr_tpp`) and first-letter
absorption (:mod:`.absorption`). Each SAE must have been trained on the model given and on one of its hooks
(refused by name otherwise); SAEs on different hooks are grouped, each group with its own reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.errors import IndexOutOfRangeError, SAEMismatchError, UnknownHookError
from neuroscope.sae.bench.labelled import PROBE_SETS
from neuroscope.sae.bench.scr_tpp import HEADLINE_N, NS

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE


@dataclass(frozen=True)
class RealBenchConfig:
    sets: tuple[str, ...] = PROBE_SETS
    scr: bool = True
    tpp: bool = True
    absorption: bool = True
    ks: tuple[int, ...] = (1, 2, 5)
    ns: tuple[int, ...] = NS
    ctx_len: int = 128  # tokens per text (BOS included), as SAEBench's context_length
    batch_size: int = 16
    test_frac: float = 0.25
    per_class: int | None = None  # texts per class of the built-in docs sets (None: each set's default)
    absorption_words: int = 3000
    icl_examples: int = 10  # in-context examples in each first-letter prompt (SAEBench: 10)
    outlier_factor: float | None = 10.0
    corpus: str = "data/corpus"
    seed: int = 0


@dataclass(frozen=True)
class BenchSAE:
    name: str
    path: str
    hook: str
    sae: SAE

    def info(self) -> dict[str, Any]:
        c = self.sae.cfg
        return {
            "name": self.name,
            "path": self.path,
            "hook": self.hook,
            "arch": c.arch,
            "d_sae": c.d_sae,
            "k": getattr(c, "k", None),
        }


def load_bench_saes(
    paths: Sequence[str | os.PathLike], model: HookedModel, hook: str | None = None
) -> list[BenchSAE]:
    """Load SAE folders, refusing by name an SAE of another model or of a hook the model does not have (or, with
    ``hook``, of another hook)."""
    from neuroscope.sae.io import load_sae
    from neuroscope.sae.suite import check_sae_model

    want = model.resolve_hook_name(hook) if hook else None
    out: list[BenchSAE] = []
    for p in paths:
        sae = load_sae(p)
        check_sae_model(sae, model, p)
        h = sae.cfg.hook_name or want
        if not h:
            raise SAEMismatchError(f"{p} records no hook name; pass --hook to say where it reads the model.")
        try:
            resolved = model.resolve_hook_name(h)
        except (UnknownHookError, IndexOutOfRangeError) as e:
            raise SAEMismatchError(
                f"{p} was trained on hook {h!r}, which {model.cfg.name} does not have ({e})."
            ) from e
        if want and resolved != want:
            raise SAEMismatchError(f"{p} was trained on {resolved!r}, not on the hook asked for, {want!r}.")
        name = Path(p).name or str(p)
        while name in {b.name for b in out}:
            name += "'"
        out.append(BenchSAE(name, str(p), resolved, sae))
    return out


@dataclass
class RealBenchResult:
    model: str
    config: dict[str, Any]
    saes: list[dict[str, Any]]
    sets: dict[str, Any] = field(default_factory=dict)
    sparse_probing: dict[str, Any] = field(default_factory=dict)  # hook -> SparseProbingResult
    scr_reference: dict[str, Any] = field(default_factory=dict)  # hook -> residual probe accuracies
    scr: dict[str, Any] = field(default_factory=dict)  # SAE name -> SCRResult
    tpp_reference: dict[str, Any] = field(default_factory=dict)
    tpp: dict[str, Any] = field(default_factory=dict)
    absorption_reference: dict[str, Any] = field(default_factory=dict)
    absorption: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per SAE plus one reference row per hook: the headline numbers side by side."""
        out = []
        for hook, sp in self.sparse_probing.items():
            s = sp.summary()
            row: dict[str, Any] = {"sae": f"residual ({hook})", "l0": None, "hook": hook}
            row.update({f"probe_top_{k}": v for k, v in s["residual_top_k"].items()})
            row["probe_all_dims"] = s["residual"]
            out.append(row)
            for info in self.saes:
                if info["hook"] != hook:
                    continue
                n = info["name"]
                row = {"sae": n, "l0": info.get("l0"), "hook": hook}
                row.update({f"probe_top_{k}": v for k, v in s["sae_top_k"][n].items()})
                if n in self.scr:
                    row[f"scr_{HEADLINE_N}"] = self.scr[n].metric.get(HEADLINE_N)
                if n in self.tpp:
                    row[f"tpp_{HEADLINE_N}"] = self.tpp[n].total.get(HEADLINE_N)
                if n in self.absorption:
                    row["absorption_fraction"] = self.absorption[n].mean_absorption_fraction
                    row["full_absorption"] = self.absorption[n].mean_full_absorption
                out.append(row)
        return out

    def table(self) -> str:
        rows = self.rows()
        cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c != "hook"]
        fmt = lambda v: "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "config": self.config,
            "saes": self.saes,
            "table": self.rows(),
            "sets": self.sets,
            "sparse_probing": {h: r.to_dict() for h, r in self.sparse_probing.items()},
            "scr_reference": self.scr_reference,
            "scr": {n: r.to_dict() for n, r in self.scr.items()},
            "tpp_reference": self.tpp_reference,
            "tpp": {n: r.to_dict() for n, r in self.tpp.items()},
            "absorption_reference": self.absorption_reference,
            "absorption": {n: r.to_dict() for n, r in self.absorption.items()},
            "seconds": self.seconds,
        }

    def figure(self):
        """SCR and TPP against the number of ablated latents, one line per SAE."""
        from neuroscope.analysis import figures

        ns = list(self.config["ns"])
        series = {f"SCR {n}": [r.metric[k] for k in ns] for n, r in self.scr.items()}
        series.update({f"TPP {n}": [r.total[k] for k in ns] for n, r in self.tpp.items()})
        return figures.lines(ns, series, title="SCR and TPP", xlabel="latents ablated", ylabel="score")


def run_real_bench(
    model: HookedModel, saes: Sequence[BenchSAE], cfg: RealBenchConfig = RealBenchConfig()
) -> RealBenchResult:
    import torch

    from neuroscope.sae.bench import absorption as ab
    from neuroscope.sae.bench import scr_tpp
    from neuroscope.sae.bench.labelled import load_set, section_code_set
    from neuroscope.sae.bench.pooled import pool
    from neuroscope.sae.bench.pooled import to_dict as pooled_info
    from neuroscope.sae.bench.probing import binary_tasks, sparse_probing

    conf = asdict(cfg)
    res = RealBenchResult(model.cfg.name, conf, [b.info() for b in saes])
    t0 = time.perf_counter()

    def lap(key: str) -> None:
        nonlocal t0
        res.seconds[key] = res.seconds.get(key, 0.0) + round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()

    size = {} if cfg.per_class is None else {"per_class": cfg.per_class}
    lsets = [load_set(s, cfg.corpus, **size) for s in cfg.sets]
    splits = {
        s.name: s.split(cfg.test_frac, cfg.seed) for s in lsets
    }  # refuses unusable sets before any forward
    quadrant = {} if cfg.per_class is None else {"per_quadrant": cfg.per_class}
    scr_set = section_code_set(cfg.corpus, seed=cfg.seed, **quadrant) if cfg.scr else None
    scr_split = scr_set.split(cfg.test_frac, cfg.seed) if scr_set is not None else None
    lap("labelled_sets")
    with torch.no_grad():
        for hook in dict.fromkeys(b.hook for b in saes):
            group = {b.name: b.sae for b in saes if b.hook == hook}
            pooled = {}
            for s in lsets:
                pooled[s.name] = pool(
                    model, s.texts, hook, group, cfg.ctx_len, cfg.batch_size, cfg.outlier_factor
                )
                res.sets[s.name] = dict(
                    s.summary(),
                    **pooled_info(pooled[s.name]),
                    n_train=len(splits[s.name].train),
                    n_test=len(splits[s.name].test),
                )
            for info in res.saes:
                if info["name"] in group:
                    n_tok = sum(int(p.n_tokens.sum()) for p in pooled.values() if p.n_tokens is not None)
                    info["l0"] = sum(
                        p.l0[info["name"]] * int(p.n_tokens.sum())
                        for p in pooled.values()
                        if p.n_tokens is not None
                    ) / max(1, n_tok)
            lap("activations")
            tasks = [t for s in lsets for t in binary_tasks(s, splits[s.name], cfg.seed)]
            res.sparse_probing[hook] = sparse_probing(pooled, tasks, cfg.ks, cfg.seed)
            lap("sparse_probing")
            if cfg.tpp:
                probes = scr_tpp.task_probes(pooled, tasks, cfg.seed)
                res.tpp_reference[hook] = scr_tpp.tpp_clean_accuracy(pooled, tasks, probes)
                for name, sae in group.items():
                    res.tpp[name] = scr_tpp.tpp(pooled, tasks, probes, name, scr_tpp.decoder(sae), cfg.ns)
                lap("tpp")
            if scr_set is not None and scr_split is not None:
                sp = pool(model, scr_set.texts, hook, group, cfg.ctx_len, cfg.batch_size, cfg.outlier_factor)
                res.sets[scr_set.name] = dict(
                    scr_set.summary(),
                    **pooled_info(sp),
                    n_train=len(scr_split.train),
                    n_test=len(scr_split.test),
                )
                probes_scr = scr_tpp.scr_probes(scr_set, scr_split, sp, cfg.seed)
                res.scr_reference[hook] = probes_scr.accuracy
                for name, sae in group.items():
                    res.scr[name] = scr_tpp.scr(probes_scr, sp, name, scr_tpp.decoder(sae), cfg.ns)
                lap("scr")
            if cfg.absorption:
                data = ab.first_letter_data(
                    model,
                    hook,
                    cfg.absorption_words,
                    seed=cfg.seed,
                    batch_size=cfg.batch_size,
                    icl_examples=cfg.icl_examples,
                )
                probe = ab.fit_letter_probe(data, cfg.seed)
                res.absorption_reference[hook] = {
                    "n_train_words": len(data.train_words),
                    "n_test_words": len(data.test_words),
                    "dropped_words": data.dropped,
                    "probe_test_accuracy": probe.test_accuracy,
                    "probe_test_f1": probe.test_f1,
                }
                for name, sae in group.items():
                    res.absorption[name] = ab.absorption(sae, data, probe, cfg.seed)
                lap("absorption")
    return res


# --- CLI ------------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _real(args: argparse.Namespace) -> int:
    from neuroscope.cli import set_threads
    from neuroscope.models.loading import load_model

    set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    saes = load_bench_saes(args.sae, model, args.hook)
    cfg = RealBenchConfig(
        sets=tuple(args.sets),
        scr=not args.no_scr,
        tpp=not args.no_tpp,
        absorption=not args.no_absorption,
        ctx_len=args.ctx_len,
        batch_size=args.batch_size,
        absorption_words=args.words,
        per_class=args.per_class,
        icl_examples=args.icl_examples,
        corpus=args.corpus,
        seed=args.seed,
    )
    before = machine_info()
    t = time.perf_counter()
    res = run_real_bench(model, saes, cfg)
    payload = res.to_dict()
    payload["wall_seconds"] = round(time.perf_counter() - t, 1)
    payload["machine"] = before
    payload["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    text = json.dumps(payload, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.figures:
        from neuroscope.analysis import figures

        d = Path(args.figures)
        d.mkdir(parents=True, exist_ok=True)
        for hook, sp in res.sparse_probing.items():
            figures.write(sp.figure(), d / f"sparse_probing_{hook}.html")
        if res.scr or res.tpp:
            figures.write(res.figure(), d / "scr_tpp.html")
    print(res.table())
    print(f"wrote {args.out}" if args.out else text, file=sys.stderr if args.out else sys.stdout)
    return 0


def register_real(subparsers: Any) -> None:
    """Add ``real`` to the ``neuroscope sae-bench`` group."""
    p = subparsers.add_parser(
        "real",
        help="downstream evaluation on the real model: sparse probing, SCR, TPP, first-letter absorption",
        description="Score SAEs side by side on labelled sets built from local data (docs sections, code vs "
        "prose, the shipped sentiment and copying sets), against the same probes on the raw residual.",
    )
    p.add_argument("--sae", required=True, nargs="+", help="SAE folder(s), scored side by side")
    p.add_argument("--model", default="smollm2-135m", help="the model the SAEs were trained on")
    p.add_argument("--hook", default=None, help="require this hook (default: each SAE's own)")
    p.add_argument(
        "--sets",
        nargs="+",
        default=list(PROBE_SETS),
        help=f"labelled sets: {', '.join(PROBE_SETS)} or .json/.jsonl files",
    )
    p.add_argument("--corpus", default="data/corpus", help="prepared corpus (docs sets)")
    p.add_argument(
        "--per-class",
        type=int,
        default=None,
        help="texts per class of the docs sets (default 150 / 200 / 120)",
    )
    p.add_argument("--no-scr", action="store_true")
    p.add_argument("--no-tpp", action="store_true")
    p.add_argument("--no-absorption", action="store_true")
    p.add_argument("--words", type=int, default=3000, help="vocabulary words for absorption")
    p.add_argument("--icl-examples", type=int, default=10, help="in-context examples per first-letter prompt")
    p.add_argument("--ctx-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument("--figures", default=None, help="write HTML figures into this folder")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_real)


def main(argv: list[str] | None = None) -> int:
    """``python -m neuroscope.sae.bench.real real ...``: the same command as ``neuroscope sae-bench real``."""
    from neuroscope.cli import run_parsed

    parser = argparse.ArgumentParser(prog="neuroscope sae-bench")
    register_real(parser.add_subparsers(required=True))
    return run_parsed(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
