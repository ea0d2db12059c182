"""Atomic output files (spermlib.fileio): a failure leaves the old file whole and names the path."""

import errno

import pytest

from spermlib import fileio
from spermlib.fileio import OutputError, atomic_path, write_text


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "report.html"
    write_text(out, "old")
    write_text(out, "new")
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_failure_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    write_text(out, "the good report")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", full_disk)
    with pytest.raises(OutputError, match=rf"could not write {out}: no space left on device; the previous file"):
        write_text(out, "a truncated rep")
    assert out.read_text() == "the good report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_an_error_inside_the_block_writes_nothing(tmp_path):
    out = tmp_path / "table.csv"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_one_error_naming_the_file(tmp_path):
    with pytest.raises(OutputError, match="could not write .*nowhere/x.json: no such file or directory"):
        write_text(tmp_path / "nowhere" / "x.json", "{}")


def test_a_new_file_gets_the_usual_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    new = write_text(tmp_path / "new.json", "{}")
    assert new.stat().st_mode & 0o777 == 0o666 & ~fileio._UMASK  # not mkstemp's owner-only 0600
    kept = tmp_path / "kept.csv"
    write_text(kept, "a")
    kept.chmod(0o640)
    write_text(kept, "b")
    assert kept.stat().st_mode & 0o777 == 0o640
