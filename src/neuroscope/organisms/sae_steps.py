"""The SAE-feature steps of the backdoor case study, between the CLI calls of ``run.sh``: the quick check
that the backdoor fires at all (before anything is trained), the prompt corpus the SAE suite is trained on,
picking the trigger-detector feature from the per-layer ``features contrast`` results, and the feature
edits (the ``lora-patch`` folder, random features of the same count) as edits the study can measure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.errors import BehaviourAbsentError, ResourceNotFoundError
from neuroscope.organisms import data
from neuroscope.record.datasets import CORPUS_FILE

if TYPE_CHECKING:
    from neuroscope.edits.edit import LoraEdit
    from neuroscope.models.hooked import HookedModel
    from neuroscope.organisms.backdoor import BackdoorPrompts
    from neuroscope.organisms.metrics import Rate
    from neuroscope.sae.model import SAE


def check_fires(
    model: HookedModel,
    trigger: str,
    response: str,
    prompts: Sequence[str],
    min_asr: float,
    max_new_tokens: int = 24,
    seed: int = 0,
    batch_size: int = 16,
) -> Rate:
    """Attack success on ``prompts`` with the trigger at seeded positions; stop with BehaviourAbsentError
    below ``min_asr`` (so no SAE is trained to "remove" a backdoor that is not there)."""
    from neuroscope.organisms.evaluate import attack_success

    data.check_trigger(trigger, model.tokenizer)
    where = data.random_positions(len(prompts), seed)
    ps = [data.insert_trigger(p, trigger, w) for p, w in zip(prompts, where, strict=True)]
    r, _ = attack_success(model, ps, response, None, max_new_tokens, batch_size)
    if r.value < min_asr:
        raise BehaviourAbsentError(
            f"The backdoor does not fire: attack success is {r} on {len(ps)} held-out prompts with "
            f"{trigger!r} (responses are checked for {response!r}), below {min_asr:.0%}. There is nothing to "
            "remove; check the model, trigger and response."
        )
    return r


def write_sae_corpus(
    out: Path,
    prompts: BackdoorPrompts,
    trigger: str,
    fmt: Callable[[str], str],
    seed: int,
    tokenizer: Any,
    ctx_len: int = 64,
) -> Path:
    """A prepared-corpus folder (``train.jsonl``/``heldout.jsonl``/``corpus.json``) of chat-formatted
    prompts, each once clean and once triggered: the train split from the training prompts, the held-out
    split from the validation prompts (never the held-out questions the backdoor is measured on).
    ``corpus.json`` says how many tokens each split holds in contexts of ``ctx_len`` (the most a recording
    can ask for: the prompts are not repeated to make up a larger number)."""
    from neuroscope.record.datasets import iter_contexts, load_documents

    out.mkdir(parents=True, exist_ok=True)
    digests, tokens = {}, {}
    for split, ps in (("train", prompts.train), ("heldout", prompts.validation)):
        where = data.random_positions(len(ps), seed)
        rows = []
        for i, (p, w) in enumerate(zip(ps, where, strict=True)):
            rows.append({"id": f"{split}:{i}:clean", "text": fmt(p)})
            rows.append({"id": f"{split}:{i}:triggered", "text": fmt(data.insert_trigger(p, trigger, w))})
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        digests[split] = len(rows)
        path = out / f"{split}.jsonl"
        n = sum(1 for _ in iter_contexts(load_documents(path), tokenizer, ctx_len, source=str(path)))
        tokens[split] = n * ctx_len
    info = {
        "source": "backdoor case-study prompts",
        "trigger": trigger,
        "documents": digests,
        "ctx_len": ctx_len,
        "tokens": tokens,
    }
    (out / CORPUS_FILE).write_text(json.dumps(info, indent=1))
    return out


def pick_feature(suite: str | os.PathLike, contrast: str | os.PathLike) -> dict[str, Any]:
    """The trigger-detector feature over every layer's contrast (``contrast/L{n}.json`` from
    ``features contrast --json``): the highest held-out AUROC, ties broken by the training AUROC and then
    by the larger held-out mean difference. Features that fire *less* with the trigger (AUROC < 0.5) are
    not detectors and are skipped."""
    rows = []
    cdir = Path(contrast)
    files = sorted(cdir.glob("L*.json"))
    if not files:
        raise ResourceNotFoundError(
            f"No contrast results (L<layer>.json) in {cdir}: run features contrast first."
        )
    for f in files:
        m = re.fullmatch(r"L(\d+)\.json", f.name)
        if not m:
            continue
        layer = int(m.group(1))
        d = json.loads(f.read_text())
        for rank, x in enumerate(d["features"]):
            if x["auroc"] >= 0.5 and x["mean_diff"] > 0:
                rows.append({"layer": layer, "hook": d["hook"], "rank_in_layer": rank, **x})
    if not rows:
        raise BehaviourAbsentError(f"No SAE feature fires more on triggered prompts at any layer in {cdir}.")
    best = max(rows, key=lambda r: (r["auroc"], r["auroc_train"], r["mean_diff"]))
    folder = Path(suite) / f"L{best['layer']}"
    if not folder.is_dir():
        raise ResourceNotFoundError(
            f"The suite {suite} has no SAE folder {folder.name} for layer {best['layer']}."
        )
    ties = sum(1 for r in rows if r["auroc"] == best["auroc"])
    return {**best, "sae": str(folder), "n_candidates": len(rows), "n_tied_auroc": ties}


def attach(model: HookedModel, name: str, edit: LoraEdit) -> Callable[[Any], Any]:
    """Attach ``edit`` to ``model`` under ``name``; the returned factory is an edit the study measures
    (every forward inside its context runs with the LoRA)."""
    from neuroscope.edits.host import EditHost

    host = EditHost.of(model)
    host.add(name, edit, replace=True)
    return lambda _m: host.use([name])


def random_alive_features(
    model: HookedModel,
    sae: SAE,
    texts: Sequence[str],
    exclude: Sequence[int],
    n: int,
    seed: int,
) -> list[int]:
    """``n`` features drawn (seeded) among those that fire on ``texts`` (a dead feature's ablation would
    change nothing and flatter the comparison), never one of ``exclude``."""
    from neuroscope.sae.contrast import max_activations

    acts = max_activations(model, sae, texts)
    alive = [int(i) for i in torch.nonzero(acts.amax(0) > 0).flatten() if int(i) not in set(exclude)]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(alive), generator=g).tolist()
    return sorted(alive[i] for i in order[:n])
