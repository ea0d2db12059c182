"""``spermlib samples …``: the saved-samples commands, defined in :mod:`spermlib.samples.commands`."""

from __future__ import annotations

import argparse

from spermlib.cli.common import add_commands


def _samples_args(p: argparse.ArgumentParser) -> None:
    from spermlib.samples.commands import add_arguments  # no database import until a samples command runs

    add_arguments(p)


def cmd_samples(args: argparse.Namespace) -> int:
    from spermlib.samples.commands import run

    return run(args)


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("samples", "save classified samples, review them, report (PDF/HTML), export, delete", _samples_args,
         cmd_samples),
    ))
