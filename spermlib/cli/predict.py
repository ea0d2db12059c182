"""``spermlib predict``: classify image files and folders, here or on a Ray cluster (``--ray``), with
Grad-CAM++ overlays (``--cam``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from spermlib.archs import ARCHS
from spermlib.cli.common import DATASET_HELP, add_checkpoints_arg, add_commands, check_output_file
from spermlib.data.datasets import get_dataset
from spermlib.errors import SpermlibError


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
    add_checkpoints_arg(p)


def cmd_predict(args: argparse.Namespace) -> int:
    from spermlib.data.datasets import expand_image_paths
    from spermlib.inference.explain import Explainer
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
    results = (Explainer(predictor).predict_files(paths, args.cam) if args.cam and not cam_error
               else predictor.predict_files(paths))
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
    check_output_file(out)


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


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("predict", "classify image files and folders (--ray: on a Ray cluster)", _predict_args, cmd_predict),
    ))
