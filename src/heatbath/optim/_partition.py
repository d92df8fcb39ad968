"""Splitting a model into "first layer" and "the rest" for the layer-partitioned integrators."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["first_layer_split"]


def first_layer_split(model_or_groups: Any) -> tuple[list[Any], list[Any]]:
    """``(first, rest)`` parameter lists.

    For an ``nn.Module`` the first layer is the first submodule, in ``model.modules()`` order,
    that directly owns a parameter with ``requires_grad`` (so a frozen input layer is passed
    over: the first *trainable* layer is "the first layer"); items are ``(name, parameter)``
    pairs so that the groups' noise streams are keyed by name. Only parameters with
    ``requires_grad`` are taken. Otherwise ``model_or_groups`` must be a pair
    ``(first_params, rest_params)``.

    Raises:
        ValueError: the model has no trainable parameters, or the pair's first part is empty.
    """
    if isinstance(model_or_groups, nn.Module):
        model = model_or_groups
        first_mod = next((m for m in model.modules()
                          if any(p.requires_grad for p in m.parameters(recurse=False))), None)
        if first_mod is None:
            raise ValueError("model has no trainable parameters (none has requires_grad)")
        first_ids = {id(p) for p in first_mod.parameters(recurse=False)}
        first, rest = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (first if id(p) in first_ids else rest).append((name, p))
        return first, rest
    if isinstance(model_or_groups, tuple | list) and len(model_or_groups) == 2:
        a, b = model_or_groups
        first = [a] if isinstance(a, torch.Tensor) else list(a)
        rest = [b] if isinstance(b, torch.Tensor) else list(b)
        if not first:
            raise ValueError("first_params is empty")
        return first, rest
    raise ValueError("model_or_groups must be an nn.Module or a pair (first_params, rest_params), "
                     f"got {type(model_or_groups).__name__}")


def _groups(first: Iterable[Any], rest: list[Any], g1: dict[str, Any],
            g2: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [{"params": list(first), **g1}]
    if rest:
        groups.append({"params": rest, **g2})
    return groups
