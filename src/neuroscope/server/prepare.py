"""The workbench's side of the prepared SAE suite (:mod:`neuroscope.prepare`): on start, find the cached
suite for the served weights or start the low-priority child process that builds it; follow its progress
(``GET /api/prepare``, a line on the console); attach the suite (Provenance) and its feature-layer SAE
(Features) the moment it is whole, with no restart. Whatever goes wrong, the views that need no SAE keep
working and the status says what happened and what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuroscope.graphs.service import GraphService
    from neuroscope.lab.lab import Lab
    from neuroscope.models.hooked import HookedModel
    from neuroscope.prepare.cache import PrepareDirs
    from neuroscope.prepare.plan import PreparePlan
    from neuroscope.sae.suite import SAESuite
    from neuroscope.server.settings import Settings

ACTIVE = ("checking", "waiting", "running")
CONSOLE_EVERY_S = 15.0


def _console(line: str) -> None:
    print(f"NeuroScope prepare: {line}", file=sys.stderr, flush=True)


class Preparer:
    def __init__(
        self, model: HookedModel, lab: Lab, graphs: GraphService, settings: Settings, log: Any = _console
    ):
        self.model, self.lab, self.graphs, self.settings, self.log = model, lab, graphs, settings, log
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"state": "off", "notices": [], "layers": []}
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._dirs: PrepareDirs | None = None
        self._t0 = time.monotonic()
        self._last_console = (0.0, "")

    # --- status -------------------------------------------------------------------------------------------
    def _set(self, **kw: Any) -> None:
        with self._lock:
            self._status.update(kw)
            self._status["elapsed_s"] = round(time.monotonic() - self._t0, 1)

    def _notice(self, text: str) -> None:
        with self._lock:
            self._status["notices"] = [*self._status["notices"], text]
        self.log(text)

    def status(self) -> dict[str, Any]:
        from neuroscope.prepare.cache import read_progress

        with self._lock:
            s = dict(self._status)
        if s["state"] in ACTIVE:
            s["elapsed_s"] = round(time.monotonic() - self._t0, 1)
        if s["state"] == "waiting" and self._dirs is not None:
            other = read_progress(self._dirs)  # the progress of the process we wait for
            if other and other.get("state") == "running":
                s["stage"], s["fraction"] = other.get("stage"), other.get("fraction")
        return s

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._set(state="checking", message="looking for a prepared SAE suite")
        self._thread = threading.Thread(target=self._run, name="neuroscope-prepare", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the child (its work folder stays, and the next start resumes it)."""
        self._closing = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait(self, timeout: float) -> dict[str, Any]:
        """Until the preparation is no longer in progress (tests and benchmarks); the last status."""
        deadline = time.monotonic() + timeout
        while self.status()["state"] in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.status()

    def _run(self) -> None:
        from neuroscope.edits.fingerprint import model_sha256
        from neuroscope.prepare.cache import PrepareDirs, check, default_root, expected_meta
        from neuroscope.prepare.plan import plan_for

        try:
            sha = model_sha256(self.model)
            plan = plan_for(self.model.cfg, self.settings.prepare_tokens)
            root = Path(self.settings.prepare_dir) if self.settings.prepare_dir else default_root()
            dirs = self._dirs = PrepareDirs.for_model(root, self.model.cfg.name, sha)
            self._set(
                layers=list(plan.layers),
                feature_layer=plan.feature_layer,
                sae=plan.sae_name(),
                path=str(dirs.suite),
            )
            want = expected_meta(self.model.cfg.name, sha, plan)
            found = check(dirs, want, self.model)
            if found.state == "ready" and found.suite is not None:
                self._attach(found.suite, plan, dirs)
                self._set(
                    state="ready", fraction=1.0, stage=None, message=f"read from the cache {dirs.suite}"
                )
                self.log(f"SAE suite read from the cache {dirs.suite} (layers {_layers(plan)}); attached")
                return
            if found.state == "stale":
                self._notice(f"The cached SAE suite in {dirs.suite} is rebuilt: {found.reason}.")
            self._build(dirs, plan, sha, want)
        except Exception as e:  # the server keeps serving; the status says why there is no suite
            self._fail(f"{type(e).__name__}: {e}" if not _is_ours(e) else str(e))

    def _build(self, dirs: PrepareDirs, plan: PreparePlan, sha: str, want: dict[str, Any]) -> None:
        from neuroscope.prepare.cache import check

        self._set(state="running", stage="starting", fraction=0.0, message=None)
        self.log(
            f"preparing a default SAE suite for {self.model.cfg.name} in the background (layers {_layers(plan)}, "
            f"{plan.tokens:,} tokens; once, then cached in {dirs.root}); --no-prepare skips it"
        )
        dirs.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "neuroscope.prepare.build",
            "--model", self.settings.model,
            "--dir", str(dirs.root),
            "--sha", sha,
            "--plan", json.dumps(plan.to_dict()),
            "--parent", str(os.getpid()),
        ]  # fmt: skip
        if self.settings.device:
            cmd += ["--device", self.settings.device]
        if self.settings.prepare_data:
            cmd += ["--data", self.settings.prepare_data]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        try:
            log: Any = open(dirs.root / "prepare.log", "a")  # noqa: SIM115  (closed below)
        except OSError:
            log = subprocess.DEVNULL
        try:
            if self._closing:
                return
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
            last: dict[str, Any] = {}
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                last = event
                self._on_event(event)
            rc = self._proc.wait()
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        if self._closing:
            return
        if last.get("state") == "failed":
            return self._fail(str(last.get("message")))
        if rc != 0 or last.get("state") != "done":
            return self._fail(
                f"the preparing process ended with code {rc}; its log: {dirs.root / 'prepare.log'}"
            )
        found = check(dirs, want, self.model)
        if found.state != "ready" or found.suite is None:
            return self._fail(f"the prepared suite in {dirs.suite} does not verify: {found.reason}")
        self._attach(found.suite, plan, dirs)
        how = "prepared" if last.get("outcome") == "built" else "prepared by another process"
        self._set(state="ready", stage=None, fraction=1.0, message=f"{how} in {dirs.suite}")
        self.log(
            f"SAE suite ready after {time.monotonic() - self._t0:.0f} s (layers {_layers(plan)}): the Features view "
            f"shows {plan.sae_name()}, Provenance uses the suite"
        )

    def _on_event(self, event: dict[str, Any]) -> None:
        state = event.get("state")
        if state == "notice":
            self._notice(str(event.get("message")))
        elif state == "waiting":
            self._set(state="waiting", message=event.get("message"))
            self.log(str(event.get("message")))
        elif state == "running":
            stage, frac = str(event.get("stage")), float(event.get("fraction") or 0.0)
            self._set(state="running", stage=stage, fraction=frac, message=None)
            now = time.monotonic()
            if stage != self._last_console[1] or now - self._last_console[0] > CONSOLE_EVERY_S:
                self._last_console = (now, stage)
                bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
                self.log(f"[{bar}] {100 * frac:3.0f}%  {stage}  ({now - self._t0:.0f} s)")

    def _fail(self, message: str) -> None:
        self._set(state="failed", stage=None, message=message)
        self.log(f"no SAE suite: {message} (the views that need no SAE work as usual)")

    def _attach(self, suite: SAESuite, plan: PreparePlan, dirs: PrepareDirs) -> None:
        """The suite to Provenance unless one was given (--sae-suite); the feature layer's SAE to Features."""
        layer = plan.feature_layer
        if self.graphs.suite is None:
            self.graphs.suite = suite
        name = plan.sae_name()
        if name not in self.lab.saes:
            folder = dirs.suite / f"L{layer}"
            self.lab.attach_sae(name, suite.sae(layer, self.model), folder / "features", source=str(folder))


def _layers(plan: PreparePlan) -> str:
    return ", ".join(str(l) for l in plan.layers)


def _is_ours(e: BaseException) -> bool:
    from neuroscope.errors import NeuroscopeError

    return isinstance(e, NeuroscopeError)


def wanted(settings: Settings) -> bool:
    """Prepare unless switched off or everything it would give is already attached."""
    given_saes = bool(settings.saes or settings.bundle)
    return settings.prepare and not (given_saes and settings.sae_suite)
