"""The sample report: the share of normal forms with its Wilson CI against the WHO limit, counts by the model
and after review, the out-of-domain block, and the PDF's text as a reader's tool extracts it (pypdf)."""

from __future__ import annotations

import html
import io

import pytest
from pypdf import PdfReader

from spermlib.data.datasets import get_dataset
from spermlib.inference.predict import Predictor
from spermlib.samples.report import DISCLAIMER, build_report, render_html, render_pdf, who_verdict, wilson_share
from tests.samples.conftest import as_reviewer, save_smids


def test_wilson_interval_matches_the_textbook_values():
    share = wilson_share(1, 3)  # Wilson 95 % interval for 1/3: 0.0615 to 0.7923 (Newcombe 1998, table I style)
    assert (share.share, share.low, share.high) == pytest.approx((1 / 3, 0.0615, 0.7923), abs=1e-4)
    assert wilson_share(0, 0).share is None


@pytest.mark.parametrize("n_normal,n,expected", [(0, 200, "Below the WHO"), (40, 200, "At or above the WHO"),
                                                 (1, 20, "includes the WHO")])
def test_the_verdict_uses_the_whole_interval(n_normal, n, expected):
    assert who_verdict(wilson_share(n_normal, n)).startswith(("Below", "At or above", "The 95 % CI"))
    assert expected in who_verdict(wilson_share(n_normal, n))


def _pdf_text(pdf: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_report_counts_share_and_reviewed_label_in_pdf_and_html(store):
    files = save_smids(store, "batch", ["Normal_Sperm", "Normal_Sperm", "Abnormal_Sperm", "Non-Sperm"],
                       in_domain=True)
    store.review(as_reviewer("Dr Alice"), store.image_ref("batch", files[0]), "Abnormal", "bent neck")
    predictor = Predictor.from_checkpoints(get_dataset("smids"), "effnet_cbam", folds=[0])
    report = build_report(store, "batch", predictor=predictor)
    # Non-Sperm is left out: 3 cells assessed; by the model 2 of 3 normal, after review 1 of 3.
    assert report.counts == [("Normal", 2, 1), ("Abnormal", 1, 2), ("Non-sperm", 1, 1)]
    assert (report.share_model.n_normal, report.share_reviewed.n_normal, report.share_reviewed.n_assessed) == (2, 1, 3)
    (thumb,) = report.thumbs
    assert thumb.reviewed_label == "Abnormal" and thumb.cam_png and thumb.image_png

    text = " ".join(_pdf_text(render_pdf(report)).split())
    assert "After review: 1 of 3 cells normal = 33.3 % (95 % CI 6.1 % to 79.2 %, Wilson)" in text
    assert "By the model alone: 2 of 3 cells normal = 66.7 %" in text
    assert "At or above the WHO 2021 lower reference limit of 4.0 %: the whole 95 % CI lies over it" in text
    assert "Cells assessed: 3 of the 200 spermatozoa" in text
    assert f"{files[0]}: model Normal" in text and "reviewed Abnormal by Dr Alice (bent neck)" in text
    assert "Decision support, not a diagnosis" in text
    assert "Every image looks like the training data" in text
    page = render_html(report)
    assert "33.3 % (95 % CI 6.1 % to 79.2 %, Wilson)" in page and "data:image/png;base64," in page
    assert html.escape(DISCLAIMER) in page


def test_out_of_domain_images_get_a_warning_block(store):
    files = save_smids(store, "odd", ["Normal_Sperm", "Abnormal_Sperm"], in_domain=False)
    text = " ".join(_pdf_text(render_pdf(build_report(store, "odd", with_cams=False))).split())
    assert "Warning: images outside the models' domain" in text
    assert all(f in text for f in files)
    assert "No image has been reviewed yet." in text
