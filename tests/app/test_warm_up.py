"""The server warms the default model in the background, once per process, through the pages' own cache."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from spermlib.archs import DEFAULT_ARCH
from spermlib.data.datasets import DATASETS
from spermlib.inference.explain import Explainer
from spermlib.inference.predict import Predictor
from views import common

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_the_default_model_is_loaded_once_in_the_background(app_env, monkeypatch):
    monkeypatch.delenv(common.WARM_UP_ENV)  # the suite turns it off; this test is about it
    ensembles = []
    real = Predictor.from_checkpoints.__func__

    def counting(cls, spec, arch="effnet_cbam", folds=None, **kw):
        if folds is None:
            ensembles.append((spec.name, arch))
        return real(cls, spec, arch=arch, folds=folds, **kw)

    monkeypatch.setattr(Predictor, "from_checkpoints", classmethod(counting))
    explained = []
    real_explain = Explainer.explain

    def counting_explain(self, image, class_idx=None, folds=None):
        explained.append((self.predictor.arch, list(folds or [])))
        return real_explain(self, image, class_idx=class_idx, folds=folds)

    monkeypatch.setattr(Explainer, "explain", counting_explain)
    common._warm_up_thread.clear()
    common._predictor.clear()
    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception, at.exception
    thread = common._warm_up_thread()
    assert thread is not None and thread.daemon
    thread.join(timeout=300)
    default = (next(iter(DATASETS)), DEFAULT_ARCH)
    assert ensembles == [default]
    assert explained == [(DEFAULT_ARCH, [0])]  # one warm-up map: Grad-CAM++'s imports and kernels are warm too
    at.run()  # a second run (and any later session) starts no second thread
    assert common._warm_up_thread() is thread
    assert common.get_predictor(*default) is not None and ensembles == [default]  # the page finds it loaded
    common._warm_up_thread.clear()
