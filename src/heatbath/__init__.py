"""heatbath: thermodynamic training and structure-preserving networks for PyTorch."""

__version__ = "0.1.0"
