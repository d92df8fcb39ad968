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

Then it checks every gradient for NaN/inf in one native call and, only if all are finite,
updates every group with one native call per group (the kernels of
:mod:`heatbath.optim._native`, which generate the counter-based noise in the update). The
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

__all__ = ["FastStep", "FAST_MAX"]

FAST_MAX = 1 << 17
"""Largest model (elements) the fast step takes: above it the general path splits the work
across threads, and its Python overhead is negligible against the kernels."""

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
    """What one group's fast step needs (see :class:`FastStep`)."""

    __slots__ = ("group", "plist", "params", "moms", "hyper", "method", "coef", "k", "numels",
                 "th", "mo", "gr", "addr", "keep", "th_ptrs", "xi", "gstate", "adl", "states")

    def __init__(self, group: dict[str, Any], params: list[torch.Tensor],
                 moms: list[torch.Tensor], keys: list[int], coef: tuple[float, ...]) -> None:
        self.group = group
        self.plist = group["params"]
        self.params = params
        self.moms = moms
        self.hyper = _hyper(group)
        self.method = "sgld" if group["method"] == "sgld" else (
            "adl" if group["method"] == "adl" else "baoab")
        self.coef = coef
        self.xi: torch.Tensor | None = None
        self.states: list[dict[str, Any]] = []
        self.gstate: dict[str, Any] = {}
        self.adl: tuple[Any, ...] = ()
        self.k = len(params)
        self.numels = [p.numel() for p in params]
        n_arr, n_addr = _i64_array(self.numels)
        key_arr, key_addr = _u64_array(keys)
        off_arr, off_addr = _u64_array([0] * len(params))
        self.th = (ctypes.c_int64 * self.k)()
        self.mo = (ctypes.c_int64 * self.k)()
        self.gr = (ctypes.c_int64 * self.k)()
        # (k, theta, momentum, gradient, numel, key, offset) as the native calls take them
        self.addr = (self.k, ctypes.addressof(self.th), ctypes.addressof(self.mo),
                     ctypes.addressof(self.gr), n_addr, key_addr, off_addr)
        self.keep = (n_arr, key_arr, off_arr)  # the arrays must outlive the calls
        self.th_ptrs = [p.data_ptr() for p in params]
        self.th[:] = self.th_ptrs
        if moms:
            self.mo[:] = [m.data_ptr() for m in moms]


class FastStep:
    """A :class:`~heatbath.optim.Partitioned` optimizer's fast step (see the module docstring).

    Build it with :meth:`build` (None when the optimizer's state does not qualify); call
    :meth:`run` at each step.
    """

    def __init__(self, groups: list[_Group], lib: Any) -> None:
        self.groups = groups
        self.lib = lib
        self.state: Any = None
        self.nonfinite = lib.hb_nonfinite_multi
        self.sgld = lib.hb_sgld_multi
        self.baoab = lib.hb_baoab_multi
        self.adl = lib.hb_adl_group
        self.k = sum(g.k for g in groups)
        self.all_gr = (ctypes.c_int64 * self.k)()
        self.all_gr_addr = ctypes.addressof(self.all_gr)
        self.keep, self.n_addr = _i64_array([n for g in groups for n in g.numels])

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
        groups, total = [], 0
        for index, group in enumerate(opt.param_groups):
            if type(group) is not GroupDict or group["method"] not in _METHODS:
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
            if total > FAST_MAX or _noise_kind(group, False) != "philox":
                return None
            h = group["h"]
            if not h > 0.0:
                return None
            method = group["method"]
            moms: list[torch.Tensor] = []
            if method != "sgld":
                for p in params:
                    st = opt.state.get(p, {})
                    m = st.get("momentum_buffer")
                    if (m is None or st.get("h_prev") != h or m.dtype != _F32
                            or m.shape != p.shape or not m.is_contiguous()):
                        return None
                    moms.append(m)
            keys = [opt.philox_key(index, j) for j in range(len(params))]
            if method == "sgld":
                std = group["sigma"] * math.sqrt(h)
                if not std > 0.0:
                    return None
                G = _Group(group, params, moms, keys, (h, std))
            elif method == "adl":
                G = cls._adl_group(opt, index, group, params, moms, keys)
                if G is None:
                    return None
            else:
                c, d = S.ou_coefficients(group["gamma"], group["tau"], h)
                if not d > 0.0:
                    return None
                G = _Group(group, params, moms, keys, (-h, 0.5 * h, c, d))
            G.states = [opt.state[p] for p in params] if moms else []
            groups.append(G)
        fast = cls(groups, lib)
        fast.state = opt.state
        return fast

    @staticmethod
    def _adl_group(opt: Any, index: int, group: dict[str, Any], params: list[torch.Tensor],
                   moms: list[torch.Tensor], keys: list[int]) -> _Group | None:
        """An Adaptive Langevin group's fast step: one ``hb_adl_group`` call, with the
        coefficients the general native path computes (``_core._adl_philox``)."""
        from ._core import adl_segments

        h = group["h"]
        if group["replicas"] is not None or not group["sigma_A"] > 0.0:
            return None
        gstate = opt.group_state[index]
        xi = gstate.get("xi")
        per_tensor = group["xi_per"] == "tensor"
        if (xi is None or xi.dtype != _F32 or not xi.is_contiguous() or xi.dim() != 1
                or xi.numel() != (len(params) if per_tensor else 1)
                or xi.numel() > _MAX_SEGMENTS):
            return None
        consts = opt._adl_consts.get(index)  # (e_a, e_b) as the general step made them
        key = (h, float(group["epsilon"]), float(group["tau"]), group["epsilon_scale"],
               tuple(range(len(params))), xi.dtype)
        if consts is None or consts[0] != key:
            return None
        e_a, e_b = (t.to(_F32).contiguous() for t in consts[1])
        half_h = 0.5 * h
        std = group["sigma_A"] * math.sqrt(half_h)
        sigma_a = std / math.sqrt(half_h)  # as _core._adl_philox recovers it
        hh2 = 2.0 * half_h
        cz = 0.5 * sigma_a * math.sqrt(hh2)
        s2 = sigma_a * math.sqrt(hh2)
        seg = list(range(len(params))) if per_tensor else [0] * len(params)
        key_seg, n_seg = adl_segments(seg, keys, [p.numel() for p in params], 1)
        G = _Group(group, params, moms, keys, (-h, half_h, -half_h, cz, s2, cz))
        seg_arr, seg_addr = _i64_array(seg)
        skey_arr, skey_addr = _u64_array(key_seg)
        sn_arr, sn_addr = _i64_array(n_seg)
        G.xi, G.gstate = xi, gstate
        G.keep = (*G.keep, seg_arr, skey_arr, sn_arr, e_a, e_b)
        G.adl = (seg_addr, len(key_seg), skey_addr, sn_addr, xi.data_ptr(), e_a.data_ptr(),
                 e_b.data_ptr())
        return G

    def run(self, opt: Any) -> bool:
        """One step; False (with nothing changed) when the general path must take it."""
        pgs = opt.param_groups
        if len(pgs) != len(self.groups):
            return False
        if opt.state is not self.state:
            return False
        grads: list[torch.Tensor] = []
        for G, group in zip(self.groups, pgs):
            if (group is not G.group or group["params"] is not G.plist or len(G.plist) != G.k
                    or _hyper(group) != G.hyper):
                return False
            for p in G.params:
                g = p.grad  # its dtype and device are the parameter's (torch enforces it)
                if g is None or not p.requires_grad or g.is_sparse or not g.is_contiguous():
                    return False
                grads.append(g)
            if G.moms and any(st.get("momentum_buffer") is not m
                              for st, m in zip(G.states, G.moms)):
                return False
            if G.xi is not None and G.gstate.get("xi") is not G.xi:
                return False
            ptrs = [p.data_ptr() for p in G.params]
            if ptrs != G.th_ptrs:  # moved (model.to, p.data = ...): check it again
                if not all(p.dtype == _F32 and p.is_contiguous() and p.device.type == "cpu"
                           for p in G.params):
                    return False
                G.th_ptrs = ptrs
                G.th[:] = ptrs
        gp = [g.data_ptr() for g in grads]
        step = opt.step_count
        check = 1 if opt.check_finite else 0
        if len(self.groups) > 1:
            if check:
                self.all_gr[:] = gp
                if self.nonfinite(self.k, self.all_gr_addr, self.n_addr):
                    return False  # the general path names the tensor and raises
            check = 0
        pos = 0
        for G in self.groups:
            G.gr[:] = gp[pos:pos + G.k]
            pos += G.k
            k, th, mo, gr, n, key, off = G.addr
            if G.method == "sgld":
                bad = self.sgld(k, th, gr, n, key, off, step, *G.coef, check)
            elif G.method == "baoab":
                bad = self.baoab(k, th, mo, gr, n, key, off, step, *G.coef, check)
            else:
                seg, nseg, skey, sn, xi, ea, eb = G.adl
                bad = self.adl(k, th, mo, gr, n, key, off, seg, nseg, skey, sn, xi, ea, eb, step,
                               *G.coef, check)
            if bad:
                return False  # nothing was changed (one group: checked before the update)
        mark = (id(opt), step)
        for g in grads:  # tag the gradients this step used (see Partitioned.diagnostics)
            g._heatbath_used = (mark, g._version)
        return True
