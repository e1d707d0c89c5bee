"""The model as a graph of components whose every input is assembled from upstream outputs, edge by edge.

Components write into the residual stream: the embeddings, each attention head (its ``z`` through its slice of
the output projection) and each MLP. Each reads it: a head through its query/key/value, an MLP through its
input, the logits through the final norm. Every (writer → reader) pair is an edge. One forward runs the
prompt as ``n_heads + 1`` batch rows: row ``h`` carries the residual head ``h`` of each layer reads, row
``n_heads`` the one the MLP reads (hooks set those rows per layer and take head ``h``'s ``z`` from row ``h``
only). So each reader can see its own input — upstream outputs for kept edges, their mean for removed ones —
and the gradient of the metric with respect to each reader's input comes out of one backward pass.

With every edge kept the rows all carry the true residual and the forward equals the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

from neuroscope.graphs.linear import block_parts, norm_scale

if TYPE_CHECKING:
    from neuroscope.models.hooked import HookedModel


@dataclass(frozen=True)
class Components:
    """Writers (``up``) and readers (``down``) of one model, and which pairs are edges."""

    n_layers: int
    n_heads: int
    parallel: bool

    @property
    def n_up(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_down(self) -> int:
        return self.n_layers * (self.n_heads + 1) + 1

    def up_head(self, l: int, h: int) -> int:
        return 1 + l * (self.n_heads + 1) + h

    def up_mlp(self, l: int) -> int:
        return 1 + l * (self.n_heads + 1) + self.n_heads

    def down_head(self, l: int, h: int) -> int:
        return l * (self.n_heads + 1) + h

    def down_mlp(self, l: int) -> int:
        return l * (self.n_heads + 1) + self.n_heads

    @property
    def down_logits(self) -> int:
        return self.n_down - 1

    def n_before(self, v: int) -> int:
        """How many writers precede reader ``v`` (writers are ordered, so its upstream is a prefix)."""
        if v == self.down_logits:
            return self.n_up
        l, slot = divmod(v, self.n_heads + 1)
        base = 1 + l * (self.n_heads + 1)
        if slot == self.n_heads and not self.parallel:
            return base + self.n_heads  # an MLP reads its own layer's heads
        return base

    def on_paths(self, mask: torch.Tensor) -> torch.Tensor:
        """The edges of ``mask`` that lie on some path embeddings → logits through ``mask``'s own edges
        (a writer and a reader of one component are the same node: reader ``v`` writes as ``v + 1``)."""
        reached_up = torch.zeros(self.n_up, dtype=torch.bool)
        reached_up[0] = True
        for v in range(self.n_down - 1):
            if bool((mask[v] & reached_up).any()):
                reached_up[v + 1] = True
        useful_down = torch.zeros(self.n_down, dtype=torch.bool)
        useful_down[self.down_logits] = True
        for v in range(self.n_down - 2, -1, -1):
            useful_down[v] = bool((mask[:, v + 1] & useful_down).any())
        return mask & reached_up[None, :] & useful_down[:, None]

    def edge_mask(self) -> torch.Tensor:
        """``[n_down, n_up]`` True where (writer → reader) is an edge."""
        m = torch.zeros(self.n_down, self.n_up, dtype=torch.bool)
        for v in range(self.n_down):
            m[v, : self.n_before(v)] = True
        return m

    def up_name(self, u: int) -> str:
        if u == 0:
            return "embed"
        l, slot = divmod(u - 1, self.n_heads + 1)
        return f"MLP{l}" if slot == self.n_heads else f"L{l}H{slot}"

    def down_name(self, v: int) -> str:
        if v == self.down_logits:
            return "logits"
        l, slot = divmod(v, self.n_heads + 1)
        return f"MLP{l}" if slot == self.n_heads else f"L{l}H{slot}"


def components(model: HookedModel) -> Components:
    return Components(model.cfg.n_layers, model.cfg.n_heads, model.cfg.parallel_attn_mlp)


@dataclass
class Pass:
    metric: torch.Tensor  # scalar
    outs: torch.Tensor  # [n_up, pos, d_model] writer outputs
    inputs: list[torch.Tensor]  # reader inputs in reader order (with graph when grads were asked for)


class Assembler:
    """Runs a model component by component (see the module docstring)."""

    def __init__(self, model: HookedModel):
        self.model = model
        self.c = components(model)
        self.parts = [block_parts(model, l) for l in range(model.cfg.n_layers)]
        self.b_O = [model.b_O(l) for l in range(model.cfg.n_layers)]

    def run(
        self,
        tokens: torch.Tensor,
        answer: int,
        wrong: int,
        mask: torch.Tensor | None = None,
        means: torch.Tensor | None = None,
        embed: torch.Tensor | None = None,
        deltas: dict[int, torch.Tensor] | None = None,
        grad: bool = False,
    ) -> Pass:
        """One assembled forward of ``tokens [pos]``. ``mask [n_down, n_up]`` (None: every edge) says which
        edges carry the writer's output; the others carry ``means [n_up, pos, d]``. ``embed`` replaces the
        token embeddings (integrated gradients interpolate them); ``deltas`` adds a tensor to a reader's
        input. The metric is ``logit[answer] - logit[wrong]`` at the last position. ``inputs`` come back in
        reader order: per layer ``[n_heads, pos, d]`` then the MLP's ``[pos, d]``, then the logits'."""
        model, c = self.model, self.c
        H = c.n_heads
        outs: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        deltas = deltas or {}
        consts: list[torch.Tensor] = []  # output biases added to the stream (b_O), always kept
        mean_cum = None if means is None else means.cumsum(0)

        def assemble(vs: list[int]) -> torch.Tensor:
            """Inputs of readers ``vs`` (all with the same upstream), one row each."""
            k = c.n_before(vs[0])
            stack = torch.stack(outs[:k])
            if mask is None:
                x = stack.sum(0)[None].repeat(len(vs), 1, 1)
            else:
                assert means is not None and mean_cum is not None
                m = mask[vs, :k].to(stack.dtype)
                x = mean_cum[k - 1] + torch.einsum("vu,upd->vpd", m, stack - means[:k])
            n_c = self._n_consts(vs[0])
            if n_c:
                x = x + torch.stack(consts[:n_c]).sum(0)
            for i, v in enumerate(vs):
                if v in deltas:
                    x = (
                        x
                        + torch.nn.functional.one_hot(torch.tensor(i), len(vs)).to(x.dtype)[:, None, None]
                        * deltas[v]
                    )
            if torch.is_grad_enabled() and not x.requires_grad:
                x.requires_grad_(True)  # nothing upstream needs grad (the first layer): make it a leaf
            return x

        def resid_pre(t: torch.Tensor, hook: Any) -> torch.Tensor:
            l = hook.layer
            if l == 0:
                outs.append(embed.to(t.dtype) if embed is not None else t[0])
            xs = assemble([c.down_head(l, h) for h in range(H)])
            inputs.append(xs)
            if c.parallel:
                mlp_in = assemble([c.down_mlp(l)])
                inputs.append(mlp_in)  # the tensor the forward uses (a row view of it would not be)
            else:
                mlp_in = xs[:1].detach()
            return torch.cat([xs, mlp_in])

        def z_hook(t: torch.Tensor, hook: Any) -> None:
            l = hook.layer
            z = t[torch.arange(H), :, torch.arange(H)].transpose(0, 1)  # [pos, H, d_head]: head h, row h
            outs.extend(self._head_outputs(l, z).unbind(0))
            # Gemma 2/3 norm the attention output: the bias is inside the norm, not added after it
            post = "attn_post" in self.parts[l].norms
            consts.append(torch.zeros_like(self.b_O[l]) if post else self.b_O[l])

        def resid_mid(t: torch.Tensor, hook: Any) -> torch.Tensor:
            x = assemble([c.down_mlp(hook.layer)])
            inputs.append(x)
            return torch.cat([t[:H], x])

        def mlp_out(t: torch.Tensor, hook: Any) -> None:
            outs.append(t[H])

        n = model.cfg.n_layers
        hooks: list[tuple[str, Any]] = []
        for l in range(n):
            hooks.append((f"blocks.{l}.hook_resid_pre", resid_pre))
            hooks.append((f"blocks.{l}.attn.hook_z", z_hook))
            if not c.parallel:
                hooks.append((f"blocks.{l}.hook_resid_mid", resid_mid))
            hooks.append((f"blocks.{l}.hook_mlp_out", mlp_out))
        with torch.set_grad_enabled(grad):
            model.run_with_cache(tokens[None].expand(H + 1, -1), names=[], fwd_hooks=hooks, stop_at_layer=n)
            final = assemble([c.down_logits])
            inputs.append(final)
            logits = model.unembed(model.apply_ln_final(final[0, -1:]), tokens=(answer, wrong))
            metric = logits[0, 0] - logits[0, 1]
        return Pass(metric, torch.stack(outs), inputs)

    def outputs(self, tokens: torch.Tensor, answer: int, wrong: int) -> Pass:
        """Every writer's output in the plain model (one row; equal to :meth:`run` with every edge kept)."""
        model, c = self.model, self.c
        H = c.n_heads
        outs: list[torch.Tensor] = []

        def resid_pre(t: torch.Tensor, hook: Any) -> None:
            if hook.layer == 0:
                outs.append(t[0])

        def z_hook(t: torch.Tensor, hook: Any) -> None:
            outs.extend(self._head_outputs(hook.layer, t[0]).unbind(0))

        def mlp_out(t: torch.Tensor, hook: Any) -> None:
            outs.append(t[0])

        n = model.cfg.n_layers
        hooks: list[tuple[str, Any]] = [("blocks.0.hook_resid_pre", resid_pre)]
        for l in range(n):
            hooks += [(f"blocks.{l}.attn.hook_z", z_hook), (f"blocks.{l}.hook_mlp_out", mlp_out)]
        with torch.no_grad():
            _, cache = model.run_with_cache(
                tokens[None], names=[model.final_resid_name], fwd_hooks=hooks, stop_at_layer=n
            )
            final = cache[model.final_resid_name][0]
            logits = model.unembed(model.apply_ln_final(final[-1:]), tokens=(answer, wrong))
        del H
        return Pass(logits[0, 0] - logits[0, 1], torch.stack(outs), [])

    def _head_outputs(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """``[head, pos, d]``: each head's share of the attention output from ``z [pos, head, d_head]``."""
        parts = self.parts[l]
        y = torch.einsum("phe,hed->hpd", z, parts.W_O.to(z.dtype))
        if "attn_post" in parts.norms:  # Gemma 2/3: the post-norm's scale is the whole output's
            mod = parts.norms["attn_post"]
            kind = self.model.cfg.normalization
            s = norm_scale(mod, y.sum(0) + self.b_O[l], kind)
            w = cast(torch.Tensor, mod.weight)
            y = y * s * (w + 1.0 if kind == "rms_plus_one" else w)
        return y

    def input_grads(
        self, tokens: torch.Tensor, answer: int, wrong: int, embed: torch.Tensor | None = None
    ) -> tuple[float, torch.Tensor]:
        """(metric, ``[n_down, pos, d]`` gradients of the metric with respect to every reader's input) in the
        plain model, from one row: a backward to every layer's ``z``, MLP output and residual, then per layer
        the vector-Jacobian products of each head's ``z`` (only) and of the MLP's output with respect to the
        residual they read. Equals :meth:`reader_grads` of a :meth:`run` with every edge kept, at the cost of
        one forward and backward instead of ``n_heads + 1`` rows."""
        model, c = self.model, self.c
        H, n = c.n_heads, model.cfg.n_layers
        keep: dict[str, torch.Tensor] = {}

        def save(name: str):
            # returned as a new tensor so that the model continues from it: gradients then reach it
            def fn(t: torch.Tensor, hook: Any) -> torch.Tensor:
                keep[f"{name}{hook.layer}"] = t.clone()
                return keep[f"{name}{hook.layer}"]

            return fn

        def start(t: torch.Tensor, hook: Any) -> torch.Tensor:
            x = (embed.to(t.dtype)[None] if embed is not None else t).detach().requires_grad_(True)
            keep["pre0"] = x
            return x

        hooks: list[tuple[str, Any]] = [("blocks.0.hook_resid_pre", start)]
        for l in range(n):
            if l:
                hooks.append((f"blocks.{l}.hook_resid_pre", save("pre")))
            hooks.append((f"blocks.{l}.attn.hook_z", save("z")))
            if not c.parallel:
                hooks.append((f"blocks.{l}.hook_resid_mid", save("mid")))
            hooks.append((f"blocks.{l}.hook_mlp_out", save("mlp")))
        with torch.enable_grad():
            _, cache = model.run_with_cache(
                tokens[None], names=[model.final_resid_name], fwd_hooks=hooks, stop_at_layer=n, detach=False
            )
            final = cache[model.final_resid_name]
            logits = model.unembed(model.apply_ln_final(final[:, -1:]), tokens=(answer, wrong))
            metric = logits[0, 0, 0] - logits[0, 0, 1]
            zs = [keep[f"z{l}"] for l in range(n)]
            mlps = [keep[f"mlp{l}"] for l in range(n)]
            g_all = torch.autograd.grad(metric, [*zs, *mlps, final], retain_graph=True)
            g_z, g_mlp, g_final = g_all[:n], g_all[n : 2 * n], g_all[-1]
            rows: list[torch.Tensor] = []
            eye = torch.eye(H, dtype=g_z[0].dtype)
            for l in range(n):
                pre = keep[f"pre{l}"]
                cot = g_z[l][None] * eye[:, None, None, :, None]  # [H, 1, pos, H, d_head]: head h only
                (gh,) = torch.autograd.grad(
                    zs[l], pre, grad_outputs=cot, retain_graph=True, is_grads_batched=True
                )
                rows.append(gh[:, 0])
                mlp_in = pre if c.parallel else keep[f"mid{l}"]
                (gm,) = torch.autograd.grad(mlps[l], mlp_in, grad_outputs=g_mlp[l], retain_graph=True)
                rows.append(gm)
            rows.append(g_final)
        return float(metric.detach()), torch.cat(rows).detach()

    def reader_grads(self, p: Pass) -> torch.Tensor:
        """``[n_down, pos, d]``: the metric's gradient with respect to every reader's input."""
        grads = torch.autograd.grad(p.metric, p.inputs, allow_unused=True)
        rows = []
        for g, x in zip(grads, p.inputs, strict=True):
            g = torch.zeros_like(x) if g is None else g
            rows.append(g if g.ndim == 3 else g[None])
        return torch.cat(rows)

    def _n_consts(self, v: int) -> int:
        """How many layers' output biases the stream holds when reader ``v`` reads it."""
        c = self.c
        if v == c.down_logits:
            return c.n_layers
        l, slot = divmod(v, c.n_heads + 1)
        return l + (1 if slot == c.n_heads and not c.parallel else 0)
