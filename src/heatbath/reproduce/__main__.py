"""``python -m heatbath.reproduce fig8 --quick``."""

import sys

from .cli import main_reproduce

sys.exit(main_reproduce())
