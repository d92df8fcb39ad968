"""Memory and time of one forward+backward: reversible backprop versus ordinary autograd.

One command: ``python benchmarks/memory.py`` (``--quick`` for a one-minute run; ``--plot PATH``
for the figure; ``--json PATH`` for the numbers).

For each batch size B and depth K it builds a stack of K Störmer–Verlet
``SymplecticHamiltonianBlock``s (tied kinetic part, tanh, state 2 x width, float32, h = 1/K) and,
for ``memory="reversible"`` and ``memory="store"``, runs each configuration in a **fresh
subprocess** (one thread) that measures

* **peak resident memory** of one forward+backward: after one warm-up forward+backward (so
  one-time allocations of the first call are excluded) the process's high-water mark is reset
  (``/proc/self/clear_refs``, value 5), and the peak RSS
  (``VmHWM``) after backward minus the RSS before forward is reported; where the reset is not
  available the ``ru_maxrss`` delta is used (an upper bound). The workers run with
  ``MALLOC_MMAP_THRESHOLD_=16384`` so that freed tensors are returned to the system and the RSS
  follows the live tensors rather than pages glibc keeps from the warm-up;
* the **saved-activation bytes**: distinct non-parameter tensors autograd packs for backward
  during one forward (:func:`heatbath.nn.saved_activation_bytes`);
* the **time** of one forward+backward, in a second fresh process with the default allocator:
  2 warm-up runs, then the median of ``--repeats`` runs;
* the float32 **reconstruction error** ``||x - inverse(forward(x))|| / ||x||``.

The ratio of saved-activation bytes overstates what a user gains: the peak also holds the
parameter gradients, the input and its gradient, one block's intermediates in backward and the
allocator's slack. Both are printed side by side (see docs/structure-preserving.md, section
"Reversible backprop").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEPTHS = [8, 16, 32, 64, 128]
BATCHES = [256, 1024]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(depth: int, batch: int, memory: str, width: int, repeats: int,
           what: str = "memory") -> dict[str, Any]:
    """Measure one configuration in this (fresh) process; see the module docstring.

    ``what="memory"``: peak RSS, saved bytes and round-trip error; ``what="time"``: the median
    time (run in its own process with the default allocator settings).
    """
    import gc

    import torch

    from heatbath.nn import (
        ReversibleSequential,
        SymplecticHamiltonianBlock,
        saved_activation_bytes,
    )

    torch.set_num_threads(1)
    torch.manual_seed(0)
    blocks = [SymplecticHamiltonianBlock(width, kinetic="tied", h=1.0 / depth)
              for _ in range(depth)]
    stack = ReversibleSequential(blocks, memory=memory)
    x = torch.randn(batch, 2 * width, requires_grad=True)
    if what == "time":
        times = []
        for i in range(2 + repeats):
            stack.zero_grad(set_to_none=True)
            x.grad = None
            t0 = time.perf_counter()
            stack(x).square().sum().backward()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        return {"seconds": statistics.median(times)}
    stack(x).square().sum().backward()  # warm-up: one-time allocations are not the user's peak
    stack.zero_grad(set_to_none=True)
    x.grad = None
    gc.collect()
    exact = _reset_peak()
    base_kib = _status_kib("VmRSS")
    base_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stack(x).square().sum().backward()
    peak_kib = _status_kib("VmHWM") if exact else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss
    peak = (peak_kib - base_kib) * 1024 if exact else (peak_kib - min(base_max, base_kib)) * 1024
    _, nbytes = saved_activation_bytes(lambda: stack(x), stack.parameters())
    with torch.no_grad():
        err = float((stack.inverse(stack(x)) - x).norm() / x.norm())
    return {"depth": depth, "batch": batch, "memory": memory, "peak_bytes": peak,
            "peak_exact": exact, "saved_bytes": nbytes, "roundtrip": err}


def _spawn(depth: int, batch: int, memory: str, width: int, repeats: int, what: str
           ) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--what", what,
           "--depth", str(depth), "--batch", str(batch), "--memory", memory,
           "--width", str(width), "--repeats", str(repeats)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if what == "memory":
        # blocks of >= 16 KiB are mmap-ed and unmapped on free, so RSS tracks live tensors
        # instead of the pages glibc keeps after the warm-up
        env.update(MALLOC_MMAP_THRESHOLD_="16384", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_config(depth: int, batch: int, memory: str, width: int, repeats: int
               ) -> dict[str, Any]:
    """Run :func:`worker` in fresh Python processes (memory, then time) and merge the results."""
    res = _spawn(depth, batch, memory, width, repeats, "memory")
    res.update(_spawn(depth, batch, memory, width, repeats, "time"))
    return res


def measure_all(depths: list[int], batches: list[int], width: int, repeats: int,
                verbose: bool = True) -> list[dict[str, Any]]:
    """All configurations; one row per (batch, depth) with both memory modes."""
    rows = []
    for B in batches:
        for K in depths:
            r = run_config(K, B, "reversible", width, repeats)
            s = run_config(K, B, "store", width, repeats)
            row = {"batch": B, "depth": K,
                   "peak_rev": r["peak_bytes"], "peak_store": s["peak_bytes"],
                   "peak_ratio": s["peak_bytes"] / max(r["peak_bytes"], 1),
                   "saved_rev": r["saved_bytes"], "saved_store": s["saved_bytes"],
                   "saved_ratio": s["saved_bytes"] / max(r["saved_bytes"], 1),
                   "time_rev": r["seconds"], "time_store": s["seconds"],
                   "time_ratio": r["seconds"] / s["seconds"], "roundtrip": r["roundtrip"],
                   "peak_exact": bool(r["peak_exact"] and s["peak_exact"])}
            rows.append(row)
            if verbose:
                print(f"{B:>5} {K:>5} | {row['peak_rev'] / 2**20:>8.1f} "
                      f"{row['peak_store'] / 2**20:>9.1f} {row['peak_ratio']:>6.1f}x | "
                      f"{row['saved_rev'] / 2**20:>8.2f} {row['saved_store'] / 2**20:>9.1f} "
                      f"{row['saved_ratio']:>6.0f}x | {row['time_rev'] * 1e3:>7.1f} "
                      f"{row['time_store'] * 1e3:>7.1f} {row['time_ratio']:>5.2f}x | "
                      f"{row['roundtrip']:.1e}", flush=True)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Peak and saved memory against depth (both modes, each batch) and round-trip error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for B in sorted({r["batch"] for r in rows}):
        rs = [r for r in rows if r["batch"] == B]
        d = [r["depth"] for r in rs]
        ax1.plot(d, [r["peak_store"] / 2**20 for r in rs], "o-", label=f"ordinary, peak, B={B}")
        ax1.plot(d, [r["peak_rev"] / 2**20 for r in rs], "s-", label=f"reversible, peak, B={B}")
        ax1.plot(d, [r["saved_store"] / 2**20 for r in rs], "o:", alpha=0.6,
                 label=f"ordinary, saved activations, B={B}")
        ax1.plot(d, [r["saved_rev"] / 2**20 for r in rs], "s:", alpha=0.6,
                 label=f"reversible, saved activations, B={B}")
        ax2.plot(d, [r["roundtrip"] for r in rs], "o-", label=f"B={B}")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth K")
    ax1.set_ylabel("MiB for one forward+backward")
    ax1.legend(fontsize=7)
    ax2.set_ylabel("float32 ||x - inverse(forward(x))|| / ||x||")
    ax2.legend(fontsize=8)
    fig.suptitle("Reversible backprop vs autograd: Verlet stack, state 2x64, float32, CPU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]] | None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batches", type=int, nargs="+", default=BATCHES)
    ap.add_argument("--depths", type=int, nargs="+", default=DEPTHS)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after 2 warm-ups")
    ap.add_argument("--quick", action="store_true", help="depths 8 and 32, batch 256, 3 runs")
    ap.add_argument("--plot", metavar="PATH", default=None, help="write the figure here")
    ap.add_argument("--json", metavar="PATH", default=None, help="write the rows here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--memory", default="reversible", help=argparse.SUPPRESS)
    ap.add_argument("--what", default="memory", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for name in ("width", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.worker:
        print(json.dumps(worker(args.depth, args.batch, args.memory, args.width,
                                args.repeats, args.what)))
        return None
    depths, batches, repeats = args.depths, args.batches, args.repeats
    if args.quick:
        depths, batches, repeats = [8, 32], [256], 3
    print(f"state 2 x {args.width}, float32, CPU, 1 thread, fresh process per configuration; "
          f"time = median of {repeats} after 2 warm-ups")
    print(f"{'batch':>5} {'depth':>5} | {'peak MiB':>17} {'ratio':>6} | {'saved MiB':>18} "
          f"{'ratio':>6} | {'ms rev':>7} {'store':>7} {'ratio':>5} | f32 roundtrip")
    print(f"{'':>11} | {'rev':>8} {'store':>9} {'':>6} | {'rev':>8} {'store':>9}")
    rows = measure_all(depths, batches, args.width, repeats)
    peak = [r["peak_ratio"] for r in rows if r["depth"] >= 64] or [r["peak_ratio"] for r in rows]
    tr = [r["time_ratio"] for r in rows]
    print(f"peak-memory ratio (ordinary / reversible) at depth >= 64: "
          f"{min(peak):.1f}-{max(peak):.1f}x; time ratio (reversible / ordinary): "
          f"{min(tr):.2f}-{max(tr):.2f}x")
    if not all(r["peak_exact"] for r in rows):
        print("note: /proc/self/clear_refs unavailable, peaks are ru_maxrss deltas (upper "
              "bounds)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.plot:
        plot(rows, Path(args.plot))
        print(f"figure: {args.plot}")
    return rows


if __name__ == "__main__":
    main()
