"""Classify's out-of-domain rules (``dashboard.triage``): the per-image warning, the batch banner and when the
normal-forms share is withheld."""

from __future__ import annotations

from spermlib.dashboard import triage
from spermlib.data.datasets import get_dataset
from spermlib.inference.predict import Prediction

SMIDS = get_dataset("smids")


def _pred(in_domain: bool | None, label: str = "Normal_Sperm") -> Prediction:
    score = None if in_domain is None else (0.8 if in_domain else -2.5)
    return Prediction(path="x.png", label=label, display=SMIDS.display(label), confidence=0.95,
                      probabilities={c: 0.95 if c == label else 0.025 for c in SMIDS.class_dirs},
                      fold_labels=[label] * 5, agreement=1.0, in_domain=in_domain, domain_score=score)


def test_out_of_domain_image_gets_its_warning_first_and_others_none():
    (warning,) = triage.triage_warnings(_pred(False), SMIDS)
    assert warning.kind == "out_of_domain" and "-2.50" in warning.message and "not trustworthy" in warning.message
    assert triage.triage_warnings(_pred(True), SMIDS) == []
    assert triage.triage_warnings(_pred(None), SMIDS) == []  # no detector: no claim either way


def test_banner_counts_flagged_images_per_model_and_is_absent_otherwise():
    results = {"effnet": [triage.ArchResult("effnet", _pred(False)), None, triage.ArchResult("effnet", _pred(True))],
               "effnet_cbam": [triage.ArchResult("effnet_cbam", _pred(True))] * 2}
    banner = triage.out_of_domain_banner(results)
    assert banner.startswith("Out-of-domain images in this batch (1 of 2 for EfficientNet)")
    assert "CBAM" not in banner
    assert triage.out_of_domain_banner({"effnet": [triage.ArchResult("effnet", _pred(None))]}) is None


def test_normal_share_counts_domain_verdicts_of_classified_images_only():
    preds = [_pred(False), _pred(False), _pred(True), _pred(True, "Abnormal_Sperm"), Prediction("bad", error="x")]
    share = triage.normal_share(preds, SMIDS)
    assert (share.n_out_of_domain, share.n_domain_checked, share.n_failed) == (2, 4, 1)
    assert share.withheld and "2 of 4 images (50%)" in share.withheld_reason
