"""Linear probes on cached activations, with a shuffled-label control."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int

from neuroscope.analysis import figures
from neuroscope.errors import InvalidConfigError, ShapeMismatchError

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass
class ProbeResult:
    hook: str
    n_train: int
    n_test: int
    n_classes: int
    train_accuracy: float
    test_accuracy: float
    control_train_accuracy: float  # the same probe trained on shuffled labels
    control_test_accuracy: float
    majority_baseline: float
    seed: int
    classes: list[str] | None = None  # class names, index = label id (labelled-file probes)

    @property
    def selectivity(self) -> float:
        return self.test_accuracy - self.control_test_accuracy

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, selectivity=self.selectivity)

    def figure(self):
        return figures.bars(
            ["probe train", "probe test", "control train", "control test", "majority"],
            [
                self.train_accuracy,
                self.test_accuracy,
                self.control_train_accuracy,
                self.control_test_accuracy,
                self.majority_baseline,
            ],
            title=f"linear probe on {self.hook}",
            ylabel="accuracy",
        )


def fit_logistic(
    x: Float[torch.Tensor, "n d"],
    y: Int[torch.Tensor, " n"],
    n_classes: int,
    steps: int = 200,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> torch.nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS on standardised features."""
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return probe


def train_probe(
    acts: Float[torch.Tensor, "n d"],
    labels: Sequence[int] | torch.Tensor,
    hook: str = "",
    test_frac: float = 0.3,
    seed: int = 0,
    steps: int = 200,
    weight_decay: float = 1e-3,
    class_names: Sequence[str] | None = None,
) -> ProbeResult:
    """Seeded train/test split, a probe on the real labels and the same probe on shuffled labels."""
    y = torch.as_tensor(labels, dtype=torch.long)
    if acts.ndim != 2 or acts.shape[0] != y.shape[0]:
        raise ShapeMismatchError(
            "probe activations [n, d] matching labels", (y.shape[0], "d"), tuple(acts.shape)
        )
    if not 0 < test_frac < 1:
        raise InvalidConfigError(f"test_frac must be in (0, 1), got {test_frac}")
    classes = int(y.max()) + 1
    if classes < 2:
        raise InvalidConfigError("a probe needs at least two classes")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    n_test = max(1, int(len(y) * test_frac))
    test, train = perm[:n_test], perm[n_test:]
    x = acts.float()
    mu, sd = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
    x = (x - mu) / sd

    def acc(p: torch.nn.Linear, idx: torch.Tensor, yy: torch.Tensor) -> float:
        with torch.no_grad():
            return float((p(x[idx]).argmax(-1) == yy[idx]).float().mean())

    probe = fit_logistic(x[train], y[train], classes, steps, weight_decay, seed)
    shuffled = y.clone()
    shuffled[train] = y[train][torch.randperm(len(train), generator=gen)]
    shuffled[test] = y[test][torch.randperm(len(test), generator=gen)]
    control = fit_logistic(x[train], shuffled[train], classes, steps, weight_decay, seed)
    majority = float(torch.bincount(y[test], minlength=classes).max()) / len(test)
    return ProbeResult(
        hook,
        len(train),
        len(test),
        classes,
        acc(probe, train, y),
        acc(probe, test, y),
        acc(control, train, shuffled),
        acc(control, test, shuffled),
        majority,
        seed,
        list(class_names) if class_names is not None else None,
    )


def token_dataset(
    model: HookedModel,
    texts: Sequence[str],
    hook: str,
    label_fn: Callable[[str], int | None],
    balance: bool = True,
    seed: int = 0,
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations at ``hook`` for every token ``label_fn(token_string)`` labels (None skips it).

    ``balance`` subsamples every class to the size of the smallest, so chance is 1 / n_classes.
    """
    name = model.resolve_hook_name(hook)
    layer = int(name.split(".")[1]) + 1 if name.startswith("blocks.") else 0
    xs, ys = [], []
    for i in range(0, len(texts), batch_size):
        batch = list(texts[i : i + batch_size])
        tokens = model.tokenize(batch)
        with torch.no_grad():
            _, cache = model.run_with_cache(batch, names=[name], stop_at_layer=min(layer, model.cfg.n_layers))
        act = cache[name].flatten(2) if cache[name].ndim == 4 else cache[name]
        for j in range(len(batch)):
            for p in range(int(tokens.last_positions[j]) + 1):
                lab = label_fn(model.tokenizer.decode([int(tokens.ids[j, p])]))
                if lab is not None:
                    xs.append(act[j, p].float().cpu())
                    ys.append(int(lab))
    if not xs:
        raise InvalidConfigError("label_fn labelled no tokens")
    x, y = torch.stack(xs), torch.tensor(ys)
    if balance:
        gen = torch.Generator().manual_seed(seed)
        m = int(torch.bincount(y).clamp_min(0)[torch.bincount(y) > 0].min())
        keep = torch.cat(
            [
                torch.nonzero(y == c).squeeze(1)[torch.randperm(int((y == c).sum()), generator=gen)[:m]]
                for c in torch.unique(y)
            ]
        )
        x, y = x[keep], y[keep]
    return x, y


def is_digit_label(token: str) -> int | None:
    """The documented example task: 1 if the token is all digits, 0 if it has a letter, None otherwise."""
    s = token.strip()
    if not s:
        return None
    if s.isdigit():
        return 1
    if any(c.isalpha() for c in s):
        return 0
    return None


def probe_hook(
    model: HookedModel,
    texts: Sequence[str],
    hook: str,
    label_fn: Callable[[str], int | None] = is_digit_label,
    seed: int = 0,
    test_frac: float = 0.3,
) -> ProbeResult:
    x, y = token_dataset(model, texts, hook, label_fn, seed=seed)
    return train_probe(x, y, hook=model.resolve_hook_name(hook), seed=seed, test_frac=test_frac)


@dataclass(frozen=True)
class LabelledText:
    """One text and the (token position, label) pairs it carries; positions index the model's tokens of the
    text (BOS included where the model adds one), negative ones count from the end."""

    text: str
    labels: tuple[tuple[int, str], ...]


MAX_LABEL_FILE_BYTES = 64 << 20


def read_labels(path: str | Path) -> list[LabelledText]:
    """Read a labelled token set: JSON Lines (one object per line) or a JSON list / ``{"examples": [...]}``.

    Each object has ``"text"`` (or ``"prompt"``) and either ``"label"`` (the text's last token carries it;
    ``"position"`` picks another token) or ``"token_labels"``: ``[[position, label], ...]``. Labels are
    strings or integers; each distinct value is one class."""
    from neuroscope.errors import CorruptDataError, ResourceNotFoundError

    p = Path(path)
    if not p.is_file():
        raise ResourceNotFoundError(f"Label file {p} does not exist.")
    if p.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise CorruptDataError(f"Label file {p} is larger than {MAX_LABEL_FILE_BYTES >> 20} MiB.")
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorruptDataError(f"Label file {p} is not UTF-8 text: {e}") from e
    rows: Any
    try:
        if p.suffix == ".jsonl":
            rows = [json.loads(ln) for ln in raw.splitlines() if ln.strip()]
        else:
            blob = json.loads(raw)
            rows = blob.get("examples") if isinstance(blob, dict) else blob
    except json.JSONDecodeError as e:
        raise CorruptDataError(f"Label file {p} is not valid JSON: {e}") from e
    if not isinstance(rows, list) or not rows:
        raise CorruptDataError(
            f"Label file {p} holds no examples (a list of objects, or one object per line)."
        )
    out = []
    for i, row in enumerate(rows):
        where = f"{p}, example {i}"
        text = row.get("text", row.get("prompt")) if isinstance(row, dict) else None
        if not isinstance(text, str) or not text:
            raise CorruptDataError(f'{where}: needs a non-empty "text" (or "prompt") string.')
        if "token_labels" in row:
            pairs = row["token_labels"]
            ok = isinstance(pairs, list) and all(
                isinstance(q, list) and len(q) == 2 and _is_pos(q[0]) and _is_label(q[1]) for q in pairs
            )
            if not ok or not pairs:
                raise CorruptDataError(f'{where}: "token_labels" must be a list of [position, label] pairs.')
            labels = tuple((int(q[0]), str(q[1])) for q in pairs)
        elif "label" in row:
            pos = row.get("position", -1)
            if not _is_pos(pos) or not _is_label(row["label"]):
                raise CorruptDataError(
                    f'{where}: "label" must be a string or integer, "position" an integer.'
                )
            labels = ((int(pos), str(row["label"])),)
        else:
            raise CorruptDataError(f'{where}: needs "label" or "token_labels".')
        out.append(LabelledText(text, labels))
    return out


def _is_pos(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_label(v: Any) -> bool:
    return isinstance(v, str | int) and not isinstance(v, bool)


def labelled_dataset(
    model: HookedModel, examples: Sequence[LabelledText], hook: str, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Activations at ``hook`` for every labelled token; labels as class ids, with the class names (sorted)."""
    from neuroscope.errors import IndexOutOfRangeError

    name = model.resolve_hook_name(hook)
    layer = int(name.split(".")[1]) + 1 if name.startswith("blocks.") else 0
    classes = sorted({lab for ex in examples for _, lab in ex.labels})
    index = {c: i for i, c in enumerate(classes)}
    xs, ys = [], []
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        texts = [ex.text for ex in batch]
        tokens = model.tokenize(texts)
        with torch.no_grad():
            _, cache = model.run_with_cache(texts, names=[name], stop_at_layer=min(layer, model.cfg.n_layers))
        act = cache[name].flatten(2) if cache[name].ndim == 4 else cache[name]
        for j, ex in enumerate(batch):
            n = int(tokens.last_positions[j]) + 1
            for pos, lab in ex.labels:
                p = pos + n if pos < 0 else pos
                if not 0 <= p < n:
                    raise IndexOutOfRangeError(f"token position in example {i + j} ({n} tokens)", pos, n)
                xs.append(act[j, p].float().cpu())
                ys.append(index[lab])
    return torch.stack(xs), torch.tensor(ys), classes


def probe_labelled(
    model: HookedModel,
    examples: Sequence[LabelledText] | str | Path,
    hook: str,
    seed: int = 0,
    test_frac: float = 0.3,
) -> ProbeResult:
    """A linear probe for any labelled token set (see :func:`read_labels`) at any hook."""
    exs = read_labels(examples) if isinstance(examples, str | Path) else list(examples)
    x, y, classes = labelled_dataset(model, exs, hook)
    if len(classes) < 2:
        raise InvalidConfigError(f"a probe needs at least two classes; the labels hold only {classes}")
    return train_probe(
        x, y, hook=model.resolve_hook_name(hook), seed=seed, test_frac=test_frac, class_names=classes
    )
