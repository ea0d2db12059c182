"""Command line: ``spermlib <command>``, also ``python -m spermlib <command>`` (``--help`` lists the commands).

Thin: parses and delegates.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spermlib.allocator import tune_malloc
from spermlib.cli import bench, calibration, data, evaluation, predict, samples, training
from spermlib.errors import SpermlibError
from spermlib.fileio import describe_os_error

# Each stage module registers its commands (arguments beside handlers); `--help` lists them in this order.
STAGES = (data, training, evaluation, calibration, predict, bench, samples)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spermlib", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        stage.register(sub)
    return ap


def os_error_line(err: OSError) -> str:
    """``PATH: reason`` for an OS error, so the one-line message names the file it is about (the reason in the
    words of :func:`spermlib.fileio.describe_os_error`, as every output file's error has them)."""
    paths = [str(f) for f in (err.filename, err.filename2) if f is not None]
    if not paths:
        return str(err)  # raised with a sentence of its own (e.g. "split manifest … not found; …")
    reason = describe_os_error(err)
    if isinstance(err, FileExistsError) and not Path(paths[0]).is_dir():
        reason = "is a file where a folder is needed"  # mkdir(exist_ok=True)'s "File exists" misleads
    return f"{' → '.join(paths)}: {reason}"


# Commands that keep the C allocator's default policy: `robustness` makes 40 corrupted copies of every test fold
# (SMIDS: ~180 MB each as floats), one fold model after another; under tune_malloc's policy its process grew past
# 24 GiB and was killed (SMIDS, EfficientNet + CBAM), with glibc's default it stays at 1.3–1.8 GiB.
DEFAULT_MALLOC_COMMANDS = {"robustness"}


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. A failure the user can fix ends in one ``error: …`` line and exit code 2;
    anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    if args.command not in DEFAULT_MALLOC_COMMANDS:
        tune_malloc()  # batch work runs ~1.5× faster with large blocks kept in the heap (allocator.tune_malloc)
    try:
        return args.func(args)
    except SpermlibError as err:
        print(f"error: {err}", file=sys.stderr)
    except BrokenPipeError:
        # `… | head` stopped reading: nothing more can be shown, and Python's exit-time flush must not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
    except KeyboardInterrupt:
        resume = "; training resumes from the last finished epoch when run again" if args.command == "train" else ""
        print(f"interrupted{resume}", file=sys.stderr)
        return 130
    return 2
