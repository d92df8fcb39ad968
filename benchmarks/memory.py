"""Saved-activation memory against depth: reversible backprop versus ordinary autograd.

One command: ``python benchmarks/memory.py`` (options: --width, --batch, --depths).

For each depth K it builds a stack of K Störmer–Verlet ``SymplecticHamiltonianBlock``s (tied
kinetic part, tanh) and measures, with ``torch.autograd.graph.saved_tensors_hooks``, the bytes of
distinct non-parameter tensors autograd saves for backward during one forward pass
(:func:`heatbath.nn.saved_activation_bytes`), for ``memory="reversible"`` (only the output state is
kept; inputs are rebuilt by the exact inverse in backward) and ``memory="store"`` (plain
autograd). It also times one forward+backward and reports the float32 round-trip error
||x - inverse(forward(x))|| / ||x|| per depth (spec §12.2), and the peak CUDA memory when a GPU is
present. Goal (issue 6): flat versus linear, at least 10x less at depth 64.
"""

from __future__ import annotations

import argparse
import time

import torch

from heatbath.nn import ReversibleSequential, SymplecticHamiltonianBlock, saved_activation_bytes


def measure(depth: int, memory: str, width: int, batch: int, device: str) -> dict[str, float]:
    torch.manual_seed(0)
    blocks = [SymplecticHamiltonianBlock(width, kinetic="tied", h=1.0 / depth)
              for _ in range(depth)]
    stack = ReversibleSequential(blocks, memory=memory).to(device)
    x = torch.randn(batch, 2 * width, device=device, requires_grad=True)
    n, nbytes = saved_activation_bytes(lambda: stack(x), stack.parameters())
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    stack(x).square().sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else float("nan")
    with torch.no_grad():
        err = float((stack.inverse(stack(x)) - x).norm() / x.norm())
    return {"tensors": n, "bytes": nbytes, "seconds": dt, "roundtrip": err, "peak": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"state 2 x {args.width}, batch {args.batch}, float32, device {device}")
    print(f"{'depth':>5} | {'reversible bytes':>16} {'store bytes':>12} {'ratio':>7} | "
          f"{'rev s':>7} {'store s':>7} | {'f32 roundtrip':>13}")
    ratio64 = None
    for K in args.depths:
        r = measure(K, "reversible", args.width, args.batch, device)
        s = measure(K, "store", args.width, args.batch, device)
        ratio = s["bytes"] / r["bytes"]
        if K == 64:
            ratio64 = ratio
        line = (f"{K:>5} | {r['bytes']:>16,} {s['bytes']:>12,} {ratio:>7.1f} | "
                f"{r['seconds']:>7.3f} {s['seconds']:>7.3f} | {r['roundtrip']:>13.2e}")
        if device == "cuda":
            line += f" | peak rev {r['peak']:,.0f} store {s['peak']:,.0f}"
        print(line)
    if ratio64 is not None:
        verdict = "meets" if ratio64 >= 10 else "MISSES"
        print(f"depth 64: reversible saves {ratio64:.0f}x fewer activation bytes "
              f"({verdict} the 10x goal)")


if __name__ == "__main__":
    main()
