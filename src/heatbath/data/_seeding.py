"""Independent random streams derived from one user seed.

A run with seed ``s`` needs several random streams that must not be correlated: the model
initialisation, the minibatch order, the optimizer's noise, a fresh test set. Seeding two
``torch.Generator`` objects with the same ``s`` would give the *same* Mersenne-Twister stream, so
every stream except the initialisation (which uses ``s`` itself, so that ``SHLP(seed=s)`` equals
``torch.manual_seed(s); SHLP()``) gets its own seed

    seed_stream = SeedSequence([s, stream]).generate_state(1, uint64)[0] mod 2**63,

NumPy's SeedSequence hash, which is documented, platform independent and designed for exactly
this (distinct inputs give statistically independent outputs).
"""

from __future__ import annotations

import numpy as np

from heatbath._validate import check_int

__all__ = ["derive_seed", "STREAM_DATA_ORDER", "STREAM_OPTIMIZER", "STREAM_TEST_DATA"]

#: minibatch order of a training run
STREAM_DATA_ORDER = 1
#: the optimizer's noise generator
STREAM_OPTIMIZER = 2
#: a test set drawn fresh from the same data generator as the training set
STREAM_TEST_DATA = 3


def derive_seed(seed: int, stream: int) -> int:
    """Return a 63-bit seed for random stream ``stream`` of a run seeded with ``seed``."""
    seed = check_int("seed", seed, low=0)
    stream = check_int("stream", stream, low=0)
    state = np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0]
    return int(state) & ((1 << 63) - 1)
