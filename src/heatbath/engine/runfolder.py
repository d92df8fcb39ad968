"""Run folders that never lose or mix data: ownership, an exclusive lock, safe names.

A run folder ``<out>/<name>/`` belongs to heatbath when it holds the marker file
``.heatbath-run`` (JSON: a format tag, the SHA-256 of the run's config and that config). The
rules, all checked before anything in the folder is written (see docs/run-folders.md):

- a **fresh run** goes into a folder that does not exist, is empty, or is a heatbath run of the
  *same* config (its earlier outputs and checkpoints are then replaced). A heatbath run of
  another config is replaced only with ``force=True`` (``--force``). A non-empty folder that
  is not a heatbath run is never touched: the user's own files are not ours to delete.
- ``resume=True`` needs the marker of the same config and a ``checkpoints/`` folder.
- one process at a time: :meth:`RunFolder.claim` takes an exclusive ``fcntl.flock`` on
  ``.heatbath-lock`` in the folder and holds it until :meth:`RunFolder.release` (or the end
  of the ``with`` block, or the death of the process: the OS drops the lock of a crashed
  process). A second run on the same folder fails at once, naming the folder and the PID of
  the run that holds it.
- every path component that comes from user input (the run name, method labels) is checked by
  :func:`check_component`: letters, digits, ``_``, ``-`` and ``.``, starting with a letter, a
  digit or ``_``, at most 64 characters. So no name can climb out of ``<out>`` (``..``, ``/``)
  or hide (a leading ``.``).

The config's identity leaves out what does not change the results: ``out``, ``name``,
``threads``, ``workers`` and ``checkpoint_every``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from heatbath.engine.config import ConfigError

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MARKER",
    "LOCK",
    "RUN_FILES",
    "CHECKPOINT_DIR",
    "RunFolder",
    "RunFolderError",
    "RunFolderBusy",
    "check_component",
    "config_identity",
    "config_hash",
]

#: the ownership marker of a run folder
MARKER = ".heatbath-run"
#: the lock file of a run folder (holds the PID of the run that has the lock)
LOCK = ".heatbath-lock"
#: the files a run writes into its folder (besides ``checkpoints/``)
RUN_FILES = ("config.toml", "metrics.csv", "summary.md", "summary.csv", "curves.png",
             "decision_maps.png", "histograms.png")
#: the folder of a run's checkpoints
CHECKPOINT_DIR = "checkpoints"
#: checkpoint files: ``<label>.pt``
CHECKPOINT_SUFFIX = ".pt"

_MARKER_FORMAT = "heatbath.run/1"
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# config keys that do not change what a run computes
_NOT_IDENTITY = ("out", "name", "threads", "workers", "checkpoint_every")


class RunFolderError(ConfigError):
    """A run folder that may not be used as asked; the message is one line naming it."""


class RunFolderBusy(RunFolderError):
    """Another process holds the run folder's lock."""


def check_component(field: str, value: object) -> str:
    """Return ``value`` if it is a safe file-name component, else raise :class:`ConfigError`.

    Safe: 1 to 64 characters from ``A-Z a-z 0-9 _ - .``, the first a letter, a digit or ``_``
    (so never ``.``, ``..``, a hidden name, a path separator or an absolute path).

    Args:
        field: the config field to name in the error (``name``, ``methods.<label>``).
        value: the user's value.

    Returns:
        ``value``, unchanged.

    Raises:
        ConfigError: ``value`` is not a string or not a safe component.
    """
    if not isinstance(value, str) or not _SAFE.fullmatch(value):
        raise ConfigError(f"{field} must be 1-64 characters from A-Z a-z 0-9 _ - . starting "
                          f"with a letter, digit or _ (it names a file or folder), got {value!r}")
    return value


def config_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that defines what a run computes (see module doc)."""
    return {k: v for k, v in config.items() if k not in _NOT_IDENTITY}


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of :func:`config_identity` in canonical JSON."""
    return hashlib.sha256(_canonical(config_identity(config))).hexdigest()


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    fa, fb = _flatten(a), _flatten(b)
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k, None) != fb.get(k, None))
    if not keys:
        return "its recorded config"
    shown = ", ".join(keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class RunFolder:
    """A claimed (locked) run folder; make one with :meth:`claim`.

    Use it as a context manager (or call :meth:`release`) so the lock is released on every
    exit. Nothing is written into the folder until :meth:`start`.
    """

    def __init__(self, path: Path, config: Mapping[str, Any], *, resume: bool, force: bool,
                 lock_fd: int | None) -> None:
        self.path = path
        self.config = config
        self.resume = resume
        self.force = force
        self._lock_fd = lock_fd

    # ------------------------------------------------------------------ claiming
    @classmethod
    def claim(cls, path: str | os.PathLike[str], config: Mapping[str, Any], *,
              resume: bool = False, force: bool = False) -> RunFolder:
        """Check that ``path`` may hold this run, then create it and take its lock.

        Args:
            path: the run folder ``<out>/<name>``.
            config: the resolved config (its identity must match the marker's on resume).
            resume: continue the run in the folder (marker of the same config needed).
            force: a fresh run may replace a heatbath run of another config.

        Raises:
            RunFolderError: the folder may not be used (one line, naming it and the way out).
            RunFolderBusy: another process holds the lock (names its PID).
            OSError: the folder cannot be created (read-only, no space).
        """
        if resume and force:
            raise RunFolderError("--force starts a run afresh; it cannot be combined with "
                                 "--resume")
        folder = Path(path)
        _check_use(folder, config, resume=resume, force=force)  # before creating anything
        folder.mkdir(parents=True, exist_ok=True)
        fd = _lock(folder)
        try:
            _check_use(folder, config, resume=resume, force=force)  # again, under the lock
        except BaseException:
            _unlock(fd)
            raise
        return cls(folder, config, resume=resume, force=force, lock_fd=fd)

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def checkpoint_path(self, label: str) -> Path:
        """``checkpoints/<label>.pt``, for a label checked by :func:`check_component`."""
        check_component("method label", label)
        return self.inside(self.checkpoint_dir / f"{label}{CHECKPOINT_SUFFIX}")

    def inside(self, path: str | os.PathLike[str]) -> Path:
        """``path`` if it lies inside the run folder, else :class:`RunFolderError`."""
        p = Path(path)
        root = self.path.resolve()
        target = (p if p.is_absolute() else Path.cwd() / p).resolve()
        if target != root and root not in target.parents:
            raise RunFolderError(f"refusing to write {p}: it is outside the run folder "
                                 f"{self.path}")
        return p

    def existing_checkpoints(self, labels: Iterable[str]) -> list[Path]:
        """The checkpoint files of ``labels`` that exist (for verification on resume)."""
        return [p for p in (self.checkpoint_path(lb) for lb in labels) if p.is_file()]

    # ------------------------------------------------------------------ writing
    def start(self) -> None:
        """Make the folder this run's: on a fresh run, remove the earlier run's outputs and
        checkpoints (only files heatbath writes; anything else stays) and write the marker.
        On resume the marker already matches and nothing is written.
        """
        if self.resume:
            return
        (self.path / MARKER).unlink(missing_ok=True)  # half-cleaned = not a run of this config
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        ckpt = self.checkpoint_dir
        if ckpt.is_dir():
            for f in ckpt.iterdir():
                if f.is_file() and (f.name.endswith(CHECKPOINT_SUFFIX)
                                    or (f.name.startswith(".") and f.name.endswith(".tmp"))):
                    f.unlink()
            with contextlib.suppress(OSError):
                ckpt.rmdir()  # only if empty
        from heatbath.output.io import write_json

        write_json(self.path / MARKER, {"format": _MARKER_FORMAT,
                                        "config_sha256": config_hash(self.config),
                                        "config": config_identity(self.config)})

    # ------------------------------------------------------------------ the lock
    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock_fd is not None:
            _unlock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - safety net
        with contextlib.suppress(Exception):
            self.release()


# ---------------------------------------------------------------------- checks


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, ``None`` if there is none; a garbled one is a RunFolderError."""
    path = folder / MARKER
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RunFolderError(f"run folder {folder}: {MARKER} is a folder, not a marker "
                             f"file") from None
    try:
        marker = json.loads(raw.decode("utf-8"))
        ok = (isinstance(marker, dict) and marker.get("format") == _MARKER_FORMAT
              and isinstance(marker.get("config_sha256"), str))
    except (UnicodeDecodeError, ValueError):
        ok = False
    if not ok:
        raise RunFolderError(f"run folder {folder}: its {MARKER} marker is unreadable; remove "
                             f"the folder or choose another --name")
    return marker


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in folder.iterdir() if e.name != LOCK)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise RunFolderError(f"run folder {folder} is a file, not a folder; choose another "
                             f"--name") from None


def _check_use(folder: Path, config: Mapping[str, Any], *, resume: bool, force: bool) -> None:
    entries = _entries(folder)
    marker = read_marker(folder) if entries else None
    want = config_hash(config)
    same = marker is not None and marker["config_sha256"] == want
    differs = "" if marker is None or same else _differences(
        marker.get("config") or {}, config_identity(config))
    if resume:
        if marker is None:
            if CHECKPOINT_DIR in entries:
                raise RunFolderError(f"--resume: {folder} has no {MARKER} marker (not a "
                                     f"heatbath run, or one of an older version); start "
                                     f"afresh with --force")
            raise RunFolderError(f"--resume: no checkpoints in {folder / CHECKPOINT_DIR} to "
                                 f"continue from")
        if not same:
            raise RunFolderError(f"--resume: {folder} holds a run of another config (differs "
                                 f"in: {differs}); resume with the same settings, or start "
                                 f"afresh with --force")
        if not (folder / CHECKPOINT_DIR).is_dir():
            raise RunFolderError(f"--resume: no checkpoints in {folder / CHECKPOINT_DIR} to "
                                 f"continue from")
        return
    if not entries or same:
        return
    if marker is None:
        ours = set(RUN_FILES) | {CHECKPOINT_DIR}
        if "config.toml" in entries and set(entries) <= ours:  # a run writes config.toml first
            if force:
                return
            raise RunFolderError(f"{folder} holds outputs of a heatbath run without a {MARKER} "
                                 f"marker (an older version); rerun with --force to replace "
                                 f"them")
        raise RunFolderError(f"{folder} is not empty and is not a heatbath run folder (no "
                             f"{MARKER}); choose another --name or --out, nothing was changed")
    if not force:
        raise RunFolderError(f"{folder} holds a heatbath run of another config (differs in: "
                             f"{differs}); rerun with --force to replace it, or use another "
                             f"--name")


def _lock(folder: Path) -> int | None:
    if fcntl is None:  # pragma: no cover - Windows
        return None
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = "?"
        with contextlib.suppress(OSError, ValueError):
            holder = str(int(os.pread(fd, 32, 0).split()[0]))
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunFolderBusy(f"run folder {folder} is in use by another heatbath run "
                                f"(PID {holder}); wait for it to end or choose another "
                                f"--name") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def open_run(config: Mapping[str, Any], labels: Iterable[str], *, resume: bool = False,
             force: bool = False) -> RunFolder:
    """Claim ``<out>/<name>`` for a resolved ``config``, check it, and make it this run's.

    The order is the point: first everything is checked (ownership, config, lock and, on
    resume, the SHA-256 of every existing checkpoint of ``labels``), and only then is anything
    written (:meth:`RunFolder.start`). Use the result as a context manager: the lock is held
    until the block ends.

    Raises:
        RunFolderError, RunFolderBusy: see :meth:`RunFolder.claim`.
        CheckpointError: a checkpoint is truncated or corrupt (names the file).
    """
    from heatbath.engine import checkpoint

    folder = RunFolder.claim(Path(config["out"]) / config["name"], config, resume=resume,
                             force=force)
    try:
        labels = list(labels)
        for label in labels:
            folder.checkpoint_path(label)  # every label is a safe name
        if resume:
            for path in folder.existing_checkpoints(labels):
                checkpoint.verify(path)
        folder.start()
    except BaseException:
        folder.release()
        raise
    return folder
