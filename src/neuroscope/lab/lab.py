"""The lab's state: attached SAEs with their feature stores, the user's labels (saved in the workspace),
prepared live edits, contrast and export. Paths a client names stay inside the workspace."""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.bundles.files import check_name, confined
from neuroscope.errors import InvalidConfigError, ResourceNotFoundError
from neuroscope.lab import views
from neuroscope.lab.live import LiveEdit, LiveEdits

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.features import FeatureStore
    from neuroscope.sae.model import SAE

LABELS_FILE = "labels.json"
BUNDLES_DIR = "bundles"
MAX_LABEL = 200


@dataclass
class AttachedSAE:
    name: str
    sae: SAE
    hook: str
    store: FeatureStore | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        c = self.sae.cfg
        return {
            "name": self.name,
            "hook": self.hook,
            "layer": int(self.hook.split(".")[1]),
            "width": c.d_sae,
            "d_in": c.d_in,
            "architecture": c.arch,
            "k": c.k if c.arch == "topk" else None,
            "has_features": self.store is not None,
            "source": self.source,
        }


class Lab:
    def __init__(self, model: HookedModel, workspace: str | os.PathLike):
        self.model = model
        self.workspace = Path(workspace)
        self.saes: dict[str, AttachedSAE] = {}
        self.labels: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()
        self._context_cache: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._load_labels()

    # --- attaching -------------------------------------------------------------------------------------
    def attach_sae(
        self, name: str, sae: SAE, features: str | os.PathLike | None = None, source: str = ""
    ) -> AttachedSAE:
        from neuroscope.sae.features import FeatureStore

        check_name(name, "SAE")
        if name in self.saes:
            raise InvalidConfigError(f"an SAE named {name!r} is already attached")
        hook = self.model.resolve_hook_name(sae.cfg.hook_name)
        if sae.d_in != self.model.cfg.d_model:
            raise InvalidConfigError(
                f"SAE {name!r} reads {sae.d_in}-wide activations; {hook} is {self.model.cfg.d_model} wide"
            )
        store = FeatureStore(features) if features is not None else None
        if store is not None and len(store) != sae.d_sae:
            raise InvalidConfigError(
                f"the feature store of {name!r} has {len(store)} features, the SAE {sae.d_sae}"
            )
        att = AttachedSAE(name, sae.to(self.model.device).eval(), hook, store, source)
        self.saes[name] = att
        return att

    def attach_folder(self, path: str | os.PathLike) -> AttachedSAE:
        from neuroscope.sae.io import load_sae

        p = Path(path)
        feats = p / "features"
        return self.attach_sae(
            p.resolve().name, load_sae(p), feats if (feats / "features.parquet").exists() else None, str(p)
        )

    def attach_bundle(self, path: str | os.PathLike, force: bool = False) -> dict[str, Any]:
        """Verify and attach a bundle: its SAEs, edits (as live LoRA edits) and labels; all or nothing."""
        from neuroscope.bundles.verify import attach_bundle, verify_bundle

        verified = verify_bundle(path, self.model, force)
        clash = [n for n in verified.contents.saes if n in self.saes]
        if clash:
            raise InvalidConfigError(f"SAE {clash[0]!r} from the bundle is already attached")
        attached = attach_bundle(verified, self.model)
        live = LiveEdits.of(self.model)
        for bname, hname in attached.edit_names.items():
            live.add_lora(hname, verified.contents.edits[bname], {"source": f"bundle {Path(path).name}"})
        for name, sae in verified.contents.saes.items():
            self.attach_sae(name, sae, verified.contents.features.get(name), f"bundle {Path(path).name}")
        for name, table in verified.contents.labels.items():
            self.labels.setdefault(name, {}).update(table)
        return attached.to_dict()

    def attach_edit(self, spec: str) -> dict[str, Any]:
        """``NAME=FOLDER``: a PEFT LoRA folder (an exported edit, e.g. the fix loop's ``OUT/lora``) attached as
        a live edit, toggled in the Features view and its evaluation panel like a prepared one. Safetensors
        only; its modules and shapes are checked against the model before anything is attached."""
        from neuroscope.edits.edit import load_edit

        name, sep, folder = spec.partition("=")
        if not sep or not folder:
            raise InvalidConfigError(f"an edit is NAME=FOLDER (a PEFT LoRA folder), got {spec!r}")
        check_name(name, "edit")
        live = LiveEdits.of(self.model)
        if name in live.edits:
            raise InvalidConfigError(f"an edit named {name!r} is already attached")
        edit = load_edit(folder)
        info = {"source": str(folder), "meets_goals": edit.info.get("meets_goals")}
        return live.add_lora(name, edit, info).to_dict()

    def get(self, name: str) -> AttachedSAE:
        if name not in self.saes:
            raise ResourceNotFoundError(
                f"No SAE named {name!r} is attached; attached: {', '.join(self.saes) or 'none'}."
            )
        return self.saes[name]

    # --- labels ----------------------------------------------------------------------------------------
    def _load_labels(self) -> None:
        f = self.workspace / LABELS_FILE
        if f.exists():
            raw = json.loads(f.read_text())
            self.labels = {s: {int(k): str(v) for k, v in t.items()} for s, t in raw.items()}

    def set_label(self, sae: str, feature: int, label: str) -> None:
        att = self.get(sae)
        views.check_feature(att.sae, feature)
        label = label.strip()[:MAX_LABEL]
        with self._lock:
            table = self.labels.setdefault(sae, {})
            if label:
                table[feature] = label
            else:
                table.pop(feature, None)
            self.workspace.mkdir(parents=True, exist_ok=True)
            tmp = self.workspace / f".{LABELS_FILE}.tmp"
            tmp.write_text(
                json.dumps(
                    {s: {str(k): v for k, v in sorted(t.items())} for s, t in self.labels.items()}, indent=1
                )
            )
            tmp.replace(self.workspace / LABELS_FILE)

    # --- the table and a feature's detail --------------------------------------------------------------------
    def table(
        self, sae: str, offset: int, limit: int, sort: str, descending: bool, search: str | None
    ) -> dict[str, Any]:
        att = self.get(sae)
        labels = self.labels.get(sae, {})
        if att.store is None:
            ids = [
                f for f in range(att.sae.d_sae) if not search or search.lower() in labels.get(f, "").lower()
            ]
            rows: list[dict[str, Any]] = [
                {
                    "id": f,
                    "density": None,
                    "mean_activation": None,
                    "max_activation": None,
                    "top_tokens": [],
                    "label": labels.get(f),
                }
                for f in ids[offset : offset + limit]
            ]
            return {"rows": rows, "total": len(ids), "offset": offset}
        rows, total = att.store.page(offset, limit, sort, descending, search, labels)
        return {"rows": rows, "total": total, "offset": offset}

    def detail(self, sae: str, f: int) -> dict[str, Any]:
        from neuroscope.record.datasets import context_bos_id

        att = self.get(sae)
        views.check_feature(att.sae, f)
        out: dict[str, Any] = {
            "sae": sae,
            "id": f,
            "label": self.labels.get(sae, {}).get(f),
            "hook": att.hook,
        }
        out["logits"] = views.logit_effects(self.model, att.sae, f)
        if att.store is None:
            out.update(stats=None, cloud=[], contexts=[], histogram=None)
            return out
        row = att.store.feature(f)
        out["stats"] = {k: row[k] for k in ("density", "mean_activation", "max_activation")}
        out["cloud"] = [
            {"token": t, "weight": float(w)}
            for t, w in zip(row["top_tokens"], row["top_token_scores"], strict=False)
        ]
        key = (sae, f)
        if key not in self._context_cache:
            self._context_cache[key] = views.contexts_with_acts(
                self.model, att.sae, att.hook, att.store, f, context_bos_id(self.model.tokenizer)
            )
        out["contexts"] = self._context_cache[key]
        out["histogram"] = views.density_histogram(att.store, f)
        return out

    def on_prompt(
        self, sae: str, prompt: str, feature: int | None = None, position: int | None = None, k: int = 20
    ) -> dict[str, Any]:
        """The prompt's tokens; a feature's activation on each token; the features active at a position."""
        att = self.get(sae)
        tokens, z = views.prompt_acts(self.model, att.sae, att.hook, prompt)
        out: dict[str, Any] = {"tokens": tokens, "acts": None, "active": None, "position": position}
        if feature is not None:
            views.check_feature(att.sae, feature)
            out["acts"] = [round(float(v), 4) for v in z[:, feature]]
        if position is not None:
            if not 0 <= position < len(tokens):
                raise InvalidConfigError(f"position {position} is outside the prompt's {len(tokens)} tokens")
            labels = self.labels.get(sae, {})
            out["active"] = [
                {
                    "feature": fid,
                    "activation": v,
                    "label": labels.get(fid),
                    "top_tokens": att.store.top_tokens[fid][:5] if att.store else [],
                }
                for fid, v in views.active_features(z[position], k)
            ]
        return out

    # --- edits, contrast, export -----------------------------------------------------------------------
    def prepare_edit(
        self, sae: str, features: list[int], method: str, value: float | None, rank: int
    ) -> LiveEdit:
        """``ablate``: the closed-form LoRA (an exact peft adapter); ``clamp``: the exact hooked clamp (its
        LoRA is distilled offline, see ``neuroscope lora-patch --method clamp``)."""
        from neuroscope.edits.build import reference_for
        from neuroscope.edits.closed_form import ablation_edit, check_features, deferred_ablation
        from neuroscope.edits.edit import LoraEdit

        att = self.get(sae)
        feats = sorted(check_features(att.sae, features))
        live = LiveEdits.of(self.model)
        if method == "ablate":
            name = f"{sae}:ablate:{'+'.join(map(str, feats))}:r{rank}"
            if name in live.edits:
                return live.edits[name]

            def build() -> LoraEdit:
                edit = ablation_edit(self.model, att.sae, feats, rank, att.hook)
                edit.info["sae"] = sae
                return edit

            deferred = deferred_ablation(self.model, att.sae, feats, rank, att.hook)
            if deferred is None:  # no exact hooked form: the adapter itself answers the first request
                return live.add_lora(name, build())
            ivs, first, info = deferred
            return live.add_lora_deferred(name, ivs, first, build, {**info, "sae": sae})
        if method == "clamp":
            if value is None:
                raise InvalidConfigError("a clamp edit needs a value")
            name = f"{sae}:clamp:{'+'.join(map(str, feats))}:{value:g}"
            ivs = reference_for(self.model, att.sae, feats, "clamp", value=value, hook=att.hook)
            # the hook sits in block L (resid_post is its output), so block L is the first to recompute
            layer = int(att.hook.split(".")[1])
            info = {
                "method": "clamp",
                "features": feats,
                "value": value,
                "sae": sae,
                "hook": att.hook,
                "exact": True,
                "hooked": True,
            }
            return live.add_hooked(name, ivs, layer, info)
        raise InvalidConfigError(f"method must be 'ablate' or 'clamp', got {method!r}")

    def contrast(self, sae: str, positive: list[str], negative: list[str], top: int = 20) -> dict[str, Any]:
        from neuroscope.sae.contrast import ContrastConfig, contrast_features

        att = self.get(sae)
        r = contrast_features(
            self.model, att.sae, positive, negative, ContrastConfig(top=top, n_boot=500), att.hook
        )
        d = r.to_dict()
        labels = self.labels.get(sae, {})
        for row in d["features"]:
            row["label"] = labels.get(row["feature"])
        return d

    def export(self, name: str, edits: list[str], saes: list[str] | None = None) -> Path:
        """Write a bundle ``workspace/bundles/<name>`` with the given live LoRA edits, their SAEs and labels."""
        from neuroscope.bundles.export import BundleContents, export_bundle

        check_name(name, "bundle")
        live = LiveEdits.of(self.model)
        contents = BundleContents()
        wanted = set(saes or [])
        for edit_name in edits:  # a deferred adapter is built now: the bundle holds LoRA factors
            if edit_name in live.pending():
                live.finish(edit_name)
        for e in live.get(edits):
            if e.kind != "lora" or e.edit is None:
                raise InvalidConfigError(
                    f"edit {e.name!r} is a hooked clamp: distil it into a LoRA with `neuroscope lora-patch --method clamp` to export it"
                )
            safe = (
                "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in e.name)[:64].strip("-.")
                or "edit"
            )
            contents.edits[safe] = e.edit
            if e.info.get("sae"):
                wanted.add(str(e.info["sae"]))
        for s in sorted(wanted):
            att = self.get(s)
            contents.saes[s] = att.sae.cpu() if self.model.device.type != "cpu" else att.sae
            if att.store is not None:
                contents.features[s] = att.store.path
            if self.labels.get(s):
                contents.labels[s] = dict(self.labels[s])
        root = self.workspace / BUNDLES_DIR
        root.mkdir(parents=True, exist_ok=True)
        return export_bundle(self.model, contents, confined(root, name, "bundle"), overwrite=True)

    def bundle_zip(self, name: str) -> bytes:
        check_name(name, "bundle")
        root = confined(self.workspace / BUNDLES_DIR, name, "bundle")
        if not (root / "manifest.json").exists():
            raise ResourceNotFoundError(f"No exported bundle named {name!r} in the workspace.")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(root.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    z.write(p, f"{name}/{p.relative_to(root).as_posix()}")
        return buf.getvalue()
