"""Embedding map page: one point per image of the dataset, colour toggle, notices without checkpoints."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from spermlib.data.datasets import get_dataset, list_images, resolve_data_root

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def open_page(page: str = "views/embedding.py") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _array(value) -> list:
    """Plotly JSON stores numeric arrays as base64 typed arrays ({"dtype", "bdata"})."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
        return arr.reshape(value["shape"]).tolist() if "shape" in value and isinstance(value["shape"], list) \
            else arr.tolist()
    return list(value)


def chart_spec(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def scatter_traces(at: AppTest) -> list[dict]:
    return chart_spec(at)["data"]


def test_map_has_one_point_per_image(app_env):
    at = open_page()
    at.selectbox(key="embedding_dataset").set_value("hushem").run()
    assert not at.exception, at.exception
    spec = get_dataset("hushem")
    images = set(list_images(spec, resolve_data_root(spec))["path"])
    traces = scatter_traces(at)
    paths = [cd[0] for t in traces for cd in t["customdata"]]
    xs = [x for t in traces for x in _array(t["x"])]
    assert len(paths) == len(xs) == len(images) and set(paths) == images
    assert np.isfinite(xs).all() and np.std(xs) > 0
    names = " ".join(t["name"] for t in traces)
    assert all(n in names for n in spec.display_names)  # coloured by class
    assert "held out" in names and "training" in names  # marker: did this model see the image?


def test_colour_toggle_and_fold_choice(app_env):
    spec = get_dataset("smids")
    at = open_page()
    at.selectbox(key="embedding_dataset").set_value("smids").run()
    at.selectbox(key="embedding_arch_smids").set_value("effnet").run()
    labels = list_images(spec, resolve_data_root(spec)).set_index("path")["label"].map(spec.display)
    for t in scatter_traces(at):  # coloured by true class: every point's colour group is its label
        colour = t["name"].split(",")[0].strip()
        assert {labels[cd[0]] for cd in t["customdata"]} == {colour}
    assert "true class" in chart_spec(at)["layout"]["legend"]["title"]["text"]
    at.radio(key="embedding_colour").set_value("predicted class").run()
    assert not at.exception, at.exception
    assert "predicted" in chart_spec(at)["layout"]["legend"]["title"]["text"]
    assert sum(len(t["customdata"]) for t in scatter_traces(at)) == len(labels)

    fold_box = at.selectbox(key="embedding_fold_smids_effnet")
    assert fold_box.options == [f"fold {k}" for k in range(5)]
    fold_box.set_value(3).run()
    assert not at.exception, at.exception
    held = [cd[0] for t in scatter_traces(at) if t["name"].split(",")[-1].strip().startswith("held out")
            for cd in t["customdata"]]
    manifest = pd.read_csv(Path(__file__).resolve().parents[2] / "splits" / "smids.csv").set_index("path")
    assert sorted(held) == sorted(p for p in labels.index if manifest.at[p, "fold"] == 3)


def test_embedding_without_checkpoints_says_what_to_train(empty_env):
    at = open_page()
    assert "spermlib train --dataset smids" in at.info[0].value
    assert not at.get("plotly_chart")
