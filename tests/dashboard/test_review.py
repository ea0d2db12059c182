"""spermlib.dashboard.review: the review queue's order of need, who reviews without a login, the tag filter,
repeated upload names, download names, formula-safe CSV downloads; and the Markdown escape of user text."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from spermlib.dashboard.review import (
    csv_bytes,
    download_name,
    filter_tags,
    need_reasons,
    review_queue,
    reviewing_as,
    tags_table,
    unique_file_names,
)
from spermlib.samples.access import local_actor
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


def test_without_a_login_the_typed_name_is_shown_and_the_local_user_recorded():
    local = local_actor()
    assert reviewing_as(local, "  ") == local
    typed = reviewing_as(local, "Dr Alice ")
    assert (typed.subject, typed.display, typed.role) == (local.subject, "Dr Alice", local.role)


def test_repeated_upload_names_are_numbered():
    assert unique_file_names(["image_001.BMP", "a.png", "image_001.BMP", "image_001.BMP"]) == [
        "image_001.BMP", "a.png", "image_001 (2).BMP", "image_001 (3).BMP"]
    assert unique_file_names(["x.png", "x.png", "x (2).png"]) == ["x.png", "x (3).png", "x (2).png"]


def test_download_names_and_csv_downloads_are_safe():
    assert download_name("../../etc/passwd", ".csv") == "_.._etc_passwd.csv"
    assert download_name("run 1 (2026)", ".pdf") == "run 1 (2026).pdf"
    assert csv_bytes(pd.DataFrame({"tag": ["=1+2", "@SUM(A1)", "ok"]})).decode().splitlines() == [
        "tag", "'=1+2", "'@SUM(A1)", "ok"]


def test_tag_filter_keeps_rows_with_a_chosen_tag():
    table = tags_table([DatasetTagRecord("blurry", None, "a", NOW, dataset="smids", path="x.png"),
                        DatasetTagRecord("two cells", "overlap", "b", NOW, dataset="smids", path="y.png")])
    assert filter_tags(table, ["two cells"])["path"].tolist() == ["y.png"]
    assert len(filter_tags(table, [])) == 2
