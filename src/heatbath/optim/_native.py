r"""Native (C) kernels for counter-based noise fused with the update, loaded with ``ctypes``.

What and why
------------
The Gaussian noise is the floor of a Langevin step on a CPU. The tensor-op Philox in
:mod:`heatbath.optim._philox` is exact and portable, but even compiled by inductor it spends
several nanoseconds per normal (its 32×32→64-bit products are emulated with 16-bit limbs, and
the noise goes through a temporary buffer). ``_native.c`` computes the *same numbers, bit for
bit* — Philox4x32-10 with AVX2's 32×32→64-bit multiply, eight blocks at a time, then the same
Box–Muller with the same sequence of IEEE float32 operations — and applies the step in the same
pass, so a noisy step reads and writes each tensor once, like SGD with momentum.

The source ships with the package and is compiled on first use with the system C compiler
(``cc -O2 -march=native -ffp-contract=off``, about a second) into a per-user cache
(``$HEATBATH_CACHE`` or ``~/.cache/heatbath``), keyed by the source, the compiler flags and the
CPU's instruction set; later processes load the cached library. No compiler, a failed build
or ``HEATBATH_NATIVE=0`` leaves :func:`lib` returning None, and heatbath uses the tensor-op
kernels (same numbers, slower). ``tests/test_native.py`` checks the native numbers against the
tensor-op reference bit for bit.

Threads
-------
Each native call is single-threaded and releases the GIL (``ctypes``), so :func:`run_tasks`
splits large work into ``torch.get_num_threads()`` pieces and runs them on a small thread pool.
The numbers do not depend on the split: element ``i`` of a tensor is a pure function of
(key, step, global index).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

__all__ = ["lib", "available", "run_tasks", "PARALLEL_MIN"]

PARALLEL_MIN = 1 << 16
"""Elements below which a call is not split across threads (the thread hand-off costs more)."""

_SOURCE = Path(__file__).with_name("_native.c")
_FLAGS = ["-O2", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fno-builtin-pow",
          "-fno-builtin-sin", "-fno-builtin-cos", "-fno-builtin-log", "-fPIC", "-shared",
          "-std=c99"]
_LIBS = ["-lm"]
_lock = threading.Lock()
_state: dict[str, Any] = {"tried": False, "lib": None, "error": None}
_pool: ThreadPoolExecutor | None = None
_pool_size = 0

_c_float, _c_i64, _c_u64, _c_p = ctypes.c_float, ctypes.c_int64, ctypes.c_uint64, ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "hb_has_avx2": (ctypes.c_int, []),
    "hb_normals": (None, [_c_p, _c_i64, _c_u64, _c_u64, _c_u64, _c_float]),
    "hb_nonfinite": (ctypes.c_int, [_c_p, _c_i64]),
    "hb_sgld": (None, [_c_p, _c_p, _c_i64, _c_u64, _c_u64, _c_u64, _c_float, _c_float]),
    "hb_baoab": (None, [_c_p, _c_p, _c_p, _c_i64, _c_u64, _c_u64, _c_u64, _c_float, _c_float,
                        _c_float, _c_float]),
    "hb_adl1": (ctypes.c_double, [_c_p, _c_p, _c_p, _c_i64, _c_u64, _c_u64, _c_u64, _c_float,
                                  _c_float, _c_float, _c_float, _c_float]),
    "hb_adl2": (None, [_c_p, _c_p, _c_i64, _c_float, _c_float]),
    "hb_nonfinite_multi": (ctypes.c_int, [_c_i64, _c_p, _c_p]),
    "hb_sgld_multi": (ctypes.c_int, [_c_i64, _c_p, _c_p, _c_p, _c_p, _c_p, _c_u64, _c_float,
                                     _c_float, ctypes.c_int]),
    "hb_baoab_multi": (ctypes.c_int, [_c_i64, _c_p, _c_p, _c_p, _c_p, _c_p, _c_p, _c_u64,
                                      _c_float, _c_float, _c_float, _c_float, ctypes.c_int]),
    "hb_adl_kinetic_draw": (ctypes.c_double, [_c_u64, _c_u64, _c_u64, _c_i64, ctypes.c_double,
                                              ctypes.c_double]),
    "hb_plan_step": (ctypes.c_int, [_c_p, _c_i64, _c_u64, ctypes.c_int]),
    "hb_adl1_rows": (None, [_c_p, _c_p, _c_p, _c_i64, _c_i64, _c_u64, _c_u64, _c_u64, _c_float,
                            _c_float, _c_p, _c_float, _c_float, _c_p]),
    "hb_adl2_rows": (None, [_c_p, _c_p, _c_i64, _c_i64, _c_p, _c_float]),
    "hb_adl_draws": (None, [_c_i64, _c_i64, _c_p, _c_p, _c_u64, _c_p, ctypes.c_double, _c_p]),
    "hb_adl_factors": (None, [_c_p, _c_i64, _c_float, _c_p]),
    "hb_adl_xi": (None, [_c_p, _c_i64, _c_i64, _c_p, _c_p, _c_p]),
    "hb_adl_group": (ctypes.c_int, [_c_i64, _c_p, _c_p, _c_p, _c_p, _c_p, _c_p, _c_p, _c_i64, _c_p,
                                    _c_p, _c_p, _c_p, _c_p, _c_u64, _c_float, _c_float, _c_float,
                                    _c_float, _c_float, ctypes.c_double, ctypes.c_int]),
}


class GroupPlan(ctypes.Structure):
    """``hb_group_plan`` of ``_native.c``: one group of a planned step (``hb_plan_step``)."""

    _fields_ = [
        ("method", _c_i64), ("k", _c_i64),
        ("th", _c_p), ("mo", _c_p), ("g", _c_p), ("n", _c_p), ("key", _c_p), ("off", _c_p),
        ("c0", _c_float), ("c1", _c_float), ("c2", _c_float), ("c3", _c_float),
        ("seg", _c_p), ("S", _c_i64), ("seg_key", _c_p), ("seg_n", _c_p),
        ("xi", _c_p), ("e_a", _c_p), ("e_b", _c_p),
        ("mhh", _c_float), ("cz", _c_float), ("s2", _c_float), ("czd", ctypes.c_double),
    ]


def _cpu_signature() -> str:
    """The CPU's instruction-set flags (what ``-march=native`` compiles for)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    base = os.environ.get("HEATBATH_CACHE")
    if base:
        return Path(base) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "heatbath" / "native"


def _compiler() -> str:
    """``$CC``, else the first of cc, gcc, clang on the PATH."""
    cc = os.environ.get("CC")
    if cc:
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return "cc"


def _build() -> Path:
    """Compile ``_native.c`` into the cache (atomically: a temporary file renamed into place)
    unless the library for this source, compiler, flags and CPU is already there."""
    src = _SOURCE.read_bytes()
    tag = hashlib.sha256(b"\0".join([src, _compiler().encode(), " ".join(_FLAGS).encode(),
                                     _cpu_signature().encode(), platform.machine().encode(),
                                     sys.platform.encode()])).hexdigest()[:20]
    name = f"heatbath_native_{tag}.so"
    candidates = [_cache_dir()]
    if hasattr(os, "getuid"):  # a read-only home: a private directory under the temp dir
        candidates.append(Path(tempfile.gettempdir()) / f"heatbath-native-{os.getuid()}")
    for out_dir in candidates:
        try:
            out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if hasattr(os, "getuid") and out_dir.stat().st_uid != os.getuid():
                continue  # never load a library from a directory another user controls
            target = out_dir / name
            if target.exists():
                return target
            if os.access(out_dir, os.W_OK):
                break
        except OSError:
            continue
    else:
        raise OSError("no writable cache directory of this user for the native kernels "
                      f"(tried {', '.join(map(str, candidates))})")
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        subprocess.run([_compiler(), *_FLAGS, str(_SOURCE), "-o", tmp, *_LIBS], check=True,
                       capture_output=True, text=True, timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> ctypes.CDLL:
    lib_ = ctypes.CDLL(str(_build()))
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lib_, name)
        fn.restype = res
        fn.argtypes = args
    return lib_


def lib() -> ctypes.CDLL | None:
    """The native library, built on first use; None when disabled (``HEATBATH_NATIVE=0``),
    on a platform without a C compiler, or when the build failed (a one-time warning says
    why; heatbath then uses its tensor-op kernels, with the same numbers)."""
    if os.environ.get("HEATBATH_NATIVE", "1") == "0":
        return None
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            try:
                _state["lib"] = _load()
            except (OSError, subprocess.SubprocessError, AttributeError) as err:
                detail = getattr(err, "stderr", "") or str(err)
                _state["error"] = detail
                warnings.warn("heatbath: the native noise kernels could not be built "
                              f"({type(err).__name__}: {str(detail).strip()[:200]}); using "
                              "the tensor-op kernels (same numbers, slower). Set "
                              "HEATBATH_NATIVE=0 to skip the attempt.", RuntimeWarning,
                              stacklevel=3)
            _state["tried"] = True
    return _state["lib"]


def available() -> bool:
    """True when the native kernels are in use."""
    return lib() is not None


def _forget_pool_in_child() -> None:
    """A forked child has none of its parent's pool threads: start a new pool there."""
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < n:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="heatbath-native")
        _pool_size = n
    return _pool


def threads_for(n: int) -> int:
    """How many threads a call over ``n`` elements uses."""
    if n < 2 * PARALLEL_MIN:
        return 1
    return max(1, min(torch.get_num_threads(), n // PARALLEL_MIN))


def run_tasks(tasks: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """Run native calls ``fn(*args)``, the first on this thread and the rest on the pool (the
    calls release the GIL); returns their results in order."""
    if len(tasks) == 1:
        fn, args = tasks[0]
        return [fn(*args)]
    pool = _get_pool(len(tasks) - 1)
    futures = [pool.submit(fn, *args) for fn, args in tasks[1:]]
    fn, args = tasks[0]
    first = fn(*args)
    return [first] + [f.result() for f in futures]
