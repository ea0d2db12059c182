"""Command line: ``python -m spermlib {splits,train,tune,evaluate,faithfulness,robustness,report,predict,embed,bench}``.

Thin: parses and delegates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.data.datasets import DATASETS, PROJECT_ROOT, get_dataset, resolve_data_root
from spermlib.errors import SpermlibError
from spermlib.store.paths import default_checkpoints_dir


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="dataset / task")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (or its parent); default $SPERM_DATA_DIR, then the bundled sample")


def _add_checkpoints_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", default=str(default_checkpoints_dir()),
                   help="checkpoints folder (default: $SPERMLIB_CHECKPOINTS or checkpoints/)")


_SUBSET_RESULTS_HELP = "results folder (default results/, or runs/results/ for a subset)"


def _add_results_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--results", default=None, help=help_text)


def _check_output_file(path: str) -> None:
    """Fail before a long run rather than after it when its ``--out`` file cannot be written."""
    out = Path(path)
    if out.is_dir():
        raise SpermlibError(f"--out {out} is a folder; give a file name, e.g. {out / 'bench.json'}")
    parent = out.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise SpermlibError(f"--out {out}: cannot write into {parent} (missing or not writable)")


def cmd_splits(args: argparse.Namespace) -> int:
    from spermlib.data.splits import SPLIT_SEED, assign_folds, hash_images, manifest_path, report, write_manifest

    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    print(f"hashing {spec.name} images under {root} …", file=sys.stderr)
    df = assign_folds(hash_images(spec, root), n_folds=args.folds,
                      seed=SPLIT_SEED if args.seed is None else args.seed)
    rep = report(df)
    print(f"{rep.n_images} images, {rep.n_groups} pixel-identical groups, "
          f"{len(rep.duplicate_groups)} groups with duplicates")
    if rep.conflicting_groups:
        print(f"{len(rep.conflicting_groups)} duplicate groups have conflicting labels; "
              "excluded from training and evaluation (fold -1):")
        for g in rep.conflicting_groups:
            print("  " + "  =  ".join(f"{p} [{lab}]" for p, lab in g))
    print("images per fold and class (fold -1 = excluded):")
    print(rep.fold_counts.to_string())
    out = Path(args.out) if args.out else manifest_path(spec)
    sha = write_manifest(df, out)  # after the report: an unwritable --out still leaves the report on screen
    print(f"wrote {out} (sha256 {sha[:12]}…)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from spermlib.data.splits import manifest_for_root
    from spermlib.training.train import DecodedImages, Recipe, fold_is_done, load_fold_data, train_fold

    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    manifest, sha = manifest_for_root(spec, root, args.splits)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    folds = range(int(manifest["fold"].max()) + 1) if args.fold == "all" else [int(args.fold)]
    archs = [args.arch] if args.arch != "all" else list(ARCHS)
    overrides = {k: getattr(args, k) for k in (*(name for name, _, _ in _RECIPE_OPTIONS), "precision")}
    if args.balanced:
        overrides["balanced_sampling"] = True
    decoded: dict[int, DecodedImages] = {}  # input size → images, decoded once for all archs and folds
    for arch in archs:
        recipe = Recipe.for_arch(arch, spec.name, **overrides)
        size = recipe.input_size or spec.input_size
        for k in folds:
            if not args.force and fold_is_done(spec, arch, k, sha, args.checkpoints):
                print(f"{spec.name}/{arch} fold {k}: checkpoint exists for this split (use --force to retrain)")
                continue
            if size not in decoded:
                decoded[size] = DecodedImages(root, manifest, size)
            data = load_fold_data(spec, root, manifest, k, recipe, size, decoded[size])
            card = train_fold(spec, arch, k, data, recipe, manifest_sha256=sha, backbone=args.backbone,
                              pretrained=args.pretrained, weights_path=args.weights, device=args.device,
                              checkpoints_dir=Path(args.checkpoints), runs_dir=Path(args.runs))
            iv = card["inner_val"]
            print(f"{spec.name}/{arch} fold {k}: inner-val accuracy {iv['accuracy']:.4f} "
                  f"macro-F1 {iv['macro_f1']:.4f} ({card['epochs_run']} epochs, {card['training_seconds']:.0f} s)")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from spermlib.store.results import TUNING_FILE, dataset_results_dir
    from spermlib.training.tuning import compare_configs, format_comparison, record_comparison

    spec = get_dataset(args.dataset)
    runs = {args.baseline_name: Path(args.checkpoints)}
    for item in args.run:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise SpermlibError(f"--run wants NAME=FOLDER, got {item!r}")
        runs[name] = Path(folder)
    comparison = compare_configs(spec, args.arch, runs)
    print(format_comparison(comparison))
    if args.record:
        path = dataset_results_dir(spec.name, args.results) / TUNING_FILE
        print(f"wrote {record_comparison(comparison, path, merge=args.merge)}")
    return 0


def _scoring_args(spec, args: argparse.Namespace) -> dict:
    """What evaluate and faithfulness take alike: the data root, archs, split manifest and folders."""
    return {"root": resolve_data_root(spec, args.data_dir), "archs": [args.arch] if args.arch else None,
            "splits_path": args.splits, "checkpoints_dir": Path(args.checkpoints),
            "results_base": Path(args.results) if args.results else None}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spermlib.evaluation.evaluate import evaluate_dataset

    spec = get_dataset(args.dataset)
    metrics = evaluate_dataset(spec, tta=args.tta, device=args.device, **_scoring_args(spec, args))
    for arch, m in metrics["archs"].items():
        a, f = m["accuracy"], m["macro_f1"]
        print(f"{spec.name}/{arch}: accuracy {a['mean']:.4f} ± {a['std']:.4f} "
              f"(95% CI {a['ci95'][0]:.4f}–{a['ci95'][1]:.4f}), macro-F1 {f['mean']:.4f} ± {f['std']:.4f}")
    for pair, t in metrics.get("mcnemar", {}).items():
        print(f"McNemar {pair}: p = {t['p_value']:.4g}")
    print(f"wrote {metrics['written_to']}")
    return 0


def cmd_faithfulness(args: argparse.Namespace) -> int:
    from spermlib.evaluation.faithfulness import faithfulness_dataset

    spec = get_dataset(args.dataset)
    report = faithfulness_dataset(spec, per_class=args.per_class, **_scoring_args(spec, args))
    print(f"wrote {report['written_to']}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from spermlib.evaluation.robustness import robustness_dataset

    spec = get_dataset(args.dataset)
    report = robustness_dataset(spec, device=args.device, **_scoring_args(spec, args))
    for arch, r in report["archs"].items():
        drops = " / ".join(f"{100 * d:.1f}" for d in r["mean_accuracy_drop"])
        print(f"{spec.name}/{arch}: clean accuracy {r['clean']['accuracy']:.4f}; mean accuracy drop in points "
              f"(mild / middle / strong) {drops}; worst at strong severity: {r['worst_corruption']}")
    print(f"wrote {report['written_to']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from spermlib.evaluation.report import README, update_readme

    current = update_readme(README, results_dir=args.results, check=args.check)
    if args.check:
        print("README results are current" if current else "README results are stale: run `python -m spermlib report`")
        return 0 if current else 1
    print("README results were already current" if current else f"rewrote the results block of {README}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from spermlib.inference.predict import Predictor, format_table

    spec = get_dataset(args.dataset)
    predictor = Predictor.from_checkpoints(spec, arch=args.arch, folds=None if args.fold is None else [args.fold],
                                           checkpoints_dir=Path(args.checkpoints), device=args.device)
    cam_error = _cam_dir_error(Path(args.cam)) if args.cam else None
    results = predictor.predict_files(args.images, cam_dir=None if cam_error else args.cam)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results, spec))
    if cam_error:
        raise SpermlibError(cam_error)  # after the predictions: they are valid without the overlays
    return 1 if any(r.error for r in results) else 0


def _cam_dir_error(out: Path) -> str | None:
    """Why no overlay can be written into ``out``, or None. Checked before predicting, so that an
    unusable ``--cam`` costs the overlays but not the predictions."""
    what = "no Grad-CAM++ overlays written"
    if out.exists() and not out.is_dir():
        return f"--cam {out} is a file, not a folder: {what}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"--cam {out}: cannot create this folder ({err.strerror or err}); {what}"
    if not os.access(out, os.W_OK):
        return f"--cam {out} is not writable: {what}"
    return None


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


def cmd_bench(args: argparse.Namespace) -> int:
    from spermlib.evaluation.bench import run_bench

    if args.out:
        _check_output_file(args.out)
    run_bench(quick=args.quick, out=args.out, dataset=args.dataset, arch=args.arch, app=not args.no_app)
    return 0


def _splits_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the project's fixed seed)")
    p.add_argument("--out", default=None, help="manifest path (default splits/<dataset>.csv)")


# Recipe overrides of `train`: (option name, type, help); also the keys passed to Recipe.for_arch.
_RECIPE_OPTIONS: tuple[tuple[str, type, str | None], ...] = (
    ("epochs", int, None), ("warmup_epochs", int, None), ("lr", float, None), ("backbone_lr_mult", float, None),
    ("batch_size", int, None), ("input_size", int, None), ("mixup_alpha", float, None),
    ("ema_decay", float, "validate, select and ship an EMA of the weights (e.g. 0.99); 0 = off"),
    ("rotate_deg", float, "random rotation on top of the 8 flips/90° turns (180 = any angle)"),
    ("patience", int, None), ("seed", int, None),
)


def _fold_or_all(text: str) -> str:
    if text != "all" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a fold number or 'all', got {text!r}")
    return text


def _train_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--arch", default="effnet_cbam", choices=[*ARCHS, "all"])
    p.add_argument("--fold", default="all", type=_fold_or_all, help="fold number or 'all'")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--backbone", default="auto", help="timm backbone name, or 'auto'")
    p.add_argument("--pretrained", default="auto", choices=["auto", "timm", "offline", "none"])
    p.add_argument("--weights", default=None, help="ImageNet weights file (.safetensors) for the backbone")
    for name, kind, help_text in _RECIPE_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, dest=name, help=help_text)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    p.add_argument("--balanced", action="store_true", help="class-balanced sampling")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu | cuda (default: CUDA if present)")
    p.add_argument("--force", action="store_true", help="retrain folds that already have a checkpoint")
    p.add_argument("--runs", default=str(PROJECT_ROOT / "runs"), help="folder for logs and resumable state")
    _add_checkpoints_arg(p)


def _tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--run", action="append", default=[], metavar="NAME=FOLDER",
                   help="checkpoints folder of a tuning run (train --checkpoints FOLDER); repeatable")
    p.add_argument("--record", action="store_true", help="write the comparison to results/<dataset>/tuning.json")
    p.add_argument("--merge", action="store_true",
                   help="with --record: keep recorded rows of this arch that this comparison lacks")
    p.add_argument("--baseline-name", default="shipped", dest="baseline_name",
                   help="label of the --checkpoints row (e.g. the recipe's name, when a tuned run replaces it)")
    _add_results_arg(p, "results folder (default: $SPERMLIB_RESULTS or results/)")
    _add_checkpoints_arg(p)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--splits", default=None)
    p.add_argument("--tta", action="store_true", help="also score 8-way flip/rotation test-time augmentation")
    p.add_argument("--device", default=None)
    _add_results_arg(p, _SUBSET_RESULTS_HELP)
    _add_checkpoints_arg(p)


def _faithfulness_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    _add_checkpoints_arg(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--per-class", type=int, default=0, dest="per_class",
                   help="images per class per test fold (stratified, fixed seed); 0 = all")
    p.add_argument("--splits", default=None)
    _add_results_arg(p, _SUBSET_RESULTS_HELP)


def _robustness_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    _add_checkpoints_arg(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--splits", default=None)
    p.add_argument("--device", default=None)
    _add_results_arg(p, _SUBSET_RESULTS_HELP)


def _report_args(p: argparse.ArgumentParser) -> None:
    _add_results_arg(p, "results folder (default: $SPERMLIB_RESULTS or results/)")
    p.add_argument("--check", action="store_true", help="only check that the README block is current")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--fold", type=int, default=None, help="one fold's model (default: 5-fold ensemble)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cam", default=None, metavar="DIR", help="write a Grad-CAM++ overlay PNG per image here")
    p.add_argument("--device", default=None)
    _add_checkpoints_arg(p)


def _embed_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=[*ARCHS, "all"])
    p.add_argument("--fold", default="0", type=_fold_or_all, help="fold model number or 'all' (the page shows 0 first)")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--out", default=None, help="cache folder (default: $SPERMLIB_EMBEDDINGS or runs/embeddings/)")
    p.add_argument("--device", default=None)
    _add_checkpoints_arg(p)


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--dataset", default="smids", choices=sorted(DATASETS))
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.add_argument("--no-app", action="store_true", dest="no_app",
                   help="skip the dashboard row (fresh process → first prediction)")


Command = Callable[[argparse.Namespace], int]

# (name, one-line help, adds the sub-command's arguments, runs it), in the order `--help` lists them.
COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command], ...] = (
    ("splits", "write the leakage-free 5-fold split manifest splits/<dataset>.csv", _splits_args, cmd_splits),
    ("train", "train fold checkpoints (resumable)", _train_args, cmd_train),
    ("tune", "compare tuning runs with the shipped checkpoints on inner validation only", _tune_args, cmd_tune),
    ("evaluate", "out-of-fold predictions and metrics.json", _evaluate_args, cmd_evaluate),
    ("faithfulness", "score Grad-CAM++ maps on the test folds → faithfulness.json", _faithfulness_args,
     cmd_faithfulness),
    ("robustness", "out-of-fold accuracy under JPEG, blur, noise, colour and geometry corruptions → robustness.json",
     _robustness_args, cmd_robustness),
    ("report", "regenerate README.md's results block from results/ (metrics, faithfulness, robustness)", _report_args,
     cmd_report),
    ("predict", "classify image files", _predict_args, cmd_predict),
    ("embed", "precompute the dashboard's embedding map (features + PCA) into its cache", _embed_args, cmd_embed),
    ("bench", "speed: times and ratios against bare timm, measured in one process", _bench_args, cmd_bench),
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m spermlib", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_text, add_args, run in COMMANDS:
        p = sub.add_parser(name, help=help_text)
        add_args(p)
        p.set_defaults(func=run)
    return ap


def describe_os_error(err: OSError) -> str:
    """``PATH: reason`` for an OS error, so the one-line message names the file it is about."""
    paths = [str(f) for f in (err.filename, err.filename2) if f is not None]
    if not paths:
        return str(err)  # raised with a sentence of its own (e.g. "split manifest … not found; …")
    reason = err.strerror or str(err)
    if isinstance(err, FileExistsError) and not Path(paths[0]).is_dir():
        reason = "is a file where a folder is needed"  # mkdir(exist_ok=True)'s "File exists" misleads
    return f"{' → '.join(paths)}: {reason}"


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. A failure the user can fix ends in one ``error: …`` line and exit code 2;
    anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpermlibError as err:
        print(f"error: {err}", file=sys.stderr)
    except BrokenPipeError:
        # `… | head` stopped reading: nothing more can be shown, and Python's exit-time flush must not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
    except KeyboardInterrupt:
        resume = "; training resumes from the last finished epoch when run again" if args.command == "train" else ""
        print(f"interrupted{resume}", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
