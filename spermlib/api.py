"""The notebook API, re-exported by ``spermlib``: list what is shipped, load a fold ensemble, predict, explain.

Importing this module imports neither torch nor timm: each function imports what it needs when
called, so ``import spermlib`` stays instant and ``list_datasets()`` works in a plain Python.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.errors import SpermlibError

if TYPE_CHECKING:  # annotations only: these modules pull in torch
    from spermlib.data.imageio import ImageSource
    from spermlib.inference.explain import Explanation
    from spermlib.inference.predict import Prediction, Predictor

DEFAULT_DATASET = "hushem"  # the smaller of the two: its shipped 5-fold ensemble loads in about a second


def list_datasets() -> list[str]:
    """Names of the datasets (tasks) with a registry entry, e.g. ``["hushem", "smids"]``."""
    from spermlib.data.datasets import DATASETS

    return sorted(DATASETS)


def list_archs() -> list[str]:
    """Names of the architectures this project trains: ``["simplecnn", "effnet", "effnet_cbam"]``."""
    return list(ARCHS)


def load_predictor(dataset: str = DEFAULT_DATASET, arch: str = DEFAULT_ARCH, folds: Sequence[int] | None = None,
                   checkpoints_dir: str | os.PathLike | None = None, device: str | None = None,
                   tta: bool = True) -> Predictor:
    """The fold ensemble of ``arch`` trained on ``dataset`` (all folds found, or only ``folds``); ``tta`` (on by
    default, as ``predict`` and the Classify page): each model's softmax averaged over the 8 flips/90° turns of the
    image, the '+ TTA ×8' results (``predictor.with_tta(False)`` switches to one view).

    ``checkpoints_dir`` defaults to ``$SPERMLIB_CHECKPOINTS``, then the shipped ``checkpoints/``;
    ``device`` to CUDA when present. Raises :class:`spermlib.errors.SpermlibError` (a ``ValueError``)
    with what to do when the dataset, arch or checkpoints are unknown or missing.
    """
    from spermlib.archs import check_arch
    from spermlib.data.datasets import get_dataset
    from spermlib.inference.predict import Predictor

    return Predictor.from_checkpoints(get_dataset(dataset), arch=check_arch(arch), folds=folds,
                                      checkpoints_dir=Path(checkpoints_dir) if checkpoints_dir else None,
                                      device=device, tta=tta)


@functools.lru_cache(maxsize=4)
def _shared_predictor(dataset: str, arch: str) -> Predictor:
    """One predictor per (dataset, arch) for calls that pass none: a notebook loop must not reload 5 models."""
    return load_predictor(dataset, arch)


def _sources(images: Any) -> list:
    """``images`` as a list of sources: one image alone, or the items of a sequence (each checked when decoded);
    anything else (``None``, a number) is a :class:`~spermlib.errors.SpermlibError` naming what is accepted."""
    from spermlib.data.imageio import ACCEPTED_SOURCES, is_image_source

    if is_image_source(images):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    raise SpermlibError(f"predict takes an image or a list of images, each {ACCEPTED_SOURCES}; "
                        f"got {type(images).__name__}")


def _name(source: Any, i: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or getattr(source, "filename", None) or f"image {i + 1}"


def predict(images: ImageSource | Sequence[ImageSource], dataset: str = DEFAULT_DATASET, arch: str = DEFAULT_ARCH,
            predictor: Predictor | None = None) -> list[Prediction]:
    """Classify one image or a list of them with the fold ensemble (mean of the fold models' softmax).

    Each image is a path, encoded bytes, a binary file object, a ``PIL.Image`` or an ``H×W×3 uint8``
    numpy array. Returns one :class:`~spermlib.inference.predict.Prediction` per image, in order
    (``label``, ``display``, ``confidence``, ``probabilities``, ``agreement`` of the folds); an image
    that cannot be decoded (or is not an image at all, e.g. ``None``) gets its ``error`` instead, and the others
    still run. ``images`` that is neither an image nor a sequence of them is a
    :class:`spermlib.errors.SpermlibError`.
    """
    sources = _sources(images)
    predictor = predictor or _shared_predictor(dataset, arch)
    return predictor.predict_sources(sources, [_name(s, i) for i, s in enumerate(sources)], keep_inputs=False)


def explain(image: ImageSource, dataset: str = DEFAULT_DATASET, arch: str = DEFAULT_ARCH,
            predictor: Predictor | None = None, class_idx: int | None = None) -> Explanation:
    """Grad-CAM++ of one image (mean over the fold models) for ``class_idx`` (default: the predicted class).

    Returns an :class:`~spermlib.inference.explain.Explanation`: ``rgb`` (the image as the model saw
    it, resized to its input size), ``gradcam`` (a map of that size in [0, 1]), ``class_idx`` and,
    for ``effnet_cbam``, ``cbam`` (the CBAM spatial attention). Raises :class:`spermlib.errors.SpermlibError`
    for an image that cannot be decoded.
    """
    from spermlib.data.imageio import load_rgb
    from spermlib.inference.explain import Explainer

    predictor = predictor or _shared_predictor(dataset, arch)
    return Explainer(predictor).explain(load_rgb(image, name=_name(image, 0)), class_idx=class_idx)
