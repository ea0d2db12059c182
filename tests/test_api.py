"""The notebook API (``import spermlib``): the README's example runs as written, against the shipped
checkpoints and a bundled sample image; every kind of image source gives the same prediction; and
importing the package stays free of torch."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import spermlib
from spermlib.data.datasets import PROJECT_ROOT, SAMPLE_DATA_ROOT, get_dataset

HUSHEM = get_dataset("hushem")
SAMPLE = SAMPLE_DATA_ROOT / "HuSHeM" / "02_Tapered" / "image_001.BMP"


def readme_example() -> str:
    """The fenced ```python block of README.md's "## Python API" section."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no ```python block"
    return match.group(1)


@pytest.fixture
def shipped_checkpoints(monkeypatch):
    """The committed checkpoints/, whatever $SPERMLIB_CHECKPOINTS says, and no predictor cached from elsewhere."""
    monkeypatch.delenv("SPERMLIB_CHECKPOINTS", raising=False)
    monkeypatch.chdir(PROJECT_ROOT)  # the README's paths are relative to the repository
    spermlib.api._shared_predictor.cache_clear()
    yield
    spermlib.api._shared_predictor.cache_clear()


@pytest.fixture(scope="module")
def predictor():
    return spermlib.load_predictor("hushem", "effnet_cbam", checkpoints_dir=PROJECT_ROOT / "checkpoints")


def test_readme_example_runs_and_makes_sense(shipped_checkpoints, capsys):
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    ns: dict = {}
    exec(compile(code, "README.md: Python API", "exec"), ns)
    pred, exp = ns["pred"], ns["exp"]

    assert pred.error is None and pred.label in HUSHEM.class_dirs
    assert list(pred.probabilities) == list(HUSHEM.class_dirs)
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert pred.confidence == pytest.approx(max(pred.probabilities.values()))
    assert pred.display in capsys.readouterr().out

    h, w, _ = exp.rgb.shape
    assert exp.class_idx == HUSHEM.class_dirs.index(pred.label)  # explains the predicted class
    for heat in (exp.gradcam, exp.cbam):  # effnet_cbam: both maps
        assert heat.shape == (h, w)
        assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > heat.min()


def test_every_source_kind_gives_the_same_prediction(predictor):
    rgb = np.asarray(Image.open(SAMPLE).convert("RGB"))
    sources = [SAMPLE, str(SAMPLE), SAMPLE.read_bytes(), io.BytesIO(SAMPLE.read_bytes()), Image.open(SAMPLE), rgb]
    preds = spermlib.predict(sources, predictor=predictor)
    assert [p.error for p in preds] == [None] * len(sources)
    reference = preds[0].probabilities
    for p in preds[1:]:
        assert p.probabilities == pytest.approx(reference, abs=1e-6)
    assert preds[0].path == str(SAMPLE) and preds[-1].path == "image 6"  # names for the caller's bookkeeping


def test_single_image_and_bad_items(predictor):
    (one,) = spermlib.predict(SAMPLE, predictor=predictor)
    assert one.error is None
    good, bad_bytes, bad_array = spermlib.predict([SAMPLE, b"not an image", np.zeros((8, 8), np.float32)],
                                                  predictor=predictor)
    assert good.error is None and good.probabilities == pytest.approx(one.probabilities, abs=1e-6)
    assert "not a recognised image format" in bad_bytes.error
    assert "H×W×3 uint8" in bad_array.error and bad_array.label is None


@pytest.mark.parametrize("images", [None, 7], ids=["None", "int"])
def test_predict_of_what_is_not_an_image_is_one_error_naming_the_accepted_kinds(predictor, images):
    with pytest.raises(spermlib.SpermlibError, match=r"predict takes an image or a list of images, each a path, "
                                                     rf"encoded bytes, .* got {type(images).__name__}"):
        spermlib.predict(images, predictor=predictor)


def test_a_none_in_a_list_is_that_items_error_and_the_rest_are_classified(predictor):
    (one,) = spermlib.predict(SAMPLE, predictor=predictor)
    good, nothing, number, again = spermlib.predict([SAMPLE, None, 7, str(SAMPLE)], predictor=predictor)
    assert good.error is None and again.error is None and again.label == one.label
    assert nothing.path == "image 2" and "not an image" in nothing.error and "NoneType" in nothing.error
    assert nothing.label is None and "int" in number.error


def test_a_binary_file_object_is_one_image_not_a_list_of_lines(predictor):
    (one,) = spermlib.predict(SAMPLE, predictor=predictor)
    (from_file,) = spermlib.predict(io.BytesIO(SAMPLE.read_bytes()), predictor=predictor)
    assert from_file.error is None and from_file.probabilities == pytest.approx(one.probabilities, abs=1e-6)


def test_explain_class_idx_and_bad_input(predictor):
    exp = spermlib.explain(np.asarray(Image.open(SAMPLE).convert("RGB")), predictor=predictor, class_idx=3)
    assert exp.class_idx == 3 and exp.gradcam.shape == exp.rgb.shape[:2]
    with pytest.raises(spermlib.SpermlibError, match="not a recognised image format"):
        spermlib.explain(b"junk" * 10, predictor=predictor)


def test_lists_and_clear_errors(tmp_path):
    assert spermlib.list_datasets() == ["hushem", "smids"]
    assert spermlib.list_archs() == ["simplecnn", "effnet", "effnet_cbam"]
    with pytest.raises(spermlib.SpermlibError, match="unknown dataset 'nope'"):
        spermlib.load_predictor("nope")
    with pytest.raises(spermlib.SpermlibError, match="unknown arch 'resnet'"):
        spermlib.load_predictor("hushem", "resnet")
    with pytest.raises(spermlib.SpermlibError, match="spermlib train --dataset smids"):
        spermlib.load_predictor("smids", checkpoints_dir=tmp_path)


def test_import_spermlib_does_not_import_torch():
    code = ("import sys, spermlib; spermlib.list_datasets(); spermlib.list_archs(); "
            "heavy = sorted(m for m in ('torch', 'timm', 'pytorch_grad_cam', 'cv2') if m in sys.modules); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
