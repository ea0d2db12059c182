"""``spermlib evaluate``, ``faithfulness``, ``robustness``, ``report``, ``example`` and ``embed``: score the
fold models out of fold, write results/, and regenerate what is generated from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.cli.common import (
    DATASET_HELP,
    STORE_RESULTS_HELP,
    SUBSET_RESULTS_HELP,
    add_checkpoints_arg,
    add_commands,
    add_data_args,
    add_results_arg,
    add_scoring_args,
    fold_or_all,
    scoring_args,
)
from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.store.results import PUBLISHED_PER_CLASS


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--splits", default=None)
    p.add_argument("--tta", action="store_true",
                   help="score the '+ TTA ×8' entry (8-way flip/rotation test-time augmentation) instead of "
                        "the one-view entry; run both to refresh both")
    p.add_argument("--device", default=None)
    add_results_arg(p, SUBSET_RESULTS_HELP)
    add_checkpoints_arg(p)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spermlib.evaluation.evaluate import evaluate_dataset

    spec = get_dataset(args.dataset)
    metrics = evaluate_dataset(spec, tta=args.tta, device=args.device, **scoring_args(spec, args))
    for arch, m in metrics["archs"].items():
        a, f = m["accuracy"], m["macro_f1"]
        print(f"{spec.name}/{arch}: accuracy {a['mean']:.4f} ± {a['std']:.4f} "
              f"(95% CI {a['ci95'][0]:.4f}–{a['ci95'][1]:.4f}), macro-F1 {f['mean']:.4f} ± {f['std']:.4f}")
    for pair, t in metrics.get("mcnemar", {}).items():
        print(f"McNemar {pair}: p = {t['p_value']:.4g}")
    print(f"wrote {metrics['written_to']}")
    return 0


def _faithfulness_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    add_checkpoints_arg(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--per-class", type=int, default=PUBLISHED_PER_CLASS, dest="per_class",
                   help="images per class per test fold (stratified, fixed seed); default %(default)s, the published "
                        "results' subset; 0 = all (slow: ROAD solves a sparse system per image and percentile)")
    p.add_argument("--splits", default=None)
    add_results_arg(p, SUBSET_RESULTS_HELP)


def cmd_faithfulness(args: argparse.Namespace) -> int:
    from spermlib.evaluation.faithfulness import faithfulness_dataset

    spec = get_dataset(args.dataset)
    report = faithfulness_dataset(spec, per_class=args.per_class, **scoring_args(spec, args))
    print(f"wrote {report['written_to']}")
    return 0


def _robustness_args(p: argparse.ArgumentParser) -> None:
    add_scoring_args(p)
    p.add_argument("--folds", default=None, metavar="K,K",
                   help="only these outer folds' test images (e.g. 0,1: a run that trained only those folds; "
                        "write it with --results elsewhere); default every fold")
    p.add_argument("--tta", action="store_true",
                   help="classify each image by the mean over its 8 flips/90° turns, as predict and the Classify page "
                        "do by default (the '<arch>+tta' entries; 8x the compute)")
    p.add_argument("--recompute", action="store_true",
                   help="compute every fold again, even those whose stored predictions (robustness_folds/ beside "
                        "robustness.json) were made by the same fold model, suite and code")


def cmd_robustness(args: argparse.Namespace) -> int:
    from spermlib.evaluation.robustness import robustness_dataset

    spec = get_dataset(args.dataset)
    folds = None if args.folds is None else sorted({int(k) for k in args.folds.split(",") if k.strip()})
    report = robustness_dataset(spec, device=args.device, folds=folds, tta=args.tta, recompute=args.recompute,
                                **scoring_args(spec, args))
    for arch, r in report["archs"].items():
        drops = " / ".join(f"{100 * d:.1f}" for d in r["mean_accuracy_drop"])
        print(f"{spec.name}/{arch}: clean accuracy {r['clean']['accuracy']:.4f}; mean accuracy drop in points "
              f"(mild / middle / strong) {drops}; worst at strong severity: {r['worst_corruption']}")
    print(f"wrote {report['written_to']}")
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    add_results_arg(p, STORE_RESULTS_HELP)
    p.add_argument("--check", action="store_true",
                   help="only check that the generated pages are current (exit 1 if not)")
    p.add_argument("--dataset", default=None, help="print this dataset's results section (e.g. an own dataset's)")


def cmd_report(args: argparse.Namespace) -> int:
    from spermlib.cli.reference import CLI_REFERENCE, write_cli_reference
    from spermlib.evaluation.report import dataset_section, update_generated
    from spermlib.store.paths import project_relative

    if args.dataset:  # an own dataset's section, printed (the generated blocks list the built-in datasets)
        print(dataset_section(get_dataset(args.dataset).name, args.results))
        return 0
    stale = [project_relative(path) for path in update_generated(check=args.check, results_dir=args.results)]
    if not write_cli_reference(CLI_REFERENCE, check=args.check):
        stale.append(project_relative(CLI_REFERENCE))
    if args.check:
        print(f"stale: {', '.join(stale)}; run `spermlib report`" if stale else "generated pages are current")
        return 1 if stale else 0
    print(f"rewrote {', '.join(stale)}" if stale else "generated pages were already current")
    return 0


def _example_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="all", help=f"{DATASET_HELP}, or 'all' (default)")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=ARCHS)
    add_results_arg(p, "results folder to read the OOF table from and write into (default: results/)")
    add_checkpoints_arg(p)


def cmd_example(args: argparse.Namespace) -> int:
    from spermlib.dashboard.triage import NORMAL_LABEL  # the Overview prefers a normal-class example
    from spermlib.data.datasets import DATASETS
    from spermlib.evaluation.worked_example import write_worked_example
    from spermlib.store.cards import available_folds
    from spermlib.store.examples import example_path

    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    for name in names:
        spec = get_dataset(name)
        if args.dataset == "all" and not available_folds(spec, args.arch, Path(args.checkpoints)):
            print(f"{name}: no {args.arch} checkpoints, skipped", file=sys.stderr)
            continue
        example = write_worked_example(spec, args.arch, NORMAL_LABEL.get(name), args.results,
                                       Path(args.checkpoints))
        if example is None:
            print(f"{name}: no bundled sample is classified correctly out of fold; no example written")
        else:
            print(f"{name}: {example.path} (fold {example.fold}, {example.pred}) → {example_path(name, args.results)}")
    return 0


def _embed_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=[*ARCHS, "all"])
    p.add_argument("--fold", default="0", type=fold_or_all, help="fold model number or 'all' (the page shows 0 first)")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--out", default=None, help="cache folder (default: $SPERMLIB_EMBEDDINGS or runs/embeddings/)")
    p.add_argument("--device", default=None)
    add_checkpoints_arg(p)


def cmd_embed(args: argparse.Namespace) -> int:
    from spermlib.evaluation.embedding import embedding_map
    from spermlib.inference.predict import Predictor
    from spermlib.store.embeddings import default_embeddings_dir

    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    cache = Path(args.out) if args.out else default_embeddings_dir()
    for arch in ARCHS if args.arch == "all" else [args.arch]:
        predictor = Predictor.from_checkpoints(spec, arch=arch, folds=None if args.fold == "all" else [int(args.fold)],
                                               checkpoints_dir=Path(args.checkpoints), device=args.device)
        for k in predictor.folds:
            emap = embedding_map(predictor, spec, root, k, splits_path=args.splits, cache_dir=cache, progress=(
                lambda done, total, a=arch, k=k: print(f"\r{spec.name}/{a} fold {k}: {done}/{total} images",
                                                       end="", file=sys.stderr, flush=True)))
            print(f"\n{spec.name}/{arch} fold {k}: {len(emap.frame)} images mapped ({len(emap.errors)} unreadable)"
                  + (f"; {emap.note}" if emap.note else ""), file=sys.stderr)
    print(f"embedding cache: {cache}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("evaluate", "out-of-fold predictions and metrics.json", _evaluate_args, cmd_evaluate),
        ("faithfulness", "score Grad-CAM++ maps on the test folds → faithfulness.json", _faithfulness_args,
         cmd_faithfulness),
        ("robustness", "out-of-fold accuracy under JPEG, blur, noise, colour and geometry corruptions → "
         "robustness.json", _robustness_args, cmd_robustness),
        ("report", "regenerate the generated pages: README.md's headline table, docs/results.md and docs/models.md "
         "from results/ and checkpoints/, docs/cli.md from the parsers",
         _report_args, cmd_report),
        ("example", "precompute the Overview's worked example (Grad-CAM++ and CBAM maps of a bundled sample)",
         _example_args, cmd_example),
        ("embed", "precompute the dashboard's embedding map (features + PCA) into its cache", _embed_args,
         cmd_embed),
    ))
