"""benchmarks/step.py still runs: its --quick smoke mode prints the whole goals table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_step_benchmark_quick_prints_goals_table():
    env = {**os.environ, "HEATBATH_COMPILE": "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step.py"), "--quick"],
                         capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    assert "Issue 9 goals" in out
    rows = [line for line in out.splitlines() if line.endswith(("  met", "NOT MET"))]
    assert len(rows) == 13, out
    assert "goals met" in out.splitlines()[-1]
