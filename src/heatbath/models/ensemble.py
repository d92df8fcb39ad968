"""Ensembles: R independent replicas of a model as one module with batched layers.

Replica r of an ensemble layer holds its own W_r ∈ R^{out×in}, b_r ∈ R^{out}; the layer computes,
for all replicas at once,

    y_r = x_r W_rᵀ + b_r,    r = 1 … R,

as one ``torch.baddbmm`` over stacked parameters ``weight [R, out, in]``, ``bias [R, out]``
(``x`` is ``[R, n, in]`` — each replica its own minibatch — or ``[n, in]`` shared by all
replicas, e.g. the full evaluation set). Replicas never mix: the loss of the ensemble is the sum
of the replicas' losses, so each replica's gradient is exactly its own.

Each layer is a separate submodule (``layers.<i>``), and parameter names equal the single
model's (``layers.0.weight`` …) with a leading replica dimension, so optimizers that treat the
first layer differently (AdLaLa, LOL) find it the same way, and a replica's slice can be copied
into a single model (:meth:`EnsembleMLP.replica`).

Initialisation: replica r is initialised exactly as the single model with ``seed = seeds[r]``
(same generator, same draw order), so replica r starts bit-identical to ``MLP(..., seed=seeds[r])``.
``torch.func.vmap`` was measured to be far slower for such small layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from heatbath._validate import check_choice, check_int

from .heads import HEADS, output_size
from .mlp import ACTIVATIONS, MLP, init_linear_, layer_sizes, make_generator, parse_init
from .shlp import SHLP

__all__ = ["EnsembleLinear", "EnsembleMLP", "EnsembleSHLP", "as_ensemble"]


class EnsembleLinear(nn.Module):
    """R independent affine layers ``y_r = x_r W_rᵀ + b_r`` computed with one ``baddbmm``.

    Parameters: ``weight [R, out, in]``, ``bias [R, out]`` (uninitialised; see
    :class:`EnsembleMLP` for the initialisation).
    """

    def __init__(self, replicas: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.replicas = check_int("replicas", replicas, low=1)
        self.in_features = check_int("in_features", in_features, low=1)
        self.out_features = check_int("out_features", out_features, low=1)
        self.weight = nn.Parameter(torch.empty(replicas, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(replicas, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[R, n, in]`` (per replica) or ``[n, in]`` (shared); returns ``[R, n, out]``."""
        if x.ndim == 2:
            x = x.unsqueeze(0).expand(self.replicas, -1, -1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def extra_repr(self) -> str:
        return f"replicas={self.replicas}, in_features={self.in_features}, " \
               f"out_features={self.out_features}"


class EnsembleMLP(nn.Module):
    """R replicas of :class:`~heatbath.models.mlp.MLP`, returning logits ``[R, n, k]``.

    Args:
        d_in, hidden, n_classes, activation, head, init: as for ``MLP``.
        seeds: one init seed (>= 0) per replica; R = ``len(seeds)``.
    """

    single_cls: type[MLP] = MLP

    def __init__(
        self,
        d_in: int,
        hidden: int | Sequence[int],
        n_classes: int = 10,
        *,
        activation: str = "relu",
        head: str = "softmax",
        init: str = "torch",
        seeds: Sequence[int],
    ) -> None:
        super().__init__()
        seeds = [check_int("seeds[]", s, low=0) for s in seeds]
        if not seeds:
            raise ValueError("seeds must hold at least one seed")
        self.seeds = tuple(seeds)
        self.replicas = len(seeds)
        self.n_classes = check_int("n_classes", n_classes, low=2)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self.head = check_choice("head", head, HEADS)
        self.init = init
        self.hidden = hidden
        self.sizes = layer_sizes(d_in, hidden, output_size(head, n_classes))
        parsed = parse_init(init)
        self.layers = nn.ModuleList(
            EnsembleLinear(self.replicas, a, b)
            for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))
        # replica r: the single model's draws from Generator(seeds[r]), in the same order
        for r, seed in enumerate(self.seeds):
            gen = make_generator(seed)
            for layer in self.layers:
                init_linear_(layer.weight.data[r], layer.bias.data[r], parsed, gen)
        self._phi = ACTIVATIONS[self.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[R, n, d]`` or ``[n, d]`` (shared by all replicas); returns ``[R, n, k]``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self._phi(x)
        return x

    def _single_kwargs(self) -> dict[str, object]:
        return {"activation": self.activation, "head": self.head, "init": self.init}

    def replica(self, r: int) -> MLP:
        """A standalone single model holding a copy of replica ``r``'s parameters."""
        r = check_int("r", r, low=0, high=self.replicas - 1)
        single = self.single_cls(self.sizes[0], self.hidden, self.n_classes,
                                 **self._single_kwargs(), seed=0)  # type: ignore[arg-type]
        with torch.no_grad():
            for name, p in single.named_parameters():
                p.copy_(self.get_parameter(name)[r])
        return single


class EnsembleSHLP(EnsembleMLP):
    """R replicas of :class:`~heatbath.models.shlp.SHLP` (defaults d_in=2, H=20, sigmoid head)."""

    single_cls = SHLP

    def __init__(
        self,
        d_in: int = 2,
        hidden: int = 20,
        n_classes: int = 2,
        *,
        activation: str = "relu",
        head: str = "sigmoid",
        init: str = "torch",
        seeds: Sequence[int],
    ) -> None:
        if not isinstance(hidden, int) or isinstance(hidden, bool):
            raise ValueError(f"hidden must be an integer in [1, inf) for the SHLP, got {hidden!r}")
        super().__init__(d_in, hidden, n_classes, activation=activation, head=head, init=init,
                         seeds=seeds)


def as_ensemble(models: Sequence[MLP]) -> EnsembleMLP:
    """Stack single models of the same architecture into an ensemble (parameters copied)."""
    if not models:
        raise ValueError("models must hold at least one model")
    first = models[0]
    for m in models:
        if type(m) is not type(first) or m.sizes != first.sizes or m.head != first.head \
                or m.activation != first.activation:
            raise ValueError("models must share class, layer sizes, head and activation")
    hidden: int | list[int] = first.sizes[1] if isinstance(first, SHLP) else first.sizes[1:-1]
    cls = EnsembleSHLP if isinstance(first, SHLP) else EnsembleMLP
    ens = cls(first.sizes[0], hidden, first.n_classes,  # type: ignore[arg-type]
              activation=first.activation, head=first.head, init=first.init,
              seeds=[0] * len(models))
    with torch.no_grad():
        for name, p in ens.named_parameters():
            p.copy_(torch.stack([m.get_parameter(name) for m in models]))
    return ens
