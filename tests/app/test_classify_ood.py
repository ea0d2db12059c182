"""Classify with out-of-domain detectors: a per-image warning, a batch banner, and no normal-forms share for a
batch that is mostly out of domain (the per-image table stays)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from spermlib.archs import DEFAULT_ARCH
from spermlib.calibration.detectors import Detector
from spermlib.calibration.store import detector_path, write_detector
from spermlib.data.datasets import get_dataset
from spermlib.store.checkpoints import available_folds, checkpoint_path, read_card
from spermlib.store.paths import CHECKPOINTS_ENV

PAGE = str(Path(__file__).resolve().parents[2] / "views" / "classify.py")
SMIDS = get_dataset("smids")
SAMPLES = ["Normal_Sperm/Boya_11435.bmp", "Non-Sperm/Acrosome_Defect_584.bmp"]


def _with_energy_detectors(app_env, tmp_path, monkeypatch, threshold: float) -> None:
    """A copy of the app's checkpoints whose fold models carry an energy detector with ``threshold``
    (huge: every image is out of domain; very low: none is)."""
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(app_env["checkpoints"], ckpts)
    for fold in available_folds(SMIDS, DEFAULT_ARCH, ckpts):
        card = read_card(checkpoint_path(SMIDS, DEFAULT_ARCH, fold, ckpts))
        det = Detector("energy", {}, threshold=threshold, scale=1.0, meta={"weights_sha256": card["weights_sha256"]})
        write_detector(detector_path(SMIDS, DEFAULT_ARCH, fold, ckpts), det.to_stored())
    monkeypatch.setenv(CHECKPOINTS_ENV, str(ckpts))


def _classify_samples() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["classify_dataset"] = "smids"
    at.session_state["classify_arch"] = DEFAULT_ARCH
    at.run()
    at.multiselect(key="classify_samples").set_value(SAMPLES).run()
    assert not at.exception
    return at


def test_out_of_domain_batch_warns_per_image_and_withholds_the_share(app_env, tmp_path, monkeypatch):
    _with_energy_detectors(app_env, tmp_path, monkeypatch, threshold=1e6)
    at = _classify_samples()
    errors = [e.value for e in at.error]
    assert any(e.startswith("Out-of-domain images in this batch (2 of 2") for e in errors)  # the banner
    assert any(e.startswith("Out of domain (domain score") for e in errors)  # the inspected image's warning
    assert any("no share of normal forms for this batch" in w.value and "2 of 2 images (100%)" in w.value
               for w in at.warning)
    assert not [m for m in at.markdown if m.value.startswith("**EfficientNet + CBAM**:")]  # no share verdict
    (table,) = [d.value for d in at.dataframe if "prediction" in d.value.columns]
    assert table["file"].tolist() == SAMPLES and (table["in domain"] == "NO").all()  # the table stays


def test_in_domain_batch_shows_the_share_and_no_banner(app_env, tmp_path, monkeypatch):
    _with_energy_detectors(app_env, tmp_path, monkeypatch, threshold=-1e6)
    at = _classify_samples()
    assert not [e for e in at.error if "domain" in e.value.lower()]
    assert [m for m in at.markdown if m.value.startswith("**EfficientNet + CBAM**:")]
    (table,) = [d.value for d in at.dataframe if "prediction" in d.value.columns]
    assert (table["in domain"] == "yes").all()


@pytest.mark.parametrize("flagged, shown", [(0, True), (1, True), (2, True), (3, False)])
def test_share_is_withheld_above_a_fifth_out_of_domain(flagged, shown):
    from spermlib.dashboard.triage import NormalShare

    share = NormalShare(n_normal=3, n_sperm=10, n_non_sperm=0, n_failed=0, n_out_of_domain=flagged,
                        n_domain_checked=10)
    assert share.withheld is not shown
    assert not NormalShare(3, 10, 0, 0).withheld  # no detector: nothing to withhold for
