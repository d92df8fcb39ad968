r"""Reversible stacks and reversible backpropagation (activation memory O(1) in depth).

A :class:`ReversibleSequential` composes blocks :math:`\phi_{K-1}\circ\dots\circ\phi_0`, each with
an exact inverse. With ``memory="reversible"`` (default) training uses a custom
``torch.autograd.Function`` (RevNet, Gomez et al. 2017; Chang et al. 2018):

* forward: run all blocks under ``no_grad`` and save **only the output** :math:`x_K`;
* backward, for :math:`k = K-1, \dots, 0`: reconstruct :math:`x_k = \phi_k^{-1}(x_{k+1})` with the
  exact inverse, recompute :math:`\phi_k(x_k)` with grad enabled and backpropagate
  :math:`\bar x_k = (\partial\phi_k/\partial x)^\top\bar x_{k+1}`,
  :math:`\bar\theta_k \mathrel{+}= (\partial\phi_k/\partial\theta)^\top\bar x_{k+1}`.

Cost (derived): saved activations are one state plus one block's intermediates, independent of
K; compute is at least one extra forward per block plus the inverse (4 passes instead of 3,
+33 %, is the lower bound; ``benchmarks/memory.py`` measures 1.4–3x). Peak memory falls less
than the saved activations do: it also holds parameter gradients, the input and one block's
intermediates (docs/structure-preserving.md, section "Reversible backprop").

Fallbacks, for when reconstruction error matters (it grows with depth, faster through
expansive blocks and two-step inverses):

* ``reconstruct_dtype=torch.float64``: the no-grad forward sweep and the inverse sweep run in
  float64 (the stored state is float64), the gradient recomputation in the input's dtype;
* ``checkpoint_every=n``: the exact input of every n-th block is also stored (memory K/n states)
  and replaces the reconstructed one, so errors only accumulate over n blocks;
* ``memory="store"``: plain autograd through the blocks (memory linear in K).

Structure rules: every block must be reversible (have ``inverse``), must
contain no BatchNorm/dropout, and must not change the state's shape; violations raise
``ValueError`` naming the block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import check_choice, check_int
from ._common import check_unit_modules

__all__ = ["ReversibleSequential", "saved_activation_bytes"]


class ReversibleSequential(nn.Module):
    """A stack of reversible blocks trained with reversible backprop (see the module docstring).

    Args:
        blocks: reversible modules (``inverse`` method, shape-preserving). The same module may
            appear several times (weight tying).
        memory: ``"reversible"`` (default) or ``"store"`` (plain autograd).
        reconstruct_dtype: dtype of the no-grad forward/inverse sweeps (default: the input's).
        checkpoint_every: store the exact input of every n-th block (default: none).
    """

    def __init__(self, blocks: Iterable[nn.Module], *, memory: str = "reversible",
                 reconstruct_dtype: torch.dtype | None = None,
                 checkpoint_every: int | None = None) -> None:
        super().__init__()
        blocks = list(blocks)
        if not blocks:
            raise ValueError("blocks must contain at least one block")
        for i, blk in enumerate(blocks):
            name = f"blocks[{i}] ({type(blk).__name__})"
            if not isinstance(blk, nn.Module):
                raise ValueError(f"{name} is not an nn.Module")
            if not getattr(blk, "reversible", False) or not callable(getattr(blk, "inverse",
                                                                             None)):
                raise ValueError(f"{name} is not a reversible block (it needs an exact "
                                 f"`inverse`); only reversible blocks may sit inside a "
                                 f"reversible unit, put others between units")
            check_unit_modules(blk, name)
        self.blocks = nn.ModuleList(blocks)
        self.memory = check_choice("memory", memory, ("reversible", "store"))
        if reconstruct_dtype is not None and not reconstruct_dtype.is_floating_point:
            raise ValueError(f"reconstruct_dtype must be a floating dtype, got {reconstruct_dtype}")
        self.reconstruct_dtype = reconstruct_dtype
        self.checkpoint_every = (None if checkpoint_every is None
                                 else check_int("checkpoint_every", checkpoint_every, low=1))

    def _apply_block(self, i: int, x: Tensor) -> Tensor:
        y = self.blocks[i](x)
        if y.shape != x.shape:
            raise ValueError(f"blocks[{i}] ({type(self.blocks[i]).__name__}) changes the state's "
                             f"shape {tuple(x.shape)} -> {tuple(y.shape)} inside a reversible "
                             f"unit; downsampling is only allowed between units")
        return y

    def forward(self, x: Tensor) -> Tensor:
        if self.memory == "store" or not torch.is_grad_enabled():
            for i in range(len(self.blocks)):
                x = self._apply_block(i, x)
            return x
        params = _unique_params(self.blocks)
        return _ReversibleFunction.apply(x, self, len(params), *params)

    def inverse(self, y: Tensor) -> Tensor:
        """Exact inverse of the whole stack."""
        for blk in reversed(self.blocks):
            y = blk.inverse(y)
        return y

    def trajectory(self, x: Tensor) -> list[Tensor]:
        """States x_0, ..., x_K (no memory saving; for plots)."""
        out = [x]
        for i in range(len(self.blocks)):
            x = self._apply_block(i, x)
            out.append(x)
        return out


def _unique_params(blocks: Sequence[nn.Module]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for blk in blocks:
        for p in blk.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, stack: ReversibleSequential, n_params: int,
                *params: Tensor) -> Tensor:
        dtype = stack.reconstruct_dtype or x.dtype
        every = stack.checkpoint_every
        ckpt_index: list[int] = []
        ckpts: list[Tensor] = []
        with torch.no_grad():
            y = x.detach().to(dtype)
            for i in range(len(stack.blocks)):
                if every is not None and i % every == 0:
                    ckpt_index.append(i)
                    ckpts.append(y.clone() if i == 0 else y)
                y = stack._apply_block(i, y)
        out = y.to(x.dtype)
        if out.data_ptr() == y.data_ptr():
            ctx.save_for_backward(out, *ckpts)
            ctx.out_is_state = True
        else:
            ctx.save_for_backward(y, *ckpts)
            ctx.out_is_state = False
        ctx.stack = stack
        ctx.ckpt_index = ckpt_index
        ctx.in_dtype = x.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        y = saved[0].detach()
        ckpt = dict(zip(ctx.ckpt_index, saved[1:], strict=True))
        stack: ReversibleSequential = ctx.stack
        params = _unique_params(stack.blocks)
        index = {id(p): j for j, p in enumerate(params)}
        grads: list[Tensor | None] = [None] * len(params)
        g = grad_out
        for i in reversed(range(len(stack.blocks))):
            blk = stack.blocks[i]
            with torch.no_grad():
                x_i = ckpt[i].detach() if i in ckpt else blk.inverse(y)
            with torch.enable_grad():
                xi = x_i.to(ctx.in_dtype).detach().requires_grad_(True)
                out = blk(xi)
                bps = [p for p in blk.parameters() if p.requires_grad]
                res = torch.autograd.grad(out, (xi, *bps), g, allow_unused=True)
            g = res[0]
            for p, gp in zip(bps, res[1:], strict=True):
                if gp is None:
                    continue
                j = index[id(p)]
                grads[j] = gp if grads[j] is None else grads[j] + gp
            y = x_i
        return (g, None, None, *grads)


def saved_activation_bytes(fn: Callable[[], Tensor],
                           exclude: Iterable[Tensor] = ()) -> tuple[int, int]:
    """Run ``fn()`` and measure what autograd saves for backward.

    Uses ``torch.autograd.graph.saved_tensors_hooks``: every tensor packed for backward is
    recorded; storages are deduplicated and those of ``exclude`` (pass the model's parameters)
    are dropped, so the result counts activations only. Returns (number of distinct storages,
    bytes).
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in skip:
            seen[ptr] = max(seen.get(ptr, 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return len(seen), sum(seen.values())
