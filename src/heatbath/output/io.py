"""Output files that are written whole or not at all.

Every file a run produces goes through :func:`atomic_write`: the content is written to a temporary
file in the destination's own directory (so the final rename never crosses a file system), flushed
and fsync'ed, then moved over the destination with :func:`os.replace`, which is atomic on POSIX and
Windows, and the folder is fsync'ed so the rename survives a power cut. A crash or exception
mid-write leaves the previous file (or no file), never half of one, and the temporary file is
removed. An ``OSError`` without a file name (a full disk reported by ``write`` or ``fsync``) is
raised again naming the destination, so the user learns which file could not be written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "write_text",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_toml",
    "to_toml",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# files get the mode a plain open() would give them (mkstemp's are private, 0600)
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit move it over ``path``.

    ``mode`` is ``"w"`` (text, UTF-8, ``\\n`` newlines) or ``"wb"``. If the ``with`` body raises,
    the temporary file is deleted and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:  # a read-only or full folder: name the file we wanted to write
        raise OSError(exc.errno, exc.strerror, str(dest)) from exc
    try:
        if mode == "w":
            fh: IO[Any] = os.fdopen(fd, "w", encoding="utf-8", newline="")
        else:
            fh = os.fdopen(fd, "wb")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # a full disk fails in write/flush/fsync, which do not name the file
            raise OSError(exc.errno, exc.strerror, str(dest)) from exc
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` to ``path`` (UTF-8) and return the path."""
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` and return the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def _csv_cell(value: object) -> object:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return value


def write_csv(
    path: str | os.PathLike[str],
    rows: Iterable[Mapping[str, object]],
    columns: Sequence[str],
) -> Path:
    """Atomically write ``rows`` (dicts) as CSV with the header ``columns``.

    The whole table is rendered in memory first, so an exception from a row (a missing column,
    a failing iterator) leaves no file behind. Floats are written with ``repr`` (round-trips
    exactly); missing keys are an error rather than a silent blank.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise KeyError(f"row {i} lacks column(s) {', '.join(missing)}")
        writer.writerow([_csv_cell(row[c]) for c in columns])
    return write_text(path, buf.getvalue())


def write_json(path: str | os.PathLike[str], obj: object) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _toml_key(key: str) -> str:
    if key and all(ch.isalnum() or ch in "-_" for ch in key):
        return key
    return json.dumps(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes are all valid in a TOML basic string
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, os.PathLike):
        return json.dumps(os.fspath(value))
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def to_toml(data: Mapping[str, object], _prefix: str = "") -> str:
    """Render a nested dict as TOML (scalars first, then one ``[table]`` per nested dict).

    Supports what configs contain: str, int, float, bool, lists of those, nested dicts, and
    lists of dicts as ``[[array.of.tables]]``. ``None`` values are omitted (TOML has no null).
    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, object]]] = []
    arrays: list[tuple[str, list[Mapping[str, object]]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif (isinstance(value, list) and value
              and all(isinstance(v, Mapping) for v in value)):
            arrays.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, table in tables:
        name = f"{_prefix}{_toml_key(key)}"
        body = to_toml(table, name + ".")
        # a table holding only sub-tables needs no header of its own
        out += body if body.startswith("\n[") else f"\n[{name}]\n{body}"
    for key, items in arrays:
        name = f"{_prefix}{_toml_key(key)}"
        for item in items:
            out += f"\n[[{name}]]\n{to_toml(item, name + '.')}"
    return out


def write_toml(path: str | os.PathLike[str], data: Mapping[str, object]) -> Path:
    """Atomically write a nested dict as TOML (see :func:`to_toml`)."""
    return write_text(path, to_toml(data))
