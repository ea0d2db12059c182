"""Image corruptions: what other cameras, stains and users do to an image.

The robustness suite (``evaluation/robustness.py``) scores models under them; a hardened training
recipe (``Recipe.corrupt_p``) draws them at random while training (:func:`random_corruptions`).
Each corruption maps a uint8 ``(B,3,H,W)`` batch (the model input, already at the card's size) and
one parameter to a uint8 batch of the same shape, through torchvision's ``transforms.v2``
functional ops (JPEG through Pillow). :data:`CORRUPTIONS` gives each one three parameters of
increasing severity and, where one exists, the parameter that leaves the image as it is (tested).
Everything is deterministic: the noise draws from a fixed seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import NamedTuple

import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

NOISE_SEED = 0
BILINEAR = InterpolationMode.BILINEAR


def jpeg(x: torch.Tensor, quality: float) -> torch.Tensor:
    """Encode and decode with Pillow's JPEG codec (torchvision's own JPEG encoder is deprecated)."""
    out = []
    for img in x:
        buf = io.BytesIO()
        F.to_pil_image(img).save(buf, format="JPEG", quality=int(quality))
        out.append(F.pil_to_tensor(Image.open(buf).convert("RGB")))
    return torch.stack(out)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x  # a zero-width Gaussian is the identity; torchvision rejects sigma 0
    half = max(1, int(3 * sigma + 0.5))  # ±3σ holds 99.7 % of the kernel's weight
    return F.gaussian_blur(x, kernel_size=[2 * half + 1] * 2, sigma=[sigma, sigma])


def gaussian_noise(x: torch.Tensor, sigma: float, seed: int = NOISE_SEED) -> torch.Tensor:
    """Additive noise of std ``sigma`` (fraction of the 0–255 range), the same draw for the same ``seed``."""
    with torch.random.fork_rng(devices=[]):  # a fixed seed without disturbing the caller's RNG
        torch.manual_seed(seed)
        noisy = F.gaussian_noise(F.to_dtype(x, torch.float32, scale=True), sigma=sigma)
    return F.to_dtype(noisy, torch.uint8, scale=True)


def brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.adjust_brightness(x, factor)


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.adjust_contrast(x, factor)


def gamma(x: torch.Tensor, value: float) -> torch.Tensor:
    return F.adjust_gamma(x, value)


def hue_shift(x: torch.Tensor, shift: float) -> torch.Tensor:
    """A stain of another colour: hue rotated by ``shift`` of the colour circle."""
    return F.adjust_hue(x, shift)


def desaturate(x: torch.Tensor, saturation: float) -> torch.Tensor:
    """Towards grayscale: 1 keeps the colours, 0 is a 3-channel grayscale image."""
    return F.adjust_saturation(x, saturation)


def downscale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """A lower-resolution camera: shrink by ``factor`` (antialiased), then enlarge back."""
    size = list(x.shape[-2:])
    small = F.resize(x, [max(1, round(s / factor)) for s in size], interpolation=BILINEAR, antialias=True)
    return F.resize(small, size, interpolation=BILINEAR, antialias=True)


def _edge_colour(img: torch.Tensor) -> list[float]:
    """Mean RGB of an image's outermost pixels: the background that uncovered areas are filled with."""
    edges = torch.cat([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], dim=1)
    return edges.float().mean(1).tolist()


def _affine(x: torch.Tensor, angle: float = 0.0, scale: float = 1.0, translate: tuple[float, float] = (0.0, 0.0)):
    """One affine warp of every image, areas it uncovers filled with that image's background colour
    (black corners would be an artefact no microscope makes, and a cue the models never saw)."""
    return torch.stack([F.affine(img, angle=angle, translate=list(translate), scale=scale, shear=[0.0, 0.0],
                                 interpolation=BILINEAR, fill=_edge_colour(img)) for img in x])


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Any-angle rotation (training saw only flips and 90° turns)."""
    return _affine(x, angle=degrees)


def zoom(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Another magnification: scale about the centre (> 1 zooms in, < 1 zooms out)."""
    return _affine(x, scale=scale)


def shift(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """An off-centre crop: move the image right and down by ``fraction`` of its size."""
    h, w = x.shape[-2:]
    return _affine(x, translate=(fraction * w, fraction * h))


class Corruption(NamedTuple):
    apply: Callable[[torch.Tensor, float], torch.Tensor]
    severities: tuple[float, float, float]  # mild, middle, strong
    parameter: str  # what the numbers in ``severities`` are
    identity: float | None  # the parameter that changes nothing (None: there is none, as for JPEG)


CORRUPTIONS: dict[str, Corruption] = {
    "jpeg": Corruption(jpeg, (50, 20, 8), "JPEG quality", None),
    "blur": Corruption(gaussian_blur, (0.75, 1.5, 3.0), "Gaussian sigma (px)", 0.0),
    "noise": Corruption(gaussian_noise, (0.03, 0.06, 0.12), "noise std (fraction of range)", 0.0),
    "brightness": Corruption(brightness, (0.8, 0.6, 0.4), "brightness factor", 1.0),
    "contrast": Corruption(contrast, (0.75, 0.5, 0.3), "contrast factor", 1.0),
    "gamma": Corruption(gamma, (1.3, 1.7, 2.2), "gamma", 1.0),
    "hue": Corruption(hue_shift, (0.05, 0.15, 0.3), "hue shift (fraction of the colour circle)", 0.0),
    "grayscale": Corruption(desaturate, (0.6, 0.3, 0.0), "saturation (0 = grayscale)", 1.0),
    "downscale": Corruption(downscale, (1.5, 2.5, 4.0), "down-then-up factor", 1.0),
    "rotate": Corruption(rotate, (10.0, 25.0, 45.0), "rotation (degrees)", 0.0),
    "zoom_in": Corruption(zoom, (1.15, 1.3, 1.5), "zoom factor", 1.0),
    "zoom_out": Corruption(zoom, (0.87, 0.75, 0.6), "zoom factor", 1.0),
    "shift": Corruption(shift, (0.04, 0.08, 0.15), "shift (fraction of the side)", 0.0),
}


# The families a hardened recipe trains on: the photometric and resolution shifts. The geometric ones
# (rotation, zoom, shift) are already the training augmentation's own affine warp (``Recipe.rotate_deg``,
# ``scale``, ``translate``).
TRAINING_FAMILIES = ("jpeg", "blur", "noise", "brightness", "contrast", "gamma", "hue", "grayscale", "downscale")
_JPEG_BEST = 95  # the mildest JPEG quality drawn (the suite's family has no identity parameter)
_SIGNED = ("hue", "rotate", "shift")  # drawn either way round / either direction


def _random_parameter(name: str, gen: torch.Generator, severity: int = 2, reach: float = 1.25) -> float:
    """A parameter drawn uniformly between the family's identity and ``reach`` × its ``severity`` parameter.

    Training (the defaults) reaches 1.25× past the strongest severity (towards more damage) so that the
    suite's own three parameters are inside the range, not at its edge; the out-of-domain detector's
    nuisance views (:func:`nuisance_views`) reach exactly the mild one. Hue turns either way round the
    colour circle, and so do rotation and shift.
    """
    c = CORRUPTIONS[name]
    u = float(torch.rand(1, generator=gen))
    if name == "jpeg":  # quality has no identity: from nearly lossless down to the target quality
        return round(_JPEG_BEST + u * (c.severities[severity] - _JPEG_BEST))
    start, target = c.identity, c.severities[severity]
    end = start + reach * (target - start)
    if name in ("brightness", "contrast", "grayscale"):
        end = max(end, 0.0)  # a factor below 0 is not an image any more
    value = start + u * (end - start)
    return -value if name in _SIGNED and float(torch.rand(1, generator=gen)) < 0.5 else value


def random_corruptions(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """Each image of a uint8 ``(B,3,H,W)`` batch, with probability ``p``, under one corruption of
    :data:`TRAINING_FAMILIES` at a random parameter (:func:`_random_parameter`); all draws from ``gen``."""
    out = x.clone()
    hit = torch.rand(len(x), generator=gen) < p
    families = torch.randint(0, len(TRAINING_FAMILIES), (len(x),), generator=gen)
    for i in torch.nonzero(hit).flatten().tolist():
        name = TRAINING_FAMILIES[int(families[i])]
        out[i] = _apply_drawn(name, x[i : i + 1], _random_parameter(name, gen), gen)[0]
    return out


def _apply_drawn(name: str, img: torch.Tensor, param: float, gen: torch.Generator) -> torch.Tensor:
    """Corruption ``name`` at a drawn ``param``; noise gets a fresh draw from ``gen``, not the suite's fixed seed."""
    if name == "noise":
        return gaussian_noise(img, param, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    return CORRUPTIONS[name].apply(img, param)


def nuisance_views(x: torch.Tensor, gen: torch.Generator, views: int = 1, reach: float = 1.0) -> torch.Tensor:
    """``views`` copies of a uint8 ``(B,3,H,W)`` batch, each image under one corruption of the whole suite
    (every family of :data:`CORRUPTIONS`, geometric ones included) at a random parameter between none and
    ``reach`` × the family's mild severity; all draws from ``gen``. Returns ``(views·B,3,H,W)``, view by view.

    These are the variations a model is expected to shrug off (a camera's JPEG, a slightly soft focus, a
    few degrees of rotation): the out-of-domain detector is fitted on them beside the clean images so that
    it does not call them foreign.
    """
    names = list(CORRUPTIONS)
    out = []
    for _ in range(views):
        view = x.clone()
        families = torch.randint(0, len(names), (len(x),), generator=gen)
        for i in range(len(x)):
            name = names[int(families[i])]
            param = _random_parameter(name, gen, severity=0, reach=reach)
            view[i] = _apply_drawn(name, x[i : i + 1], param, gen)[0]
        out.append(view)
    return torch.cat(out)
