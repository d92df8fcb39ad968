"""Smoke test of benchmarks/memory.py at a tiny size (the real numbers are in the docs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("heatbath_bench_memory", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_worker_measures_both_modes(bench):
    rev = bench.worker(6, 16, "reversible", 8, 1)
    store = bench.worker(6, 16, "store", 8, 1)
    for r in (rev, store):
        assert r["peak_bytes"] >= 0 and r["saved_bytes"] > 0
        assert r["roundtrip"] <= 1e-5  # float32, 6 blocks of h = 1/6
    # reversible: only the output state (16 x 16 float32 = 1 KiB) is saved; ordinary autograd
    # saves several tensors per block
    assert rev["saved_bytes"] == 16 * 16 * 4
    assert store["saved_bytes"] >= 6 * rev["saved_bytes"]
    t = bench.worker(2, 8, "store", 4, 2, what="time")
    assert t["seconds"] > 0


@pytest.mark.slow  # two fresh Python processes importing torch: ~10 s on a quiet machine
def test_fresh_process_run(bench):
    row = bench.run_config(2, 8, "reversible", 4, 1)
    assert set(row) >= {"peak_bytes", "saved_bytes", "seconds", "roundtrip", "peak_exact"}
    assert row["saved_bytes"] == 8 * 8 * 4
