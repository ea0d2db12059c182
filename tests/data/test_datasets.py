"""spermlib.data.datasets: registry, data-root resolution, folder labels, and the bundled sample."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from spermlib.data.datasets import (
    DATA_DIR_ENV,
    DATASETS,
    SAMPLE_DATA_ROOT,
    DataError,
    get_dataset,
    is_full_dataset,
    list_images,
    resolve_data_root,
)
from spermlib.data.imageio import load_rgb

SMIDS = get_dataset("smids")
HUSHEM = get_dataset("hushem")

# --------------------------------------------------------------------------------------- registry


def test_registry_contents() -> None:
    assert set(DATASETS) == {"smids", "hushem"}
    assert SMIDS.folder == "SMIDS" and HUSHEM.folder == "HuSHeM"
    assert SMIDS.class_dirs == ("Normal_Sperm", "Abnormal_Sperm", "Non-Sperm")
    assert HUSHEM.class_dirs == ("01_Normal", "02_Tapered", "03_Pyriform", "04_Amorphous")
    assert SMIDS.num_classes == 3 and HUSHEM.num_classes == 4
    for spec in DATASETS.values():
        assert len(spec.display_names) == len(spec.class_dirs) == len(set(spec.display_names))
        assert spec.licence == "CC BY 4.0"
        assert "doi:10.17632/" in spec.citation


def test_display_names() -> None:
    assert [SMIDS.display(c) for c in SMIDS.class_dirs] == ["Normal", "Abnormal", "Non-sperm"]
    assert [HUSHEM.display(c) for c in HUSHEM.class_dirs] == ["Normal", "Tapered", "Pyriform", "Amorphous"]
    assert HUSHEM.display("99_Other") == "99_Other"  # unknown labels pass through


def test_get_dataset_is_case_insensitive() -> None:
    assert get_dataset("SMIDS") is SMIDS and get_dataset("HuSHeM") is HUSHEM


def test_unknown_dataset_error() -> None:
    with pytest.raises(DataError) as info:
        get_dataset("mhsma")
    msg = str(info.value)
    assert "unknown dataset 'mhsma'" in msg and "smids" in msg and "hushem" in msg
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------- resolve_data_root


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    return monkeypatch


def test_default_is_bundled_sample(no_env) -> None:
    assert resolve_data_root(SMIDS) == SAMPLE_DATA_ROOT / "SMIDS"
    assert resolve_data_root(HUSHEM, None) == SAMPLE_DATA_ROOT / "HuSHeM"
    no_env.setenv(DATA_DIR_ENV, "")  # empty means unset
    assert resolve_data_root(HUSHEM) == SAMPLE_DATA_ROOT / "HuSHeM"


def test_dataset_folder_itself_or_its_parent(no_env, synthetic_dataset) -> None:
    root = synthetic_dataset(HUSHEM, n_per_class=1)
    assert root.name == "HuSHeM"
    assert resolve_data_root(HUSHEM, root) == root
    assert resolve_data_root(HUSHEM, str(root)) == root
    assert resolve_data_root(HUSHEM, root.parent) == root
    assert resolve_data_root(HUSHEM, str(root.parent)) == root


def test_parent_with_both_datasets(no_env, tmp_path: Path) -> None:
    for spec in (SMIDS, HUSHEM):
        for c in spec.class_dirs:
            (tmp_path / spec.folder / c).mkdir(parents=True)
    assert resolve_data_root(SMIDS, tmp_path) == tmp_path / "SMIDS"
    assert resolve_data_root(HUSHEM, tmp_path) == tmp_path / "HuSHeM"


def test_env_var_used_when_no_argument(no_env, synthetic_dataset) -> None:
    root = synthetic_dataset(HUSHEM, n_per_class=1)
    no_env.setenv(DATA_DIR_ENV, str(root.parent))
    assert resolve_data_root(HUSHEM) == root


def test_argument_beats_env_var(no_env, synthetic_dataset, tmp_path: Path) -> None:
    env_root = synthetic_dataset(HUSHEM, n_per_class=1)
    arg_root = synthetic_dataset(HUSHEM, n_per_class=1)
    assert env_root != arg_root
    no_env.setenv(DATA_DIR_ENV, str(env_root))
    assert resolve_data_root(HUSHEM, arg_root) == arg_root
    # a broken env var does not matter when an argument is given ...
    no_env.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    assert resolve_data_root(HUSHEM, arg_root) == arg_root
    # ... but is an error (not a silent fall-back to the sample) when it is used
    with pytest.raises(DataError, match="nowhere"):
        resolve_data_root(HUSHEM)


def test_home_is_expanded(no_env, synthetic_dataset) -> None:
    root = synthetic_dataset(HUSHEM, n_per_class=1)
    no_env.setenv("HOME", str(root.parent.parent))
    assert resolve_data_root(HUSHEM, f"~/{root.parent.name}") == root


def test_wrong_folder_is_a_clear_error(no_env, synthetic_dataset, tmp_path: Path) -> None:
    smids_root = synthetic_dataset(SMIDS, n_per_class=1)  # a real dataset, but the wrong one
    for wrong in (smids_root, smids_root.parent, tmp_path / "does_not_exist"):
        with pytest.raises(DataError) as info:
            resolve_data_root(HUSHEM, wrong)
        msg = str(info.value)
        assert str(wrong) in msg
        assert "01_Normal" in msg and "04_Amorphous" in msg and "HuSHeM/" in msg


def test_partial_class_folders_are_rejected(no_env, tmp_path: Path) -> None:
    for c in HUSHEM.class_dirs[:3]:  # 04_Amorphous missing
        (tmp_path / c).mkdir()
    with pytest.raises(DataError):
        resolve_data_root(HUSHEM, tmp_path)


def test_is_full_dataset(synthetic_dataset) -> None:
    assert not is_full_dataset(SAMPLE_DATA_ROOT / "SMIDS")
    assert not is_full_dataset(SAMPLE_DATA_ROOT)
    assert is_full_dataset(synthetic_dataset(HUSHEM, n_per_class=1))


# ------------------------------------------------------------------------------------ list_images


def test_labels_come_from_folders_not_file_names(synthetic_dataset) -> None:
    root = synthetic_dataset(HUSHEM, n_per_class=3)
    # a misleading file-name prefix (as in SMIDS) and an upper-case suffix (as in HuSHeM)
    Image.new("RGB", (4, 4)).save(root / "03_Pyriform" / "01_Normal_17.BMP", format="BMP")
    # non-image files are ignored, sub-folders too
    (root / "02_Tapered" / "notes.txt").write_text("not an image")
    (root / "02_Tapered" / "Thumbs.db").write_bytes(b"\0" * 10)
    (root / "02_Tapered" / "nested.png").mkdir()
    df = list_images(HUSHEM, root)
    assert list(df.columns) == ["path", "label"]
    assert len(df) == 4 * 3 + 1
    assert (df["path"].str.split("/").str[0] == df["label"]).all()
    assert df.set_index("path").loc["03_Pyriform/01_Normal_17.BMP", "label"] == "03_Pyriform"
    assert list(df["path"]) == sorted(df["path"])
    assert df["label"].value_counts().to_dict() == {"01_Normal": 3, "02_Tapered": 3, "03_Pyriform": 4,
                                                    "04_Amorphous": 3}
    assert not df["path"].str.contains(r"\\|notes|Thumbs|nested").any()
    assert not df["path"].str.startswith("/").any()  # relative


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="01_Normal"):
        list_images(HUSHEM, tmp_path)  # no class folders at all
    for c in HUSHEM.class_dirs:
        (tmp_path / c).mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(HUSHEM, tmp_path)


# --------------------------------------------------------------------------------- bundled sample


@pytest.mark.parametrize("spec", [SMIDS, HUSHEM], ids=["smids", "hushem"])
def test_bundled_sample_has_every_class(spec) -> None:
    root = SAMPLE_DATA_ROOT / spec.folder
    df = list_images(spec, root)
    counts = df["label"].value_counts()
    assert set(counts.index) == set(spec.class_dirs)
    assert (counts >= 4).all(), counts
    assert (root / "SOURCE.md").is_file()
    # every bundled file really is a decodable image
    sizes = {load_rgb(root / p).size for p in df["path"]}
    assert all(80 <= w <= 300 and 80 <= h <= 300 for w, h in sizes)


def test_bundled_sample_readme_attribution() -> None:
    text = (SAMPLE_DATA_ROOT / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in text and "creativecommons.org/licenses/by/4.0" in text
    for needle in ("SMIDS", "HuSHeM", "Ilhan", "Serbes", "Aydin", "Shaker", "Monadjemi",
                   "10.17632/6xvdhc9fyb", "10.17632/tt3yj2pf38"):
        assert needle in text, needle
    for spec in (SMIDS, HUSHEM):
        doi = re.search(r"doi:(\S+?)\s*\(", spec.citation).group(1)
        assert doi in text  # the registry and the README cite the same record
    # the counts stated in the README are the real ones
    stated = dict(re.findall(r"\*\*(SMIDS|HuSHeM)\*\* \((\d+) images of \d+\)", text))
    assert set(stated) == {"SMIDS", "HuSHeM"}
    for spec in (SMIDS, HUSHEM):
        assert int(stated[spec.folder]) == len(list_images(spec, SAMPLE_DATA_ROOT / spec.folder))
