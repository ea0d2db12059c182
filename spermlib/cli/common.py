"""What several stages' commands share: the data, checkpoints and results options, the ``--fold`` type,
the output-file check, and how a stage module registers its commands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from spermlib.archs import ARCHS
from spermlib.data.datasets import resolve_data_root
from spermlib.errors import SpermlibError
from spermlib.store.paths import default_checkpoints_dir

DATASET_HELP = "built-in (smids, hushem), an own dataset's registered name, or a folder with one sub-folder per class"
SUBSET_RESULTS_HELP = "results folder (default results/, or runs/results/ for a subset)"
STORE_RESULTS_HELP = "results folder (default: $SPERMLIB_RESULTS or results/)"

Command = Callable[[argparse.Namespace], int]
# (name, one-line help, adds the command's arguments, runs it), in the order `--help` lists them.
CommandSpec = tuple[str, str, Callable[[argparse.ArgumentParser], None], Command]


def add_commands(sub: argparse._SubParsersAction, commands: tuple[CommandSpec, ...]) -> None:
    """One sub-parser per command, its handler stored as ``args.func``."""
    for name, help_text, add_args, run in commands:
        p = sub.add_parser(name, help=help_text)
        add_args(p)
        p.set_defaults(func=run)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (or its parent); default $SPERM_DATA_DIR, then the bundled sample")


def add_checkpoints_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", default=str(default_checkpoints_dir()),
                   help="checkpoints folder (default: $SPERMLIB_CHECKPOINTS or checkpoints/)")


def add_results_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--results", default=None, help=help_text)


def add_scoring_args(p: argparse.ArgumentParser) -> None:
    """The options of a command that scores fold models on their test folds (robustness, ood, bias)."""
    add_data_args(p)
    add_checkpoints_arg(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--splits", default=None)
    p.add_argument("--device", default=None)
    add_results_arg(p, SUBSET_RESULTS_HELP)


def scoring_args(spec, args: argparse.Namespace) -> dict:
    """What the scoring commands pass alike: the data root, archs, split manifest and folders."""
    return {"root": resolve_data_root(spec, args.data_dir), "archs": [args.arch] if args.arch else None,
            "splits_path": args.splits, "checkpoints_dir": Path(args.checkpoints),
            "results_base": Path(args.results) if args.results else None}


def fold_or_all(text: str) -> str:
    """``--fold`` type: a fold number or ``all``."""
    if text != "all" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a fold number or 'all', got {text!r}")
    return text


def check_output_file(path: str) -> None:
    """Fail before a long run rather than after it when its ``--out`` file cannot be written."""
    out = Path(path)
    if out.is_dir():
        raise SpermlibError(f"--out {out} is a folder; give a file name, e.g. {out / 'bench.json'}")
    parent = out.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise SpermlibError(f"--out {out}: cannot write into {parent} (missing or not writable)")
