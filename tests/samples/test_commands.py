"""``spermlib samples …``: a round trip on the shipped checkpoints, and one error line (exit 2)
for what a user gets wrong."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from pypdf import PdfReader

from spermlib.cli import main
from spermlib.data.datasets import SAMPLE_DATA_ROOT

HUSHEM = SAMPLE_DATA_ROOT / "HuSHeM"
IMAGES = [HUSHEM / "01_Normal" / "image_001.BMP", HUSHEM / "02_Tapered" / "image_001.BMP"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["samples", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_round_trip(db_url, tmp_path, capsys):
    """Named files of two class folders share the name image_001.BMP: the second is refused as a double."""
    code, _, err = _run(capsys, "add", "twice", "--dataset", "hushem", *map(str, IMAGES))
    assert code == 2 and err.strip() == "error: sample 'twice': file name(s) image_001.BMP given twice; rename them"

    one = tmp_path / "normal.bmp"
    one.write_bytes(IMAGES[0].read_bytes())
    two = tmp_path / "tapered.bmp"
    two.write_bytes(IMAGES[1].read_bytes())
    code, out, _ = _run(capsys, "add", "patient-free 1", "--dataset", "hushem", "--arch", "effnet", str(one), str(two))
    assert code == 0 and "2 image(s) classified by effnet" in out
    code, out, _ = _run(capsys, "list", "--json")
    (listed,) = json.loads(out)
    assert (listed["name"], listed["images"], listed["reviewed"], listed["arch"]) == ("patient-free 1", 2, 0, "effnet")

    code, out, _ = _run(capsys, "review", "patient-free 1", "tapered.bmp", "--label", "Pyriform", "--reviewer",
                        "Dr Bob", "--comment", "pear-shaped")
    assert code == 0 and "reviewed as 03_Pyriform by Dr Bob" in out
    csv = tmp_path / "out.csv"
    assert _run(capsys, "export", "patient-free 1", "--out", str(csv))[0] == 0
    table = pd.read_csv(csv, keep_default_na=False)
    assert table.set_index("file").at["tapered.bmp", "reviewed_label"] == "03_Pyriform"

    pdf = tmp_path / "report.pdf"
    assert _run(capsys, "report", "patient-free 1", "--out", str(pdf))[0] == 0
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.read_bytes())).pages).split())
    assert "reviewed Pyriform by Dr Bob (pear-shaped)" in text and "95 % CI" in text

    code, out, _ = _run(capsys, "delete", "patient-free 1")
    assert code == 0 and "deleted sample 'patient-free 1' with its 2 image(s)" in out
    assert _run(capsys, "list")[1].startswith("no samples yet")
    (gone,) = json.loads(_run(capsys, "list", "--deleted", "--json")[1])
    code, out, _ = _run(capsys, "restore", str(gone["id"]))
    assert code == 0 and "restored sample 'patient-free 1'" in out
    assert [s["name"] for s in json.loads(_run(capsys, "list", "--json")[1])] == ["patient-free 1"]


def test_purge_needs_yes_and_keeps_the_audit_log(db_url, tmp_path, capsys):
    from spermlib.samples.service import SampleStore
    from tests.samples.conftest import save_smids

    store = SampleStore.open(db_url)
    (file_name,) = save_smids(store, "run1", ["Normal_Sperm"])
    store.close()
    assert _run(capsys, "review", "run1", file_name, "--label", "Normal", "--reviewer", "Dr Bob")[0] == 0
    assert _run(capsys, "delete", "run1")[0] == 0
    code, _, err = _run(capsys, "purge", "run1")
    assert code == 2 and "add --yes to confirm" in err
    code, out, _ = _run(capsys, "purge", "run1", "--yes")
    assert code == 0 and "purged 1 deleted sample(s) named 'run1'" in out
    entries = json.loads(_run(capsys, "audit", "--json")[1])
    assert [e["action"] for e in entries] == ["purge", "delete", "review", "save"]
    review = entries[2]
    assert review["actor_display"] == "Dr Bob" and review["actor_subject"].startswith("local:")
    out_csv = tmp_path / "audit.csv"
    assert _run(capsys, "audit", "--out", str(out_csv))[0] == 0
    assert pd.read_csv(out_csv)["action"].tolist() == ["purge", "delete", "review", "save"]
    code, out, _ = _run(capsys, "audit", "--limit", "1")
    assert code == 0 and "\texport\t" in out  # the CSV export was itself logged


@pytest.mark.parametrize("argv,message", [
    (["review", "nope", "a.bmp", "--label", "Normal", "--reviewer", "x"], "error: no sample named 'nope'"),
    (["report", "nope", "--out", "report.docx"], "error: --out report.docx: the file name must end in .pdf or .html"),
    (["export", "nope", "--out", "/no/such/folder/x.csv"], "error: --out /no/such/folder/x.csv: cannot write there"),
    (["add", "s", "--dataset", "smids", "/no/such/image.png"], "error: /no/such/image.png: no such file"),
    (["delete", "nope"], "error: no sample named 'nope'"),
    (["restore", "7"], "error: no deleted sample with id 7"),
    (["purge", "nope", "--yes"], "error: no deleted sample named 'nope'"),
    (["audit", "--out", "audit.txt"], "error: --out audit.txt: the file name must end in .csv"),
])
def test_bad_input_is_one_error_line(db_url, capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(message)


def test_a_corrupt_database_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database " * 200)
    code, _, err = _run(capsys, "--db", f"sqlite:///{bad}", "list")
    assert code == 2 and err.startswith("error: the samples database") and len(err.strip().splitlines()) == 1
