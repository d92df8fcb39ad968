"""Fully connected classifier (multi-layer perceptron) and its initialisations.

    z = W_L φ(… φ(W_1 x + b_1) …) + b_L,

with activation φ between layers and a sigmoid/BCE or softmax/CE head on the logits z (see
``heatbath.models.heads``). For MNIST (docs/data.md): ``MLP(784, 500, 10)`` is
Linear(784 → 500) → ReLU → Linear(500 → 10) with cross-entropy.

Initialisation (``init``):

- ``"torch"``: PyTorch's default for ``nn.Linear``: W, b ~ U(−1/√fan_in, 1/√fan_in)
  (``kaiming_uniform_(a=√5)`` reduces to exactly this bound). With ``seed=None`` the draws come
  from the global RNG in the same order as ``nn.Linear.reset_parameters`` (weight then bias, layer
  by layer), so ``torch.manual_seed(s); MLP(...)`` equals an ``nn.Sequential`` of ``nn.Linear``
  built after ``torch.manual_seed(s)``.
- ``"gaussian:<std>"``: W, b ~ N(0, std²). The paper's captions give only the std (0.01, 0.5);
  heatbath draws the biases from the same Gaussian as the weights (the authors' initialisation
  code is not available).

With an integer ``seed`` the draws come from a private ``torch.Generator(seed)`` in the same order,
so ``MLP(..., seed=s)`` equals ``torch.manual_seed(s); MLP(...)``. Parameters are named
``layers.<i>.weight`` ``[out, in]`` and ``layers.<i>.bias`` ``[out]``; ``layers[0]`` is the
"first layer" that AdLaLa and LOL treat separately.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from heatbath._validate import check_choice, check_int, check_real

from .heads import HEADS, output_size

__all__ = ["MLP", "ACTIVATIONS", "parse_init", "init_linear_", "make_generator", "layer_sizes"]

#: activation name -> functional form (applied elementwise between layers)
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": nn.functional.gelu,
    "elu": nn.functional.elu,
    "softplus": nn.functional.softplus,
    "leaky_relu": nn.functional.leaky_relu,
}


def parse_init(init: str) -> tuple[str, float]:
    """Parse ``"torch"`` or ``"gaussian:<std>"`` into ``(kind, std)`` (std 0.0 for torch)."""
    if not isinstance(init, str):
        raise ValueError(f"init must be 'torch' or 'gaussian:<std>', got {init!r}")
    if init == "torch":
        return "torch", 0.0
    kind, _, value = init.partition(":")
    if kind != "gaussian" or not value:
        raise ValueError(f"init must be 'torch' or 'gaussian:<std>' (e.g. 'gaussian:0.01'), "
                         f"got {init!r}")
    try:
        std = float(value)
    except ValueError:
        raise ValueError(f"init: std in {init!r} is not a number") from None
    return "gaussian", check_real("init std", std, low=0.0, low_open=True)


def make_generator(seed: int | None) -> torch.Generator | None:
    """A private generator seeded with ``seed`` (>= 0), or ``None`` for the global RNG."""
    if seed is None:
        return None
    return torch.Generator().manual_seed(check_int("seed", seed, low=0))


@torch.no_grad()
def init_linear_(weight: torch.Tensor, bias: torch.Tensor, init: tuple[str, float],
                 generator: torch.Generator | None) -> None:
    """Initialise one layer in place (weight ``[out, in]`` then bias ``[out]``)."""
    kind, std = init
    if kind == "torch":
        bound = 1.0 / math.sqrt(weight.shape[-1]) if weight.shape[-1] > 0 else 0.0
        weight.uniform_(-bound, bound, generator=generator)
        bias.uniform_(-bound, bound, generator=generator)
    else:
        weight.normal_(0.0, std, generator=generator)
        bias.normal_(0.0, std, generator=generator)


def layer_sizes(d_in: int, hidden: int | Sequence[int], n_out: int) -> list[int]:
    """Validated widths ``[d_in, *hidden, n_out]``."""
    d_in = check_int("d_in", d_in, low=1)
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    if not widths:
        raise ValueError("hidden must name at least one hidden layer width")
    for w in widths:
        check_int("hidden", w, low=1)
    return [d_in, *widths, n_out]


class MLP(nn.Module):
    """Multi-layer perceptron classifier returning logits ``[n, k]``.

    Args:
        d_in: input dimension (inputs with more dimensions are flattened after the batch dim).
        hidden: width of the hidden layer, or a sequence of widths.
        n_classes: number of classes (>= 2).
        activation: one of :data:`ACTIVATIONS`.
        head: ``"softmax"`` (k = n_classes outputs, cross-entropy) or ``"sigmoid"`` (binary, one
            output, BCE).
        init: ``"torch"`` or ``"gaussian:<std>"`` (see the module docstring).
        seed: private init generator seed, or ``None`` for the global RNG.
    """

    def __init__(
        self,
        d_in: int,
        hidden: int | Sequence[int],
        n_classes: int = 10,
        *,
        activation: str = "relu",
        head: str = "softmax",
        init: str = "torch",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        n_classes = check_int("n_classes", n_classes, low=2)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self.head = check_choice("head", head, HEADS)
        self.init = init
        self.n_classes = n_classes
        self.sizes = layer_sizes(d_in, hidden, output_size(head, n_classes))
        parsed = parse_init(init)
        gen = make_generator(seed)
        # skip_init: no draw from the global RNG before our own initialisation below
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, a, b)
            for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))
        for layer in self.layers:
            init_linear_(layer.weight, layer.bias, parsed, gen)
        self._phi = ACTIVATIONS[self.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim > 2:
            x = x.flatten(1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self._phi(x)
        return x
