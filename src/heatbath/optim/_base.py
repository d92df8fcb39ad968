r"""The one base class of heatbath's optimizers: seeding, noise generators, the finiteness
contract, parameter checks, named parameters and persistence.

Every heatbath optimizer (:class:`~heatbath.optim.Partitioned` and the integrators built on it,
:class:`~heatbath.optim.AnnealSGD`, :class:`~heatbath.optim.Santa`, :class:`~heatbath.optim.CTLD`)
derives from :class:`HeatbathOptimizer`. The contract it enforces is described for users in
``docs/optimizers.md``; in short:

- parameters stay the user's own tensors; per-parameter state lives in ``self.state[p]``;
- a parameter is *stepped* only when it has ``requires_grad`` and a gradient (``.grad`` is not
  None); every other parameter, and all of its state, is left bit-for-bit unchanged;
- a non-finite gradient raises :class:`NonFiniteGradientError` before anything is changed:
  parameters, state, generators and the step count stay as they were;
- integer, complex, sparse and meta-device parameters are refused when the group is added, and a
  rejected ``add_param_group`` leaves the optimizer as it was;
- one seed (resolved identically on every rank, see ``docs/distributed.md``) gives each
  parameter group its own ``torch.Generator`` (eager noise) and each parameter its own
  counter-based stream key (``noise="philox"``); both are in the ``state_dict``;
- ``load_state_dict`` refuses a state dict whose ``param_names`` differ from the optimizer's,
  naming the first mismatch.

``step()`` goes through torch's own optimizer step wrapper, so ``register_step_pre_hook``,
``register_step_post_hook``, the global optimizer hooks and the profiler label work as for any
``torch.optim`` optimizer.

How a subclass adopts the base
------------------------------
1. Call ``super().__init__(params, defaults, seed=seed, generator=generator,
   check_finite=check_finite)``. ``defaults`` are torch's (every key a group may override).
2. Override :meth:`_prepare_group` to validate and complete one parameter group (it receives the
   group *before* it is added, with the defaults filled in; raise ``ValueError``/``TypeError`` to
   reject it: nothing is added then). Override :meth:`_init_group` for work that needs the
   group's generator (e.g. drawing an initial state), :meth:`_sync_group` for changes written
   into a group between steps (called at every step, before the finiteness check).
3. Implement :meth:`_update(work)`: ``work`` is a list of :class:`GroupWork`, one per group that
   has at least one parameter to step, with the local tensors (the shards of DTensor
   parameters) of the parameters and their gradients. The base has already run the closure,
   checked finiteness and will count the step afterwards. Draw noise with
   :meth:`_normal_like` (eager, one ``normal_`` per call into a reused buffer) or use
   :meth:`param_key`/:meth:`philox_key` and ``self.step_count`` for counter-based noise.
4. Optimizer-level state beyond ``self.state[p]`` goes into :meth:`_extra_state` /
   :meth:`_load_extra_state`; per-group tensors into ``self.group_state[i]`` (a dict, saved and
   restored with the state dict). :meth:`_check_saved_groups` may refuse a state dict before
   anything is loaded; :meth:`_after_load` refreshes caches afterwards.
5. A subclass whose ``step`` takes extra arguments (CTLD's ``loss=``) overrides ``step`` with the
   same body as :meth:`step` (``_collect`` → ``_check_finite`` → ``_update`` → count); torch's
   wrapper is applied to any ``step`` a subclass defines.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ._distributed import global_offset, local_view, resolve_seed

__all__ = ["HeatbathOptimizer", "NonFiniteGradientError", "GroupWork", "mix_seed"]

#: prefix of the names given to parameters added without one (see ``param_key``)
SYNTHETIC_NAME = "param_groups."
#: up to this many gradient elements (per device) the finiteness check is one foreach kernel
_FINITE_FOREACH_MAX = 1 << 20


class NonFiniteGradientError(FloatingPointError):
    """Raised by ``step()`` when a gradient (or the loss an optimizer needs) holds NaN or inf.

    Nothing was changed: parameters, optimizer state, noise generators and the step count are
    as they were before the call.
    """


def mix_seed(seed: int, key: int) -> int:
    """A 63-bit stream seed from an optimizer seed and a stream key (splitmix64 finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + key * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (1 << 64)
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) % (1 << 64)
    x ^= x >> 29
    return x % (1 << 63)


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode()) | (zlib.adler32(name.encode()) << 32)


@dataclass
class GroupWork:
    """The parameters one group steps this time (those with ``requires_grad`` and a gradient).

    Attributes:
        index: the group's index in ``param_groups``.
        group: the group dict.
        params: the parameters (the user's tensors, keys of ``optimizer.state``).
        local: the tensors to update: ``params`` themselves, or the local shards of DTensors.
        grads: the gradients' local tensors, aligned with ``local``.
        positions: each parameter's index in ``group["params"]``.
        all_active: True when every parameter of the group is stepped.
        sharded: True when some parameter is a DTensor (its reductions need all-reduces).
    """

    index: int
    group: dict[str, Any]
    params: list[Tensor]
    local: list[Tensor]
    grads: list[Tensor]
    positions: list[int]
    all_active: bool
    sharded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _check_param(p: Any, where: str) -> None:
    if not isinstance(p, Tensor):
        raise TypeError(f"{where}: optimizer parameters must be tensors, got {type(p).__name__}")
    if p.is_meta or p.device.type == "meta":
        raise ValueError(f"{where} is on the meta device and has no data; materialise the model "
                         "(e.g. module.to_empty(device=...) and initialise it) before building "
                         "the optimizer")
    if p.is_complex():
        raise TypeError(f"{where} is complex ({p.dtype}); heatbath's dynamics are defined for "
                        "real parameters: optimise torch.view_as_real(p) as a real parameter "
                        "instead")
    if not p.is_floating_point():
        raise TypeError(f"{where} has dtype {p.dtype}; heatbath optimizers need floating-point "
                        "parameters")
    if p.is_sparse:
        raise TypeError(f"{where} is sparse; heatbath optimizers need dense parameters")


class _State(defaultdict):
    """``optimizer.state`` (torch's ``defaultdict(dict)``) with a counter of structural
    changes: a parameter's state added, replaced or deleted. Lets a cached step plan see such
    changes without hashing every parameter each step."""

    version = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.version += 1
        super().__delitem__(key)

    def pop(self, *args: Any) -> Any:
        self.version += 1
        return super().pop(*args)

    def popitem(self) -> Any:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.version += 1
        return super().setdefault(key, default)

    def __ior__(self, other: Any) -> Any:
        self.version += 1
        return super().__ior__(other)


class HeatbathOptimizer(torch.optim.Optimizer):
    """Base of every heatbath optimizer (see the module docstring for the contract).

    Args:
        params: tensors, ``(name, tensor)`` pairs (e.g. ``model.named_parameters()``) or
            parameter groups (dicts). Names key the noise streams, so that a run does not
            depend on the order of the groups, and make ``load_state_dict`` check that a state
            dict belongs to the same parameters.
        defaults: the hyperparameters a group may override (torch's ``defaults``).
        seed: the noise seed, an int in ``[0, 2**63 - 1]``; ``None`` draws one from torch's
            global generator (rank 0's draw, broadcast, under ``torch.distributed``).
        generator: a ``torch.Generator`` shared by all groups for eager noise (overrides the
            per-group generators derived from ``seed``).
        check_finite: refuse non-finite gradients (default on).
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 check_finite: bool = True) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if not isinstance(check_finite, bool):
            raise TypeError(f"check_finite must be a bool, got {type(check_finite).__name__}")
        self._seed = resolve_seed(seed)
        self._user_generator = generator
        self._generators: list[torch.Generator] = []
        self._noise_bufs: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}
        self._flags: dict[torch.device, tuple[Tensor, Tensor]] = {}
        self._noise_views: dict[int, tuple[Any, Tensor, list[list[Tensor]]]] = {}
        self._dtensor_groups: list[bool] = []
        self.group_state: list[dict[str, Any]] = []
        self.step_count = 0
        self.check_finite = check_finite
        super().__init__(params, defaults)
        self.state = _State(dict, self.state)

    # ------------------------------------------------------------------------------------------
    # groups
    # ------------------------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        """The seed every noise stream of this optimizer is derived from."""
        return self._seed

    @property
    def generators(self) -> list[torch.Generator]:
        """The eager-noise generator of each parameter group (the same object for all groups
        when a ``generator`` was passed)."""
        return self._generators

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (torch's semantics), atomically: a group that fails validation leaves
        the optimizer exactly as it was.

        Parameters without names may join an optimizer whose groups are named (and the other
        way round): the unnamed ones get the positional names ``param_groups.<i>.<j>``, which
        are also the keys their noise streams always had.

        Raises:
            TypeError, ValueError: a parameter is not a real floating-point dense tensor with
                data, or a hyperparameter is out of range (named in the message).
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        index = len(self.param_groups)
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("a parameter group needs a 'params' entry")
        params = [params] if isinstance(params, Tensor) else params
        if isinstance(params, set):
            raise TypeError("parameters must be given in an ordered collection, not a set")
        params = list(params)
        if not params:
            raise ValueError(f"parameter group {index} has no parameters")
        names = [p[0] for p in params if isinstance(p, tuple)]
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        if names and len(names) != len(tensors):
            raise ValueError("give every parameter of a group a name, or none")
        for j, p in enumerate(tensors):
            _check_param(p, f"parameter {names[j] if names else j} of group {index}")
        named_before = any("param_names" in g for g in self.param_groups)
        if names:
            group["param_names"] = list(names)
        elif named_before or group.get("param_names"):
            group["param_names"] = group.get("param_names") or [
                f"{SYNTHETIC_NAME}{index}.{j}" for j in range(len(tensors))]
        group["params"] = tensors
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        group = self._prepare_group(group, index, set(param_group))  # raises before any change
        # torch's own checks (duplicates, non-leaf tensors); roll back if they fail
        renamed = []
        if "param_names" in group and not named_before:
            for i, g in enumerate(self.param_groups):
                if "param_names" not in g:
                    g["param_names"] = [f"{SYNTHETIC_NAME}{i}.{j}" for j in range(len(g["params"]))]
                    renamed.append(g)
        try:
            super().add_param_group(group)
            self.param_groups[-1] = self._wrap_group(self.param_groups[-1])
            self._generators.append(self._make_generator(self.param_groups[-1], index))
            self._dtensor_groups.append(any(local_view(p) is not p for p in tensors))
            self.group_state.append({})
            self._init_group(self.param_groups[-1], index)
        except BaseException:
            del self.param_groups[index:]
            del self._generators[index:]
            del self._dtensor_groups[index:]
            del self.group_state[index:]
            for g in renamed:
                g.pop("param_names", None)
            for p in tensors:
                self.state.pop(p, None)
            raise

    def _prepare_group(self, group: dict[str, Any], index: int,
                       given: set[str]) -> dict[str, Any]:
        """Validate and complete a new group (defaults already filled in; ``given`` are the
        keys the caller set); return it. Raising here rejects the group with nothing changed."""
        return group

    def _wrap_group(self, group: dict[str, Any]) -> dict[str, Any]:
        """The dict type a group is kept in (a subclass may link keys, e.g. ``lr`` and ``h``)."""
        return group

    def _init_group(self, group: dict[str, Any], index: int) -> None:
        """Set up a group just added (its generator exists); e.g. draw initial state."""

    def _sync_group(self, group: dict[str, Any], index: int) -> None:
        """Take in hyperparameters written into ``group`` since the last step (any way: item
        assignment, ``group.update``); raise ``ValueError`` for invalid ones. Runs at every
        step before anything is changed."""

    def _group_key(self, group: dict[str, Any], index: int) -> int:
        """The stream key of a group: its parameter names, else its index."""
        names = group.get("param_names")
        if names:
            return zlib.crc32("\0".join(names).encode())
        return zlib.crc32("\0".join(f"{SYNTHETIC_NAME}{index}.{j}"
                                    for j in range(len(group["params"]))).encode())

    def _make_generator(self, group: dict[str, Any], index: int) -> torch.Generator:
        if self._user_generator is not None:
            return self._user_generator
        gen = torch.Generator(device=group["params"][0].device)
        gen.manual_seed(mix_seed(self._seed, self._group_key(group, index)))
        return gen

    def param_key(self, index: int, position: int) -> str:
        """The name keying parameter ``position`` of group ``index``'s counter-based noise:
        its name when parameters were given with names, else ``param_groups.<index>.<position>``.
        """
        names = self.param_groups[index].get("param_names")
        return names[position] if names else f"{SYNTHETIC_NAME}{index}.{position}"

    def philox_key(self, index: int, position: int) -> int:
        """The 63-bit counter-based noise key of one parameter: ``(seed, parameter key)``."""
        return mix_seed(self._seed, _name_key(self.param_key(index, position)) + 0x5EED)

    @staticmethod
    def global_offset(p: Tensor) -> int:
        """Flat index, in the full tensor, of the first element ``step`` updates for ``p``."""
        return global_offset(p)

    # ------------------------------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step for every parameter that has ``requires_grad`` and a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (called with gradients on).

        Returns:
            The closure's loss, or None.

        Raises:
            NonFiniteGradientError: a gradient holds NaN or inf; nothing was changed.
        """
        if torch.compiler.is_compiling():  # inside torch.compile: a graph break, run eagerly
            return self._step_eager(closure)
        return self._step(closure)

    @torch.compiler.disable
    def _step_eager(self, closure: Callable[[], Any] | None) -> Any:
        """:meth:`_step` outside any compiled graph (``torch.compile`` does not trace the
        native kernels; outside ``torch.compile`` the step skips this wrapper's cost)."""
        return self._step(closure)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._fast_step():  # native kernels only: no autograd to switch off
            self.step_count += 1
            return loss
        prev = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        try:
            work = self._collect()
            if self.check_finite:
                self._check_finite(work)
            self._update(work)
            self.step_count += 1
        finally:
            torch.set_grad_enabled(prev)
        return loss

    def _fast_step(self) -> bool:
        """Take the whole step by a shortcut that gives the same numbers, or return False
        (changing nothing) to take the general path (subclasses; see ``optim/_fast.py``)."""
        return False

    def _collect(self) -> list[GroupWork]:
        """Sync every group's hyperparameters, then gather the parameters to step."""
        work = []
        for index, group in enumerate(self.param_groups):
            self._sync_group(group, index)
            params, grads, pos = [], [], []
            for j, p in enumerate(group["params"]):
                g = p.grad
                if g is None or not p.requires_grad:
                    continue
                if g.is_sparse:
                    raise RuntimeError("heatbath optimizers do not support sparse gradients")
                params.append(p)
                grads.append(g)
                pos.append(j)
            if not params:
                continue
            sharded = self._dtensor_groups[index]
            if sharded:
                local = [local_view(p) for p in params]
                grads = [local_view(g) for g in grads]
            else:
                local = params
            work.append(GroupWork(index, group, params, local, grads, pos,
                                  len(params) == len(group["params"]), sharded))
        return work

    def _check_finite(self, work: list[GroupWork], *extra: Tensor) -> None:
        """Raise :class:`NonFiniteGradientError` if any gradient (or ``extra`` tensor) is not
        finite; nothing has been changed at that point.

        Up to ``_FINITE_FOREACH_MAX`` elements per device: one multi-tensor kernel
        (``torch._amp_foreach_non_finite_check_and_unscale_`` with scale 1, which rewrites each
        gradient with its own value) and one host read. Larger models: one read-only
        multi-tensor 2-norm per dtype (``torch._foreach_norm``; float32 accumulation, no float64
        copies) and one host read. A NaN or inf makes a norm non-finite; only then, or when
        huge finite entries (above ~1e19 in float32) overflow it, are the tensors inspected one
        by one, and only a genuinely non-finite gradient raises.
        """
        grads = [g for w in work for g in w.grads]
        flagged = False
        if grads:
            by_dev: dict[torch.device, list[Tensor]] = {}
            for g in grads:
                by_dev.setdefault(g.device, []).append(g)
            for dev, gs in by_dev.items():
                if sum(g.numel() for g in gs) <= _FINITE_FOREACH_MAX:
                    found, one = self._finite_flags(dev)
                    found.zero_()
                    torch._amp_foreach_non_finite_check_and_unscale_(gs, found, one)
                    flagged = flagged or bool(found)
                else:
                    norms = []
                    for dt in {g.dtype for g in gs}:  # fp16/bf16 normed in float32: no overflow
                        norms += torch._foreach_norm(
                            [g for g in gs if g.dtype == dt], 2,
                            dtype=torch.float32 if dt.itemsize < 4 else None)
                    flagged = flagged or not math.isfinite(float(torch.stack(norms).sum()))
        if extra:
            flagged = flagged or not all(bool(torch.isfinite(torch.as_tensor(t)).all())
                                         for t in extra)
        if not flagged:
            return
        bad = [f"group {w.index} parameter {self.param_key(w.index, j)}"
               for w in work for j, g in zip(w.positions, w.grads)
               if not bool(torch.isfinite(g).all())]
        if any(not bool(torch.isfinite(torch.as_tensor(t)).all()) for t in extra):
            bad.append("the loss")
        if bad:
            raise NonFiniteGradientError(
                f"non-finite gradient in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} "
                f"at step {self.step_count}; nothing was changed (parameters, state, noise). "
                "Lower the step size, check the loss, or clip gradients.")

    def _finite_flags(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Reused (found_inf, scale = 1) tensors of the foreach finiteness check."""
        flags = self._flags.get(device)
        if flags is None:
            flags = self._flags[device] = (torch.zeros(1, device=device),
                                           torch.ones(1, device=device))
        return flags

    def _update(self, work: list[GroupWork]) -> None:
        """Apply one step to the gathered parameters (subclasses implement)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # noise
    # ------------------------------------------------------------------------------------------
    def _flat_buffer(self, index: int, numel: int, like: Tensor) -> Tensor:
        """A reused 1-D buffer of at least ``numel`` entries of ``like``'s dtype and device."""
        key = (index, like.device, like.dtype)
        buf = self._noise_bufs.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._noise_bufs[key] = buf
        return buf[:numel]

    def _normal_like(self, index: int, tensors: list[Tensor], std: float,
                     draws: int = 1) -> list[list[Tensor]]:
        """``draws`` lists of N(0, std²) tensors shaped like ``tensors``, from group ``index``'s
        generator with ONE ``normal_`` call into a reused flat buffer (then split into views;
        the views are cached while the shapes stay the same). The views are valid until the
        next call for this group."""
        key = (index, draws, tensors[0].dtype, tensors[0].device, *(t.shape for t in tensors))
        cached = self._noise_views.get(index)
        if cached is None or cached[0] != key:
            sizes = [t.numel() for t in tensors]
            total = sum(sizes)
            buf = self._flat_buffer(index, draws * total, tensors[0])
            views = []
            for d in range(draws):
                parts = buf[d * total:(d + 1) * total].split(sizes)
                views.append([v.view(t.shape) for v, t in zip(parts, tensors)])
            cached = self._noise_views[index] = (key, buf, views)
        cached[1].normal_(0.0, std, generator=self._generators[index])
        return cached[2]

    # ------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        """Optimizer-level state beyond ``self.state`` and ``group_state`` (subclasses)."""
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` saved."""

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict (per-parameter state, groups, ``param_names``) plus a
        ``"heatbath"`` entry: step count, seed, each group's generator state and
        ``group_state``, and :meth:`_extra_state`."""
        sd = super().state_dict()
        shared = self._user_generator is not None
        sd["heatbath"] = {
            "step": self.step_count,
            "seed": self._seed,
            "groups": [
                {"generator": None if shared and i else self._generators[i].get_state(),
                 "state": {k: (v.clone() if isinstance(v, Tensor) else v)
                           for k, v in self.group_state[i].items()}}
                for i in range(len(self.param_groups))
            ],
            "extra": self._extra_state(),
        }
        return sd

    def _check_names(self, saved_groups: list[dict[str, Any]]) -> None:
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            a, b = mine.get("param_names"), saved.get("param_names")
            if not a or not b:
                continue
            for j, (x, y) in enumerate(zip(a, b)):
                if x.startswith(SYNTHETIC_NAME) or y.startswith(SYNTHETIC_NAME):
                    continue
                if x != y:
                    raise ValueError(
                        f"state_dict does not belong to these parameters: group {i}, position "
                        f"{j} holds {y!r} in the state dict but {x!r} in this optimizer; build "
                        "the optimizer with the same parameters in the same order")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state dict saved by the same optimizer class over the same parameters.

        Raises:
            ValueError: no ``"heatbath"`` entry, a different number of groups or group sizes,
                or (when both sides know ``param_names``) a different parameter at some
                position; the message names the first mismatch. Nothing is changed then.
        """
        sd = dict(state_dict)
        extra = sd.pop("heatbath", None)
        if extra is None:
            raise ValueError(f"state_dict has no 'heatbath' entry: it was not saved by "
                             f"{type(self).__name__}.state_dict()")
        saved_groups = sd.get("param_groups", [])
        if len(saved_groups) != len(self.param_groups) or len(extra["groups"]) != len(
                self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}")
        for i, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(mine["params"]) != len(saved["params"]):
                raise ValueError(f"state_dict's group {i} has {len(saved['params'])} "
                                 f"parameters, this optimizer's has {len(mine['params'])}")
        self._check_names(saved_groups)
        self._check_saved_groups(saved_groups)
        super().load_state_dict(sd)
        self.state = _State(dict, self.state)
        self.param_groups = [self._wrap_group(g) for g in self.param_groups]
        self._after_load()
        for i, ex in enumerate(extra["groups"]):
            if ex["generator"] is not None:
                self._generators[i].set_state(ex["generator"].cpu())
            dev = self.param_groups[i]["params"][0].device
            self.group_state[i] = {k: (v.to(dev).clone() if isinstance(v, Tensor) else v)
                                   for k, v in ex["state"].items()}
        self.step_count = int(extra["step"])
        self._seed = int(extra["seed"])
        self._load_extra_state(extra.get("extra", {}))

    def _check_saved_groups(self, saved_groups: list[dict[str, Any]]) -> None:
        """Refuse saved groups this optimizer cannot take (raise ``ValueError``); runs before
        anything is loaded (subclasses)."""

    def _after_load(self) -> None:
        """Refresh caches that depend on the groups after a load (subclasses)."""

    # ------------------------------------------------------------------------------------------
    # inspection
    # ------------------------------------------------------------------------------------------
    def diagnostics(self) -> Any:
        """Per-group summaries of the dynamics (temperatures, thermostat variables)."""
        return [{"step": self.step_count} for _ in self.param_groups]
