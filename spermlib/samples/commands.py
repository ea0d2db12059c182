"""``spermlib samples {add,list,review,report,export,delete,restore,purge,audit}``: parse, call the service, print.

The CLI is the installation's local user (:func:`~spermlib.samples.access.local_actor`, an admin); a
``--reviewer`` name is recorded as the review's display name beside that subject. Kept free of module-level
SQLAlchemy and torch imports: ``spermlib.cli`` builds every sub-command's parser on each run, and only
``samples …`` should pay for the database.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.errors import SpermlibError
from spermlib.fileio import write_text
from spermlib.samples.access import Actor, local_actor
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


def _actor(display_name: str | None = None) -> Actor:
    """The local user; a name typed on the command line is what reviews and tags show for it."""
    actor = local_actor()
    return dataclasses.replace(actor, name=display_name) if display_name is not None else actor


def _warn(problems) -> None:
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)


def _add(args: argparse.Namespace) -> int:
    summary = _store(args).add_sample(_actor(), args.name, args.dataset, args.arch, args.images,
                                      checkpoints_dir=Path(args.checkpoints), tta=args.tta)
    print(f"saved sample {summary.name!r}: {summary.n_images} image(s) classified by {summary.arch} "
          f"({summary.dataset})")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    samples = store.deleted_samples(_actor()) if args.deleted else store.list_samples()
    _warn(samples.problems)
    if args.json:
        print(json.dumps([{"id": s.id, "name": s.name, "dataset": s.dataset, "arch": s.arch,
                           "created": s.created_at.isoformat(), "images": s.n_images, "reviewed": s.n_reviewed,
                           "code_version": s.code_version, "version": s.version,
                           "deleted": s.deleted_at.isoformat() if s.deleted_at else None}
                          for s in samples], indent=2))
        return 0
    if not samples:
        print("no deleted samples" if args.deleted else
              "no samples yet; add one with `spermlib samples add NAME --dataset D IMAGE…`")
    for s in samples:
        gone = f"\tdeleted {s.deleted_at:%Y-%m-%d %H:%M} UTC by {s.deleted_by} (id {s.id})" if s.deleted_at else ""
        print(f"{s.name}\t{s.dataset}\t{s.arch}\t{s.created_at:%Y-%m-%d %H:%M} UTC\t"
              f"{s.n_images} images, {s.n_reviewed} reviewed{gone}")
    return 0


CLI_ATTEMPTS = 20  # a review by name acts on the sample as it is now: re-read when another writer changed it


def _review(args: argparse.Namespace) -> int:
    from spermlib.samples.service import SampleChanged

    store, actor = _store(args), _actor(args.reviewer)
    for attempt in range(CLI_ATTEMPTS):
        try:
            review = store.review(actor, store.image_ref(args.name, args.file), args.label, args.comment)
            break
        except SampleChanged:
            if attempt == CLI_ATTEMPTS - 1:
                raise
    print(f"{args.name}/{args.file}: reviewed as {review.label} by {review.reviewer} "
          f"at {review.created_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _report(args: argparse.Namespace) -> int:
    from spermlib.samples.report import build_report, write_report

    out = _out_file(args.out, REPORT_SUFFIXES)
    report = build_report(_store(args), args.name, checkpoints_dir=Path(args.checkpoints))
    _warn(report.problems)
    write_report(report, out)
    print(f"wrote {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = _out_file(args.out, (".csv",))
    export = _store(args).export_csv(_actor(), args.name)
    _warn(export.problems)
    write_text(out, export.text)
    print(f"wrote {out}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    store = _store(args)
    ref = store.sample_ref(args.name)
    n = store.delete_sample(_actor(), ref)
    print(f"deleted sample {args.name!r} with its {n} image(s), predictions, reviews and tags (hidden, not "
          f"erased: `spermlib samples restore {ref.sample_id}` brings it back)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    summary = _store(args).restore_sample(_actor(), args.id)
    print(f"restored sample {summary.name!r} (id {summary.id}) with its {summary.n_images} image(s)")
    return 0


def _purge(args: argparse.Namespace) -> int:
    if not args.yes:
        raise SpermlibError(f"purge erases the deleted sample {args.name!r} for good (its audit entries stay): "
                            "add --yes to confirm")
    n = _store(args).purge_sample(_actor(), args.name)
    print(f"purged {n} deleted sample(s) named {args.name!r}; their audit entries are kept")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from spermlib.samples.service import audit_frame

    store = _store(args)
    if args.out:
        out = _out_file(args.out, (".csv",))
        write_text(out, store.audit_csv(_actor()))
        print(f"wrote {out}")
        return 0
    entries = store.audit_log(_actor(), limit=args.limit)
    if args.json:
        print(json.dumps([dataclasses.asdict(e) | {"created_at": e.created_at.isoformat()} for e in entries],
                         indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("the audit log is empty")
    for row in audit_frame(entries).itertuples(index=False):
        print("\t".join("" if v is None or v != v else str(v) for v in row))
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
    lst.add_argument("--deleted", action="store_true", help="list the deleted (restorable) samples instead")
    lst.set_defaults(samples_func=_list)
    rev = sub.add_parser("review", help="record an expert's label for one image (kept with every earlier one)")
    rev.add_argument("name")
    rev.add_argument("file", help="the image's file name as it was added")
    rev.add_argument("--label", required=True, help="class folder or display name, e.g. Normal")
    rev.add_argument("--reviewer", default=None,
                     help="the name shown with the review (default: your login name; recorded under it either way)")
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
    dele = sub.add_parser("delete", help="delete (hide) a sample with its images, predictions, reviews and tags; "
                                         "restorable")
    dele.add_argument("name")
    dele.set_defaults(samples_func=_delete)
    res = sub.add_parser("restore", help="bring back a deleted sample (its id: `samples list --deleted`)")
    res.add_argument("id", type=int)
    res.set_defaults(samples_func=_restore)
    pur = sub.add_parser("purge", help="erase a deleted sample's rows for good (its audit entries stay)")
    pur.add_argument("name")
    pur.add_argument("--yes", action="store_true", help="confirm: the sample cannot be restored afterwards")
    pur.set_defaults(samples_func=_purge)
    aud = sub.add_parser("audit", help="show the audit log (every save, review, tag, delete, restore, purge, "
                                       "export), newest first")
    aud.add_argument("--json", action="store_true")
    aud.add_argument("--limit", type=int, default=None, help="only the newest N entries")
    aud.add_argument("--out", default=None, metavar="FILE.csv", help="write the whole log as CSV instead")
    aud.set_defaults(samples_func=_audit)


def run(args: argparse.Namespace) -> int:
    return args.samples_func(args)
