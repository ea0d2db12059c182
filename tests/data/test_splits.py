"""spermlib.data.splits: grouped, stratified, leakage-free folds; committed manifests; the splits CLI."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spermlib.cli import main
from spermlib.data.datasets import PROJECT_ROOT, SAMPLE_DATA_ROOT, DataError, DatasetSpec, get_dataset, list_images
from spermlib.data.splits import (
    CONFLICT,
    MANIFEST_COLUMNS,
    N_FOLDS,
    SPLIT_SEED,
    assign_folds,
    fold_parts,
    hash_images,
    manifest_for_root,
    manifest_path,
    manifest_sha256,
    read_manifest,
    report,
    write_manifest,
)

SMIDS_CONFLICTING_PAIRS = {
    frozenset({"Abnormal_Sperm/Acrosome_Defect_452.bmp", "Normal_Sperm/Sperm (92).png"}),
    frozenset({"Abnormal_Sperm/Normal_2896.bmp", "Normal_Sperm/Sperm (160).png"}),
    frozenset({"Abnormal_Sperm/Normal_2897.bmp", "Normal_Sperm/Sperm (161).png"}),
    frozenset({"Abnormal_Sperm/Acrosome_Abnormality (50).png", "Non-Sperm/Normal_2895.bmp"}),
}


def groups_as_sets(df: pd.DataFrame, min_size: int = 1) -> set[frozenset[str]]:
    return {frozenset(g["path"]) for _, g in df.groupby("group") if len(g) >= min_size}


def assert_no_group_spans_folds(df: pd.DataFrame) -> None:
    folds_per_group = df.groupby("group")["fold"].nunique()
    assert (folds_per_group == 1).all(), folds_per_group[folds_per_group > 1]


# ------------------------------------------------------------------------------ synthetic dataset

N_PER_CLASS = 15


@pytest.fixture
def synthetic_hashed(synthetic_dataset, synthetic_spec: DatasetSpec) -> pd.DataFrame:
    """45 distinct images, 4 same-label pixel-identical pairs, 1 conflicting-label pair."""
    root = synthetic_dataset(n_per_class=N_PER_CLASS, same_label_duplicates=4, conflicting_duplicate=True)
    return hash_images(synthetic_spec, root)


@pytest.fixture
def synthetic_manifest(synthetic_hashed: pd.DataFrame) -> pd.DataFrame:
    return assign_folds(synthetic_hashed)


def test_hash_images_finds_the_planted_duplicates(synthetic_hashed: pd.DataFrame) -> None:
    assert len(synthetic_hashed) == 3 * N_PER_CLASS + 4 + 1
    by_hash = synthetic_hashed.groupby("pixel_sha256")["path"].apply(frozenset)
    dup_sets = {s for s in by_hash if len(s) > 1}
    assert dup_sets == {
        frozenset({"class_a/img_001.bmp", "class_a/dup0_of_img_001.png"}),
        frozenset({"class_b/img_001.bmp", "class_b/dup1_of_img_001.png"}),
        frozenset({"class_c/img_001.bmp", "class_c/dup2_of_img_001.png"}),
        frozenset({"class_a/img_002.bmp", "class_a/dup3_of_img_002.bmp"}),
        frozenset({"class_a/img_000.png", "class_b/conflict_of_img_000.bmp"}),
    }


def test_manifest_columns_and_groups_follow_pixel_hashes(synthetic_manifest: pd.DataFrame) -> None:
    m = synthetic_manifest
    assert list(m.columns) == MANIFEST_COLUMNS
    assert list(m["path"]) == sorted(m["path"])
    # group <-> pixel hash is a bijection
    assert (m.groupby("group")["pixel_sha256"].nunique() == 1).all()
    assert (m.groupby("pixel_sha256")["group"].nunique() == 1).all()
    assert m["group"].nunique() == 3 * N_PER_CLASS
    # group ids are small integers in order of first appearance
    assert list(pd.unique(m["group"])) == list(range(m["group"].nunique()))


def test_pixel_identical_groups_share_one_fold(synthetic_manifest: pd.DataFrame) -> None:
    assert_no_group_spans_folds(synthetic_manifest)
    sizes = synthetic_manifest.groupby("group").size()
    assert (sizes > 1).sum() == 5  # the check above really covered multi-file groups


def test_conflicting_labels_are_excluded(synthetic_manifest: pd.DataFrame) -> None:
    m = synthetic_manifest
    excluded = m[m["excluded"] != ""]
    assert set(excluded["path"]) == {"class_a/img_000.png", "class_b/conflict_of_img_000.bmp"}
    assert (excluded["excluded"] == CONFLICT).all()
    assert (excluded["fold"] == -1).all()
    kept = m[m["excluded"] == ""]
    assert set(kept["fold"]) == set(range(N_FOLDS))
    rep = report(m)
    assert rep.n_images == len(m) and rep.n_groups == m["group"].nunique()
    assert len(rep.duplicate_groups) == 5
    assert rep.conflicting_groups == [
        [("class_a/img_000.png", "class_a"), ("class_b/conflict_of_img_000.bmp", "class_b")]
    ]
    assert rep.fold_counts.loc[-1].sum() == 2


def test_folds_are_stratified(synthetic_manifest: pd.DataFrame) -> None:
    kept = synthetic_manifest[synthetic_manifest["fold"] >= 0]
    counts = pd.crosstab(kept["fold"], kept["label"])
    assert counts.shape == (N_FOLDS, 3)
    assert (counts >= 1).all().all(), counts  # every fold has every class
    assert (counts.max() - counts.min() <= 2).all(), counts
    sizes = kept["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 3


def test_assign_folds_is_deterministic(synthetic_hashed: pd.DataFrame, synthetic_manifest: pd.DataFrame) -> None:
    again = assign_folds(synthetic_hashed.sample(frac=1, random_state=3))  # input order must not matter
    pd.testing.assert_frame_equal(again.reset_index(drop=True), synthetic_manifest.reset_index(drop=True))
    other = assign_folds(synthetic_hashed, seed=SPLIT_SEED + 1)
    assert not (other["fold"].to_numpy() == synthetic_manifest["fold"].to_numpy()).all()
    assert_no_group_spans_folds(other)


def test_assign_folds_n_folds(synthetic_hashed: pd.DataFrame) -> None:
    m = assign_folds(synthetic_hashed, n_folds=3)
    assert set(m["fold"]) == {-1, 0, 1, 2}
    assert_no_group_spans_folds(m)


@pytest.mark.parametrize("fold", range(N_FOLDS))
def test_fold_parts_are_disjoint_and_grouped(synthetic_manifest: pd.DataFrame, fold: int) -> None:
    train, val, test = fold_parts(synthetic_manifest, fold)
    usable = synthetic_manifest[synthetic_manifest["fold"] >= 0]
    parts = [set(train["path"]), set(val["path"]), set(test["path"])]
    assert all(parts)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(usable["path"])
    assert parts[2] == set(usable.loc[usable["fold"] == fold, "path"])
    assert (train["fold"] != fold).all() and (val["fold"] != fold).all()
    # no pixel-identical group crosses train / val / test
    g = [set(train["group"]), set(val["group"]), set(test["group"])]
    assert not (g[0] & g[1]) and not (g[0] & g[2]) and not (g[1] & g[2])
    # excluded images are in no part
    assert not set(synthetic_manifest.loc[synthetic_manifest["fold"] < 0, "path"]) & (parts[0] | parts[1] | parts[2])
    # inner validation is a small slice of the training folds
    assert 0 < len(val) < 0.35 * (len(train) + len(val))
    # deterministic
    train2, val2, test2 = fold_parts(synthetic_manifest, fold)
    assert list(train2["path"]) == list(train["path"]) and list(val2["path"]) == list(val["path"])


def test_fold_parts_unknown_fold(synthetic_manifest: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fold 7"):
        fold_parts(synthetic_manifest, 7)
    with pytest.raises(ValueError, match="fold -1"):
        fold_parts(synthetic_manifest, -1)  # the excluded images are not a fold


def test_manifest_round_trip_and_stable_sha(tmp_path: Path, synthetic_manifest: pd.DataFrame) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "sub" / "b.csv"
    sha = write_manifest(synthetic_manifest, a)
    raw = a.read_bytes()
    assert sha == hashlib.sha256(raw).hexdigest() == manifest_sha256(a)
    assert b"\r\n" not in raw and raw.startswith(b"path,label,fold,group,pixel_sha256,excluded\n")
    back = read_manifest(a)
    pd.testing.assert_frame_equal(back, synthetic_manifest.reset_index(drop=True), check_dtype=False)
    assert back["fold"].dtype.kind == "i" and back["group"].dtype.kind == "i"
    assert (back.loc[back["fold"] >= 0, "excluded"] == "").all()  # empty strings survive (not NaN)
    assert write_manifest(back, b) == sha  # read -> write reproduces the file byte for byte


def test_same_dataset_built_twice_gives_the_same_manifest(tmp_path: Path, synthetic_dataset, synthetic_spec) -> None:
    shas = []
    for _ in range(2):
        root = synthetic_dataset(n_per_class=6, same_label_duplicates=2, conflicting_duplicate=True)
        shas.append(write_manifest(assign_folds(hash_images(synthetic_spec, root)), tmp_path / f"{len(shas)}.csv"))
    assert shas[0] == shas[1]
    root = synthetic_dataset(n_per_class=6, same_label_duplicates=2, conflicting_duplicate=True, seed=1)
    assert write_manifest(assign_folds(hash_images(synthetic_spec, root)), tmp_path / "other.csv") != shas[0]


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="spermlib splits"):
        read_manifest(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,fold\na.png,x,0\n")
    with pytest.raises(ValueError, match="group"):
        read_manifest(bad)


# ----------------------------------------------------------------- committed manifests (no data)


@pytest.mark.parametrize("name,rows", [("smids", 3000), ("hushem", 216)])
def test_committed_manifest_is_consistent(name: str, rows: int) -> None:
    spec = get_dataset(name)
    path = manifest_path(spec)
    assert path == PROJECT_ROOT / "splits" / f"{name}.csv"
    m = read_manifest(path)
    assert len(m) == rows and m["path"].is_unique
    assert set(m["label"]) == set(spec.class_dirs)
    assert (m["path"].str.split("/").str[0] == m["label"]).all()  # label == class folder
    expected_folds = {-1, *range(N_FOLDS)} if name == "smids" else set(range(N_FOLDS))
    assert set(m["fold"]) == expected_folds
    assert_no_group_spans_folds(m)
    assert (m.groupby("group")["pixel_sha256"].nunique() == 1).all()
    assert (m.groupby("pixel_sha256")["group"].nunique() == 1).all()
    multi_label = m.groupby("group")["label"].nunique()
    conflicting = set(multi_label[multi_label > 1].index)
    assert set(m.loc[m["excluded"] == CONFLICT, "group"]) == conflicting
    assert ((m["fold"] == -1) == (m["excluded"] == CONFLICT)).all()
    assert set(m["excluded"]) <= {"", CONFLICT}


@pytest.mark.parametrize("name", ["smids", "hushem"])
def test_fold_parts_on_committed_manifest(name: str) -> None:
    m = read_manifest(manifest_path(get_dataset(name)))
    for fold in range(N_FOLDS):
        train, val, test = fold_parts(m, fold)
        assert len(train) + len(val) + len(test) == (m["fold"] >= 0).sum()
        assert set(val["label"]) == set(test["label"]) == set(m["label"])  # stratified inner split
        assert not set(train["group"]) & set(val["group"])
        assert 0.08 < len(val) / (len(train) + len(val)) < 0.25


@pytest.mark.parametrize("name,n_images", [("smids", 62), ("hushem", 80)])
def test_manifest_for_bundled_sample(name: str, n_images: int) -> None:
    spec = get_dataset(name)
    root = SAMPLE_DATA_ROOT / spec.folder
    sub, sha = manifest_for_root(spec, root)
    full = read_manifest(manifest_path(spec))
    assert sha == manifest_sha256(manifest_path(spec))
    assert len(sub) == n_images < len(full)
    assert set(sub["path"]) == set(list_images(spec, root)["path"])
    # rows are the committed ones, unchanged
    merged = sub.merge(full, on="path", suffixes=("", "_full"))
    assert len(merged) == len(sub)
    for col in ("label", "fold", "group", "pixel_sha256", "excluded"):
        assert (merged[col] == merged[f"{col}_full"]).all(), col
    # the sample supports 5-fold CV: every fold has every class
    kept = sub[sub["fold"] >= 0]
    counts = pd.crosstab(kept["fold"], kept["label"])
    assert counts.shape == (N_FOLDS, spec.num_classes) and (counts >= 4).all().all()
    # the explicit path gives the same answer
    sub2, sha2 = manifest_for_root(spec, root, str(manifest_path(spec)))
    assert sha2 == sha and list(sub2["path"]) == list(sub["path"])


def test_bundled_smids_sample_shows_one_excluded_pair() -> None:
    spec = get_dataset("smids")
    sub, _ = manifest_for_root(spec, SAMPLE_DATA_ROOT / spec.folder)
    excluded = sub[sub["fold"] == -1]
    assert len(excluded) == 2 and excluded["group"].nunique() == 1 and excluded["label"].nunique() == 2
    assert frozenset(excluded["path"]) in SMIDS_CONFLICTING_PAIRS


def test_sample_pixel_hashes_match_committed_manifest() -> None:
    spec = get_dataset("hushem")
    root = SAMPLE_DATA_ROOT / spec.folder
    sub, _ = manifest_for_root(spec, root)
    hashed = hash_images(spec, root)
    assert dict(zip(hashed["path"], hashed["pixel_sha256"])) == dict(zip(sub["path"], sub["pixel_sha256"]))


def test_unknown_image_under_root_is_an_error(tmp_path: Path) -> None:
    spec = get_dataset("hushem")
    root = tmp_path / spec.folder
    shutil.copytree(SAMPLE_DATA_ROOT / spec.folder, root)
    assert len(manifest_for_root(spec, root)[0]) == 80  # a copy elsewhere is fine
    Image.new("RGB", (8, 8)).save(root / "02_Tapered" / "zz_new.png")
    with pytest.raises(ValueError, match="splits") as info:
        manifest_for_root(spec, root)
    msg = str(info.value)
    assert "02_Tapered/zz_new.png" in msg and "1 images" in msg
    assert "--data-dir" in msg and "--splits" in msg


def test_synthetic_folder_is_unknown_to_committed_manifest(synthetic_dataset) -> None:
    spec = get_dataset("hushem")
    root = synthetic_dataset(spec, n_per_class=2)
    with pytest.raises(ValueError, match="spermlib splits --dataset hushem"):
        manifest_for_root(spec, root)


def test_missing_manifest_file(tmp_path: Path) -> None:
    spec = get_dataset("hushem")
    with pytest.raises(FileNotFoundError, match="not found"):
        manifest_for_root(spec, SAMPLE_DATA_ROOT / spec.folder, tmp_path / "none.csv")


# --------------------------------------------------------------------------- full data (shared/)


@pytest.fixture(scope="module")
def smids_images(smids_full: Path) -> pd.DataFrame:
    return pd.read_csv(smids_full / "images.csv", keep_default_na=False)


@pytest.fixture(scope="module")
def smids_committed() -> pd.DataFrame:
    return read_manifest(manifest_path(get_dataset("smids")))


@pytest.mark.shared_data
@pytest.mark.parametrize("name,rows", [("smids", 3000), ("hushem", 216)])
def test_committed_manifest_matches_images_csv(name: str, rows: int, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(f"{name}_full")
    images = pd.read_csv(root / "images.csv", keep_default_na=False).sort_values("path", ignore_index=True)
    m = read_manifest(manifest_path(get_dataset(name)))
    assert len(images) == len(m) == rows
    assert list(m["path"]) == list(images["path"])
    assert list(m["label"]) == list(images["label"])
    # same pixel-identity partition as the dataset's own audit (its hash is computed differently)
    by_audit = {frozenset(g["path"]) for _, g in images.groupby("rgb_pixel_sha256")}
    assert groups_as_sets(m) == by_audit
    # and the files on disk are exactly those
    assert set(list_images(get_dataset(name), root)["path"]) == set(m["path"])


@pytest.mark.shared_data
def test_smids_duplicates_are_manifest_groups(smids_full: Path, smids_committed: pd.DataFrame) -> None:
    dups = pd.read_csv(smids_full / "duplicates.csv")
    listed = {frozenset(g["path"]) for _, g in dups.groupby("group")}
    assert len(listed) == 49 and all(len(s) == 2 for s in listed)
    assert groups_as_sets(smids_committed, min_size=2) == listed
    assert_no_group_spans_folds(smids_committed)
    # the 4 conflicting pairs (and only they) are excluded
    conflicting = {frozenset(g["path"]) for _, g in dups.groupby("group") if not g["same_label_in_group"].all()}
    assert conflicting == SMIDS_CONFLICTING_PAIRS
    excluded = smids_committed[smids_committed["excluded"] == CONFLICT]
    assert groups_as_sets(excluded) == conflicting
    assert (excluded["fold"] == -1).all() and (smids_committed["fold"] == -1).sum() == 8
    assert (smids_committed["fold"] >= 0).sum() == 2992


@pytest.mark.shared_data
def test_hushem_has_no_duplicates_and_no_exclusions(hushem_full: Path) -> None:
    assert len(pd.read_csv(hushem_full / "duplicates.csv")) == 0
    m = read_manifest(manifest_path(get_dataset("hushem")))
    assert m["group"].nunique() == 216 and (m["fold"] >= 0).all() and (m["excluded"] == "").all()


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["smids", "hushem"])
def test_regenerating_reproduces_committed_manifest(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    root = request.getfixturevalue(f"{name}_full")
    spec = get_dataset(name)
    regenerated = assign_folds(hash_images(spec, root))
    committed = read_manifest(manifest_path(spec))
    pd.testing.assert_frame_equal(regenerated.reset_index(drop=True), committed, check_dtype=False)
    assert write_manifest(regenerated, tmp_path / "m.csv") == manifest_sha256(manifest_path(spec))


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["smids", "hushem"])
def test_committed_folds_are_balanced(name: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(f"{name}_full")
    m = read_manifest(manifest_path(get_dataset(name)))
    kept = m[m["fold"] >= 0]
    counts = pd.crosstab(kept["fold"], kept["label"])
    assert counts.shape == (N_FOLDS, get_dataset(name).num_classes)
    spread = counts.max() - counts.min()
    assert (spread <= 3).all(), counts
    per_fold = kept["fold"].value_counts()
    assert per_fold.max() - per_fold.min() <= 5
    expected = len(kept) / N_FOLDS
    assert np.allclose(per_fold, expected, rtol=0.03)


# ----------------------------------------------------------------------------------------- CLI


def test_cli_splits_on_synthetic(tmp_path: Path, synthetic_dataset, capsys: pytest.CaptureFixture) -> None:
    spec = get_dataset("hushem")
    root = synthetic_dataset(spec, n_per_class=6, same_label_duplicates=1, conflicting_duplicate=True)
    out = tmp_path / "out" / "m.csv"
    rc = main(["splits", "--dataset", "hushem", "--data-dir", str(root.parent), "--out", str(out)])
    assert rc == 0
    m = read_manifest(out)
    assert len(m) == 4 * 6 + 1 + 1
    assert set(m["label"]) == set(spec.class_dirs)
    assert set(m["fold"]) == {-1, *range(N_FOLDS)}
    # the CLI's default seed reproduces the library's default split
    pd.testing.assert_frame_equal(m, assign_folds(hash_images(spec, root)).reset_index(drop=True), check_dtype=False)
    printed = capsys.readouterr().out
    assert "26 images" in printed and "conflicting labels" in printed
    assert "01_Normal/img_000.png [01_Normal]" in printed and f"wrote {out}" in printed


def test_cli_splits_seed_and_folds(tmp_path: Path, synthetic_dataset) -> None:
    root = synthetic_dataset(get_dataset("hushem"), n_per_class=6)
    out = tmp_path / "m.csv"
    assert main(["splits", "--dataset", "hushem", "--data-dir", str(root), "--out", str(out),
                 "--folds", "3", "--seed", "7"]) == 0
    m = read_manifest(out)
    assert set(m["fold"]) == {0, 1, 2}
    expected = assign_folds(hash_images(get_dataset("hushem"), root), n_folds=3, seed=7)
    assert list(m["fold"]) == list(expected["fold"])


def test_cli_splits_bad_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["splits", "--dataset", "hushem", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m.csv")])
    assert rc == 2
    assert not (tmp_path / "m.csv").exists()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path) in err and "01_Normal" in err


def test_cli_module_runs_as_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "sample.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "spermlib", "splits", "--dataset", "hushem",
         "--data-dir", str(SAMPLE_DATA_ROOT / "HuSHeM"), "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    m = read_manifest(out)
    assert len(m) == 80 and set(m["fold"]) == set(range(N_FOLDS))
    assert "80 images" in proc.stdout


def test_fold_parts_of_a_training_part_too_small_for_its_inner_split_is_a_data_error(
        synthetic_manifest: pd.DataFrame) -> None:
    tiny = synthetic_manifest[synthetic_manifest["fold"] >= 0].groupby("fold").head(1)  # 4 training images a fold
    with pytest.raises(DataError, match="inner-validation split of fold 0's training part needs at least 7"):
        fold_parts(tiny, 0)
