"""Shared pytest fixtures: the full datasets (when present) and a tiny synthetic dataset on disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spermlib.data.datasets import DatasetSpec, get_dataset, shared_data_root
from tests.model_fixtures import biased_checkpoints  # noqa: F401  (fixture shared by inference/evaluation tests)
from tests.oidc_provider import OIDCProvider, TestUser

# ---------------------------------------------------------------------------------------------
# Full datasets in ../shared/data (developers, CI); tests that need them are skipped elsewhere.
# ---------------------------------------------------------------------------------------------


def shared_root(name: str) -> Path:
    """The full dataset folder ``../shared/data/<folder>`` of registry dataset ``name``, or skip."""
    root = shared_data_root(get_dataset(name))
    if root is None:
        pytest.skip("full dataset not available at ../shared/data")
    return root


@pytest.fixture(scope="session")
def smids_full() -> Path:
    """``../shared/data/SMIDS`` (the folder holding the class folders); skips when absent."""
    return shared_root("smids")


@pytest.fixture(scope="session")
def hushem_full() -> Path:
    """``../shared/data/HuSHeM`` (the folder holding the class folders); skips when absent."""
    return shared_root("hushem")


# ---------------------------------------------------------------------------------------------
# Synthetic dataset
# ---------------------------------------------------------------------------------------------

SYNTHETIC_CLASSES = ("class_a", "class_b", "class_c")
SYNTHETIC_SPEC = DatasetSpec(
    name="synthetic",
    folder="SYNTHETIC",
    title="Synthetic ellipses",
    class_dirs=SYNTHETIC_CLASSES,
    display_names=("A", "B", "C"),
    input_size=64,
    citation="synthetic test data",
)

# Unique image i of a class is written as FORMATS[i % 3]: (Pillow format, file suffix).
# The third entry is PNG data under a .bmp name, as in some SMIDS releases.
SYNTHETIC_FORMATS = (("PNG", ".png"), ("BMP", ".bmp"), ("PNG", ".bmp"))


def synthetic_image(class_index: int, n_classes: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One ``size×size×3`` uint8 image: a bright ellipse on a noisy dark background.

    The ellipse's orientation and centre depend on the class (a tiny CNN can learn it); its exact
    size/position jitter and the noise come from ``rng``, so every image is distinct.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = rng.normal(70.0, 10.0, (size, size, 1)) + rng.normal(0.0, 6.0, (size, size, 3))
    angle = np.pi * class_index / n_classes + rng.uniform(-0.15, 0.15)
    phase = 2 * np.pi * class_index / n_classes
    cx = size / 2 + 0.18 * size * np.cos(phase) + rng.uniform(-2, 2)
    cy = size / 2 + 0.18 * size * np.sin(phase) + rng.uniform(-2, 2)
    a = 0.22 * size * rng.uniform(0.9, 1.1)
    b = 0.09 * size * rng.uniform(0.9, 1.1)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    img[inside] += np.array([150.0, 140.0, 120.0])
    return img.clip(0, 255).round().astype(np.uint8)


def _other_format(fmt: tuple[str, str]) -> tuple[str, str]:
    return ("BMP", ".bmp") if fmt[0] == "PNG" else ("PNG", ".png")


@pytest.fixture
def synthetic_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: build a tiny folder-per-class image dataset under ``tmp_path`` and return its root.

    ``synthetic_dataset(classes=SYNTHETIC_CLASSES, n_per_class=8, size=64, same_label_duplicates=0,
    conflicting_duplicate=False, seed=0) -> Path``

    * ``classes``: a :class:`DatasetSpec` (its ``class_dirs`` and ``folder`` are used, so e.g.
      ``get_dataset("hushem")`` gives a folder that ``--dataset hushem`` accepts) or a sequence of
      class-folder names (folder ``SYNTHETIC``). ``SYNTHETIC_SPEC`` in this module describes the
      default classes; the ``synthetic_spec`` fixture returns it.
    * Layout: ``<tmp>/data<N>/<folder>/<class>/img_<iii><ext>``; the returned root is
      ``<tmp>/data<N>/<folder>`` (so ``root.parent`` is a "parent holding <folder>/").
    * Each class gets ``n_per_class`` distinct ``size×size`` RGB images (bright ellipse whose
      orientation and position depend on the class, on a noisy background), deterministic in
      ``seed``. Image ``i`` is saved as PNG (``.png``), BMP (``.bmp``) or PNG data named ``.bmp``
      for ``i % 3 == 0, 1, 2`` — loaders must go by content, not extension.
    * ``same_label_duplicates=k`` adds ``k`` pixel-identical copies, each in the same class folder
      as its original but in the other format: ``<class>/dup<j>_of_img_<iii><ext>`` (original:
      ``img_<iii>`` of class ``j % n_classes``, ``iii = j // n_classes + 1``, so ``img_000`` of the
      first class is never one and each group is a pair while ``k < n_classes * (n_per_class - 1)``).
    * ``conflicting_duplicate=True`` adds a pixel-identical copy of the first class's ``img_000``
      in the second class's folder: ``<class[1]>/conflict_of_img_000.bmp`` (conflicting labels).
    """
    counter = iter(range(1_000_000))

    def make(
        classes: DatasetSpec | Sequence[str] = SYNTHETIC_CLASSES,
        n_per_class: int = 8,
        size: int = 64,
        same_label_duplicates: int = 0,
        conflicting_duplicate: bool = False,
        seed: int = 0,
    ) -> Path:
        if isinstance(classes, DatasetSpec):
            class_dirs, folder = list(classes.class_dirs), classes.folder
        else:
            class_dirs, folder = list(classes), SYNTHETIC_SPEC.folder
        root = tmp_path / f"data{next(counter)}" / folder
        n = len(class_dirs)
        pixels: dict[tuple[int, int], np.ndarray] = {}
        for c, cls in enumerate(class_dirs):
            (root / cls).mkdir(parents=True)
            for i in range(n_per_class):
                arr = synthetic_image(c, n, np.random.default_rng([seed, c, i]), size)
                pixels[c, i] = arr
                fmt, ext = SYNTHETIC_FORMATS[i % len(SYNTHETIC_FORMATS)]
                Image.fromarray(arr, "RGB").save(root / cls / f"img_{i:03d}{ext}", format=fmt)
        for j in range(same_label_duplicates):
            c, i = j % n, (j // n + 1) % n_per_class
            fmt, ext = _other_format(SYNTHETIC_FORMATS[i % len(SYNTHETIC_FORMATS)])
            Image.fromarray(pixels[c, i], "RGB").save(root / class_dirs[c] / f"dup{j}_of_img_{i:03d}{ext}", format=fmt)
        if conflicting_duplicate:
            if n < 2 or n_per_class < 1:
                raise ValueError("a conflicting duplicate needs two classes with images")
            Image.fromarray(pixels[0, 0], "RGB").save(root / class_dirs[1] / "conflict_of_img_000.bmp", format="BMP")
        return root

    return make


@pytest.fixture
def synthetic_spec() -> DatasetSpec:
    """The :class:`DatasetSpec` of ``synthetic_dataset()`` built with its default classes."""
    return SYNTHETIC_SPEC


# ---------------------------------------------------------------------------------------------
# Login: a real OpenID Connect provider on loopback (tests/oidc_provider.py) and the app's secrets for it
# ---------------------------------------------------------------------------------------------

OIDC_USERS = {  # role in OIDC_ROLES → the account that has it
    "viewer": TestUser("u-viewer", "viewer@clinic.test", "Dr Viewer"),
    "reviewer": TestUser("u-reviewer", "reviewer@clinic.test", "Dr Reviewer"),
    "admin": TestUser("u-admin", "admin@clinic.test", "Dr Admin"),
}
# The reviewer is listed by email, the admin by subject; the viewer by nobody (default_role).
OIDC_ROLES = {"reviewer": ["reviewer@clinic.test"], "admin": ["u-admin"]}


@pytest.fixture
def oidc_provider():
    """A running provider whose accounts are ``OIDC_USERS``; ``provider.signed_in`` is the account its
    ``/authorize`` signs in (the viewer unless a test sets it); ``provider.streamlit_user("admin@clinic.test")``
    logs one in and gives what ``AppTest.user`` takes."""
    with OIDCProvider(list(OIDC_USERS.values())) as provider:
        yield provider


@pytest.fixture
def oidc_secrets(oidc_provider) -> dict:
    """The app's secrets for ``oidc_provider``: ``{"auth": …, "spermlib": {"default_role", "roles"}}`` — for
    ``AppTest.secrets``, or ``tests.oidc_provider.secrets_toml(**oidc_secrets)`` for a server's secrets.toml."""
    return {"auth": oidc_provider.auth_section(), "spermlib": {"default_role": "viewer", "roles": OIDC_ROLES}}
