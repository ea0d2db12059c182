"""The placeholder dashboard renders on the bundled data and says what it found."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from spermlib.dashboard.tables import PAPER_COLUMN
from spermlib.store.paths import default_results_dir
from spermlib.store.results import load_metrics

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def table_with(at: AppTest, column: str):
    """The one dataframe on the page that has ``column`` (the status table: "checkpoints")."""
    (table,) = [t.value for t in at.dataframe if column in t.value.columns]
    return table


def leaderboards(at: AppTest, folders: list[str]):
    """The leaderboard tables, one per evaluated dataset (in registry order), by dataset folder."""
    assert len(at.table) == len(folders)
    return {folder: t.value for folder, t in zip(folders, at.table)}


def test_overview_renders_and_reports_data():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "Interpretable sperm-morphology classification" in at.title[0].value
    table = table_with(at, "checkpoints")
    assert len(table) == 2
    assert table["data"].str.contains("images").all()
    citations = " ".join(c.value for c in at.caption)  # the footer
    assert "doi:10.17632/6xvdhc9fyb.1" in citations and "doi:10.17632/tt3yj2pf38.3" in citations


def test_leaderboard_shows_metrics_json_beside_the_paper(app_env):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    status = table_with(at, "checkpoints")
    assert status["checkpoints"].str.contains("effnet_cbam: 5 folds").all()
    boards = leaderboards(at, ["SMIDS", "HuSHeM"])
    assert [len(b) for b in boards.values()] == [3, 3]  # 3 archs × 2 datasets
    for dataset, folder in (("smids", "SMIDS"), ("hushem", "HuSHeM")):
        metrics = json.loads((app_env["results"] / dataset / "metrics.json").read_text())
        rows = boards[folder]
        for arch, title in (("simplecnn", "SimpleCNN"), ("effnet", "EfficientNet"),
                            ("effnet_cbam", "EfficientNet + CBAM")):
            acc, f1 = metrics["archs"][arch]["accuracy"], metrics["archs"][arch]["macro_f1"]
            assert rows.at[title, "Accuracy (mean ± std)"] == \
                f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} %"
            assert rows.at[title, "Macro-F1 (mean ± std)"] == f"{f1['mean']:.3f} ± {f1['std']:.3f}"
            lo, hi = acc["ci95"]
            assert rows.at[title, "Accuracy 95 % CI"] == f"{100 * lo:.1f}–{100 * hi:.1f} %"
        assert rows.at["EfficientNet + CBAM", PAPER_COLUMN] == {"smids": "90.2 % / 0.913",
                                                                 "hushem": "93.9 % / 0.948"}[dataset]
        assert rows.at["SimpleCNN", PAPER_COLUMN] == "—"
    # The fixture's results are on the bundled sample: labelled as a subset, not the published protocol.
    assert any("subset" in w.value and "not comparable with the paper" in w.value for w in at.warning)
    captions = " ".join(c.value for c in at.caption)
    assert "5-fold" in captions and "hold-out" in captions
    links = [link.proto.page for link in at.get("page_link")]
    # the Pages section links every other page, in registry order (the worked example may link Classify first)
    assert links[-6:] == ["explorer", "classify", "compare", "mistakes", "embedding", "samples"] and len(links) <= 7


def test_overview_without_results_says_which_command_produces_them(empty_env):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    notices = " ".join(i.value for i in at.info)
    assert "spermlib evaluate --dataset smids" in notices
    assert "spermlib evaluate --dataset hushem" in notices
    assert "No trained checkpoints" in notices
    assert len(at.dataframe) == 1  # the status table, no leaderboard


def test_an_unreadable_metrics_file_is_reported_and_the_other_dataset_still_shown(app_env, tmp_path, monkeypatch):
    results = tmp_path / "results"
    (results / "smids").mkdir(parents=True)
    (results / "smids" / "metrics.json").write_text("{truncated")
    (results / "hushem").mkdir()
    (results / "hushem" / "metrics.json").write_bytes((app_env["results"] / "hushem" / "metrics.json").read_bytes())
    monkeypatch.setenv("SPERMLIB_RESULTS", str(results))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "smids" in at.error[0].value and "not readable JSON" in at.error[0].value
    board = leaderboards(at, ["HuSHeM"])["HuSHeM"]
    assert "HuSHeM" in [m.value.strip("*") for m in at.markdown] and len(board) == 3


def test_overview_leads_with_key_figures_the_headline_chart_and_a_worked_example():
    """On what the repository ships: the first screen says how well the paper's model does and shows it at work."""
    metrics = {d: load_metrics(d, default_results_dir()) for d in ("smids", "hushem")}
    if None in metrics.values():
        pytest.skip("the repository's results are not installed")
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    figures = {m.label: m for m in at.metric}
    for dataset, folder in (("smids", "SMIDS"), ("hushem", "HuSHeM")):
        archs = metrics[dataset]["archs"]  # the default inference leads, with TTA where it was scored
        tta = "effnet_cbam+tta" in archs
        acc = archs["effnet_cbam+tta" if tta else "effnet_cbam"]["accuracy"]["mean"]
        figure = figures[f"{folder} accuracy" + (", TTA ×8" if tta else "")]
        assert figure.value == f"{100 * acc:.1f} %"
        if tta:  # the one-view figure beside it, labelled, on the card
            assert f"one view {100 * archs['effnet_cbam']['accuracy']['mean']:.1f} %" in figure.proto.delta
    assert len(at.get("plotly_chart")) == 1  # the headline chart
    boards = leaderboards(at, ["SMIDS", "HuSHeM"])  # one row per model, the one view beside its default inference
    assert [len(b) for b in boards.values()] == [3, 3]
    if "effnet_cbam+tta" in metrics["hushem"]["archs"]:
        one_view = metrics["hushem"]["archs"]["effnet_cbam"]["accuracy"]["mean"]
        assert f"EfficientNet + CBAM (TTA ×8); one view {100 * one_view:.1f} %" in boards["HuSHeM"].index
    (caption,) = [c for image in at.image for c in image.captions]  # the image and its two maps in one row
    assert re.fullmatch(r"Left to right: the image · Grad-CAM\+\+ for \w+ · CBAM attention", caption)
    example = " ".join(m.value for m in at.markdown if "worked example" in m.value or "never saw this image" in m.value)
    assert re.search(r"fold-\d model, which never saw this image", example)
    assert any("What it can and cannot do" in h.value for h in at.subheader)


def _example_caption(at: AppTest) -> str:
    (caption,) = [c for image in at.image for c in image.captions]
    return caption


def test_worked_example_is_recomputed_when_its_checkpoint_was_retrained(app_env, tmp_path, monkeypatch):
    """A stored example whose fold checkpoint changed is not shown as is: the page computes the maps again."""
    from spermlib.store.examples import example_path, read_example
    from spermlib.store.paths import RESULTS_ENV

    results = tmp_path / "results"
    shutil.copytree(app_env["results"], results)
    monkeypatch.setenv(RESULTS_ENV, str(results))
    stored = next((s for d in ("smids", "hushem") if (s := read_example(d, results)) is not None), None)
    if stored is None:
        pytest.skip("the tiny models classified no bundled sample correctly: no example to recompute")
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert "CBAM attention" in _example_caption(at)
    for dataset in ("smids", "hushem"):  # as if every fold model were retrained since the example was stored
        path = example_path(dataset, results)
        if path.is_file():
            entry = json.loads(path.read_text())
            entry["weights_sha256"] = "0" * 64
            entry["panels"] = [{**panel, "caption": "STALE"} for panel in entry["panels"]]
            path.write_text(json.dumps(entry))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert re.fullmatch(r"Left to right: the image · Grad-CAM\+\+ for \w+ · CBAM attention", _example_caption(at))


def test_an_own_dataset_with_checkpoints_and_results_joins_the_leaderboard(app_env, tmp_path, monkeypatch):
    """The Overview lists every dataset the app offers: the built-in ones, then a registered own dataset."""
    from spermlib.data.datasets import DATASETS_ENV, folder_dataset, register_dataset

    monkeypatch.setenv(DATASETS_ENV, str(tmp_path / "datasets.json"))
    own = tmp_path / "MyLab"
    image = next((Path(APP).parent / "sample_data" / "HuSHeM" / "01_Normal").iterdir())
    for cls in ("normal", "tapered"):
        (own / cls).mkdir(parents=True)
        shutil.copyfile(image, own / cls / "a.bmp")
    register_dataset(folder_dataset(own, name="lab"))
    checkpoints, results = tmp_path / "checkpoints", tmp_path / "results"
    shutil.copytree(app_env["checkpoints"], checkpoints)
    shutil.copytree(app_env["results"], results)
    (checkpoints / "lab" / "simplecnn").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(checkpoints / "hushem" / "simplecnn" / f"fold0{suffix}",
                        checkpoints / "lab" / "simplecnn" / f"fold0{suffix}")
    (results / "lab").mkdir()
    shutil.copyfile(results / "hushem" / "metrics.json", results / "lab" / "metrics.json")
    monkeypatch.setenv("SPERMLIB_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("SPERMLIB_RESULTS", str(results))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    boards = leaderboards(at, ["SMIDS", "HuSHeM", "MyLab"])
    assert len(boards["MyLab"]) == 3
    assert "MyLab accuracy" not in [m.label for m in at.metric]  # the headline cards stay the replication's
