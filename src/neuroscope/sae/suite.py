"""SAE suites: one SAE per layer at one residual hook, recorded in one pass and trained one after another.

A suite folder holds ``suite.json`` (model, hook, layers, where each SAE lives, the evaluation table) and one
SAELens-format SAE folder per layer (``L12/``, ...), each with its ``features/`` store when computed. The
recordings go to ``acts/train`` and ``acts/heldout`` inside the suite (re-running the command resumes them).
Provenance graphs (:mod:`neuroscope.graphs.provenance`) read suites through :class:`SAESuite`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.errors import (
    InvalidConfigError,
    ResourceNotFoundError,
    SAEMismatchError,
    SAENotInSuiteError,
)
from neuroscope.sae.io import CFG_FILE, load_sae
from neuroscope.sae.model import SAE

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.features import FeatureStore

SUITE_FILE = "suite.json"
# residual hooks a suite may sit on; provenance needs the residual stream (every path passes through it)
SUITE_HOOKS = ("resid_post", "resid_pre")
_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(resid_post|resid_pre)$")


def parse_layers(spec: str | Sequence[int]) -> tuple[int, ...]:
    """``"12-15"``, ``"12,14,15"`` or a sequence of ints → sorted unique layers."""
    if not isinstance(spec, str):
        layers = [int(x) for x in spec]
    else:
        layers = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise InvalidConfigError(f"layers must look like 12-15 or 12,13,15; got {spec!r}")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise InvalidConfigError(f"layer range {part!r} runs backwards")
            layers += list(range(lo, hi + 1))
    if not layers:
        raise InvalidConfigError("give at least one layer")
    return tuple(sorted(set(layers)))


@dataclass(frozen=True)
class SuiteConfig:
    """How to build a suite. ``tokens``/``heldout_tokens`` are recorded once for all layers; each SAE is TopK
    with ``k`` active latents and ``expansion`` × d_model latents, trained ``epochs`` passes."""

    layers: tuple[int, ...]
    hook: str = "resid_post"
    tokens: int = 250_000
    heldout_tokens: int = 40_000
    k: int = 64
    expansion: float = 8
    epochs: int = 4
    batch_size: int = 2048
    lr: float | None = 1e-3
    ctx_len: int = 128
    data: str | None = None
    features: bool = True
    ce_contexts: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hook not in SUITE_HOOKS:
            raise InvalidConfigError(
                f"a suite sits on a residual hook ({', '.join(SUITE_HOOKS)}), got {self.hook!r}"
            )
        if not self.layers:
            raise InvalidConfigError("a suite needs at least one layer")
        for name in ("tokens", "heldout_tokens", "k", "epochs", "batch_size", "ctx_len"):
            if getattr(self, name) < 1:
                raise InvalidConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.expansion <= 0:
            raise InvalidConfigError(f"expansion must be > 0, got {self.expansion}")

    def hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.hook_{self.hook}"


@dataclass
class SuiteResult:
    out: str
    model: str
    hook: str
    layers: list[int]
    seconds: float
    eval: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The evaluation table as Markdown."""
        head = "| layer | L0 | FVU | CE loss recovered | dead | dense |\n|---|---|---|---|---|---|"
        rows = []
        for r in self.eval:
            ce = r.get("ce_loss_recovered")
            rows.append(
                f"| {r['layer']} | {r['l0']:.1f} | {r['fvu']:.3f} | "
                f"{'-' if ce is None else f'{ce:.3f}'} | {r['dead_fraction']:.2%} | {r['dense_fraction']:.2%} |"
            )
        return "\n".join([head, *rows])


def train_suite(
    model: HookedModel,
    cfg: SuiteConfig,
    out: str | os.PathLike,
    progress: bool = True,
    report: Callable[[str, float], object] | None = None,
) -> SuiteResult:
    """Record every layer's hook in one pass (train and held-out splits), train one SAE per layer, evaluate
    each on the held-out split and (``cfg.features``) compute its feature store. An existing suite folder
    is resumed: recordings continue, layers with a finished SAE are not retrained.

    ``report(stage, fraction)`` hears each stage as it goes (``record train``, ``train L12``, ``eval L12``,
    ``features L12``, ...) with the fraction of that stage done (0 to 1)."""
    from neuroscope.record.datasets import DEFAULT_CORPUS_DIR, ensure_default_corpus
    from neuroscope.record.reader import ActivationStore
    from neuroscope.record.writer import TraceConfig, record
    from neuroscope.sae.config import TrainConfig
    from neuroscope.sae.evaluate import evaluate_sae
    from neuroscope.sae.features import FeatureConfig, compute_features
    from neuroscope.sae.train import train_sae

    t0 = time.perf_counter()
    for layer in cfg.layers:
        model.check_layer(layer)
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    data = cfg.data or str(ensure_default_corpus(DEFAULT_CORPUS_DIR))
    hooks = tuple(cfg.hook_name(l) for l in cfg.layers)
    say = report or (lambda stage, fraction: None)
    stores = {}
    for split, tokens in (("train", cfg.tokens), ("heldout", cfg.heldout_tokens)):
        tcfg = TraceConfig(hooks=hooks, data=data, split=split, tokens=tokens, ctx_len=cfg.ctx_len)
        stage = f"record {split}"
        say(stage, 0.0)
        record(model, tcfg, out_path / "acts" / split, progress, _fraction_of(stage, say))
        stores[split] = ActivationStore(out_path / "acts" / split)
    entries: dict[str, str] = {}
    evals: list[dict[str, Any]] = []
    for layer, hook in zip(cfg.layers, hooks, strict=True):
        folder = out_path / f"L{layer}"
        if not (folder / "training.json").exists():
            train = TrainConfig(
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                epochs=cfg.epochs,
                seed=cfg.seed,
                hook=hook,
                progress=progress,
            )
            say(f"train L{layer}", 0.0)
            train_sae(
                stores["train"],
                tcfg=train,
                out=folder,
                callbacks=[_step_report(f"train L{layer}", say)] if report else [],
                k=cfg.k,
                expansion=cfg.expansion,
            )
        say(f"eval L{layer}", 0.0)
        sae = load_sae(folder)
        r = evaluate_sae(
            sae, stores["heldout"], model, hook=hook, ce_contexts=cfg.ce_contexts, name=str(folder)
        )
        evals.append({"layer": layer, **r.to_dict()})
        if cfg.features and not (folder / "features" / "meta.json").exists():
            say(f"features L{layer}", 0.0)
            compute_features(sae, stores["heldout"], model, folder / "features", FeatureConfig(), hook=hook)
        entries[str(layer)] = folder.name
    result = SuiteResult(
        str(out_path), model.cfg.name, cfg.hook, list(cfg.layers), round(time.perf_counter() - t0, 1), evals
    )
    manifest = {
        "format": 1,
        "model": model.cfg.name,
        "hook": cfg.hook,
        "layers": list(cfg.layers),
        "saes": entries,
        "config": {**asdict(cfg), "layers": list(cfg.layers), "data": data},
        "eval": evals,
    }
    tmp = out_path / (SUITE_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out_path / SUITE_FILE)
    return result


def _fraction_of(stage: str, say: Callable[[str, float], object]) -> Callable[[int, int], None]:
    def on_tokens(done: int, total: int) -> None:
        say(stage, done / max(total, 1))

    return on_tokens


def _step_report(stage: str, say: Callable[[str, float], object]) -> Any:
    """A Lightning callback that hands the fraction of training steps done to ``say``."""
    import lightning as L

    class StepReport(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
            say(stage, trainer.global_step / max(int(trainer.max_steps), 1))

    return StepReport()


def check_sae_model(sae: SAE, model: HookedModel, where: str | os.PathLike) -> None:
    """Refuse, by name, an SAE trained on another model, or one whose width is not the model's residual width
    (an SAE with no recorded model name is taken as it is)."""
    if sae.cfg.model_name and sae.cfg.model_name != model.cfg.name:
        raise SAEMismatchError(f"{where} was trained on {sae.cfg.model_name!r}, not on {model.cfg.name!r}.")
    if sae.d_in != model.cfg.d_model:
        raise SAEMismatchError(
            f"{where} takes width {sae.d_in} but {model.cfg.name} has d_model={model.cfg.d_model}."
        )


class SAESuite:
    """SAEs at one residual hook of one model, by layer. Loading checks every SAE's model, hook and width
    against the suite (and against ``model`` when given), so SAEs from elsewhere are refused by name.

    A folder without ``suite.json`` whose sub-folders are SAE folders works too: layers come from the
    hook names in their configs."""

    def __init__(self, path: Path, model_name: str, hook: str, folders: dict[int, Path]):
        self.path, self.model_name, self.hook, self.folders = path, model_name, hook, folders
        self._saes: dict[int, SAE] = {}
        self._features: dict[int, FeatureStore | None] = {}

    @property
    def layers(self) -> list[int]:
        return sorted(self.folders)

    @classmethod
    def load(cls, path: str | os.PathLike, model: HookedModel | None = None) -> SAESuite:
        p = Path(path)
        if not p.is_dir():
            raise ResourceNotFoundError(f"SAE suite folder {p} does not exist.")
        manifest = p / SUITE_FILE
        if manifest.exists():
            try:
                info = json.loads(manifest.read_text())
            except json.JSONDecodeError as e:
                from neuroscope.errors import CorruptDataError

                raise CorruptDataError(f"{manifest} is not valid JSON: {e}") from e
            folders = {int(l): (p / str(f)) for l, f in dict(info.get("saes", {})).items()}
            suite = cls(p, str(info.get("model", "")), str(info.get("hook", "")), folders)
        else:
            suite = cls._scan(p)
        if not suite.folders:
            raise ResourceNotFoundError(f"{p} holds no SAE folders ({CFG_FILE} + weights).")
        for layer in suite.layers:
            suite.sae(layer, model)  # validates every member now, not at first use
        if model is not None and suite.model_name and suite.model_name != model.cfg.name:
            raise SAEMismatchError(
                f"The SAE suite {p} was trained on {suite.model_name!r}, not on the model {model.cfg.name!r}."
            )
        return suite

    @classmethod
    def _scan(cls, p: Path) -> SAESuite:
        folders: dict[int, Path] = {}
        kinds, models = set(), set()
        for sub in sorted(p.iterdir()):
            if not (sub / CFG_FILE).exists():
                continue
            meta = json.loads((sub / CFG_FILE).read_text()).get("metadata") or {}
            m = _HOOK.match(str(meta.get("hook_name", "")))
            if not m:
                raise SAEMismatchError(
                    f"{sub} is an SAE on hook {meta.get('hook_name')!r}; a suite needs residual-stream SAEs "
                    f"(blocks.L.hook_resid_post or hook_resid_pre)."
                )
            folders[int(m.group(1))] = sub
            kinds.add(m.group(2))
            models.add(str(meta.get("model_name", "")))
        if len(kinds) > 1 or len(models) > 1:
            raise SAEMismatchError(
                f"The SAEs in {p} mix hooks {sorted(kinds)} / models {sorted(models)}: one suite is one "
                "model and one hook."
            )
        return cls(p, models.pop() if models else "", kinds.pop() if kinds else "resid_post", folders)

    def hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.hook_{self.hook}"

    def stream_index(self, layer: int) -> int:
        """Position in the residual stream: 0 = the embeddings (resid_pre of block 0), i = resid_post of
        block i-1. A resid_pre SAE at layer l sits at index l, a resid_post one at l + 1."""
        return layer + 1 if self.hook == "resid_post" else layer

    def layer_at(self, index: int) -> int | None:
        """The suite layer whose SAE sits at stream index ``index`` (None when there is none)."""
        layer = index - 1 if self.hook == "resid_post" else index
        return layer if layer in self.folders else None

    def sae(self, layer: int, model: HookedModel | None = None) -> SAE:
        if layer not in self.folders:
            raise SAENotInSuiteError(layer, self.layers)
        if layer not in self._saes:
            sae = load_sae(self.folders[layer])
            want = self.hook_name(layer)
            if sae.cfg.hook_name and sae.cfg.hook_name != want:
                raise SAEMismatchError(
                    f"{self.folders[layer]} was trained on {sae.cfg.hook_name!r}, but the suite lists it as "
                    f"its layer-{layer} SAE at {want!r}."
                )
            if self.model_name and sae.cfg.model_name and sae.cfg.model_name != self.model_name:
                raise SAEMismatchError(
                    f"{self.folders[layer]} was trained on {sae.cfg.model_name!r}, not on the suite's "
                    f"model {self.model_name!r}."
                )
            self._saes[layer] = sae
        sae = self._saes[layer]
        if model is not None:
            check_sae_model(sae, model, self.folders[layer])
        return sae

    def features(self, layer: int) -> FeatureStore | None:
        """The layer's feature store (labels, top tokens), or None when it was not computed."""
        if layer not in self._features:
            from neuroscope.sae.features import FeatureStore

            folder = self.folders[layer] / "features"
            self._features[layer] = FeatureStore(folder) if (folder / "meta.json").exists() else None
        return self._features[layer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model_name,
            "hook": self.hook,
            "layers": self.layers,
            "d_sae": {l: self.sae(l).d_sae for l in self.layers},
        }
