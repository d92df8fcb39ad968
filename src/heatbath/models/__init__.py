"""Models for heatbath's experiments (docs/data.md, section 'Models and protocol').

- :class:`SHLP` — single-hidden-layer perceptron (the paper's model), sigmoid/BCE or softmax/CE.
- :class:`MLP` — plain fully connected classifier (e.g. MNIST: ``MLP(784, 500, 10)``).
- :class:`EnsembleSHLP`, :class:`EnsembleMLP` — R independent replicas as one module with
  parameters ``[R, ...]`` and batched :class:`EnsembleLinear` layers; replica r is initialised
  exactly as the single model with ``seed=seeds[r]``.
- ``heads``: :func:`loss_per_sample`, :func:`predict`, :func:`probabilities` for logits.

Models return logits; ``model.head`` says how to read them.
"""

from .ensemble import EnsembleLinear, EnsembleMLP, EnsembleSHLP, as_ensemble
from .heads import HEADS, loss_per_sample, predict, probabilities
from .mlp import ACTIVATIONS, MLP
from .shlp import SHLP

__all__ = [
    "ACTIVATIONS",
    "HEADS",
    "EnsembleLinear",
    "EnsembleMLP",
    "EnsembleSHLP",
    "MLP",
    "SHLP",
    "as_ensemble",
    "loss_per_sample",
    "predict",
    "probabilities",
]
