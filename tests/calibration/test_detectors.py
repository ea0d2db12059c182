"""Out-of-domain detectors and temperature scaling on synthetic features (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from spermlib.calibration.detectors import (
    FEATURE_METHODS,
    FLAG_RATE,
    METHODS,
    Detector,
    ensemble_domain,
    fit_arrays,
    fit_detector,
    l2_normalise,
    load_detector,
)
from spermlib.calibration.store import (
    DetectorFileError,
    detector_meta_path,
    detector_path,
    read_detector,
    write_detector,
)
from spermlib.calibration.temperature import fit_temperature, nll

DIM, N_CLASSES = 32, 3
STATS_SIZES = (4, 6)  # two early maps' statistics (2 × channels each)


def _features(n: int, rng: np.random.Generator, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Class-clustered Gaussian features; ``shift`` moves them along directions the training data never used."""
    centres = np.eye(N_CLASSES, DIM) * 4.0
    y = rng.integers(0, N_CLASSES, n)
    x = centres[y] + rng.normal(0, 1, (n, DIM)) + 6.0
    if shift:
        x[:, N_CLASSES:] += shift * rng.normal(0, 1, DIM - N_CLASSES)  # one fixed off-manifold direction
    return x, y


def _stats(n: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    """Early-map statistics: correlated within each map's part; ``shift`` moves them (a stain or contrast change)."""
    mix = np.random.default_rng(7).normal(0, 0.5, (sum(STATS_SIZES), sum(STATS_SIZES)))
    return rng.normal(0, 1, (n, sum(STATS_SIZES))) @ (np.eye(sum(STATS_SIZES)) + mix) + 2.0 + shift


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(0)
    train, y_train = _features(600, rng)
    val, _ = _features(400, rng)
    held_out, _ = _features(4000, rng)
    shifted, _ = _features(400, rng, shift=3.0)
    stats = {f"stats_{name}": _stats(len(x), rng, 3.0 if name == "shifted" else 0.0)
             for name, x in (("train", train), ("val", val), ("held_out", held_out), ("shifted", shifted))}
    return {"train": train, "y_train": y_train, "val": val, "held_out": held_out, "shifted": shifted, **stats}


def _logits(features: np.ndarray) -> np.ndarray:
    return features[:, :N_CLASSES] * 2.0


def _fit(method: str, data: dict, **kw) -> Detector:
    """``method`` fitted on the training set, threshold on ``val`` (statistics given to every method; only
    ``multilayer`` reads them)."""
    return fit_detector(method, data["train"], data["y_train"], data["val"], _logits(data["val"]),
                        train_stats=data["stats_train"], val_stats=data["stats_val"], stats_sizes=STATS_SIZES, **kw)


def _score(det: Detector, data: dict, name: str) -> np.ndarray:
    return det.score(data[name], _logits(data[name]), data[f"stats_{name}"])


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_detector_separates_shifted_features_and_flags_about_five_percent(data, method):
    det = _fit(method, data)
    held = _score(det, data, "held_out")
    shifted = _score(det, data, "shifted")
    labels = np.r_[np.ones(len(held)), np.zeros(len(shifted))]
    assert roc_auc_score(labels, np.r_[held, shifted]) > 0.95
    assert 0.02 <= (held < 0).mean() <= 0.09  # threshold set on other held-out images: about FLAG_RATE
    assert (shifted < 0).mean() > 0.8


@pytest.mark.parametrize("method", ["gaussian", "multilayer"])
def test_scores_are_zero_at_the_threshold_and_one_at_the_held_out_median(data, method):
    det = _fit(method, data)
    val = _score(det, data, "val")
    assert np.quantile(val, FLAG_RATE) == pytest.approx(0.0, abs=1e-9)
    assert np.median(val) == pytest.approx(1.0)


def test_energy_scores_confident_logits_higher():
    det = Detector("energy", {}).set_threshold(np.array([1.0, 2.0, 3.0]))
    confident, flat = np.array([[8.0, 0.0, 0.0]]), np.array([[0.1, 0.0, 0.1]])
    assert det.score(None, confident)[0] > det.score(None, flat)[0]
    with pytest.raises(ValueError, match="logits"):
        det.score(np.zeros((1, 4)))


def test_low_rank_mahalanobis_equals_the_full_ledoit_wolf_precision_when_nothing_is_cut(data):
    """With fewer dimensions than the kept rank the stored form is exact: compare with sklearn's precision."""
    x, y = data["train"][:, :12], data["y_train"]
    det = Detector("mahalanobis", fit_arrays("mahalanobis", x, y))
    z = l2_normalise(x)
    means = np.stack([z[y == c].mean(0) for c in range(N_CLASSES)])
    precision = LedoitWolf().fit(z - means[y]).precision_
    probe = l2_normalise(data["shifted"][:50, :12])
    full = np.stack([(((probe - m) @ precision) * (probe - m)).sum(1) for m in means], 1).min(1)
    np.testing.assert_allclose(det.raw(probe[:, :12] * 3.0), -full, rtol=1e-6)  # scale-free: L2-normalised


def test_knn_bank_is_capped_and_normalised():
    rng = np.random.default_rng(1)
    arrays = fit_arrays("knn", rng.normal(size=(2000, 8)), np.zeros(2000, int))
    assert arrays["bank"].shape == (512, 8)
    np.testing.assert_allclose(np.linalg.norm(arrays["bank"], axis=1), 1.0)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown detector"):
        fit_arrays("isolation_forest", np.zeros((4, 2)), np.zeros(4))
    assert set(FEATURE_METHODS) < set(METHODS)


def test_multilayer_sees_a_shift_of_the_early_maps_that_the_pre_logit_features_do_not(data):
    """A stain or contrast change the classifier learned to ignore: features as in domain, early maps shifted."""
    stain = {**data, "stats_stain": data["stats_shifted"], "stain": data["held_out"][:400]}
    multi, gauss = _fit("multilayer", stain), _fit("gaussian", stain)
    assert (_score(multi, stain, "stain") < 0).mean() > 0.9
    assert (_score(gauss, stain, "stain") < 0).mean() < 0.15  # the features alone cannot tell
    assert 0.02 <= (_score(multi, stain, "held_out") < 0).mean() <= 0.09
    assert multi.needs_stats and not gauss.needs_stats
    layers = [k for k in multi.arrays if k.endswith(".shift")]
    assert [len(multi.arrays[k]) for k in sorted(layers)] == list(STATS_SIZES)


def test_multilayer_without_statistics_or_with_other_widths_says_what_is_wrong(data):
    det = _fit("multilayer", data)
    with pytest.raises(ValueError, match="early-map statistics"):
        det.score(data["val"])
    with pytest.raises(ValueError, match="refit it for this model"):
        det.score(data["val"], None, data["stats_val"][:, :7])
    with pytest.raises(ValueError, match="early-map statistics"):
        fit_detector("multilayer", data["train"], data["y_train"], data["val"])


@pytest.mark.parametrize("method", METHODS)
def test_safetensors_round_trip_gives_the_same_scores(tmp_path, data, method):
    det = _fit(method, data)
    det.meta = {"weights_sha256": "abc", "fitted_on": "train"}
    path = detector_path("hushem", "effnet", 3, tmp_path)
    write_detector(path, det.to_stored())
    assert path.parent.name == "ood" and path.name == "fold3.safetensors"
    with safe_open(str(path), framework="np") as f:  # fp32 arrays, no pickle anywhere
        assert all(str(f.get_slice(k).get_dtype()) == "F32" for k in f.keys())  # noqa: SIM118 - safe_open is not iterable
    back = load_detector(path, "abc")
    np.testing.assert_allclose(_score(back, data, "shifted"), _score(det, data, "shifted"), rtol=1e-4, atol=1e-4)
    assert back.method == method and back.meta["fitted_on"] == "train"


def test_missing_stale_and_corrupt_detector_files(tmp_path, data):
    path = detector_path("hushem", "effnet", 0, tmp_path)
    assert read_detector(path) is None and load_detector(path) is None
    det = fit_detector("gaussian", data["train"], data["y_train"], data["val"])
    det.meta = {"weights_sha256": "old"}
    write_detector(path, det.to_stored())
    assert load_detector(path, "new") is None  # fitted on other weights: not used
    path.write_bytes(b"not safetensors")
    with pytest.raises(DetectorFileError, match="--refit"):
        load_detector(path, "old")
    detector_meta_path(path).write_text(json.dumps({"threshold": 0}))
    with pytest.raises(DetectorFileError, match="no detector method"):
        read_detector(path)


def test_ensemble_uses_the_mean_of_the_fold_scores():
    scores = np.array([[2.0, -0.5, 0.2], [-1.0, -0.5, -0.1], [1.0, 2.0, -0.2]])
    mean, ok = ensemble_domain(scores)
    np.testing.assert_allclose(mean, [2 / 3, 1 / 3, -0.1 / 3])
    assert ok.tolist() == [True, True, False]


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, (4000, 4))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    overconfident = true_logits * 2.5
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(2.5, rel=0.1)
    assert nll(overconfident, y, t) < nll(overconfident, y)
