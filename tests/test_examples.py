"""Every script in examples/ runs, at a tiny size, so that none of them rots.

Each example is run as ``python examples/NAME.py`` from the repository root with
``HEATBATH_TINY=1`` in its environment: an example reads that variable and shrinks itself to a
few seconds of work (fewer steps, less data); it must exit with status 0. The list is the folder's
contents, so a new example is tested without touching this file; the examples the docs promise
are listed too, and skipped only while they do not exist yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# the examples docs/examples.md presents; any other script in examples/ is run too
PROMISED = ("quickstart", "cnn_adlala", "posterior_sampling", "ctld_small_net",
            "reversible_network", "dto_otd", "ddp_train", "fsdp_train")
NAMES = sorted(set(PROMISED) | {p.stem for p in EXAMPLES.glob("*.py")})
# multi-process examples (two gloo ranks, compiled kernels in each): minutes on a loaded 2-core
# machine, so they run with the slow tests
SLOW = {"ddp_train", "fsdp_train"}
# a tiny run takes seconds of CPU; the limit only catches a hang on a loaded machine
TIMEOUT_S = 600


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES])
def test_example_runs_tiny(name: str) -> None:
    script = EXAMPLES / f"{name}.py"
    if not script.is_file():
        pytest.skip(f"examples/{name}.py does not exist yet")
    # torch's compile cache (under the default temp folder) is shared with the other tests
    env = dict(os.environ, HEATBATH_TINY="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, (
        f"examples/{name}.py exited with {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}")
    assert proc.stdout.strip(), f"examples/{name}.py printed nothing"
