"""spermlib.dashboard.review: the review queue's order of need, the reviewer from st.user, the tag filter, and
Classify's verdicts turned into a sample to save."""

from __future__ import annotations

from datetime import datetime, timezone

from spermlib.dashboard.review import (
    filter_tags,
    need_reasons,
    review_queue,
    reviewer_identity,
    tags_table,
)
from spermlib.samples.service import DatasetTagRecord, ImageRecord, PredictionRecord, ReviewRecord

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def _image(name: str, confidence: float, in_domain: bool | None = True, agreement: float = 1.0,
           reviewed: bool = False) -> ImageRecord:
    pred = PredictionRecord("effnet_cbam", "Normal_Sperm", confidence, {"Normal_Sperm": confidence},
                            ("Normal_Sperm",) * 5, agreement, "ensemble", in_domain)
    reviews = (ReviewRecord("Normal_Sperm", "alice", None, NOW),) if reviewed else ()
    return ImageRecord(name, "0" * 64, 1, 1, 1, {"effnet_cbam": pred}, reviews)


def test_queue_puts_out_of_domain_then_low_confidence_then_disagreement_first_and_reviewed_last():
    images = [_image("sure.png", 0.95), _image("reviewed_odd.png", 0.3, in_domain=False, reviewed=True),
              _image("split.png", 0.9, agreement=0.6), _image("unsure.png", 0.5), _image("odd.png", 0.99, False),
              _image("unsure_er.png", 0.4), _image("unknown_domain.png", 0.97, in_domain=None)]
    queue = review_queue(images, "effnet_cbam")
    assert [i.image.file_name for i in queue] == ["odd.png", "unsure_er.png", "unsure.png", "split.png", "sure.png",
                                                  "unknown_domain.png", "reviewed_odd.png"]
    assert queue[0].reasons == ("out of domain",)
    assert need_reasons(images[3].predictions["effnet_cbam"]) == ("low confidence",)
    assert need_reasons(None) == ()


def test_reviewer_is_the_logged_in_user_only():
    assert reviewer_identity({}) is None
    assert reviewer_identity({"is_logged_in": False, "name": "Mallory"}) is None
    assert reviewer_identity({"is_logged_in": True, "name": "Dr Alice", "email": "a@lab.org"}) == "Dr Alice"
    assert reviewer_identity({"is_logged_in": True, "email": "a@lab.org"}) == "a@lab.org"


def test_tag_filter_keeps_rows_with_a_chosen_tag():
    table = tags_table([DatasetTagRecord("blurry", None, "a", NOW, "smids", "x.png"),
                        DatasetTagRecord("two cells", "overlap", "b", NOW, "smids", "y.png")])
    assert filter_tags(table, ["two cells"])["path"].tolist() == ["y.png"]
    assert len(filter_tags(table, [])) == 2
