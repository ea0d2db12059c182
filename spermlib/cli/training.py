"""``spermlib train``, ``average``, ``tune`` and ``sweep``: fold checkpoints, their second stages and the
recipe comparisons on inner validation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spermlib.archs import ARCHS
from spermlib.cli.common import (
    STORE_RESULTS_HELP,
    add_checkpoints_arg,
    add_commands,
    add_data_args,
    add_results_arg,
    fold_or_all,
)
from spermlib.data.datasets import PROJECT_ROOT, get_dataset, resolve_data_root
from spermlib.errors import SpermlibError
from spermlib.store.paths import default_checkpoints_dir

# Recipe overrides of `train`: (option name, type, help); also the keys passed to Recipe.for_arch.
_RECIPE_OPTIONS: tuple[tuple[str, type, str | None], ...] = (
    ("epochs", int, None), ("warmup_epochs", int, None), ("lr", float, None), ("backbone_lr_mult", float, None),
    ("batch_size", int, None), ("input_size", int, None), ("mixup_alpha", float, None),
    ("ema_decay", float, "validate, select and ship an EMA of the weights (e.g. 0.99); 0 = off"),
    ("rotate_deg", float, "random rotation on top of the 8 flips/90° turns (180 = any angle)"),
    ("corrupt_p", float, "hardening: share of training images under one random corruption (0 = off)"),
    ("patience", int, None), ("seed", int, None),
)


def _selected_folds(manifest, fold: str) -> list[int]:
    """The folds a ``--fold`` value (:func:`fold_or_all`) names: every fold of ``manifest``, or that one."""
    return list(range(int(manifest["fold"].max()) + 1)) if fold == "all" else [int(fold)]


def _train_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--arch", default="effnet_cbam", choices=[*ARCHS, "all"])
    p.add_argument("--fold", default="all", type=fold_or_all, help="fold number or 'all'")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--backbone", default="auto", help="timm backbone name, or 'auto'")
    p.add_argument("--pretrained", default="auto", choices=["auto", "timm", "offline", "none"])
    p.add_argument("--weights", default=None, help="ImageNet weights file (.safetensors) for the backbone")
    p.add_argument("--init-from", default=None, dest="init_from", metavar="FOLDER",
                   help="start each fold from FOLDER's model of the same fold and split (a second stage, e.g. "
                        "hardening: --init-from checkpoints --corrupt-p 0.5 --warmup-epochs 0)")
    p.add_argument("--transfer-from", default=None, dest="transfer_from", metavar="CHECKPOINT",
                   help="backbone (+CBAM) weights from another dataset's checkpoint instead of ImageNet's "
                        "(e.g. checkpoints/smids/effnet_cbam/fold0.safetensors); the head starts new")
    for name, kind, help_text in _RECIPE_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, dest=name, help=help_text)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    p.add_argument("--balanced", action="store_true", help="class-balanced sampling")
    p.add_argument("--keep-last", action="store_true", dest="keep_last",
                   help="ship the last epoch, not the best inner-validation one (a fixed-length stage, e.g. hardening)")
    p.add_argument("--no-quarter-turns", action="store_true", dest="no_quarter_turns",
                   help="augment without 90° turns and up-down flips (pose-normalised heads: mirror and "
                        "--rotate-deg only)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu | cuda (default: CUDA if present)")
    p.add_argument("--force", action="store_true", help="retrain folds that already have a checkpoint")
    p.add_argument("--runs", default=str(PROJECT_ROOT / "runs"), help="folder for logs and resumable state")
    add_checkpoints_arg(p)


def cmd_train(args: argparse.Namespace) -> int:
    from spermlib.data.splits import manifest_for_root
    from spermlib.training.train import DecodedImages, Recipe, fold_is_done, load_fold_data, train_fold

    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    manifest, sha = manifest_for_root(spec, root, args.splits)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    folds = _selected_folds(manifest, args.fold)
    archs = [args.arch] if args.arch != "all" else list(ARCHS)
    overrides = {k: getattr(args, k) for k in (*(name for name, _, _ in _RECIPE_OPTIONS), "precision")}
    if args.balanced:
        overrides["balanced_sampling"] = True
    if args.keep_last:
        overrides["keep_last"] = True
    if args.no_quarter_turns:
        overrides["quarter_turns"] = False
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
                              pretrained=args.pretrained, weights_path=args.weights, init_from=args.init_from,
                              transfer_from=args.transfer_from, device=args.device,
                              checkpoints_dir=Path(args.checkpoints), runs_dir=Path(args.runs))
            iv = card["inner_val"]
            print(f"{spec.name}/{arch} fold {k}: inner-val accuracy {iv['accuracy']:.4f} "
                  f"macro-F1 {iv['macro_f1']:.4f} ({card['epochs_run']} epochs, {card['training_seconds']:.0f} s)")
    return 0


def _average_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--fold", default="all", type=fold_or_all, help="fold number or 'all'")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--clean", default=str(default_checkpoints_dir()), metavar="FOLDER",
                   help="checkpoints the stage started from (train --init-from FOLDER); default checkpoints/")
    p.add_argument("--stage", required=True, metavar="FOLDER", help="checkpoints of the second stage (e.g. hardening)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the clean model (WiSE-FT's 1 - alpha)")
    p.add_argument("--checkpoints", required=True, metavar="FOLDER", help="where the interpolated checkpoints go")
    p.add_argument("--device", default=None)


def cmd_average(args: argparse.Namespace) -> int:
    from spermlib.data.splits import manifest_for_root
    from spermlib.store.cards import checkpoint_path, read_card
    from spermlib.training.train import DecodedImages, Recipe, load_fold_data
    from spermlib.training.weight_average import average_fold

    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    manifest, sha = manifest_for_root(spec, root, args.splits)
    folds = _selected_folds(manifest, args.fold)
    decoded: dict[int, DecodedImages] = {}
    for k in folds:
        stage_card = read_card(checkpoint_path(spec, args.arch, k, Path(args.stage)))
        if stage_card.get("split_sha256") != sha:
            raise SpermlibError(f"{args.stage} fold {k} was trained on another split than "
                                f"{args.splits or 'the committed one'}")
        size = int(stage_card["input_size"])
        if size not in decoded:
            decoded[size] = DecodedImages(root, manifest, size)
        data = load_fold_data(spec, root, manifest, k, Recipe.from_dict(stage_card["recipe"]), size, decoded[size])
        card = average_fold(spec, args.arch, k, Path(args.clean), Path(args.stage), args.alpha, Path(args.checkpoints),
                            data, args.device)
        iv = card["inner_val"]
        print(f"{spec.name}/{args.arch} fold {k}: {args.alpha:g} × clean + {1 - args.alpha:g} × stage → inner-val "
              f"accuracy {iv['accuracy']:.4f} macro-F1 {iv['macro_f1']:.4f}")
    return 0


def _add_comparison_args(p: argparse.ArgumentParser, merge_help: str, baseline_help: str) -> None:
    """How tune and sweep record their comparison with the ``--checkpoints`` baseline."""
    p.add_argument("--record", action="store_true", help="write the comparison to results/<dataset>/tuning.json")
    p.add_argument("--merge", action="store_true", help=merge_help)
    p.add_argument("--baseline-name", default="shipped", dest="baseline_name", help=baseline_help)
    add_results_arg(p, STORE_RESULTS_HELP)
    add_checkpoints_arg(p)


def _tune_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv); with --robustness")
    p.add_argument("--robustness", action="store_true",
                   help="also score each fold's inner validation under the corruption suite and choose, per fold, "
                        "a run over the baseline by its own inner validation (nested); needs the images")
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--run", action="append", default=[], metavar="NAME=FOLDER",
                   help="checkpoints folder of a tuning run (train --checkpoints FOLDER); repeatable")
    _add_comparison_args(p, merge_help="with --record: keep recorded rows of this arch that this comparison lacks",
                         baseline_help="label of the --checkpoints row (e.g. the recipe's name, when a tuned run "
                                       "replaces it)")


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
    if args.robustness:
        from spermlib.evaluation.robustness import add_inner_robustness

        print(add_inner_robustness(comparison, spec, resolve_data_root(spec, args.data_dir), runs, args.splits))
    if args.record:
        path = dataset_results_dir(spec.name, args.results) / TUNING_FILE
        print(f"wrote {record_comparison(comparison, path, merge=args.merge)}")
    return 0


def _sweep_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--param", action="append", default=[], metavar="FIELD=V1,V2",
                   help="recipe field and its values (e.g. lr=1e-3,3e-4); one value sets it for all; repeatable")
    p.add_argument("--space", default=None, metavar="FILE.yaml", help="search space {field: [values]} (YAML)")
    p.add_argument("--folds", default="all", help="outer folds: 'all' or e.g. 0,1")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "sweep"),
                   help="one checkpoints folder per configuration")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: a local one on this machine)")
    p.add_argument("--cpus-per-trial", type=float, default=1, dest="cpus_per_trial")
    p.add_argument("--gpus-per-trial", type=float, default=None, dest="gpus_per_trial",
                   help="GPU fraction per trial (default 0.25 when the cluster has a GPU, else 0)")
    p.add_argument("--grace-epochs", type=int, default=3, dest="grace_epochs",
                   help="epochs every trial runs before ASHA may stop it (on inner-validation macro-F1)")
    p.add_argument("--pretrained", default="auto", choices=["auto", "timm", "offline", "none"])
    _add_comparison_args(p, merge_help="with --record: keep recorded rows this sweep lacks",
                         baseline_help="label of the --checkpoints folder (the baseline) in the comparison")


def cmd_sweep(args: argparse.Namespace) -> int:
    from spermlib.store.results import TUNING_FILE, dataset_results_dir
    from spermlib.training.sweep import SweepJob, comparison_runs, grid, load_space, parse_param, run_sweep
    from spermlib.training.tuning import compare_configs, format_comparison, record_comparison

    spec = get_dataset(args.dataset)
    space = load_space(args.space) if args.space else {}
    space.update(dict(parse_param(p) for p in args.param))
    if not space:
        raise SpermlibError("give a search space: --param FIELD=V1,V2 (repeatable) or --space FILE.yaml")
    root = resolve_data_root(spec, args.data_dir)
    n_folds = _manifest_folds(spec, root, args.splits)
    folds = list(range(n_folds)) if args.folds == "all" else [int(k) for k in args.folds.split(",")]
    job = SweepJob(spec=spec, arch=args.arch, root=str(root), out=str(Path(args.out).resolve()), configs=grid(space),
                   splits=args.splits, pretrained=args.pretrained, folds=folds)
    print(f"sweep: {len(job.configs)} configuration(s) × {len(folds)} fold(s) of {spec.name}/{args.arch}",
          file=sys.stderr)
    summary = run_sweep(job, address=args.address, cpus_per_trial=args.cpus_per_trial,
                        gpus_per_trial=args.gpus_per_trial, grace_epochs=args.grace_epochs)
    for k, f in summary["per_fold"].items():
        print(f"fold {k}: winner {f['winner']} (inner-val macro-F1 "
              + ", ".join(f"{n} {s['macro_f1']:.3f}" for n, s in f["scores"].items()) + ")")
    for trial, err in summary["errors"].items():
        print(f"failed: {trial}: {err}", file=sys.stderr)
    runs = comparison_runs(job, summary, args.baseline_name, Path(args.checkpoints))
    if len(runs) > 1:
        comparison = compare_configs(spec, args.arch, runs)
        print(format_comparison(comparison))
        if args.record:
            path = dataset_results_dir(spec.name, args.results) / TUNING_FILE
            print(f"wrote {record_comparison(comparison, path, merge=args.merge)}")
    print(f"wrote {Path(args.out) / 'sweep.json'}")
    return 1 if summary["errors"] else 0


def _manifest_folds(spec, root: Path, splits: str | None) -> int:
    from spermlib.data.splits import manifest_for_root

    return int(manifest_for_root(spec, root, splits)[0]["fold"].max()) + 1


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("train", "train fold checkpoints (resumable)", _train_args, cmd_train),
        ("average", "interpolate each fold's clean model with its second stage in weight space (WiSE-FT)",
         _average_args, cmd_average),
        ("tune", "compare tuning runs with the shipped checkpoints on inner validation only", _tune_args, cmd_tune),
        ("sweep", "recipe sweep on Ray Tune: configurations × folds, ASHA and per-fold (nested) selection on inner "
         "validation", _sweep_args, cmd_sweep),
    ))
