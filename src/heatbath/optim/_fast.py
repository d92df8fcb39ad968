r"""The steady-state step of a small float32 model in a few native calls.

At a few thousand parameters a ``step()`` is almost all Python: gathering the gradients,
resolving each group's noise backend and coefficients, building tensor lists. Once a
:class:`~heatbath.optim.Partitioned` optimizer has taken a step, nothing of that changes from
one step to the next unless the user changes something, so :class:`FastStep` keeps the result
and each step only re-checks, cheaply, that it still holds:

- the same groups with the same parameter lists and the same hyperparameters (``h``, ``lr``,
  ``momentum``, ``gamma``, ``tau``, ``sigma``, ``method``, ``noise``; a write of any kind,
  ``group[k] = v`` or ``group.update``, is seen);
- every parameter has ``requires_grad`` and a gradient, both float32 and contiguous, on the CPU;
- the momentum buffers are the ones in ``optimizer.state``, and every merged kick is ``h``.

Then one native call (``hb_plan_step`` of :mod:`heatbath.optim._native`) checks every gradient
for NaN/inf and, only if all are finite, steps every group with the kernels that generate the
counter-based noise inside the update. The
numbers are those of the general path, bit for bit: the same kernels with the same
coefficients. Anything else — a frozen parameter, a missing gradient, a hyperparameter
written, a non-finite gradient (the general path then raises, naming it), a state dict
loaded, a new group — sends the step through the general path, which has the full contract.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import torch

from . import _native
from . import _substeps as S

__all__ = ["FastStep", "fast_max"]

def fast_max() -> int:
    """Largest model (elements, exclusive) the fast step takes: from there on the general path
    splits the work across threads (its Adaptive Langevin sums then run in pieces), and its
    Python overhead is negligible against the kernels."""
    return 2 * _native.PARALLEL_MIN

_F32 = torch.float32
_METHODS = ("sgld", "baoab", "overdamped", "adl")
_MAX_SEGMENTS = 64  # hb_adl_group keeps its per-segment scalars on the stack


def _i64_array(values: list[int]) -> tuple[Any, int]:
    arr = (ctypes.c_int64 * max(1, len(values)))(*values)
    return arr, ctypes.addressof(arr)


def _u64_array(values: list[int]) -> tuple[Any, int]:
    arr = (ctypes.c_uint64 * max(1, len(values)))(*values)
    return arr, ctypes.addressof(arr)


def _hyper(group: dict[str, Any]) -> tuple[Any, ...]:
    return (group["h"], group["lr"], group.get("momentum"), group.get("gamma"), group["tau"],
            group["sigma"], group["method"], group["noise"], group["sigma_A"], group["epsilon"],
            group["xi_per"], group["epsilon_scale"], group["replicas"])


class _Group:
    """One group of a fast step: its tensors, the native plan's arrays, what to re-check."""

    __slots__ = ("group", "plist", "params", "moms", "states", "hyper", "k", "th", "mo", "gr",
                 "th_ptrs", "gr_ptrs", "xi", "gstate", "keep", "index")

    def __init__(self, group: dict[str, Any], params: list[torch.Tensor],
                 moms: list[torch.Tensor], states: list[dict[str, Any]]) -> None:
        self.group = group
        self.plist = group["params"]
        self.params = params
        self.moms = moms
        self.states = states
        self.hyper = _hyper(group)
        self.k = len(params)
        self.th = (ctypes.c_int64 * self.k)()
        self.mo = (ctypes.c_int64 * self.k)()
        self.gr = (ctypes.c_int64 * self.k)()
        self.th_ptrs = [p.data_ptr() for p in params]
        self.th[:] = self.th_ptrs
        if moms:
            self.mo[:] = [m.data_ptr() for m in moms]
        self.gr_ptrs: list[int] = []
        self.xi: torch.Tensor | None = None
        self.gstate: dict[str, Any] = {}
        self.index = 0
        self.keep: list[Any] = []  # arrays and tensors the plan points into

    def plan(self, method: int, keys: list[int], coef: tuple[float, ...]) -> _native.GroupPlan:
        n_arr, n_addr = _i64_array([p.numel() for p in self.params])
        key_arr, key_addr = _u64_array(keys)
        off_arr, off_addr = _u64_array([0] * self.k)
        self.keep += [n_arr, key_arr, off_arr]
        c = (*coef, 0.0, 0.0, 0.0, 0.0)[:4]
        return _native.GroupPlan(
            method=method, k=self.k, th=ctypes.addressof(self.th), mo=ctypes.addressof(self.mo),
            g=ctypes.addressof(self.gr), n=n_addr, key=key_addr, off=off_addr,
            c0=c[0], c1=c[1], c2=c[2], c3=c[3])


class FastStep:
    """A :class:`~heatbath.optim.Partitioned` optimizer's fast step (see the module docstring).

    Build it with :meth:`build` (None when the optimizer's state does not qualify); call
    :meth:`run` at each step: one native call (``hb_plan_step``) checks every gradient and
    steps every group.
    """

    def __init__(self, opt: Any, groups: list[_Group], plans: list[Any], lib: Any) -> None:
        self.groups = groups
        self.state = opt.state
        self.state_version = getattr(opt.state, "version", None)
        self.plans = (_native.GroupPlan * len(plans))(*plans)
        self.plans_addr = ctypes.addressof(self.plans)
        self.call = lib.hb_plan_step

    @classmethod
    def build(cls, opt: Any) -> FastStep | None:
        """The fast step for ``opt`` as it is now, or None when some group does not qualify."""
        from ._core import _Group as GroupDict
        from ._core import _noise_kind

        if not opt.foreach or not opt.param_groups:
            return None
        lib = _native.lib()
        if lib is None:
            return None
        groups, plans, total = [], [], 0
        for index, group in enumerate(opt.param_groups):
            if type(group) is not GroupDict:
                return None
            opt._sync_group(group, index)  # writes that bypassed item assignment (update())
            if group["method"] not in _METHODS:
                return None
            if opt._dtensor_groups[index]:
                return None
            params = list(group["params"])
            for p in params:
                g = p.grad
                if (g is None or not p.requires_grad or p.dtype != _F32 or g.dtype != _F32
                        or p.device.type != "cpu" or g.is_sparse or not p.is_contiguous()
                        or not g.is_contiguous()):
                    return None
                total += p.numel()
            if total >= fast_max() or _noise_kind(group, False) != "philox":
                return None
            h = group["h"]
            if not h > 0.0:
                return None
            method = group["method"]
            moms: list[torch.Tensor] = []
            states: list[dict[str, Any]] = []
            if method != "sgld":
                for p in params:
                    st = opt.state.get(p, {})
                    m = st.get("momentum_buffer")
                    if (m is None or st.get("h_prev") != h or m.dtype != _F32
                            or m.shape != p.shape or not m.is_contiguous()):
                        return None
                    moms.append(m)
                    states.append(st)
            keys = [opt.philox_key(index, j) for j in range(len(params))]
            G = _Group(group, params, moms, states)
            if method == "sgld":
                std = group["sigma"] * math.sqrt(h)
                if not std > 0.0:
                    return None
                plan = G.plan(0, keys, (h, std))
            elif method == "adl":
                plan = cls._adl_plan(opt, index, group, G, keys)
                if plan is None:
                    return None
            else:
                c, d = S.ou_coefficients(group["gamma"], group["tau"], h)
                if not d > 0.0:
                    return None
                plan = G.plan(1, keys, (-h, 0.5 * h, c, d))
            groups.append(G)
            plans.append(plan)
        return cls(opt, groups, plans, lib)

    @staticmethod
    def _adl_plan(opt: Any, index: int, group: dict[str, Any], G: _Group,
                  keys: list[int]) -> _native.GroupPlan | None:
        """An Adaptive Langevin group's plan: the coefficients the general native path computes
        (``_core._adl_philox`` and ``_core._adl_native``), for ``hb_adl_group``."""
        from ._core import adl_segments
        from ._philox import adl_noise_scales

        h = group["h"]
        if group["replicas"] is not None or not group["sigma_A"] > 0.0:
            return None
        gstate = opt.group_state[index]
        xi = gstate.get("xi")
        per_tensor = group["xi_per"] == "tensor"
        if (xi is None or xi.dtype != _F32 or not xi.is_contiguous() or xi.dim() != 1
                or xi.numel() != (G.k if per_tensor else 1) or xi.numel() > _MAX_SEGMENTS):
            return None
        consts = opt._adl_consts.get(index)  # (e_a, e_b) as the general step made them
        key = (h, float(group["epsilon"]), float(group["tau"]), group["epsilon_scale"],
               tuple(range(G.k)), xi.dtype)
        if consts is None or consts[0] != key:
            return None
        e_a, e_b = (t.to(_F32).contiguous() for t in consts[1])
        half_h = 0.5 * h
        std = group["sigma_A"] * math.sqrt(half_h)
        sigma_a = std / math.sqrt(half_h)  # as _core._adl_philox recovers it
        cz, s2 = adl_noise_scales(sigma_a, 2.0 * half_h)
        seg = list(range(G.k)) if per_tensor else [0] * G.k
        key_seg, n_seg = adl_segments(seg, keys, [p.numel() for p in G.params], 1)
        plan = G.plan(2, keys, (-h, half_h))
        seg_arr, plan.seg = _i64_array(seg)
        skey_arr, plan.seg_key = _u64_array(key_seg)
        sn_arr, plan.seg_n = _i64_array(n_seg)
        plan.S = len(key_seg)
        plan.xi, plan.e_a, plan.e_b = xi.data_ptr(), e_a.data_ptr(), e_b.data_ptr()
        plan.mhh, plan.cz, plan.s2, plan.czd = -half_h, cz, s2, cz
        G.keep += [seg_arr, skey_arr, sn_arr, e_a, e_b]
        G.xi, G.gstate, G.index = xi, gstate, index
        return plan

    def run(self, opt: Any) -> bool:
        """One step; False (with nothing changed) when the general path must take it."""
        pgs = opt.param_groups
        groups = self.groups
        state = opt.state
        if (len(pgs) != len(groups) or state is not self.state
                or getattr(state, "version", None) != self.state_version):
            return False  # a group added, or a parameter's state added, replaced or deleted
        gstates = opt.group_state
        grads: list[torch.Tensor] = []
        for G, group in zip(groups, pgs):
            if (group is not G.group or group["params"] is not G.plist or len(G.plist) != G.k
                    or _hyper(group) != G.hyper):
                return False
            gs = []
            for p in G.params:
                g = p.grad  # its dtype and device are the parameter's (torch enforces it)
                if g is None or not p.requires_grad or g.is_sparse or not g.is_contiguous():
                    return False
                gs.append(g)
            for st, m in zip(G.states, G.moms):
                if st.get("momentum_buffer") is not m:
                    return False
            if G.xi is not None and (gstates[G.index] is not G.gstate
                                     or G.gstate.get("xi") is not G.xi):
                return False
            ptrs = [p.data_ptr() for p in G.params]
            if ptrs != G.th_ptrs:  # moved (model.to, p.data = ...): check it again
                if not all(p.dtype == _F32 and p.is_contiguous() and p.device.type == "cpu"
                           for p in G.params):
                    return False
                G.th_ptrs = ptrs
                G.th[:] = ptrs
            ptrs = [g.data_ptr() for g in gs]
            if ptrs != G.gr_ptrs:
                G.gr_ptrs = ptrs
                G.gr[:] = ptrs
            grads += gs
        step = opt.step_count
        if self.call(self.plans_addr, len(groups), step, 1 if opt.check_finite else 0):
            return False  # a non-finite gradient, nothing changed: the general path raises
        mark = (id(opt), step)
        for g in grads:  # tag the gradients this step used (see Partitioned.diagnostics)
            g._heatbath_used = (mark, g._version)
        return True
