"""spermlib.dashboard.catalog: the per-image table behind the dataset explorer."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spermlib.dashboard.catalog import (
    build_catalog,
    class_counts,
    conflicting_groups,
    filter_catalog,
    fold_class_table,
    fold_label,
    image_details,
    image_header,
    page_count,
    paginate,
)
from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset
from spermlib.data.imageio import load_rgb
from spermlib.data.splits import manifest_for_root

SMIDS = get_dataset("smids")
HUSHEM = get_dataset("hushem")
SMIDS_SAMPLE = SAMPLE_DATA_ROOT / "SMIDS"
HUSHEM_SAMPLE = SAMPLE_DATA_ROOT / "HuSHeM"
CONFLICT_PAIR = ("Abnormal_Sperm/Acrosome_Abnormality (50).png", "Non-Sperm/Normal_2895.bmp")


@pytest.fixture(scope="module")
def smids_catalog(tmp_path_factory):
    return build_catalog(SMIDS, SMIDS_SAMPLE, results_dir=tmp_path_factory.mktemp("no_results"))


def test_sample_catalog_matches_manifest_and_files(smids_catalog):
    table = smids_catalog.table
    assert len(table) == 62 and table["path"].is_unique
    assert not smids_catalog.full_dataset and smids_catalog.oof_archs == [] and smids_catalog.notes == []
    manifest, sha = manifest_for_root(SMIDS, SMIDS_SAMPLE)
    assert smids_catalog.manifest_sha256 == sha
    merged = table.merge(manifest, on="path", suffixes=("", "_m"))
    assert len(merged) == 62
    assert (merged["fold"] == merged["fold_m"]).all() and (merged["label"] == merged["label_m"]).all()
    assert (merged["group"] == merged["group_m"]).all()
    assert set(table["display"]) == {"Normal", "Abnormal", "Non-sperm"}


def test_sizes_and_formats_come_from_the_content(smids_catalog):
    for _, row in smids_catalog.table.iloc[::7].iterrows():
        img = load_rgb(SMIDS_SAMPLE / row["path"])  # full decode as the reference
        assert (row["width"], row["height"]) == img.size
        assert row["format"] == ("PNG" if row["path"].endswith(".png") else "BMP")
    assert not smids_catalog.table["ext_mismatch"].any()


def test_conflicting_duplicate_pair(smids_catalog):
    table = smids_catalog.table.set_index("path")
    a, b = CONFLICT_PAIR
    assert table.loc[a, "duplicate_of"] == b and table.loc[b, "duplicate_of"] == a
    assert table.loc[a, "duplicate_labels"] == "Non-Sperm" and table.loc[b, "duplicate_labels"] == "Abnormal_Sperm"
    assert table.loc[a, "group"] == table.loc[b, "group"] and table.loc[a, "group_size"] == 2
    assert (table.loc[list(CONFLICT_PAIR), "fold"] == -1).all()
    assert (table.loc[list(CONFLICT_PAIR), "excluded"] == "conflicting_labels").all()
    others = table.drop(index=list(CONFLICT_PAIR))
    assert (others["duplicate_of"] == "").all() and (others["group_size"] == 1).all()
    assert sorted(conflicting_groups(smids_catalog.table)["path"]) == sorted(CONFLICT_PAIR)

    details = image_details(smids_catalog, b, SMIDS)
    assert details["conflict"] is True
    assert details["duplicates"]["path"].tolist() == [a]
    meta = dict(zip(details["metadata"]["field"], details["metadata"]["value"]))
    assert meta["fold"] == "excluded" and meta["excluded"] == "conflicting labels"
    assert meta["size"] == "156 × 181 px" and meta["format (by content)"] == "BMP"
    assert "2 files" in meta["duplicate group"]


def test_counts_and_fold_table(smids_catalog):
    counts = class_counts(smids_catalog.table, SMIDS)
    assert counts["label"].tolist() == list(SMIDS.class_dirs)
    assert counts["images"].tolist() == [20, 21, 21] and counts["excluded"].tolist() == [0, 1, 1]
    folds = fold_class_table(smids_catalog.table, SMIDS)
    assert folds.index.tolist() == ["fold 0", "fold 1", "fold 2", "fold 3", "fold 4", "excluded"]
    assert folds.columns.tolist() == ["Normal", "Abnormal", "Non-sperm"]
    assert int(folds.to_numpy().sum()) == 62 and (folds.loc["fold 2"] == 4).all()


def test_filters_and_pagination(smids_catalog):
    table = smids_catalog.table
    assert len(filter_catalog(table)) == 62 and len(filter_catalog(table, [], [])) == 62
    non_sperm = filter_catalog(table, ["Non-Sperm"])
    assert len(non_sperm) == 21 and set(non_sperm["label"]) == {"Non-Sperm"}
    assert len(filter_catalog(table, ["Non-Sperm"], [0])) == 4
    assert len(filter_catalog(table, None, [-1])) == 2
    assert len(filter_catalog(table, ["Normal_Sperm"], [-1])) == 0

    assert page_count(62, 24) == 3 and page_count(0, 24) == 1 and page_count(48, 24) == 2
    pages = [paginate(table, p, 24) for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [24, 24, 14]
    assert pd.concat(pages)["path"].tolist() == table["path"].tolist()  # every image exactly once, in order
    assert paginate(table, 99, 24)["path"].tolist() == pages[-1]["path"].tolist()  # clamped
    assert paginate(table, 0, 24)["path"].tolist() == pages[0]["path"].tolist()
    assert fold_label(-1) == "excluded" and fold_label(3) == "fold 3"


def test_hushem_sample_catalog(tmp_path):
    cat = build_catalog(HUSHEM, HUSHEM_SAMPLE, results_dir=tmp_path)
    assert len(cat.table) == 80
    sides = cat.table[["width", "height"]]
    assert sides.max().max() == 131 and sides.min().min() >= 118  # 131 px crops, a few trimmed
    assert ((sides["width"] == 131) & (sides["height"] == 131)).sum() == 77
    assert set(cat.table["format"]) == {"BMP"} and (cat.table["fold"] >= 0).all()
    assert conflicting_groups(cat.table).empty


def _write_oof(results: Path, arch: str, rows: list[tuple[str, str, list[float]]], split_sha: str | None = None):
    folder = results / "smids"
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame([{"path": p, "label": p.split("/")[0], "fold": 0, "pred": pred,
                        **{f"prob_{c}": v for c, v in zip(SMIDS.class_dirs, probs)}} for p, pred, probs in rows])
    df.to_csv(folder / f"oof_{arch}.csv", index=False)
    if split_sha is not None:
        provenance = {"split_sha256": split_sha, "full_dataset": False, "archs": {}}
        (folder / "metrics.json").write_text(json.dumps(provenance))


def test_oof_predictions_are_joined_per_arch(tmp_path):
    _, sha = manifest_for_root(SMIDS, SMIDS_SAMPLE)
    normal = "Normal_Sperm/Boya_11435.bmp"
    abnormal = "Abnormal_Sperm/Acrosome_Abnormality (1).png"
    _write_oof(tmp_path, "effnet", [(normal, "Normal_Sperm", [0.7, 0.2, 0.1]),
                                    (abnormal, "Non-Sperm", [0.1, 0.3, 0.6])], split_sha=sha)
    _write_oof(tmp_path, "simplecnn", [(normal, "Abnormal_Sperm", [0.2, 0.5, 0.3])])
    cat = build_catalog(SMIDS, SMIDS_SAMPLE, results_dir=tmp_path)
    assert cat.oof_archs == ["simplecnn", "effnet"] and cat.notes == []
    t = cat.table.set_index("path")
    assert t.loc[normal, "oof_effnet"] == "Normal_Sperm" and t.loc[normal, "oof_effnet_p"] == pytest.approx(0.7)
    assert t.loc[abnormal, "oof_effnet"] == "Non-Sperm" and t.loc[abnormal, "oof_effnet_p"] == pytest.approx(0.6)
    assert t.loc[normal, "oof_simplecnn"] == "Abnormal_Sperm"
    assert pd.isna(t.loc[abnormal, "oof_simplecnn"])  # not evaluated by that arch

    preds = image_details(cat, normal, SMIDS)["predictions"].set_index("arch")
    assert preds.loc["effnet", "prediction"] == "Normal" and bool(preds.loc["effnet", "correct"]) is True
    assert bool(preds.loc["simplecnn", "correct"]) is False
    assert preds.loc["simplecnn", "probability"] == pytest.approx(0.5)
    wrong = image_details(cat, abnormal, SMIDS)["predictions"].set_index("arch")
    assert wrong.loc["simplecnn", "prediction"].startswith("—") and wrong.loc["simplecnn", "correct"] is None


def test_oof_from_another_split_manifest_is_flagged(tmp_path):
    _write_oof(tmp_path, "effnet", [("Normal_Sperm/Boya_11435.bmp", "Normal_Sperm", [0.7, 0.2, 0.1])],
               split_sha="0" * 64)
    cat = build_catalog(SMIDS, SMIDS_SAMPLE, results_dir=tmp_path)
    assert len(cat.notes) == 1 and "another split manifest" in cat.notes[0]


def test_images_unknown_to_the_manifest_still_listed_with_a_note(tmp_path):
    """A data folder the committed manifest doesn't know: folds unknown, but every image is shown."""
    root = tmp_path / "SMIDS"
    for label in SMIDS.class_dirs:
        (root / label).mkdir(parents=True)
    shutil.copy(SMIDS_SAMPLE / "Normal_Sperm/Boya_11435.bmp", root / "Normal_Sperm/Boya_11435.bmp")
    png = io.BytesIO()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(png, format="PNG")
    (root / "Non-Sperm" / "new_patch.bmp").write_bytes(png.getvalue())  # PNG data named .bmp
    (root / "Abnormal_Sperm" / "broken.png").write_bytes(b"not an image")

    cat = build_catalog(SMIDS, root, results_dir=tmp_path / "none")
    assert cat.full_dataset and cat.manifest_sha256 is None
    assert len(cat.notes) == 1 and "not in" in cat.notes[0] and "spermlib splits" in cat.notes[0]
    t = cat.table.set_index("path")
    assert len(t) == 3 and (t["fold"] == -1).all() and (t["excluded"] == "not in split manifest").all()
    assert t.loc["Non-Sperm/new_patch.bmp", ["width", "height", "format"]].tolist() == [40, 30, "PNG"]
    assert bool(t.loc["Non-Sperm/new_patch.bmp", "ext_mismatch"]) is True
    assert t.loc["Abnormal_Sperm/broken.png", "format"] == "unreadable"
    meta = image_details(cat, "Non-Sperm/new_patch.bmp", SMIDS)["metadata"].set_index("field")["value"]
    assert meta["fold"] == "unknown" and "extension does not match" in meta["format (by content)"]


def test_image_header(tmp_path):
    path = SMIDS_SAMPLE / "Non-Sperm/Normal_2895.bmp"
    assert image_header(path) == (156, 181, "BMP")
    bogus = tmp_path / "x.png"
    bogus.write_bytes(b"hello")
    assert image_header(bogus) == (0, 0, "unreadable")


def test_image_details_unknown_path(smids_catalog):
    with pytest.raises(KeyError):
        image_details(smids_catalog, "Normal_Sperm/nope.bmp", SMIDS)


@pytest.mark.shared_data
def test_full_smids_catalog_is_fast_and_complete(smids_full, tmp_path):
    start = time.perf_counter()
    cat = build_catalog(SMIDS, smids_full, results_dir=tmp_path)
    seconds = time.perf_counter() - start
    assert len(cat.table) == 3000 and cat.full_dataset and cat.notes == []
    assert seconds < 15, f"building the catalog took {seconds:.1f} s (headers only should take ~1 s)"
    assert (cat.table["width"] > 0).all()
    assert len(conflicting_groups(cat.table)) == 8  # the 4 conflicting pairs
    assert (cat.table["fold"] == -1).sum() == 8
    assert set(cat.table["format"]) == {"BMP", "PNG"}


def test_catalog_sources_are_the_files_build_catalog_reads(tmp_path):
    from spermlib.dashboard.catalog import catalog_sources
    from spermlib.store.results import METRICS_FILE, oof_path

    sources = catalog_sources(HUSHEM, tmp_path)
    assert sources[0].name == "hushem.csv" and sources[0].is_file()  # the committed split manifest
    assert tmp_path / "hushem" / METRICS_FILE in sources
    assert oof_path(tmp_path / "hushem", "effnet_cbam") in sources
