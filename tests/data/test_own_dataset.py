"""Own datasets (a folder per class, torchvision's ImageFolder layout): specs, the registry, validation, and the
built-in datasets left exactly as they were."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from spermlib.cli import main
from spermlib.data.datasets import (
    DATASETS,
    DATASETS_ENV,
    SAMPLE_DATA_ROOT,
    DataError,
    expand_image_paths,
    get_dataset,
    list_images,
    registered_datasets,
    resolve_data_root,
)
from spermlib.data.splits import CONFLICT, UNREADABLE, assign_folds, hash_images, manifest_for_root, read_manifest
from spermlib.store.cards import listed_datasets

HUSHEM_SAMPLE = SAMPLE_DATA_ROOT / "HuSHeM"


def own_folder(base: Path, per_class: int = 10, name: str = "MyLab") -> Path:
    """A tiny two-class ImageFolder built from bundled HuSHeM sample images: ``normal/``, ``tapered/``."""
    root = base / name
    for cls, src in (("normal", "01_Normal"), ("tapered", "02_Tapered")):
        (root / cls).mkdir(parents=True)
        for f in sorted((HUSHEM_SAMPLE / src).iterdir())[:per_class]:
            shutil.copyfile(f, root / cls / f.name)
    return root


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dataset registry redirected into ``tmp_path`` (tests never touch the project's datasets.json)."""
    path = tmp_path / "datasets.json"
    monkeypatch.setenv(DATASETS_ENV, str(path))
    return path


def _splits(root: Path, out: Path, *extra: str) -> int:
    return main(["splits", "--dataset", str(root), "--out", str(out), *extra])


def test_a_folder_path_is_a_dataset_with_its_sub_folders_as_classes(tmp_path: Path, registry: Path) -> None:
    root = own_folder(tmp_path)
    spec = get_dataset(str(root))
    assert (spec.name, spec.folder, spec.class_dirs, spec.root) == ("mylab", "MyLab", ("normal", "tapered"), str(root))
    assert not spec.is_builtin and all(s.is_builtin for s in DATASETS.values())
    assert resolve_data_root(spec) == root
    assert list_images(spec, root)["label"].value_counts().to_dict() == {"normal": 10, "tapered": 10}
    assert not registry.exists()  # only `splits` records a dataset


def test_splits_records_the_dataset_and_later_commands_know_it_by_name(tmp_path: Path, registry: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    root = own_folder(tmp_path)
    out = tmp_path / "lab.csv"
    assert _splits(root, out, "--name", "lab", "--citation", "Lab X (2026)", "--display-names", "Normal,Tapered") == 0
    assert f"recorded lab ({root}" in capsys.readouterr().out
    spec = registered_datasets()["lab"]
    assert (spec.root, spec.class_dirs, spec.display_names, spec.citation) == (
        str(root), ("normal", "tapered"), ("Normal", "Tapered"), "Lab X (2026)")
    assert get_dataset("lab") == spec and get_dataset(str(root)) == spec  # by name, and by path
    m = read_manifest(out)
    assert len(m) == 20 and set(m["fold"]) == set(range(5)) and (m["excluded"] == "").all()
    # The app lists it once it has a checkpoint.
    ckpts = tmp_path / "checkpoints"
    assert "lab" not in listed_datasets(ckpts)
    (ckpts / "lab" / "simplecnn").mkdir(parents=True)
    (ckpts / "lab" / "simplecnn" / "fold0.safetensors").write_bytes(b"")
    assert list(listed_datasets(ckpts)) == [*DATASETS, "lab"]


def test_too_few_images_in_a_class_is_one_message_naming_it(tmp_path: Path, registry: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    root = own_folder(tmp_path)
    for f in sorted((root / "tapered").iterdir())[4:]:
        f.unlink()
    assert _splits(root, tmp_path / "m.csv") == 2
    err = capsys.readouterr().err
    assert "error: too few usable images" in err and "'tapered' has 4" in err and "'normal'" not in err
    assert not (tmp_path / "m.csv").exists() and not registry.exists()


def test_an_empty_class_folder_is_an_error(tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture) -> None:
    root = own_folder(tmp_path)
    (root / "pyriform").mkdir()
    (root / "pyriform" / "notes.txt").write_text("to do")
    assert _splits(root, tmp_path / "m.csv") == 2
    assert "class folder(s) pyriform" in capsys.readouterr().err


def test_non_image_files_are_skipped_and_listed(tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture) -> None:
    root = own_folder(tmp_path)
    (root / "normal" / "README.txt").write_text("not an image")
    (root / "tapered" / "broken.png").write_bytes(b"not a png either")
    out = tmp_path / "m.csv"
    assert _splits(root, out) == 0
    printed = capsys.readouterr().out
    assert "normal/README.txt" in printed and "tapered/broken.png" in printed
    m = read_manifest(out).set_index("path")
    assert "normal/README.txt" not in m.index
    assert (m.loc["tapered/broken.png", "fold"], m.loc["tapered/broken.png", "excluded"]) == (-1, UNREADABLE)
    assert (m.drop("tapered/broken.png")["fold"] >= 0).all()


def test_pixel_identical_images_under_two_classes_are_excluded_as_the_built_in_rule_does(
        tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture) -> None:
    root = own_folder(tmp_path, per_class=11)
    shutil.copyfile(root / "normal" / "image_001.BMP", root / "tapered" / "copy_of_normal_001.bmp")
    out = tmp_path / "m.csv"
    assert _splits(root, out) == 0
    printed = capsys.readouterr().out
    assert "conflicting labels" in printed and "tapered/copy_of_normal_001.bmp [tapered]" in printed
    m = read_manifest(out).set_index("path")
    for p in ("normal/image_001.BMP", "tapered/copy_of_normal_001.bmp"):
        assert (m.loc[p, "fold"], m.loc[p, "excluded"]) == (-1, CONFLICT)


def test_a_class_folder_added_after_the_split_is_refused(tmp_path: Path, registry: Path) -> None:
    root = own_folder(tmp_path)
    out = tmp_path / "m.csv"
    assert _splits(root, out) == 0
    (root / "pyriform").mkdir()
    shutil.copyfile(HUSHEM_SAMPLE / "03_Pyriform" / "image_001.BMP", root / "pyriform" / "image_001.BMP")
    with pytest.raises(DataError, match="pyriform .* added after the split of mylab"):
        manifest_for_root(get_dataset("mylab"), root, out)


def test_folder_names_that_cannot_be_dataset_names(tmp_path: Path, registry: Path) -> None:
    with pytest.raises(DataError, match="built-in dataset"):
        get_dataset(str(own_folder(tmp_path, name="HuSHeM")))
    with pytest.raises(DataError, match="unknown dataset 'nowhere'.*folder"):
        get_dataset("nowhere")


def test_predict_inputs_expand_folders_recursively(tmp_path: Path) -> None:
    root = own_folder(tmp_path, per_class=2)
    (root / "normal" / "notes.txt").write_text("x")
    files = expand_image_paths([root, tmp_path / "given.txt"])
    assert files == sorted(str(p) for p in root.rglob("*.BMP")) + [str(tmp_path / "given.txt")]
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        expand_image_paths([tmp_path / "empty"])


# --------------------------------------------------------------------- built-in datasets: byte-identical


def test_built_in_splits_through_the_cli_are_unchanged_and_unrecorded(tmp_path: Path, registry: Path) -> None:
    out = tmp_path / "hushem.csv"
    assert main(["splits", "--dataset", "hushem", "--data-dir", str(HUSHEM_SAMPLE), "--out", str(out)]) == 0
    expected = tmp_path / "expected.csv"
    assign_folds(hash_images(get_dataset("hushem"), HUSHEM_SAMPLE)).to_csv(expected, index=False, lineterminator="\n")
    assert out.read_bytes() == expected.read_bytes()
    assert not registry.exists()


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["hushem", pytest.param("smids", marks=pytest.mark.slow)])
def test_regenerated_built_in_splits_are_byte_identical_to_the_committed_ones(
        name: str, request: pytest.FixtureRequest, tmp_path: Path, registry: Path) -> None:
    root = request.getfixturevalue(f"{name}_full")
    out = tmp_path / f"{name}.csv"
    assert main(["splits", "--dataset", name, "--data-dir", str(root), "--out", str(out)]) == 0
    committed = Path(__file__).resolve().parents[2] / "splits" / f"{name}.csv"
    assert out.read_bytes() == committed.read_bytes()
    pd.testing.assert_frame_equal(read_manifest(out), read_manifest(committed))


@pytest.mark.parametrize("per_class,folds", [(1, "5"), (1, "2"), (10, "1")],
                         ids=["two images, five folds", "two images, two folds", "one fold"])
def test_a_dataset_too_small_to_split_is_one_message_not_a_traceback(tmp_path: Path, registry: Path,
                                                                     capsys: pytest.CaptureFixture, per_class: int,
                                                                     folds: str) -> None:
    root = own_folder(tmp_path, per_class=per_class)
    assert _splits(root, tmp_path / "m.csv", "--folds", folds) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert not (tmp_path / "m.csv").exists() and not registry.exists()


def test_two_images_name_what_five_folds_need(tmp_path: Path, registry: Path) -> None:
    with pytest.raises(DataError, match="5-fold cross-validation needs at least 5 distinct usable images; there are 2"):
        assign_folds(hash_images(get_dataset(str(own_folder(tmp_path, per_class=1))), tmp_path / "MyLab"))
