"""spermlib: interpretable sperm-morphology classification (EfficientNet + CBAM, Grad-CAM++).

From a notebook::

    import spermlib

    spermlib.list_datasets(), spermlib.list_archs()
    pred = spermlib.predict("cell.png", dataset="hushem")[0]       # label, confidence, probabilities
    exp = spermlib.explain("cell.png", dataset="hushem")           # exp.gradcam: H×W in [0, 1]

``import spermlib`` does not import torch; the first ``predict``/``explain``/``load_predictor`` does.
"""

from spermlib.api import explain, list_archs, list_datasets, load_predictor, predict
from spermlib.errors import SpermlibError
from spermlib.version import __version__

__all__ = ["SpermlibError", "__version__", "explain", "list_archs", "list_datasets", "load_predictor", "predict"]
