"""``spermlib predict``: classify image files and folders, here or on a Ray cluster (``--ray``), with
Grad-CAM++ overlays (``--cam``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from spermlib.archs import ARCHS
from spermlib.cli.common import DATASET_HELP, add_checkpoints_arg, add_commands, check_output_file
from spermlib.data.datasets import get_dataset
from spermlib.errors import SpermlibError
from spermlib.fileio import OutputError, describe_os_error


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
    p.add_argument("--cam", default=None, metavar="DIR",
                   help="write a Grad-CAM++ overlay PNG per image here, at the image's path below the folder common "
                        "to all inputs (02_Tapered/image_001.BMP → DIR/02_Tapered/image_001_gradcampp.png)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the --json rows as a table (.parquet or .csv; nested values as JSON text)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="classify on Ray (Ray Data + a pool of actors): a local cluster, or the one at ADDRESS")
    p.add_argument("--actors", type=int, default=None, help="with --ray: actors (default: one per GPU or per 2 CPUs)")
    add_checkpoints_arg(p)


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify batch by batch (memory does not grow with the number of files); whatever stops the run (a map
    that cannot be written, an interrupt) comes after every prediction made so far has been written out."""
    from spermlib.data.datasets import expand_image_paths
    from spermlib.inference.predict import Predictor

    spec = get_dataset(args.dataset)
    paths = expand_image_paths(args.images)  # folders: every image file under them
    if args.out:
        _check_table_file(args.out)
    if args.ray is not None:
        return _predict_on_ray(args, spec, paths)
    predictor = Predictor.from_checkpoints(spec, arch=args.arch, folds=None if args.fold is None else [args.fold],
                                           checkpoints_dir=Path(args.checkpoints), device=args.device, tta=args.tta)
    stream, failure_of = _prediction_stream(predictor, paths, args.cam)
    results, stopped = _collect(stream)
    _write_results(results, args, spec)
    failure = stopped or failure_of(results)
    if failure is not None:
        raise failure
    return 1 if any(r.error for r in results) else 0


def _prediction_stream(predictor, paths: list[str], cam: str | None
                       ) -> tuple[Iterator, Callable[[list], SpermlibError | None]]:
    """The predictions of ``paths`` (with their Grad-CAM++ overlays under ``cam``), and what to report about the
    overlays once every prediction is out: None, or one error naming the folder or the file that failed."""
    from spermlib.inference.explain import Explainer, OverlayWriter

    cam_error = _cam_dir_error(Path(cam)) if cam else None
    if cam and not cam_error:
        writer = OverlayWriter(Explainer(predictor), cam)

        def overlays_failure(results: list) -> SpermlibError | None:
            if writer.failure is None:
                return None
            return OutputError(f"{writer.failure}; {writer.not_written} of {len(results)} Grad-CAM++ overlays not "
                               "written (the predictions are complete)")

        return writer.iter_files(paths), overlays_failure
    plain = (pred for batch in predictor.iter_sources(paths, keep_inputs=False) for pred in batch)
    if cam_error:  # an unusable --cam costs the overlays, not the predictions: each says why it has no map
        plain = (_with_cam_error(pred, cam_error) for pred in plain)
    return plain, lambda results: SpermlibError(cam_error) if cam_error else None


def _with_cam_error(pred, cam_error: str):
    if pred.error is None:
        pred.cam_error = cam_error
    return pred


def _collect(stream: Iterator) -> tuple[list, BaseException | None]:
    """Every prediction of ``stream``, and what stopped it early (a user-facing error, an interrupt), if anything."""
    results = []
    try:
        for pred in stream:
            results.append(pred)
    except (SpermlibError, KeyboardInterrupt) as err:
        return results, err
    return results, None


def _write_results(results: list, args: argparse.Namespace, spec) -> None:
    from spermlib.inference.predict import format_table

    if args.out:
        from spermlib.inference.distributed import prediction_row, rows_frame, write_table

        print(f"wrote {write_table(rows_frame([prediction_row(r) for r in results]), args.out)}", file=sys.stderr)
    elif args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results, spec))


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
        return f"--cam {out}: cannot create this folder ({describe_os_error(err)}); {what}"
    if not os.access(out, os.W_OK):
        return f"--cam {out} is not writable: {what}"
    return None


def register(sub: argparse._SubParsersAction) -> None:
    add_commands(sub, (
        ("predict", "classify image files and folders (--ray: on a Ray cluster)", _predict_args, cmd_predict),
    ))
