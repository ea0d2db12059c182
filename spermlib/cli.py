"""Command line: ``python -m spermlib <command>`` (``--help`` lists them; :data:`COMMANDS` defines them).

Thin: parses and delegates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from spermlib.allocator import tune_malloc
from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.data.datasets import PROJECT_ROOT, get_dataset, resolve_data_root
from spermlib.errors import SpermlibError
from spermlib.store.paths import default_checkpoints_dir
from spermlib.store.results import PUBLISHED_PER_CLASS

DATASET_HELP = "built-in (smids, hushem), an own dataset's registered name, or a folder with one sub-folder per class"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
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
    from spermlib.data.datasets import dataset_for_split, non_image_files, register_dataset
    from spermlib.data.splits import SPLIT_SEED, assign_folds, check_fold_counts, hash_images, report, write_manifest
    from spermlib.data.splits import manifest_path as default_manifest

    spec = dataset_for_split(args.dataset, args.name, args.citation,
                             tuple(args.display_names.split(",")) if args.display_names else None)
    root = resolve_data_root(spec, args.data_dir)
    print(f"hashing {spec.name} images under {root} …", file=sys.stderr)
    df = assign_folds(hash_images(spec, root), n_folds=args.folds,
                      seed=SPLIT_SEED if args.seed is None else args.seed)
    rep = report(df)
    for what, files in (("not images (by suffix)", non_image_files(spec, root)),
                        ("not decodable (in the manifest as fold -1, excluded = unreadable)", rep.unreadable)):
        if files:
            print(f"skipped {len(files)} file(s), {what}:\n" + "\n".join(f"  {f}" for f in files))
    if not spec.is_builtin:  # (the built-in datasets are large enough; their CLI behaviour stays as it was)
        check_fold_counts(df, args.folds)
    print(f"{rep.n_images} images, {rep.n_groups} pixel-identical groups, "
          f"{len(rep.duplicate_groups)} groups with duplicates")
    if rep.conflicting_groups:
        print(f"{len(rep.conflicting_groups)} duplicate groups have conflicting labels; "
              "excluded from training and evaluation (fold -1):")
        for g in rep.conflicting_groups:
            print("  " + "  =  ".join(f"{p} [{lab}]" for p, lab in g))
    print("images per fold and class (fold -1 = excluded):")
    print(rep.fold_counts.to_string())
    out = Path(args.out) if args.out else default_manifest(spec)
    sha = write_manifest(df, out)  # after the report: an unwritable --out still leaves the report on screen
    print(f"wrote {out} (sha256 {sha[:12]}…)")
    if not spec.is_builtin:
        print(f"recorded {spec.name} ({root}, classes {', '.join(spec.class_dirs)}) in {register_dataset(spec)}")
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
    folds = None if args.folds is None else sorted({int(k) for k in args.folds.split(",") if k.strip()})
    report = robustness_dataset(spec, device=args.device, folds=folds, tta=args.tta, recompute=args.recompute,
                                **_scoring_args(spec, args))
    for arch, r in report["archs"].items():
        drops = " / ".join(f"{100 * d:.1f}" for d in r["mean_accuracy_drop"])
        print(f"{spec.name}/{arch}: clean accuracy {r['clean']['accuracy']:.4f}; mean accuracy drop in points "
              f"(mild / middle / strong) {drops}; worst at strong severity: {r['worst_corruption']}")
    print(f"wrote {report['written_to']}")
    return 0


def cmd_ood(args: argparse.Namespace) -> int:
    from spermlib.evaluation.ood import ood_dataset
    from spermlib.evaluation.report import temperature_use

    spec = get_dataset(args.dataset)
    report = ood_dataset(spec, device=args.device, refit=args.refit, **_scoring_args(spec, args))
    for arch, r in report["archs"].items():
        o, n, c = r["other_dataset"], r["natural_photographs"], r["calibration"]
        print(f"{spec.name}/{arch}: {r['detector']} detector; flagged: test folds {r['test_folds']['flagged']:.1%}, "
              f"other dataset {o['flagged']:.1%} (AUROC {o['auroc']:.3f}), natural photographs {n['flagged']:.1%} "
              f"(AUROC {n['auroc']:.3f}); out-of-fold ECE {c['ece_before']:.3f} → {c['ece_after']:.3f} with "
              f"temperature scaling ({temperature_use(c)})")
    print(f"wrote {report['written_to']}")
    return 0


def cmd_bias(args: argparse.Namespace) -> int:
    from spermlib.evaluation.decision_bias import decision_bias_dataset
    from spermlib.inference.decision_bias import MODES

    spec = get_dataset(args.dataset)
    report = decision_bias_dataset(spec, device=args.device, **_scoring_args(spec, args))
    for arch, r in report["archs"].items():
        for k, d in r["folds"].items():
            print(f"{spec.name}/{arch} fold {k}: " + "; ".join(
                f"{m} {d[m]['inner_val_right_without']} → {d[m]['inner_val_right_cross_fitted']} of "
                f"{d[m]['n_inner_val']} right cross-fitted ({'taken' if d[m]['taken'] else 'none'})"
                for m in MODES))
    print(f"wrote {report['written_to']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from spermlib.evaluation.report import dataset_section, update_generated
    from spermlib.store.paths import project_relative

    if args.dataset:  # an own dataset's section, printed (the generated blocks list the built-in datasets)
        print(dataset_section(get_dataset(args.dataset).name, args.results))
        return 0
    stale = update_generated(check=args.check, results_dir=args.results)
    names = ", ".join(project_relative(path) for path in stale)
    if args.check:
        print(f"generated blocks are stale in {names}: run `spermlib report`" if stale
              else "generated blocks are current")
        return 1 if stale else 0
    print(f"rewrote the generated blocks of {names}" if stale else "generated blocks were already current")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from spermlib.data.datasets import expand_image_paths
    from spermlib.inference.predict import Predictor, format_table

    spec = get_dataset(args.dataset)
    paths = expand_image_paths(args.images)  # folders: every image file under them
    if args.out:
        _check_table_file(args.out)
    if args.ray is not None:
        return _predict_on_ray(args, spec, paths)
    predictor = Predictor.from_checkpoints(spec, arch=args.arch, folds=None if args.fold is None else [args.fold],
                                           checkpoints_dir=Path(args.checkpoints), device=args.device, tta=args.tta)
    cam_error = _cam_dir_error(Path(args.cam)) if args.cam else None
    results = predictor.predict_files(paths, cam_dir=None if cam_error else args.cam)
    if args.out:
        from spermlib.inference.distributed import prediction_row, rows_frame, write_table

        print(f"wrote {write_table(rows_frame([prediction_row(r) for r in results]), args.out)}", file=sys.stderr)
    elif args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results, spec))
    if cam_error:
        raise SpermlibError(cam_error)  # after the predictions: they are valid without the overlays
    return 1 if any(r.error for r in results) else 0


def _check_table_file(out: str) -> None:
    from spermlib.inference.distributed import table_format

    table_format(out)
    _check_output_file(out)


def _predict_on_ray(args: argparse.Namespace, spec, paths: list[str]) -> int:
    """``predict --ray``: Ray Data hands out the files, a pool of actors reads and classifies them; one table."""
    from spermlib.inference.distributed import predict_on_ray, write_table

    if args.cam or not args.out:
        raise SpermlibError("predict --ray writes a table: give --out FILE.parquet or .csv (and no --cam)")
    frame = predict_on_ray(paths, spec, args.arch, args.checkpoints, folds=None if args.fold is None else [args.fold],
                           address=None if args.ray == "local" else args.ray, actors=args.actors, progress=True,
                           tta=args.tta)
    n_bad = int(frame["error"].notna().sum())
    print(f"wrote {write_table(frame, args.out)}: {len(frame)} images, {n_bad} with an error", file=sys.stderr)
    return 1 if n_bad else 0


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
    run_bench(quick=args.quick, out=args.out, dataset=args.dataset, arch=args.arch, app=not args.no_app,
              ray=not args.no_ray)
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from spermlib.samples.commands import run

    return run(args)


def _samples_args(p: argparse.ArgumentParser) -> None:
    from spermlib.samples.commands import add_arguments  # no database import until a samples command runs

    add_arguments(p)


def _splits_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the project's fixed seed)")
    p.add_argument("--out", default=None, help="manifest path (default splits/<dataset>.csv)")
    p.add_argument("--name", default=None, help="own dataset: its name (default: the folder's name, lower-case)")
    p.add_argument("--citation", default=None, help="own dataset: how to cite it (shown with its results)")
    p.add_argument("--display-names", default=None, dest="display_names",
                   help="own dataset: comma-separated class names to show, in the (sorted) order of its class folders")


# Recipe overrides of `train`: (option name, type, help); also the keys passed to Recipe.for_arch.
_RECIPE_OPTIONS: tuple[tuple[str, type, str | None], ...] = (
    ("epochs", int, None), ("warmup_epochs", int, None), ("lr", float, None), ("backbone_lr_mult", float, None),
    ("batch_size", int, None), ("input_size", int, None), ("mixup_alpha", float, None),
    ("ema_decay", float, "validate, select and ship an EMA of the weights (e.g. 0.99); 0 = off"),
    ("rotate_deg", float, "random rotation on top of the 8 flips/90° turns (180 = any angle)"),
    ("corrupt_p", float, "hardening: share of training images under one random corruption (0 = off)"),
    ("patience", int, None), ("seed", int, None),
)


def _fold_or_all(text: str) -> str:
    if text != "all" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a fold number or 'all', got {text!r}")
    return text


def _selected_folds(manifest, fold: str) -> list[int]:
    """The folds a ``--fold`` value (:func:`_fold_or_all`) names: every fold of ``manifest``, or that one."""
    return list(range(int(manifest["fold"].max()) + 1)) if fold == "all" else [int(fold)]


def _train_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--arch", default="effnet_cbam", choices=[*ARCHS, "all"])
    p.add_argument("--fold", default="all", type=_fold_or_all, help="fold number or 'all'")
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
    _add_checkpoints_arg(p)


def _average_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--fold", default="all", type=_fold_or_all, help="fold number or 'all'")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--clean", default=str(default_checkpoints_dir()), metavar="FOLDER",
                   help="checkpoints the stage started from (train --init-from FOLDER); default checkpoints/")
    p.add_argument("--stage", required=True, metavar="FOLDER", help="checkpoints of the second stage (e.g. hardening)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the clean model (WiSE-FT's 1 - alpha)")
    p.add_argument("--checkpoints", required=True, metavar="FOLDER", help="where the interpolated checkpoints go")
    p.add_argument("--device", default=None)


def _tune_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv); with --robustness")
    p.add_argument("--robustness", action="store_true",
                   help="also score each fold's inner validation under the corruption suite and choose, per fold, "
                        "a run over the baseline by its own inner validation (nested); needs the images")
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


def _sweep_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
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
    p.add_argument("--record", action="store_true", help="write the comparison to results/<dataset>/tuning.json")
    p.add_argument("--merge", action="store_true", help="with --record: keep recorded rows this sweep lacks")
    p.add_argument("--baseline-name", default="shipped", dest="baseline_name",
                   help="label of the --checkpoints folder (the baseline) in the comparison")
    _add_results_arg(p, "results folder (default: $SPERMLIB_RESULTS or results/)")
    _add_checkpoints_arg(p)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--splits", default=None)
    p.add_argument("--tta", action="store_true",
                   help="score the '+ TTA ×8' entry (8-way flip/rotation test-time augmentation) instead of "
                        "the one-view entry; run both to refresh both")
    p.add_argument("--device", default=None)
    _add_results_arg(p, _SUBSET_RESULTS_HELP)
    _add_checkpoints_arg(p)


def _faithfulness_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    _add_checkpoints_arg(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--per-class", type=int, default=PUBLISHED_PER_CLASS, dest="per_class",
                   help="images per class per test fold (stratified, fixed seed); default %(default)s, the published "
                        "results' subset; 0 = all (slow: ROAD solves a sparse system per image and percentile)")
    p.add_argument("--splits", default=None)
    _add_results_arg(p, _SUBSET_RESULTS_HELP)


def _scoring_only_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    _add_checkpoints_arg(p)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--splits", default=None)
    p.add_argument("--device", default=None)
    _add_results_arg(p, _SUBSET_RESULTS_HELP)


def _robustness_args(p: argparse.ArgumentParser) -> None:
    _scoring_only_args(p)
    p.add_argument("--folds", default=None, metavar="K,K",
                   help="only these outer folds' test images (e.g. 0,1: a run that trained only those folds; "
                        "write it with --results elsewhere); default every fold")
    p.add_argument("--tta", action="store_true",
                   help="classify each image by the mean over its 8 flips/90° turns, as predict and the Classify page "
                        "do by default (the '<arch>+tta' entries; 8x the compute)")
    p.add_argument("--recompute", action="store_true",
                   help="compute every fold again, even those whose stored predictions (robustness_folds/ beside "
                        "robustness.json) were made by the same fold model, suite and code")


def _ood_args(p: argparse.ArgumentParser) -> None:
    _scoring_only_args(p)
    p.add_argument("--refit", action="store_true", help="fit the detectors and temperatures again even if stored")


def _report_args(p: argparse.ArgumentParser) -> None:
    _add_results_arg(p, "results folder (default: $SPERMLIB_RESULTS or results/)")
    p.add_argument("--check", action="store_true",
                   help="only check that the generated blocks are current (exit 1 if not)")
    p.add_argument("--dataset", default=None, help="print this dataset's results section (e.g. an own dataset's)")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files, or folders (every image file under them)")
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--fold", type=int, default=None, help="one fold's model (default: 5-fold ensemble)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                   help="test-time augmentation, on by default as on the Classify page: each model's softmax averaged "
                        "over the 8 flips/90° turns of the image (as `evaluate --tta`, the '+ TTA ×8' results; one "
                        "stacked pass: ~2x the time of one view for one image, 8x the compute in batches). --no-tta: "
                        "one view (the results' entries without TTA), e.g. for large archives")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cam", default=None, metavar="DIR", help="write a Grad-CAM++ overlay PNG per image here")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the --json rows as a table (.parquet or .csv; nested values as JSON text)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="classify on Ray (Ray Data + a pool of actors): a local cluster, or the one at ADDRESS")
    p.add_argument("--actors", type=int, default=None, help="with --ray: actors (default: one per GPU or per 2 CPUs)")
    _add_checkpoints_arg(p)


def _embed_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=[*ARCHS, "all"])
    p.add_argument("--fold", default="0", type=_fold_or_all, help="fold model number or 'all' (the page shows 0 first)")
    p.add_argument("--splits", default=None, help="split manifest (default splits/<dataset>.csv)")
    p.add_argument("--out", default=None, help="cache folder (default: $SPERMLIB_EMBEDDINGS or runs/embeddings/)")
    p.add_argument("--device", default=None)
    _add_checkpoints_arg(p)


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


def _example_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="all", help=f"{DATASET_HELP}, or 'all' (default)")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=ARCHS)
    _add_results_arg(p, "results folder to read the OOF table from and write into (default: results/)")
    _add_checkpoints_arg(p)


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--dataset", default="smids", help=DATASET_HELP)
    p.add_argument("--arch", default="effnet_cbam", choices=ARCHS)
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.add_argument("--no-app", action="store_true", dest="no_app",
                   help="skip the dashboard row (fresh process → first prediction)")
    p.add_argument("--no-ray", action="store_true", dest="no_ray",
                   help="skip the Ray batch prediction row (also skipped when Ray is not installed)")


Command = Callable[[argparse.Namespace], int]

# (name, one-line help, adds the sub-command's arguments, runs it), in the order `--help` lists them.
COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None], Command], ...] = (
    ("splits", "write the leakage-free 5-fold split manifest splits/<dataset>.csv", _splits_args, cmd_splits),
    ("train", "train fold checkpoints (resumable)", _train_args, cmd_train),
    ("average", "interpolate each fold's clean model with its second stage in weight space (WiSE-FT)",
     _average_args, cmd_average),
    ("tune", "compare tuning runs with the shipped checkpoints on inner validation only", _tune_args, cmd_tune),
    ("sweep", "recipe sweep on Ray Tune: configurations × folds, ASHA and per-fold (nested) selection on inner "
     "validation", _sweep_args, cmd_sweep),
    ("evaluate", "out-of-fold predictions and metrics.json", _evaluate_args, cmd_evaluate),
    ("faithfulness", "score Grad-CAM++ maps on the test folds → faithfulness.json", _faithfulness_args,
     cmd_faithfulness),
    ("robustness", "out-of-fold accuracy under JPEG, blur, noise, colour and geometry corruptions → robustness.json",
     _robustness_args, cmd_robustness),
    ("ood", "fit out-of-domain detectors + temperatures per fold model; AUROC and flag rates → ood.json", _ood_args,
     cmd_ood),
    ("bias", "per fold model, a per-class decision bias fitted on its inner validation, kept where a cross-fit "
     "there says it helps (fold cards) → decision_bias.json", _scoring_only_args, cmd_bias),
    ("report", "regenerate the generated blocks (README.md's headline table, docs/results.md, docs/models.md) "
     "from results/ and checkpoints/", _report_args, cmd_report),
    ("predict", "classify image files and folders (--ray: on a Ray cluster)", _predict_args, cmd_predict),
    ("embed", "precompute the dashboard's embedding map (features + PCA) into its cache", _embed_args, cmd_embed),
    ("example", "precompute the Overview's worked example (Grad-CAM++ and CBAM maps of a bundled sample)",
     _example_args, cmd_example),
    ("bench", "speed: times and ratios against bare timm, measured in one process", _bench_args, cmd_bench),
    ("samples", "save classified samples, review them, report (PDF/HTML), export, delete", _samples_args,
     cmd_samples),
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


# Commands that keep the C allocator's default policy: `robustness` makes 40 corrupted copies of every test fold
# (SMIDS: ~180 MB each as floats), one fold model after another; under tune_malloc's policy its process grew past
# 24 GiB and was killed (SMIDS, EfficientNet + CBAM), with glibc's default it stays at 1.3–1.8 GiB.
DEFAULT_MALLOC_COMMANDS = {cmd_robustness}


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. A failure the user can fix ends in one ``error: …`` line and exit code 2;
    anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    if args.func not in DEFAULT_MALLOC_COMMANDS:
        tune_malloc()  # batch work runs ~1.5× faster with large blocks kept in the heap (allocator.tune_malloc)
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
