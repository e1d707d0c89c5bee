"""Build the prepared suite: one process at a time per model (an flock), resumable, committed by one rename.

:func:`build` is the whole job in-process; ``python -m neuroscope.prepare.build`` runs it the way the
workbench does, as a child process at a lower priority with one torch thread, reporting each step as one
JSON line on stdout (and in ``progress.json`` for another server waiting on the lock).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.errors import NeuroscopeError, PrepareDiskSpaceError, PrepareModelChangedError
from neuroscope.prepare.cache import (
    META_FILE,
    PrepareDirs,
    check,
    expected_meta,
    set_aside,
    write_json_atomic,
)
from neuroscope.prepare.plan import PreparePlan

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel

# Like the attack search (server/search.py): a lower priority leaves the model worker about three quarters
# of a shared core; nice 19 all but stops on a machine busy with other work.
NICE = 5
Emit = Callable[[dict[str, Any]], object]


def stage_weights(plan: PreparePlan) -> dict[str, float]:
    """Each stage's share of the whole, for one progress fraction (as measured on smollm2-135m, one thread:
    benchmarks/results/prepare.json)."""
    n = len(plan.layers)
    w = {"record train": 0.38, "record heldout": 0.38 * plan.heldout_tokens / plan.tokens}
    for layer in plan.layers:
        w[f"train L{layer}"] = 0.28 / n
        w[f"eval L{layer}"] = 0.12 / n
        w[f"features L{layer}"] = 0.16 / n
    total = sum(w.values())
    return {k: v / total for k, v in w.items()}


class Progress:
    """Turns ``train_suite``'s (stage, fraction) into one overall fraction and emits it when it moves."""

    def __init__(self, plan: PreparePlan, emit: Emit):
        self.weights, self.emit = stage_weights(plan), emit
        self.order = list(self.weights)
        self.t0 = time.monotonic()
        self.last: tuple[str, float] = ("", -1.0)

    def __call__(self, stage: str, fraction: float) -> None:
        before = (
            sum(self.weights[s] for s in self.order[: self.order.index(stage)])
            if stage in self.weights
            else 0
        )
        overall = min(1.0, before + self.weights.get(stage, 0.0) * min(max(fraction, 0.0), 1.0))
        if stage == self.last[0] and overall - self.last[1] < 0.005 and fraction < 1.0:
            return
        self.last = (stage, overall)
        self.emit(
            {
                "state": "running",
                "stage": stage,
                "stage_fraction": round(fraction, 4),
                "fraction": round(overall, 4),
                "elapsed_s": round(time.monotonic() - self.t0, 1),
            }
        )


def bytes_needed(model: HookedModel, plan: PreparePlan) -> int:
    """Recordings (float16) of every layer, the SAEs (float32, encoder and decoder) and room for stores."""
    d = model.cfg.d_model
    acts = (plan.tokens + plan.heldout_tokens) * len(plan.layers) * d * 2
    saes = len(plan.layers) * 2 * d * int(plan.expansion * d) * 4
    return int(1.2 * (acts + 2 * saes)) + (16 << 20)


def check_disk(where: Path, need: int) -> None:
    free = shutil.disk_usage(where).free
    if free < need:
        raise PrepareDiskSpaceError(str(where), need, free)


def default_data(root: Path) -> str:
    """The corpus to record: ``data/corpus`` (``make corpus``) when the server runs in the repository, else
    the same Python-documentation corpus prepared once beside the cache (needs Debian's python3-doc)."""
    from neuroscope.record.datasets import CORPUS_FILE, DEFAULT_CORPUS_DIR, ensure_default_corpus

    if (Path(DEFAULT_CORPUS_DIR) / CORPUS_FILE).exists():
        return str(Path(DEFAULT_CORPUS_DIR).resolve())
    return str(ensure_default_corpus(root / "corpus").resolve())


def build(
    model: HookedModel,
    dirs: PrepareDirs,
    plan: PreparePlan,
    weights_sha256: str,
    emit: Emit = lambda event: None,
    data: str | None = None,
) -> str:
    """Prepare the suite in ``dirs`` unless a valid one is there: ``"built"`` or ``"cached"``.

    Holds ``dirs.lock`` throughout (a second caller waits, then finds the suite made); resumes ``work/`` when
    it was started for the same model and plan; renames it to ``suite/`` only when whole."""
    from neuroscope.sae.suite import train_suite

    dirs.root.mkdir(parents=True, exist_ok=True)
    want = expected_meta(model.cfg.name, weights_sha256, plan)
    with open(dirs.lock, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit(
                {
                    "state": "waiting",
                    "message": f"another NeuroScope process is preparing this model's SAE suite in {dirs.root}; "
                    "waiting for it",
                }
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        found = check(dirs, want)
        if found.state == "ready":
            return "cached"
        if found.state == "stale":
            emit(
                {
                    "state": "notice",
                    "message": f"The cached SAE suite in {dirs.suite} is rebuilt: {found.reason}.",
                }
            )
            set_aside(dirs.suite)
        if dirs.work.exists():
            try:
                started = json.loads((dirs.work / META_FILE).read_text())
            except (OSError, ValueError):
                started = None
            if isinstance(started, dict) and {k: v for k, v in started.items() if k != "data"} == want:
                emit({"state": "notice", "message": "resuming an interrupted preparation"})
            else:
                set_aside(dirs.work)
        try:
            check_disk(dirs.root, bytes_needed(model, plan))
            data = data or default_data(dirs.root.parent)
            dirs.work.mkdir(exist_ok=True)
            write_json_atomic(dirs.work / META_FILE, {**want, "data": data})
            progress = Progress(plan, emit)
            emit({"state": "running", "stage": "record train", "fraction": 0.0, "stage_fraction": 0.0})
            train_suite(model, plan.suite_config(data), dirs.work, progress=False, report=progress)
            shutil.rmtree(dirs.work / "acts", ignore_errors=True)  # only training and the stores read them
            _commit(dirs, want, data)
        except Exception as e:
            if disk_full(e):
                raise PrepareDiskSpaceError(str(dirs.root), bytes_needed(model, plan), None) from e
            raise
    return "built"


def disk_full(e: BaseException) -> bool:
    """ENOSPC however a writer (Parquet, safetensors, json) wraps it."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def _commit(dirs: PrepareDirs, want: dict[str, Any], data: str) -> None:
    meta = {**want, "data": data, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(dirs.work / META_FILE, meta)
    os.replace(dirs.work, dirs.suite)  # the one step that makes the suite visible


# --- the child process -----------------------------------------------------------------------------------------
class Emitter:
    """One JSON line per event on stdout (the server reads them) and ``progress.json`` (a waiting server)."""

    def __init__(self, dirs: PrepareDirs):
        self.dirs, self.last_file = dirs, 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        event = {**event, "pid": os.getpid(), "time": time.time()}
        print(json.dumps(event), flush=True)
        now = time.monotonic()
        if event.get("state") != "running" or now - self.last_file > 1.0:
            self.last_file = now
            with contextlib.suppress(OSError):
                write_json_atomic(self.dirs.progress, event)


def lower_priority(parent: int | None) -> None:
    """One torch thread, nice ``NICE``, and (Linux) die with the server that started us."""
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(AttributeError, OSError):
        os.nice(NICE)
    if parent is not None and sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the server was gone before the signal was armed
            sys.exit(3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neuroscope.prepare.build")
    p.add_argument("--model", required=True)
    p.add_argument("--device", default=None)
    p.add_argument("--dir", required=True, help="the model's folder in the prepare cache")
    p.add_argument("--sha", required=True, help="SHA-256 of the weights the server serves")
    p.add_argument("--plan", required=True, help="the PreparePlan as JSON")
    p.add_argument("--data", default=None)
    p.add_argument("--parent", type=int, default=None)
    args = p.parse_args(argv)
    lower_priority(args.parent)
    dirs = PrepareDirs(Path(args.dir))
    emit = Emitter(dirs)
    try:
        from neuroscope.edits.fingerprint import model_sha256
        from neuroscope.models.loading import load_model

        emit({"state": "running", "stage": "loading the model", "fraction": 0.0})
        model = load_model(args.model, device=args.device)
        if model_sha256(model) != args.sha:
            raise PrepareModelChangedError(
                f"{args.model!r} now loads other weights than the server serves; restart the server."
            )
        outcome = build(model, dirs, PreparePlan.from_dict(json.loads(args.plan)), args.sha, emit, args.data)
        emit({"state": "done", "outcome": outcome, "fraction": 1.0})
        return 0
    except NeuroscopeError as e:
        emit({"state": "failed", "message": str(e)})
        return 1
    except Exception as e:  # shown to the user as it is; the traceback goes to the log
        import traceback

        traceback.print_exc()
        emit({"state": "failed", "message": f"{type(e).__name__}: {e}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
