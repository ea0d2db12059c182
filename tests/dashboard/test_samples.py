"""spermlib.dashboard.samples: a bundled sample is classified by the fold model that never saw it."""

from __future__ import annotations

import pandas as pd
import pytest

from spermlib.dashboard.samples import routes, sample_folds, sample_route
from spermlib.data.datasets import DATASETS, SAMPLE_DATA_ROOT, list_images
from spermlib.data.splits import fold_parts, manifest_path, read_manifest

ALL = [0, 1, 2, 3, 4]


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_bundled_sample_has_its_test_fold_and_no_other_fold_trained_without_it(dataset):
    spec = DATASETS[dataset]
    folds = sample_folds(spec)
    bundled = list_images(spec, SAMPLE_DATA_ROOT / spec.folder)["path"]
    assert set(bundled) <= set(folds)  # sample paths are manifest paths
    manifest = read_manifest(manifest_path(spec))
    for path in bundled[:12]:
        k = folds[path]
        if k < 0:
            continue
        _, _, test = fold_parts(manifest, k)
        assert path in set(test["path"])  # the chosen fold model never trained on it …
        for other in set(ALL) - {k}:
            train, val, _ = fold_parts(manifest, other)
            assert path in set(pd.concat([train, val])["path"])  # … and every other one did


def test_sample_route_uses_the_held_out_fold_model():
    route = sample_route(3, ALL)
    assert route.fold == 3 and route.single_fold
    assert "fold-3 model, which never saw this image" in route.note


def test_excluded_unknown_and_missing_folds_fall_back_to_the_ensemble_and_say_why():
    excluded = sample_route(-1, ALL)
    assert excluded.fold is None and "none of the 5 fold models saw it" in excluded.note
    unknown = sample_route(None, ALL)
    assert unknown.fold is None and "optimistic" in unknown.note
    missing = sample_route(2, [0, 1, 3, 4])
    assert missing.fold is None and "fold-2 model" in missing.note and "optimistic" in missing.note
    assert missing.model == "ensemble of 4 fold models"


def test_routes_put_uploads_first_and_on_the_ensemble():
    got = routes(2, ["a.png", "b.png"], {"a.png": 4, "b.png": -1}, ALL)
    assert [r.fold for r in got] == [None, None, 4, None]
    assert got[0].note == "" and got[0].model == "ensemble of 5 fold models"
