"""Embedding map coloured by domain score: a continuous colour scale when the fold model has a feature-based
out-of-domain detector, a notice (and class colours) when it has none."""

from __future__ import annotations

import shutil

import numpy as np

from spermlib.archs import DEFAULT_ARCH
from spermlib.calibration.detectors import fit_detector
from spermlib.calibration.store import detector_path, write_detector
from spermlib.data.datasets import get_dataset
from spermlib.inference.predict import Predictor
from spermlib.store.embeddings import EMBEDDINGS_ENV
from spermlib.store.paths import CHECKPOINTS_ENV
from tests.app.test_embedding_page import chart_spec, open_page

HUSHEM = get_dataset("hushem")


def _domain_map(at):
    at.selectbox(key="embedding_dataset").set_value("hushem").run()
    at.radio(key="embedding_colour").set_value("domain score").run()
    assert not at.exception, at.exception
    return at


def test_colour_by_domain_score_uses_a_continuous_scale(app_env, tmp_path, monkeypatch):
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(app_env["checkpoints"], ckpts)
    predictor = Predictor.from_checkpoints(HUSHEM, DEFAULT_ARCH, checkpoints_dir=ckpts, device="cpu")
    dim, rng = predictor.models[0].num_features, np.random.default_rng(0)
    for fold, card in zip(predictor.folds, predictor.cards):
        det = fit_detector("gaussian", rng.normal(size=(60, dim)), np.zeros(60, int), rng.normal(size=(20, dim)))
        det.meta = {"weights_sha256": card["weights_sha256"]}
        write_detector(detector_path(HUSHEM, DEFAULT_ARCH, fold, ckpts), det.to_stored())
    monkeypatch.setenv(CHECKPOINTS_ENV, str(ckpts))
    monkeypatch.setenv(EMBEDDINGS_ENV, str(tmp_path / "embeddings"))
    at = _domain_map(open_page())
    spec = chart_spec(at)
    assert "coloraxis" in spec["layout"] and spec["layout"]["coloraxis"]["cmid"] == 0.0
    assert not [i for i in at.info if "No out-of-domain detector" in i.value]


def test_colour_by_domain_score_without_a_detector_explains_and_falls_back(app_env):
    at = _domain_map(open_page())
    assert [i for i in at.info if "No out-of-domain detector" in i.value]
    assert "coloraxis" not in chart_spec(at)["layout"]
