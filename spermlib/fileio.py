"""Output files written so that a failure never loses or truncates what was there before.

Every report, table, map and cache the library writes goes through :func:`atomic_path`: the content is
written to a temporary file in the destination's folder, flushed to disk, and renamed over the destination
in one step (``os.replace``), so a reader sees the old file or the new one, never half of either. A failure
(a full disk, a missing folder, no permission) removes the temporary file and raises one
:class:`OutputError` that names the destination.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spermlib.errors import SpermlibError


class OutputError(SpermlibError):
    """An output file could not be written; the message names it, and the old file (if any) is unchanged."""


def describe_os_error(err: OSError) -> str:
    """The reason of an OSError in a few words (``no space left on device``, ``permission denied``, …)."""
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    return (err.strerror or type(err).__name__).lower()


# The process's umask, read once (reading it means setting it, which is not thread-safe to do per write).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _mode_for(target: Path) -> int:
    """The permission bits a replaced file keeps, or those a new file gets under the umask (0644 usually)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block ends without an error, it replaces ``path``."""
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
        os.close(fd)
    except OSError as err:
        raise OutputError(f"could not write {target}: {describe_os_error(err)}") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the bytes are on disk before the name points at them
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(target))  # mkstemp makes owner-only files; an output keeps the usual mode
        os.replace(tmp, target)
    except OSError as err:
        raise OutputError(f"could not write {target}: {describe_os_error(err)}; "
                          f"{'the previous file is unchanged' if target.exists() else 'nothing was written'}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode(encoding))


# ----------------------------------------------------------------------------------------- CSV for people

# A spreadsheet runs a cell that begins with one of these as a formula (=HYPERLINK(…), =cmd|…, @SUM(…)).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_csv_cell(value: object) -> object:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula (OWASP's advice);
    numbers and other text unchanged (a negative number stays a number)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_safe_frame(frame):
    """A copy of the pandas DataFrame ``frame`` with every text cell (and column name) through
    :func:`safe_csv_cell`: what every CSV written for a user is made from."""
    from pandas.api.types import is_object_dtype, is_string_dtype  # pandas only where a table is written

    safe = frame.copy()
    for column in safe.columns:
        if is_object_dtype(safe[column]) or is_string_dtype(safe[column]):
            safe[column] = safe[column].map(safe_csv_cell)
    safe.columns = [safe_csv_cell(c) for c in safe.columns]
    return safe


def csv_text(frame) -> str:
    """``frame`` as CSV text for a user (formula-safe, no index, ``\\n`` line ends)."""
    return csv_safe_frame(frame).to_csv(index=False, lineterminator="\n")
