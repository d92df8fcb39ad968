"""Output heads: per-sample loss, predicted labels and class probabilities from logits.

Models return *logits*; the head turns them into a loss and predictions.

- ``"sigmoid"`` (binary, one output unit): p(y = 1 | x) = σ(z), loss = binary cross-entropy
  −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y·z. The authors' code applies
  ``nn.Sigmoid`` then ``nn.BCELoss``; heatbath computes the same quantity from the logit as
  softplus(z) − y·z, which is numerically stable (BCELoss instead clamps log at −100, which only
  matters for saturated outputs) and, unlike ``binary_cross_entropy_with_logits`` (whose
  log-sigmoid kernel always opens a parallel region), stays cheap for tiny minibatches.
  Predicted label: z > 0 (p > 1/2; p = 1/2 exactly gives 0, as the authors' ``np.round``
  does).
- ``"softmax"`` (k ≥ 2 outputs): p = softmax(z), loss = −log p_y (cross-entropy); predicted
  label argmax z (first index on ties).

All functions accept any leading dimensions: logits ``[..., k]``, labels ``[...]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from heatbath._validate import check_choice

__all__ = ["HEADS", "loss_per_sample", "predict", "probabilities", "output_size"]

HEADS = ("sigmoid", "softmax")


def output_size(head: str, n_classes: int) -> int:
    """Number of output units: 1 for ``"sigmoid"`` (requires 2 classes), else ``n_classes``."""
    head = check_choice("head", head, HEADS)
    if head == "sigmoid":
        if n_classes != 2:
            raise ValueError(f"head 'sigmoid' needs n_classes == 2, got {n_classes}; "
                             "use head='softmax'")
        return 1
    return n_classes


def loss_per_sample(logits: torch.Tensor, y: torch.Tensor, head: str) -> torch.Tensor:
    """Per-sample loss ``[...]`` of logits ``[..., k]`` against int64 labels ``[...]``."""
    if head == "sigmoid":
        z = logits.squeeze(-1)
        return torch.addcmul(F.softplus(z), y.to(z.dtype), z, value=-1.0)
    k = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, k), y.reshape(-1), reduction="none"
                           ).reshape(y.shape)


def predict(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Predicted int64 labels ``[...]``."""
    if head == "sigmoid":
        return (logits.squeeze(-1) > 0).to(torch.int64)
    return logits.argmax(dim=-1)


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Class probabilities ``[..., n_classes]`` (for the sigmoid head: (1 − p, p))."""
    if head == "sigmoid":
        p = torch.sigmoid(logits.squeeze(-1))
        return torch.stack((1 - p, p), dim=-1)
    return torch.softmax(logits, dim=-1)
