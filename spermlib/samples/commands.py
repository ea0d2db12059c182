"""``spermlib samples {add,list,review,report,export,delete}``: parse, call the service, print.

Kept free of module-level SQLAlchemy and torch imports: ``spermlib.cli`` builds every sub-command's
parser on each run, and only ``samples …`` should pay for the database.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.errors import SpermlibError
from spermlib.store.paths import default_checkpoints_dir

REPORT_SUFFIXES = (".pdf", ".html")


def _out_file(path: str, suffixes: tuple[str, ...]) -> Path:
    """A writable output file with one of ``suffixes``; checked before any work is done."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise SpermlibError(f"--out {out}: the file name must end in {' or '.join(suffixes)}")
    if out.is_dir() or not out.parent.is_dir():
        raise SpermlibError(f"--out {out}: cannot write there (a folder, or its folder {out.parent} is missing)")
    return out


def _store(args: argparse.Namespace):
    from spermlib.samples.service import SampleStore

    return SampleStore.open(args.db)


def _add(args: argparse.Namespace) -> int:
    summary = _store(args).add_sample(args.name, args.dataset, args.arch, args.images,
                                      checkpoints_dir=Path(args.checkpoints), tta=args.tta)
    print(f"saved sample {summary.name!r}: {summary.n_images} image(s) classified by {summary.arch} "
          f"({summary.dataset})")
    return 0


def _list(args: argparse.Namespace) -> int:
    samples = _store(args).list_samples()
    if args.json:
        print(json.dumps([{"name": s.name, "dataset": s.dataset, "arch": s.arch, "created": s.created_at.isoformat(),
                           "images": s.n_images, "reviewed": s.n_reviewed, "code_version": s.code_version}
                          for s in samples], indent=2))
        return 0
    if not samples:
        print("no samples yet; add one with `spermlib samples add NAME --dataset D IMAGE…`")
    for s in samples:
        print(f"{s.name}\t{s.dataset}\t{s.arch}\t{s.created_at:%Y-%m-%d %H:%M} UTC\t"
              f"{s.n_images} images, {s.n_reviewed} reviewed")
    return 0


def _review(args: argparse.Namespace) -> int:
    review = _store(args).review(args.name, args.file, args.label, args.reviewer, args.comment)
    print(f"{args.name}/{args.file}: reviewed as {review.label} by {review.reviewer} "
          f"at {review.created_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _report(args: argparse.Namespace) -> int:
    from spermlib.samples.report import build_report, write_report

    out = _out_file(args.out, REPORT_SUFFIXES)
    report = build_report(_store(args), args.name, checkpoints_dir=Path(args.checkpoints))
    write_report(report, out)
    print(f"wrote {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = _out_file(args.out, (".csv",))
    out.write_text(_store(args).export_csv(args.name), encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    n = _store(args).delete_sample(args.name)
    print(f"deleted sample {args.name!r} with its {n} image(s), predictions, reviews and tags")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``samples`` sub-commands and their options."""
    p.add_argument("--db", default=None, help="SQLAlchemy URL of the samples database (default: $SPERMLIB_DB_URL, "
                                              "else samples.db in the user data folder)")
    sub = p.add_subparsers(dest="samples_command", required=True)
    add = sub.add_parser("add", help="classify images and save them as a named sample")
    add.add_argument("name")
    add.add_argument("images", nargs="+", metavar="IMAGE")
    add.add_argument("--dataset", required=True,
                     help="smids, hushem, an own dataset's registered name, or its folder (one sub-folder per class)")
    add.add_argument("--arch", default=DEFAULT_ARCH, choices=ARCHS)
    add.add_argument("--checkpoints", default=str(default_checkpoints_dir()),
                     help="checkpoints folder (default: $SPERMLIB_CHECKPOINTS or checkpoints/)")
    add.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                     help="mean over the 8 flips/90° turns of each image, as predict and the Classify page (default)")
    add.set_defaults(samples_func=_add)
    lst = sub.add_parser("list", help="list the saved samples")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(samples_func=_list)
    rev = sub.add_parser("review", help="record an expert's label for one image (kept with every earlier one)")
    rev.add_argument("name")
    rev.add_argument("file", help="the image's file name as it was added")
    rev.add_argument("--label", required=True, help="class folder or display name, e.g. Normal")
    rev.add_argument("--reviewer", required=True)
    rev.add_argument("--comment", default=None)
    rev.set_defaults(samples_func=_review)
    rep = sub.add_parser("report", help="write the sample's report (PDF or HTML, by the file name)")
    rep.add_argument("name")
    rep.add_argument("--out", required=True, metavar="FILE.pdf|FILE.html")
    rep.add_argument("--checkpoints", default=str(default_checkpoints_dir()),
                     help="checkpoints folder for the Grad-CAM++ of reviewed images")
    rep.set_defaults(samples_func=_report)
    exp = sub.add_parser("export", help="write one CSV row per image: verdicts, probabilities, reviews, tags")
    exp.add_argument("name")
    exp.add_argument("--out", required=True, metavar="FILE.csv")
    exp.set_defaults(samples_func=_export)
    dele = sub.add_parser("delete", help="delete a sample with its images, predictions, reviews and tags")
    dele.add_argument("name")
    dele.set_defaults(samples_func=_delete)


def run(args: argparse.Namespace) -> int:
    return args.samples_func(args)
