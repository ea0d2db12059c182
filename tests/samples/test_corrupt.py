"""Corrupt records are isolated: a malformed JSON record or an image blob that does not decode is reported
(which sample, which image) and skipped, and list, export and report do the rest; CSV cells a spreadsheet
would run as formulas are neutralised; a report over a good one on a full disk keeps the old one."""

from __future__ import annotations

import errno
import io
import os

import pandas as pd
import pytest
from sqlalchemy import text, update

from spermlib.cli import main
from spermlib.fileio import OutputError, csv_safe_frame, safe_csv_cell
from spermlib.samples import models as m
from spermlib.samples.db import writer
from spermlib.samples.report import build_report, render_pdf, write_report
from spermlib.samples.service import NewImage
from tests.samples.conftest import ADMIN, REVIEWER, SMIDS_NORMAL, save_smids, verdict


def _raw(store, sql: str, **params) -> None:
    """Write around the ORM, as a damaged file or another tool would (SQLite stores any text in a JSON column)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL refuses malformed JSON on write: the corruption cannot happen there")
    with writer(store.engine).begin() as conn:
        conn.execute(text(sql), params)


def test_a_sample_with_malformed_checkpoints_is_reported_and_the_rest_listed(store, db_url, capsys):
    save_smids(store, "good", ["Normal_Sperm"])
    save_smids(store, "bad", ["Normal_Sperm"])
    _raw(store, "UPDATE samples SET checkpoints = '{not json' WHERE name = 'bad'")
    listing = store.list_samples()
    assert [s.name for s in listing] == ["good"]
    (problem,) = listing.problems
    assert "sample 'bad'" in problem and "checkpoints" in problem and "skipped" in problem
    export = store.export_csv(ADMIN, "bad")  # its images still export
    assert len(pd.read_csv(io.StringIO(export.text))) == 1 and "checkpoints" in export.problems[0]
    assert main(["samples", "list"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("good\t") and err.startswith("warning: sample 'bad'")


def test_an_image_with_a_malformed_verdict_is_skipped_by_export_and_report(store, tmp_path, capsys):
    files = save_smids(store, "batch", ["Normal_Sperm", "Abnormal_Sperm"])
    _raw(store, "UPDATE predictions SET probabilities = '[1, 2' WHERE sample_image_id = "
                "(SELECT id FROM sample_images WHERE file_name = :f)", f=files[1])
    detail = store.sample("batch")
    assert [i.file_name for i in detail.images] == [files[0]]
    (problem,) = detail.problems
    assert f"sample 'batch', image '{files[1]}'" in problem and "skipped" in problem
    out = tmp_path / "batch.csv"
    assert main(["samples", "export", "batch", "--out", str(out)]) == 0
    assert pd.read_csv(out)["file"].tolist() == [files[0]]
    assert f"image '{files[1]}'" in capsys.readouterr().err
    report = build_report(store, "batch", with_cams=False)
    assert report.problems == [problem]


def test_an_image_blob_that_does_not_decode_is_left_out_of_the_report(store):
    files = save_smids(store, "batch", ["Normal_Sperm", "Normal_Sperm"])
    for f in files:
        store.review(REVIEWER, store.image_ref("batch", f), "Normal")
    with writer(store.engine).begin() as conn:  # the first image's bytes damaged on disk
        conn.execute(update(m.Image).where(m.Image.sha256 == store.sample("batch").images[0].sha256)
                     .values(data=b"\x89PNG garbage"))
    report = build_report(store, "batch", with_cams=False)
    assert [t.file_name for t in report.thumbs] == [files[1]]
    (problem,) = report.problems
    assert f"sample 'batch', image '{files[0]}'" in problem and "does not decode" in problem
    assert report.counts[0][2] == 2  # both still counted: the verdicts are intact
    text_of_pdf = render_pdf(report)
    assert text_of_pdf.startswith(b"%PDF")


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://evil\",\"x\")", "=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+1",
                                  "-2+3", "\tx", "\rx"])
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(cell):
    assert safe_csv_cell(cell) == "'" + cell
    assert safe_csv_cell("plain") == "plain" and safe_csv_cell(-1.5) == -1.5
    frame = csv_safe_frame(pd.DataFrame({"a": [cell], "n": [-1]}))
    assert frame.loc[0, "a"] == "'" + cell and frame.loc[0, "n"] == -1


def test_the_samples_export_neutralises_formulas_in_names_and_tags(store):
    evil = "=HYPERLINK(\"http://evil.example\",\"click\").bmp"
    store.save_sample(ADMIN, "batch", "smids", "effnet_cbam",
                      [NewImage(evil, SMIDS_NORMAL[0].read_bytes(), verdict("Normal_Sperm"))], {}, code_version="t")
    store.tag_image(REVIEWER, store.image_ref("batch", evil), "@SUM(1+1)")
    table = pd.read_csv(io.StringIO(store.export_csv(ADMIN, "batch").text), keep_default_na=False)
    assert table.loc[0, "file"] == "'" + evil and table.loc[0, "tags"] == "'@SUM(1+1)"
    audit = pd.read_csv(io.StringIO(store.audit_csv(ADMIN)), keep_default_na=False)
    assert not any(str(v).startswith(("=", "@", "+", "-")) for v in audit.to_numpy().ravel())


def test_a_report_over_a_good_one_on_a_full_disk_keeps_the_old_one(store, tmp_path, monkeypatch, capsys):
    save_smids(store, "batch", ["Normal_Sperm"])
    out = tmp_path / "report.html"
    write_report(build_report(store, "batch", with_cams=False), out)
    good = out.read_bytes()

    def full_disk(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match=f"could not write {out}: no space left on device; the previous file is "
                                          "unchanged"):
        write_report(build_report(store, "batch", with_cams=False), out)
    assert out.read_bytes() == good
    assert main(["samples", "report", "batch", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(out) in line and "no space left" in line
    assert out.read_bytes() == good and [p.name for p in tmp_path.iterdir() if p.name != "samples.db"
                                         and not p.name.startswith("samples.db-")] == ["report.html"]
