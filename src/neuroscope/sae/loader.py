"""A streaming, shuffled, re-iterable view of recorded activations for the training loop."""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, IterableDataset

from neuroscope.record.reader import ActivationStore


def _placement(rank: int | None, world: int | None) -> tuple[int, int]:
    """``(rank, world)``: as given, else from ``torch.distributed``, else ``(0, 1)``."""
    if world is not None:
        return rank or 0, world
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ActivationStream(IterableDataset):
    """Yields ``[batch_size, d]`` float32 batches, special tokens dropped (and, with ``max_norm``, rows whose
    raw norm exceeds it, so a batch can be a few rows short). Each pass over the store uses a
    new shuffle seed (``seed + pass``), so epochs see different orders; memory is bounded by the reader's
    shuffle buffer, whatever the store's size.

    Under data-parallel training (``world`` processes; by default read from ``torch.distributed`` when it
    is initialised) each rank streams only its own contiguous share of the store
    (:meth:`ActivationStore.partition`), so every token is seen by exactly one rank per epoch, and every
    rank yields the same number of batches (:meth:`batches_per_pass`), which keeps their collectives in
    step. As with one process's ``drop_last``, the rows past a share's last whole batch (fewer than a batch
    plus one per rank) sit out that epoch; the next epoch's shuffle leaves out others."""

    def __init__(
        self,
        store: ActivationStore | str | os.PathLike,
        batch_size: int,
        hook: str | None = None,
        seed: int = 0,
        shuffle_buffer: int = 65_536,
        scale: float = 1.0,
        max_norm: float | None = None,
        rank: int | None = None,
        world: int | None = None,
    ):
        self.rank, self.world = rank, world
        self.store = store if isinstance(store, ActivationStore) else ActivationStore(store)
        self.hook = self.store.hook(hook)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.scale = scale
        self.max_norm = max_norm
        self.passes = 0

    def placement(self) -> tuple[int, int]:
        return _placement(self.rank, self.world)

    def batches_per_pass(self, world: int | None = None) -> int | None:
        """Batches each rank yields per pass when ``world`` > 1 (None: one process, every whole batch)."""
        world = world if world is not None else self.placement()[1]
        if world <= 1:
            return None
        return (self.n_usable_tokens() // world) // self.batch_size

    def __iter__(self):
        seed = self.seed + self.passes
        self.passes += 1
        rank, world = self.placement()
        limit = self.batches_per_pass(world)
        batches = self.store.iter_batches(
            self.batch_size,
            self.hook,
            shuffle=True,
            seed=seed,
            buffer_tokens=self.shuffle_buffer,
            drop_last=True,
            part=(rank, world) if world > 1 else None,
        )
        for i, b in enumerate(batches):
            if limit is not None and i >= limit:
                break
            x = b.acts
            if self.max_norm is not None:
                x = x[x.float().norm(dim=-1) <= self.max_norm]
            yield x * self.scale if self.scale != 1.0 else x

    def n_usable_tokens(self) -> int:
        """Tokens per pass after dropping special tokens (the store's count)."""
        return self.store.n_usable_tokens

    def loader(self) -> DataLoader:
        return DataLoader(self, batch_size=None, num_workers=0)


def sample_activations(
    store: ActivationStore, n: int, hook: str | None = None, seed: int = 0
) -> torch.Tensor:
    return store.sample(n, hook=hook, seed=seed).float()


def outlier_norm(sample: torch.Tensor, factor: float | None) -> float | None:
    """The norm above which a token counts as a massive-activation outlier: ``factor`` × the median norm.

    Middle layers of Llama-family models carry a handful of non-special tokens (the first token after BOS,
    some newlines) whose residual norm is ~100× a typical token's; at smollm2-135m layer 15 they are ~0.2%
    of tokens but ~98% of the variance, so they would dominate both training and FVU."""
    if factor is None:
        return None
    return float(factor * sample.float().norm(dim=-1).median())


class TensorStream(IterableDataset):
    """:class:`ActivationStream`'s contract over an in-memory ``[n_tokens, d]`` tensor: shuffled
    ``batch_size`` batches (a new permutation per pass, ``seed + pass``), whole batches only, rows above
    ``max_norm`` dropped, scaled by ``scale``; under data parallelism each rank takes a contiguous share of
    each pass's permutation and all ranks yield the same number of batches."""

    def __init__(
        self,
        x: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        scale: float = 1.0,
        max_norm: float | None = None,
        rank: int | None = None,
        world: int | None = None,
    ):
        self.x = x
        self.batch_size = batch_size
        self.seed = seed
        self.scale = scale
        self.max_norm = max_norm
        self.rank, self.world = rank, world
        self.passes = 0

    def placement(self) -> tuple[int, int]:
        return _placement(self.rank, self.world)

    def n_usable_tokens(self) -> int:
        return int(self.x.shape[0])

    def batches_per_pass(self, world: int | None = None) -> int | None:
        world = world if world is not None else self.placement()[1]
        if world <= 1:
            return None
        return (self.n_usable_tokens() // world) // self.batch_size

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.passes)
        self.passes += 1
        rank, world = self.placement()
        perm = torch.randperm(self.n_usable_tokens(), generator=gen)
        share = self.n_usable_tokens() // world
        perm = perm[rank * share : (rank + 1) * share]
        for i in range(len(perm) // self.batch_size):
            x = self.x[perm[i * self.batch_size : (i + 1) * self.batch_size]].float()
            if self.max_norm is not None:
                x = x[x.norm(dim=-1) <= self.max_norm]
            yield x * self.scale if self.scale != 1.0 else x

    def loader(self) -> DataLoader:
        return DataLoader(self, batch_size=None, num_workers=0)
