"""First-letter feature absorption (SAEBench's ``absorption``, Chanin et al. 2024, with Till's absorption fraction).

Vocabulary words (alphabetic tokens of the model's tokenizer) are put in SAEBench's in-context prompt,
``"\\n{w1} has the first letter: W\\n...\\n{word} has the first letter:"`` (10 examples of the same split), and the
residual is read at the word's token. A 26-way first-letter probe is fitted on the train words' residuals (the
reference: how well the model itself encodes the letter). For each letter the SAE's *main latents* are found by
k-sparse probing: latents ranked by mean activation difference (letter vs the rest), a logistic regression on the
top ``k`` for k = 1, 2, ..., kept while test F1 rises by more than 0.03 (SAEBench's feature-splitting rule).
Then, on every test word the probe gets right (a probe true positive):

- *absorption fraction*: the share of the probe projection carried by up to 3 other latents aligned with the probe
  (cosine ≥ 0.1) rather than by the main latents, counted when those carry ≥ 40% of the projection;
- *full absorption*: no main latent fires, and the latent with the largest projection is aligned with the probe
  (cosine ≥ 0.025) and carries ≥ 40% of the projection.

Per letter the rates are the sums over its probe true positives divided by their count; the scores are means over
letters whose probe F1 exceeds 0.6. Differences from SAEBench: latents are ranked by mean difference instead of an
L1-regularised probe; the residual probe is one multinomial L-BFGS fit (``fit_logistic``) instead of 26 Adam-trained
one-vs-rest probes (a word is a probe positive when the argmax is its letter); each word's activation is taken once,
from its own prompt. SAEBench advises the metric for models of ≥ 1B parameters and SAEs of ≥ 16k latents.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from neuroscope.analysis.probes import fit_logistic
from neuroscope.errors import InvalidConfigError
from neuroscope.sae.bench.probing import fit_binary

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel
    from neuroscope.sae.model import SAE

LETTERS = string.ascii_lowercase
TEMPLATE = "{word} has the first letter:"
F1_JUMP, MAX_K, MIN_PROBE_F1, MIN_LETTERS = 0.03, 10, 0.6, 20
FULL_COS, FRACTION_COS, PROJ_SHARE, MAX_ABSORBERS = 0.025, 0.1, 0.4, 3
EPS = 1e-8


def vocab_words(tokenizer: Any, max_words: int | None = 3000, seed: int = 0) -> list[str]:
    """Alphabetic vocabulary tokens (one leading space allowed), as SAEBench's ``get_alpha_tokens``; sampled."""
    words = set()
    for tok in tokenizer.get_vocab():
        w = tokenizer.convert_tokens_to_string([tok])
        s = w[1:] if w.startswith(" ") else w
        if s and all(c in string.ascii_letters for c in s):
            words.add(w)
    out = sorted(words)
    if max_words is not None and len(out) > max_words:
        out = sorted(random.Random(seed).sample(out, max_words))
    return out


def first_letter(word: str) -> int:
    return LETTERS.index(word.strip()[0].lower())


def icl_prompt(word: str, examples: Sequence[str], rng: random.Random, n_examples: int = 10) -> str:
    pool = [e for e in examples if e != word]
    shots = rng.sample(pool, min(n_examples, len(pool)))
    lines = [TEMPLATE.format(word=e) + " " + e.strip()[0].upper() for e in shots]
    return "\n" + "\n".join(lines + [TEMPLATE.format(word=word)])


@dataclass
class FirstLetterData:
    """Residuals at the word token: ``x [n, d]``, letter ids ``y [n]``, for the train and test words."""

    train_words: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_words: list[str]
    test_x: torch.Tensor
    test_y: torch.Tensor
    dropped: int = 0  # words whose prompt did not end in the template's own tokens


def first_letter_data(
    model: HookedModel,
    hook: str,
    max_words: int = 3000,
    test_frac: float = 0.2,
    seed: int = 0,
    batch_size: int = 32,
    icl_examples: int = 10,
) -> FirstLetterData:
    from neuroscope.sae.bench.pooled import encode_texts, position_activations

    words = vocab_words(model.tokenizer, max_words, seed)
    rng = random.Random(seed)
    rng.shuffle(words)
    n_test = int(len(words) * test_frac)
    splits = {"train": words[n_test:], "test": words[:n_test]}
    suffix = list(model.tokenizer(TEMPLATE.format(word=""), add_special_tokens=False)["input_ids"])
    out: dict[str, tuple[list[str], torch.Tensor, torch.Tensor]] = {}
    dropped = 0
    for name, ws in splits.items():
        prompts = [icl_prompt(w, ws, rng, icl_examples) for w in ws]
        ids = encode_texts(model, prompts, ctx_len=model.cfg.n_ctx)
        keep = [i for i, x in enumerate(ids) if x[-len(suffix) :] == suffix]
        dropped += len(ws) - len(keep)
        if not keep:
            raise InvalidConfigError(
                f"No {name} word's prompt ends in the template's own tokens ({TEMPLATE!r}): the tokenizer merges "
                "across the template, or the prompts are longer than the model's context."
            )
        x = position_activations(
            model, [ids[i] for i in keep], [len(ids[i]) - 1 - len(suffix) for i in keep], hook, batch_size
        )
        kept = [ws[i] for i in keep]
        out[name] = (kept, x, torch.tensor([first_letter(w) for w in kept]))
    return FirstLetterData(*out["train"], *out["test"], dropped=dropped)


@dataclass
class LetterProbe:
    """The residual's first-letter probe: one raw-unit direction per letter, and its test F1 per letter."""

    directions: torch.Tensor  # [26, d]
    bias: torch.Tensor  # [26]
    test_f1: dict[str, float]
    test_accuracy: float

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() @ self.directions.T + self.bias).argmax(-1)


def f1(pred: torch.Tensor, truth: torch.Tensor) -> float:
    tp = float((pred & truth).sum())
    denom = float(pred.sum()) + float(truth.sum())
    return 2 * tp / denom if denom else 0.0


def fit_letter_probe(data: FirstLetterData, seed: int = 0) -> LetterProbe:
    x = data.train_x.float()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    lin = fit_logistic((x - mu) / sd, data.train_y, len(LETTERS), weight_decay=1e-4, seed=seed)
    with torch.no_grad():
        w = lin.weight / sd
        b = lin.bias - w @ mu
    probe = LetterProbe(w.detach(), b.detach(), {}, 0.0)
    pred = probe.predict(data.test_x)
    probe.test_accuracy = float((pred == data.test_y).float().mean())
    probe.test_f1 = {
        c: f1(pred == i, data.test_y == i) for i, c in enumerate(LETTERS) if bool((data.test_y == i).any())
    }
    return probe


def split_latents(
    codes_tr: torch.Tensor, y_tr: torch.Tensor, codes_te: torch.Tensor, y_te: torch.Tensor, seed: int = 0
) -> tuple[list[int], list[float]]:
    """Main latents of one letter (0/1 labels): the top-k by mean difference while F1 keeps jumping."""
    diff = codes_tr[y_tr == 1].mean(0) - codes_tr[y_tr == 0].mean(0)
    order = torch.argsort(diff, descending=True, stable=True)[:MAX_K]
    gen = torch.Generator().manual_seed(seed)
    pos, neg = torch.nonzero(y_tr == 1).squeeze(1), torch.nonzero(y_tr == 0).squeeze(1)
    neg = neg[torch.randperm(len(neg), generator=gen)[: len(pos)]]  # balanced, like class_weight="balanced"
    idx = torch.cat([pos, neg])
    best, chosen, f1s = -100.0, [], []
    for k in range(1, len(order) + 1):
        cols = order[:k]
        probe = fit_binary(codes_tr[idx][:, cols], y_tr[idx], seed=seed)
        score = f1(probe.logits(codes_te[:, cols]) > 0, y_te == 1)
        f1s.append(score)
        if score > best + F1_JUMP:
            best, chosen = score, [int(c) for c in cols]
        else:
            break
    return chosen, f1s


def word_absorption(
    x: torch.Tensor, z: torch.Tensor, direction: torch.Tensor, cos: torch.Tensor, main: Sequence[int]
) -> tuple[float, bool]:
    """SAEBench's ``FeatureAbsorptionCalculator`` for one word: (absorption fraction, full absorption)."""
    unit = direction / direction.norm()
    act_proj = float(x.float() @ unit)
    proj = z * cos
    main_t = torch.tensor(list(main), dtype=torch.long)
    main_proj = float(proj[main_t].sum())
    others = torch.ones_like(proj, dtype=torch.bool)
    others[main_t] = False
    others &= (cos >= FRACTION_COS) & (proj > 0)
    cand = proj[others]
    top = float(cand.topk(min(MAX_ABSORBERS, cand.numel())).values.sum()) if cand.numel() else 0.0
    # SAEBench divides by the probe projection; a word the probe does not project onto absorbs nothing
    if act_proj <= 0 or main_proj >= act_proj or top / act_proj < PROJ_SHARE:
        fraction = 0.0
    elif main_proj <= 0.0:
        fraction = 1.0
    else:
        absorbed = min(top, act_proj - main_proj)
        fraction = min(1.0, max(0.0, absorbed / (absorbed + main_proj)))
    first = int(proj.argmax())
    full = (
        bool((z[main_t] < EPS).all())
        and float(cos[first]) >= FULL_COS
        and act_proj > 0
        and float(proj[first]) / act_proj >= PROJ_SHARE
    )
    return fraction, full


@dataclass
class AbsorptionResult:
    mean_absorption_fraction: float
    mean_full_absorption: float
    mean_num_split_features: float
    letters: list[dict[str, Any]] = field(default_factory=list)
    n_letters_evaluated: int = 0
    enough_letters: bool = False  # SAEBench needs ≥ 20 letters with probe F1 > 0.6

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def figure(self):
        from neuroscope.analysis import figures

        return figures.bars(
            [d["letter"] for d in self.letters],
            [d["absorption_fraction"] for d in self.letters],
            title="first-letter absorption fraction per letter",
            ylabel="absorption fraction",
        )


@torch.no_grad()
def absorption(sae: SAE, data: FirstLetterData, probe: LetterProbe, seed: int = 0) -> AbsorptionResult:
    enc = lambda x: torch.cat([sae.encode(x[i : i + 2048]).float() for i in range(0, len(x), 2048)])  # noqa: E731
    z_tr, z_te = enc(data.train_x), enc(data.test_x)
    w_dec = sae.W_dec.detach().float()
    w_unit = w_dec / w_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    pred = probe.predict(data.test_x)
    rows: list[dict[str, Any]] = []
    for li, letter in enumerate(LETTERS):
        if probe.test_f1.get(letter, 0.0) <= MIN_PROBE_F1 or not bool((data.train_y == li).any()):
            continue
        main, f1s = split_latents(z_tr, (data.train_y == li).long(), z_te, (data.test_y == li).long(), seed)
        direction = probe.directions[li]
        cos = w_unit @ (direction / direction.norm())
        tps = torch.nonzero((data.test_y == li) & (pred == li)).squeeze(1)
        fr, full = 0.0, 0
        for i in tps.tolist():
            a, b = word_absorption(data.test_x[i], z_te[i], direction, cos, main)
            fr, full = fr + a, full + int(b)
        n = max(1, len(tps))
        rows.append(
            {
                "letter": letter,
                "probe_f1": probe.test_f1[letter],
                "n_probe_true_positives": len(tps),
                "split_features": main,
                "k_sparse_f1": f1s,
                "absorption_fraction": fr / n,
                "full_absorption_rate": full / n,
            }
        )
    mean = lambda key: sum(r[key] for r in rows) / len(rows) if rows else float("nan")  # noqa: E731
    return AbsorptionResult(
        mean("absorption_fraction"),
        mean("full_absorption_rate"),
        sum(len(r["split_features"]) for r in rows) / len(rows) if rows else float("nan"),
        rows,
        len(rows),
        len(rows) >= MIN_LETTERS,
    )
