"""``spermlib bench``: speed, measured in one process against bare timm."""

from __future__ import annotations

import argparse

from spermlib.archs import ARCHS
from spermlib.cli.common import DATASET_HELP, add_commands, check_output_file


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--dataset", default="smids", help=DATASET_HELP)
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.add_argument("--no-app", action="store_true", dest="no_app",
                   help="skip the dashboard row (fresh process → first prediction)")
    p.add_argument("--no-ray", action="store_true", dest="no_ray",
                   help="skip the Ray batch prediction row (also skipped when Ray is not installed)")


def cmd_bench(args: argparse.Namespace) -> int:
    from spermlib.evaluation.bench import run_bench

    if args.out:
        check_output_file(args.out)
    run_bench(quick=args.quick, out=args.out, dataset=args.dataset, arch=args.arch, app=not args.no_app,
              ray=not args.no_ray)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("bench", "speed: times and ratios against bare timm, measured in one process", _bench_args, cmd_bench),
    ))
