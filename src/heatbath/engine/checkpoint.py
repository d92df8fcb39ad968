"""Verified checkpoint files: the data and its SHA-256, written together in one atomic rename.

A checkpoint file is a short text header followed by the payload (``torch.save`` of the state)::

    HEATBATH-CHECKPOINT 1
    sha256 <64 hex digits of the payload>
    bytes <payload length>
    <empty line>
    <payload>

:func:`save` renders the whole file in memory and writes it through
:func:`heatbath.output.io.atomic_write` (a temporary file, fsync, rename): the old checkpoint
stays whole until the new one is complete, and the digest can never belong to other data,
because both are in the same file. :func:`load` checks the header, the length (a truncated
file) and the digest (a flipped bit) before anything is unpickled, then reads the payload with
``torch.load(weights_only=True)`` (tensors and plain containers only: no code runs). Every
failure is a :class:`CheckpointError`: one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import torch

from heatbath.output.io import write_bytes

__all__ = ["CheckpointError", "MAGIC", "save", "load", "verify", "read_payload"]

#: first line of every checkpoint file
MAGIC = b"HEATBATH-CHECKPOINT 1\n"
_HEADER = re.compile(rb"sha256 ([0-9a-f]{64})\nbytes ([0-9]{1,19})\n\n")
_HEADER_MAX = len(MAGIC) + 7 + 64 + 1 + 6 + 19 + 2
#: what the user can do about a bad checkpoint (the CLI's flag)
RESTART_HINT = "rerun with --restart-from-scratch to discard the checkpoints and train from step 0"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt, not a checkpoint).

    Attributes:
        path: the file.
        reason: what is wrong, e.g. ``"corrupt (SHA-256 mismatch)"``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path} is {reason}; {RESTART_HINT}")


def _encode(payload: bytes) -> bytes:
    digest = hashlib.sha256(payload).hexdigest()
    return MAGIC + f"sha256 {digest}\nbytes {len(payload)}\n\n".encode() + payload


def save(path: str | os.PathLike[str], state: Any) -> Path:
    """Write ``state`` (``torch.save``-able) to ``path`` atomically, with its SHA-256.

    Args:
        path: the checkpoint file (its folder is created if needed).
        state: tensors and plain containers (what ``weights_only`` loading accepts).

    Returns:
        ``path``.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    return write_bytes(path, _encode(buf.getvalue()))


def read_payload(path: str | os.PathLike[str]) -> bytes:
    """The verified payload of the checkpoint at ``path``.

    Raises:
        CheckpointError: the file is missing, unreadable, not a heatbath checkpoint, truncated,
            has trailing data, or its digest does not match.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(p, "missing") from None
    except IsADirectoryError:
        raise CheckpointError(p, "a folder, not a file") from None
    except OSError as exc:
        raise CheckpointError(p, f"unreadable ({exc.strerror or exc})") from None
    if not raw.startswith(MAGIC):
        if raw and MAGIC.startswith(raw):
            raise CheckpointError(p, f"truncated (only {len(raw)} bytes)")
        raise CheckpointError(p, "not a heatbath checkpoint (no HEATBATH-CHECKPOINT header)")
    m = _HEADER.match(raw, len(MAGIC), len(MAGIC) + _HEADER_MAX)
    if m is None:
        if len(raw) < _HEADER_MAX:
            raise CheckpointError(p, f"truncated (only {len(raw)} bytes)")
        raise CheckpointError(p, "corrupt (its header is damaged)")
    digest, size = m.group(1).decode(), int(m.group(2))
    payload = raw[m.end():]
    if len(payload) < size:
        raise CheckpointError(p, f"truncated ({len(payload)} of {size} bytes)")
    if len(payload) > size:
        raise CheckpointError(p, f"corrupt ({len(payload) - size} bytes more than its header "
                                 f"says)")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(p, "corrupt (SHA-256 mismatch)")
    return payload


def verify(path: str | os.PathLike[str]) -> None:
    """Check the file's header, length and SHA-256 (see :func:`read_payload`)."""
    read_payload(path)


def load(path: str | os.PathLike[str]) -> Any:
    """Verify the checkpoint at ``path`` and return its state (tensors on the CPU).

    Raises:
        CheckpointError: as :func:`read_payload`, or the payload is not a state that
            ``torch.load(weights_only=True)`` reads.
    """
    payload = read_payload(path)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is the same user error
        # torch's own message suggests weights_only=False: never the advice for a checkpoint
        raise CheckpointError(path, f"not readable as a checkpoint ({type(exc).__name__} "
                                    f"while unpickling)") from None
