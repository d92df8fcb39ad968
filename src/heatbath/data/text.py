"""Character-level text corpora for the char-RNN experiments (CTLD paper §5.2-5.3).

- :func:`load_text` reads any UTF-8 file, or, offline by default, the Python standard library's
  own source text (the ``*.py`` files at the top of ``sysconfig.get_paths()["stdlib"]``, in
  sorted order, concatenated), which every machine with Python has. The paper used enwik8 and
  *War and Peace*; the default corpus is a stand-in and the experiments say so in their output.
- :class:`CharCorpus` maps characters to indices (vocabulary = the characters of the whole
  text, sorted; heatbath's choice, so the test split has no unknown symbols), splits the text
  contiguously into train/validation/test, and serves random training windows and the
  fixed evaluation windows of a split.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import torch

from heatbath._validate import check_int, check_real

__all__ = ["CharCorpus", "load_text", "stdlib_source_text"]


def stdlib_source_text(max_chars: int | None = None) -> str:
    """The concatenated ``*.py`` files at the top level of the standard library (sorted)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))
    if not files:
        raise FileNotFoundError(f"no *.py files under the standard library folder {root}")
    parts: list[str] = []
    total = 0
    for f in files:
        try:
            chunk = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(chunk)
        total += len(chunk)
        if max_chars is not None and total >= max_chars:
            break
    text = "".join(parts)
    return text if max_chars is None else text[:max_chars]


def load_text(path: str | os.PathLike[str] | None = None,
              max_chars: int | None = None) -> tuple[str, str]:
    """Return ``(text, description)``: a UTF-8 file, or the stdlib source text when ``None``."""
    if max_chars is not None:
        check_int("max_chars", max_chars, low=1000)
    if path is None:
        text = stdlib_source_text(max_chars)
        desc = (f"Python {sysconfig.get_python_version()} standard-library source text "
                f"({len(text):,} characters; offline stand-in for the paper's enwik8 / "
                "War and Peace)")
        return text, desc
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"text_path {p} is not a file; give a UTF-8 text file or None "
                                "for the standard-library source text")
    text = p.read_text(encoding="utf-8")
    if max_chars is not None:
        text = text[:max_chars]
    return text, f"{p.name} ({len(text):,} characters)"


class CharCorpus:
    """A character corpus split contiguously into train / validation / test.

    Args:
        text: the whole text.
        fractions: (train, validation, test) shares, positive, summing to 1.
    """

    def __init__(self, text: str, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)):
        if len(text) < 1000:
            raise ValueError(f"text must have at least 1000 characters, got {len(text)}")
        if len(fractions) != 3:
            raise ValueError(f"fractions must be (train, validation, test), got {fractions!r}")
        for name, f in zip(("train", "validation", "test"), fractions, strict=True):
            check_real(f"fractions[{name}]", f, low=0.0, high=1.0, low_open=True)
        if abs(sum(fractions) - 1.0) > 1e-9:
            raise ValueError(f"fractions must sum to 1, got {sum(fractions)}")
        self.vocab = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.vocab)}
        data = torch.tensor([self.index[ch] for ch in text], dtype=torch.long)
        n = len(data)
        a = int(fractions[0] * n)
        b = a + int(fractions[1] * n)
        self.splits = {"train": data[:a], "validation": data[a:b], "test": data[b:]}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def num_chars(self, split: str = "train") -> int:
        return int(self.splits[split].numel())

    def random_batch(self, batch: int, seq_len: int, generator: torch.Generator,
                     split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` random windows: inputs ``[batch, seq_len]`` and next-character targets."""
        data = self.splits[split]
        if data.numel() <= seq_len + 1:
            raise ValueError(f"split {split!r} is shorter than seq_len + 1 = {seq_len + 1}")
        start = torch.randint(0, data.numel() - seq_len - 1, (batch,), generator=generator)
        idx = start[:, None] + torch.arange(seq_len + 1)[None, :]
        win = data[idx]
        return win[:, :-1], win[:, 1:]

    def eval_windows(self, split: str, seq_len: int, max_windows: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Consecutive non-overlapping windows covering ``split`` (up to ``max_windows``)."""
        data = self.splits[split]
        k = (data.numel() - 1) // seq_len
        if max_windows is not None:
            k = min(k, max_windows)
        if k < 1:
            raise ValueError(f"split {split!r} is shorter than seq_len + 1 = {seq_len + 1}")
        x = data[: k * seq_len].view(k, seq_len)
        y = data[1: k * seq_len + 1].view(k, seq_len)
        return x, y
