"""Single-hidden-layer perceptron (SHLP), the paper's model (docs/data.md).

    z = W₂ φ(W₁ x + b₁) + b₂,    p(y = 1 | x) = σ(z),    loss = mean binary cross-entropy,

with W₁ ∈ R^{H×d}, φ = ReLU by default and H = 20, 100, 200 or 500 in the paper's figures. A
softmax/cross-entropy head (``head="softmax"``, ``n_classes`` outputs) is available too.
It is an :class:`~heatbath.models.mlp.MLP` with one hidden layer: the same parameter names
(``layers.0.weight`` = W₁, ``layers.0.bias`` = b₁, ``layers.1.weight`` = W₂, ``layers.1.bias`` =
b₂) and initialisations (``"torch"`` or ``"gaussian:<std>"``, see ``heatbath.models.mlp``).
"""

from __future__ import annotations

from .mlp import MLP

__all__ = ["SHLP"]


class SHLP(MLP):
    """Single-hidden-layer perceptron returning logits ``[n, 1]`` (sigmoid head) or ``[n, k]``.

    Args:
        d_in: input dimension (2 for the planar problems).
        hidden: H, the width of the hidden layer.
        n_classes: number of classes; the sigmoid head needs 2.
        activation, head, init, seed: as for :class:`~heatbath.models.mlp.MLP`.
    """

    def __init__(
        self,
        d_in: int = 2,
        hidden: int = 20,
        n_classes: int = 2,
        *,
        activation: str = "relu",
        head: str = "sigmoid",
        init: str = "torch",
        seed: int | None = None,
    ) -> None:
        if not isinstance(hidden, int) or isinstance(hidden, bool):
            raise ValueError(f"hidden must be an integer in [1, inf) for the SHLP, got {hidden!r}")
        super().__init__(d_in, hidden, n_classes, activation=activation, head=head, init=init,
                         seed=seed)
