"""``spermlib ood`` and ``bias``: what each fold model's predictions are adjusted and flagged by — out-of-domain
detectors, temperatures and per-class decision biases, fitted on inner validation."""

from __future__ import annotations

import argparse

from spermlib.cli.common import add_commands, add_scoring_args, scoring_args
from spermlib.data.datasets import get_dataset


def _ood_args(p: argparse.ArgumentParser) -> None:
    add_scoring_args(p)
    p.add_argument("--refit", action="store_true", help="fit the detectors and temperatures again even if stored")


def cmd_ood(args: argparse.Namespace) -> int:
    from spermlib.evaluation.ood import ood_dataset
    from spermlib.evaluation.report import temperature_use

    spec = get_dataset(args.dataset)
    report = ood_dataset(spec, device=args.device, refit=args.refit, **scoring_args(spec, args))
    for arch, r in report["archs"].items():
        o, n, c = r["other_dataset"], r["natural_photographs"], r["calibration"]
        print(f"{spec.name}/{arch}: {r['detector']} detector; flagged: test folds {r['test_folds']['flagged']:.1%}, "
              f"other dataset {o['flagged']:.1%} (AUROC {o['auroc']:.3f}), natural photographs {n['flagged']:.1%} "
              f"(AUROC {n['auroc']:.3f}); out-of-fold ECE {c['ece_before']:.3f} → {c['ece_after']:.3f} with "
              f"temperature scaling ({temperature_use(c)})")
    print(f"wrote {report['written_to']}")
    return 0


def cmd_bias(args: argparse.Namespace) -> int:
    from spermlib.calibration.decision_bias import MODES
    from spermlib.evaluation.bias import decision_bias_dataset

    spec = get_dataset(args.dataset)
    report = decision_bias_dataset(spec, device=args.device, **scoring_args(spec, args))
    for arch, r in report["archs"].items():
        for k, d in r["folds"].items():
            print(f"{spec.name}/{arch} fold {k}: " + "; ".join(
                f"{m} {d[m]['inner_val_right_without']} → {d[m]['inner_val_right_cross_fitted']} of "
                f"{d[m]['n_inner_val']} right cross-fitted ({'taken' if d[m]['taken'] else 'none'})"
                for m in MODES))
    print(f"wrote {report['written_to']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("ood", "fit out-of-domain detectors + temperatures per fold model; AUROC and flag rates → ood.json",
         _ood_args, cmd_ood),
        ("bias", "per fold model, a per-class decision bias fitted on its inner validation, kept where a cross-fit "
         "there says it helps (fold cards) → decision_bias.json", add_scoring_args, cmd_bias),
    ))
