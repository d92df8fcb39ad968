"""What to train: a model specification and an optimizer specification.

Both are small frozen dataclasses of plain values, so they can be written into a run's config,
stored in a checkpoint and compared on resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from heatbath._validate import check_choice, check_int
from heatbath.data import STREAM_OPTIMIZER, derive_seed
from heatbath.models import MLP, SHLP, EnsembleMLP, EnsembleSHLP
from heatbath.models.heads import HEADS
from heatbath.models.mlp import ACTIVATIONS, parse_init
from heatbath.optim import build_optimizer

__all__ = ["ModelSpec", "OptimSpec", "MODEL_NAMES", "optimizer_seed"]

MODEL_NAMES = ("shlp", "mlp")


@dataclass(frozen=True)
class ModelSpec:
    """A classifier architecture (docs/data.md, section 'Models and protocol').

    Attributes:
        name: ``"shlp"`` (one hidden layer of width ``hidden``) or ``"mlp"`` (``hidden`` an int or
            a sequence of widths).
        hidden: hidden width(s).
        activation: a name in :data:`heatbath.models.ACTIVATIONS`.
        head: ``"sigmoid"`` or ``"softmax"``; ``None`` picks sigmoid for 2 classes, else softmax.
        init: ``"torch"`` or ``"gaussian:<std>"``.
    """

    name: str = "shlp"
    hidden: int | tuple[int, ...] = 20
    activation: str = "relu"
    head: str | None = None
    init: str = "torch"

    def __post_init__(self) -> None:
        check_choice("model", self.name, MODEL_NAMES)
        if isinstance(self.hidden, Sequence) and not isinstance(self.hidden, str):
            object.__setattr__(self, "hidden", tuple(self.hidden))
            if self.name == "shlp":
                raise ValueError("hidden must be one integer for the shlp model")
            if not self.hidden:
                raise ValueError("hidden must name at least one width")
            for w in self.hidden:
                check_int("hidden", w, low=1)
        else:
            check_int("hidden", self.hidden, low=1)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        if self.head is not None:
            check_choice("head", self.head, HEADS)
        parse_init(self.init)

    def head_for(self, n_classes: int) -> str:
        """The head actually used for ``n_classes`` classes."""
        if self.head is not None:
            return self.head
        return "sigmoid" if n_classes == 2 else "softmax"

    def _kw(self, n_classes: int) -> dict[str, Any]:
        return {"activation": self.activation, "head": self.head_for(n_classes),
                "init": self.init}

    def build(self, d_in: int, n_classes: int, seed: int | None = None) -> MLP:
        """One model, initialised from ``seed`` (``None``: the global RNG)."""
        if self.name == "shlp":
            return SHLP(d_in, self.hidden, n_classes, **self._kw(n_classes),  # type: ignore[arg-type]
                        seed=seed)
        return MLP(d_in, self.hidden, n_classes, **self._kw(n_classes), seed=seed)

    def build_ensemble(self, d_in: int, n_classes: int, seeds: Sequence[int]) -> EnsembleMLP:
        """R = ``len(seeds)`` replicas; replica r equals ``build(d_in, n_classes, seeds[r])``."""
        if self.name == "shlp":
            return EnsembleSHLP(d_in, self.hidden, n_classes,  # type: ignore[arg-type]
                                **self._kw(n_classes), seeds=seeds)
        return EnsembleMLP(d_in, self.hidden, n_classes, **self._kw(n_classes), seeds=seeds)

    def to_dict(self) -> dict[str, Any]:
        hidden = list(self.hidden) if isinstance(self.hidden, tuple) else self.hidden
        return {"name": self.name, "hidden": hidden, "activation": self.activation,
                "head": self.head, "init": self.init}


def optimizer_seed(seeds: Sequence[int]) -> int:
    """Seed of the optimizer's noise for a run (one seed) or an ensemble (several).

    One run with seed s: ``derive_seed(s, STREAM_OPTIMIZER)``. An ensemble draws all replicas'
    noise from one optimizer generator (one ``[R, N]`` block per step, independent across
    replicas), seeded by hashing the whole seed list with the same stream id.
    """
    if len(seeds) == 1:
        return derive_seed(seeds[0], STREAM_OPTIMIZER)
    state = np.random.SeedSequence([*map(int, seeds), STREAM_OPTIMIZER]).generate_state(
        1, np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


@dataclass(frozen=True)
class OptimSpec:
    """An optimizer by method name and hyperparameters (paper names, ``h`` the step size).

    Attributes:
        method: ``"sgd"``, ``"adam"``, ``"sgld"``, ``"langevin"``, ``"adl"``, ``"adlala"``,
            ``"lol"`` (see ``heatbath.optim.build_optimizer``).
        hparams: hyperparameters, e.g. ``{"h": 0.25, "gamma": 0.5}``.
        label: the ``method`` column of the metrics rows (default: ``method``), to tell apart
            two configurations of one method (``"adlala_g10"``).
    """

    method: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty string, got {self.method!r}")
        object.__setattr__(self, "hparams", dict(self.hparams))

    @property
    def name(self) -> str:
        """The label used in the metrics rows."""
        return self.label if self.label is not None else self.method

    def build(self, model: nn.Module, *, replicas: int | None, seed: int
              ) -> torch.optim.Optimizer:
        """Build the optimizer for ``model`` (``replicas`` = R for an ensemble, else ``None``)."""
        return build_optimizer(self.method, model, replicas=replicas, seed=seed,
                               **dict(self.hparams))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "hparams": dict(self.hparams), "label": self.label}

