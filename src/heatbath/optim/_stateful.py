"""A base for optimizers whose state holds a step counter and a noise generator."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["CounterGeneratorOptimizer"]


class CounterGeneratorOptimizer(Optimizer):
    """``state_dict()`` adds ``{STATE_KEY: {"t": step count, "generator_state": ...}}`` to
    torch's, and ``load_state_dict()`` restores both, so a resumed run draws the same noise.
    Subclasses set :attr:`STATE_KEY` and keep ``self._t`` and ``self._gen``."""

    STATE_KEY = "counter_generator"
    _t: int
    _gen: torch.Generator

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd[self.STATE_KEY] = {"t": self._t, "generator_state": self._gen.get_state().clone()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        extra = sd.pop(self.STATE_KEY, None)
        if extra is None:
            raise ValueError(f"state_dict lacks the {self.STATE_KEY!r} entry of "
                             f"{type(self).__name__}.state_dict()")
        super().load_state_dict(sd)
        self._t = int(extra["t"])
        self._gen.set_state(extra["generator_state"].clone())
