"""The command line end to end on the bundled sample (train every fold, evaluate, predict), and its
error handling: a failure the user can fix is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from spermlib.cli import main
from spermlib.data.datasets import PROJECT_ROOT, SAMPLE_DATA_ROOT, DataError, get_dataset
from spermlib.data.imageio import ImageError
from spermlib.errors import SpermlibError
from spermlib.models.weights import WeightsError
from spermlib.store.cards import CheckpointError


def test_train_evaluate_predict_on_bundled_sample(tmp_path, capsys):
    ck, runs, res = tmp_path / "ck", tmp_path / "runs", tmp_path / "res"
    common = ["--dataset", "hushem", "--data-dir", str(SAMPLE_DATA_ROOT)]
    rc = main(["train", *common, "--arch", "simplecnn", "--fold", "all", "--epochs", "1", "--input-size", "48",
               "--batch-size", "16", "--rotate-deg", "180", "--ema-decay", "0.5", "--checkpoints", str(ck),
               "--runs", str(runs)])
    assert rc == 0
    cards = sorted((ck / "hushem" / "simplecnn").glob("fold*.json"))
    assert len(cards) == 5
    card = json.loads(cards[0].read_text())
    assert card["input_size"] == 48
    assert card["recipe"]["rotate_deg"] == 180 and card["recipe"]["ema_decay"] == 0.5
    # A second run skips finished folds instead of retraining them.
    capsys.readouterr()
    assert main(["train", *common, "--arch", "simplecnn", "--fold", "0", "--checkpoints", str(ck),
                 "--runs", str(runs), "--epochs", "1", "--input-size", "48", "--batch-size", "16"]) == 0
    assert "checkpoint exists" in capsys.readouterr().out

    assert main(["evaluate", *common, "--checkpoints", str(ck), "--results", str(res)]) == 0
    oof = pd.read_csv(res / "hushem" / "oof_simplecnn.csv")
    assert len(oof) == 80 and set(oof["fold"]) == {0, 1, 2, 3, 4}
    metrics = json.loads((res / "hushem" / "metrics.json").read_text())
    assert metrics["full_dataset"] is False and len(metrics["archs"]["simplecnn"]["per_fold"]) == 5

    capsys.readouterr()
    img = next((SAMPLE_DATA_ROOT / "HuSHeM" / "02_Tapered").iterdir())
    bad = tmp_path / "bad.bmp"
    bad.write_bytes(b"BM" + b"\x00" * 10)
    rc = main(["predict", str(img), str(bad), "--dataset", "hushem", "--arch", "simplecnn", "--checkpoints", str(ck)])
    out = capsys.readouterr().out
    assert rc == 1 and "ERROR" in out and "bad.bmp" in out and img.name in out


def test_predict_without_checkpoints_is_a_clear_error(tmp_path, capsys):
    img = next((SAMPLE_DATA_ROOT / "SMIDS" / "Non-Sperm").iterdir())
    rc = main(["predict", str(img), "--dataset", "smids", "--checkpoints", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "no checkpoint for smids/effnet_cbam" in err and "spermlib train" in err


def test_unknown_data_dir_is_a_clear_error(tmp_path, capsys):
    rc = main(["splits", "--dataset", "smids", "--data-dir", str(tmp_path)])
    assert rc == 2 and "holds neither" in capsys.readouterr().err


# ----------------------------------------------------------------------------- expected failures
# Each one ends in exactly one `error: …` line on stderr, exit code 2 and no traceback, after what
# was already computed has been printed.

SHIPPED = str(PROJECT_ROOT / "checkpoints")
IMAGES = [str(p) for p in sorted((SAMPLE_DATA_ROOT / "HuSHeM" / "02_Tapered").iterdir())[:2]]
PREDICT = ["predict", *IMAGES, "--dataset", "hushem", "--arch", "simplecnn", "--checkpoints", SHIPPED]


def one_error_line(err: str, *words: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("cam", ["file", "below a file"])
def test_predict_json_with_unusable_cam_dir_prints_predictions_then_one_error(a_file, cam, capsys):
    cam_dir = a_file if cam == "file" else a_file / "cams"
    rc = main([*PREDICT, "--json", "--cam", str(cam_dir)])
    out, err = capsys.readouterr()
    assert rc == 2
    preds = json.loads(out)  # the whole JSON document, before the error
    assert [p["path"] for p in preds] == IMAGES
    assert all(p["label"] in get_dataset("hushem").class_dirs and p["cam_path"] is None for p in preds)
    one_error_line(err, str(cam_dir), "no Grad-CAM++ overlays written")


def test_predict_table_with_cam_into_a_file_prints_the_table(a_file, capsys):
    rc = main([*PREDICT, "--cam", str(a_file)])
    out, err = capsys.readouterr()
    assert rc == 2 and all(Path(p).name in out for p in IMAGES) and "Tapered" in out
    one_error_line(err, str(a_file), "is a file, not a folder")


def test_predict_with_cam_dir_writes_one_overlay_per_image(tmp_path, capsys):
    cams = tmp_path / "new" / "cams"
    assert main([*PREDICT, "--json", "--cam", str(cams)]) == 0
    preds = json.loads(capsys.readouterr().out)
    written = sorted(Path(p["cam_path"]) for p in preds)
    assert written == sorted(cams.iterdir()) and len(written) == 2


def test_predict_cam_into_a_file_in_a_real_process_has_no_traceback(a_file):
    proc = subprocess.run([sys.executable, "-m", "spermlib", *PREDICT, "--cam", str(a_file)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert proc.returncode == 2
    assert "Tapered" in proc.stdout
    one_error_line(proc.stderr, str(a_file))


def test_splits_out_below_a_file_prints_the_report_then_names_the_path(a_file, capsys):
    rc = main(["splits", "--dataset", "hushem", "--data-dir", str(SAMPLE_DATA_ROOT), "--out", str(a_file / "s.csv")])
    out, err = capsys.readouterr()
    assert rc == 2 and "80 images" in out
    one_error_line(err, str(a_file), "is a file where a folder is needed")


@pytest.mark.parametrize("out, words", [
    ("dir", ("is a folder", "give a file name")),
    ("missing/b.json", ("cannot write into", "missing")),
])
def test_bench_out_that_cannot_be_written_fails_before_the_run(tmp_path, monkeypatch, out, words, capsys):
    import spermlib.evaluation.bench as bench

    def must_not_run(**_):
        raise AssertionError("bench ran although its --out cannot be written")

    monkeypatch.setattr(bench, "run_bench", must_not_run)
    (tmp_path / "dir").mkdir()
    assert main(["bench", "--quick", "--out", str(tmp_path / out)]) == 2
    one_error_line(capsys.readouterr().err, str(tmp_path / out), *words)


def test_tune_bad_run_is_one_error(capsys):
    assert main(["tune", "--dataset", "hushem", "--run", "no-equals-sign"]) == 2
    one_error_line(capsys.readouterr().err, "--run wants NAME=FOLDER", "no-equals-sign")


def test_train_fold_that_is_not_a_number_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "hushem", "--fold", "first"])
    assert info.value.code == 2
    assert "expected a fold number or 'all', got 'first'" in capsys.readouterr().err


def _raising(exc: BaseException):
    def raise_it(*_, **__):
        raise exc

    return raise_it


@pytest.mark.parametrize("exc, words", [
    (WeightsError("Unknown timm backbone 'x'"), ("Unknown timm backbone 'x'",)),
    (CheckpointError("no checkpoint for hushem/effnet"), ("no checkpoint",)),
    (ImageError("cell.png", "not a recognised image format"), ("cell.png: not a recognised",)),
    (DataError("no data under /d"), ("no data under /d",)),
    (PermissionError(13, "Permission denied", "/results/hushem/metrics.json"),
     ("error: /results/hushem/metrics.json: permission denied",)),  # fileio.describe_os_error's words
    (FileNotFoundError("split manifest s.csv not found; create it with …"), ("split manifest s.csv not found",)),
])
def test_every_user_facing_error_is_one_line(monkeypatch, capsys, exc, words):
    import spermlib.evaluation.report as report

    assert isinstance(exc, (SpermlibError, OSError))
    monkeypatch.setattr(report, "update_generated", _raising(exc))
    assert main(["report"]) == 2
    one_error_line(capsys.readouterr().err, *words)


def test_interrupt_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import spermlib.evaluation.report as report

    monkeypatch.setattr(report, "update_generated", _raising(KeyboardInterrupt()))
    assert main(["report"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    monkeypatch.setattr(report, "update_generated", _raising(KeyError("a bug")))
    with pytest.raises(KeyError):
        main(["report"])


def test_weights_error_is_still_a_runtime_error():
    assert issubclass(WeightsError, RuntimeError) and issubclass(WeightsError, SpermlibError)


# ----------------------------------------------------------------------------- the `spermlib` command

def test_the_console_script_is_the_cli_main():
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    import spermlib.cli

    target = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["spermlib"]
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is spermlib.cli.main


def test_python_m_spermlib_help_lists_every_command_without_importing_torch():
    import argparse

    from spermlib.cli import build_parser

    proc = subprocess.run([sys.executable, "-m", "spermlib", "--help"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: spermlib ")
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert all(name in proc.stdout for name in commands) and "predict" in commands and "samples" in commands
    script = ("import sys\nfrom spermlib.cli import main\ntry:\n    main(['predict', '--help'])\n"
              "except SystemExit:\n    pass\nprint('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "False", proc.stderr
