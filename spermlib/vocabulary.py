"""The words and numbers the dashboard and every report share (torch-free).

The paper's headline numbers and protocol, the models' titles, how a mean ± std and a 95 % CI are written,
the WHO 2021 lower reference limit of normal forms and the normal-forms share rule. It sits below the
dashboard (``dashboard.tables``, ``dashboard.triage``) and the reports (``evaluation.report``,
``samples.report``), so a report never imports the dashboard to say what it says.

**Normal-forms share** — images predicted normal ÷ images classified as sperm. For SMIDS, images predicted
Non-Sperm are excluded from the denominator (they are not sperm); failed files are never counted. Compared
with the WHO 2021 lower reference limit of 4 % normal forms (WHO laboratory manual for the examination and
processing of human semen, 6th ed., 2021). When more than :data:`MAX_OUT_OF_DOMAIN_SHARE` of a batch is out
of domain, the share is withheld: it would describe mostly images the models cannot judge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from spermlib.store.results import parse_entry

if TYPE_CHECKING:  # annotations only: predict pulls in torch
    from spermlib.data.datasets import DatasetSpec
    from spermlib.inference.predict import Prediction

ARCH_TITLES = {"simplecnn": "SimpleCNN", "effnet": "EfficientNet", "effnet_cbam": "EfficientNet + CBAM"}

PAPER_TITLE = "Interpretable Sperm Morphology Classification via Attention-Guided Deep Learning (2026)"
PAPER_PROTOCOL = (
    "single hold-out train/test split (HuSHeM test set: 33 images), proposed model "
    "(EfficientNet + CBAM); one number per dataset, no spread over splits"
)
# The paper's headline numbers belong to its proposed model (EfficientNet + CBAM).
PAPER_RESULTS: dict[str, dict] = {
    "smids": {"arch": "effnet_cbam", "accuracy": 0.902, "macro_f1": 0.913, "protocol": PAPER_PROTOCOL},
    "hushem": {"arch": "effnet_cbam", "accuracy": 0.939, "macro_f1": 0.948, "protocol": PAPER_PROTOCOL},
}

WHO_2021_NORMAL_FORMS_LRL = 0.04  # lower reference limit (5th centile), normal forms
MAX_OUT_OF_DOMAIN_SHARE = 0.20  # above this share of out-of-domain images a batch's normal-forms share is withheld

# Which class is "normal" / "not sperm" in each task.
NORMAL_LABEL = {"smids": "Normal_Sperm", "hushem": "01_Normal"}
NON_SPERM_LABEL = {"smids": "Non-Sperm"}


def arch_title(arch: str) -> str:
    """``effnet_cbam+tta`` → ``EfficientNet + CBAM (TTA)``."""
    base, tta = parse_entry(arch)
    title = ARCH_TITLES.get(base, base)
    return f"{title} (TTA)" if tta else title


# ----------------------------------------------------------------------------- formatting


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or pd.isna(x) else f"{100 * x:.{digits}f} %"


def mean_std_pct(stat: Mapping) -> str:
    """``{"mean": .25, "std": .102}`` → ``25.0 ± 10.2 %``."""
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f} %"


def ci_pct(stat: Mapping) -> str:
    lo, hi = stat["ci95"]
    return f"{100 * lo:.1f}–{100 * hi:.1f} %"


def mean_std_f1(stat: Mapping) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def ci_f1(stat: Mapping) -> str:
    lo, hi = stat["ci95"]
    return f"{lo:.3f}–{hi:.3f}"


def num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.{digits}f}"


# ----------------------------------------------------------------------------- normal-forms share


@dataclass
class NormalShare:
    n_normal: int
    n_sperm: int  # denominator: images classified as sperm
    n_non_sperm: int  # SMIDS images predicted Non-Sperm (left out of the denominator)
    n_failed: int  # files that could not be classified
    n_out_of_domain: int = 0  # classified images the out-of-domain detector flagged
    n_domain_checked: int = 0  # classified images with a domain verdict (0: no detector for this model)

    @property
    def share(self) -> float | None:
        return self.n_normal / self.n_sperm if self.n_sperm else None

    @property
    def out_of_domain_share(self) -> float | None:
        return self.n_out_of_domain / self.n_domain_checked if self.n_domain_checked else None

    @property
    def withheld(self) -> bool:
        """True when too much of the batch is out of domain for the share to mean anything."""
        return (self.out_of_domain_share or 0.0) > MAX_OUT_OF_DOMAIN_SHARE

    @property
    def withheld_reason(self) -> str:
        return (f"{self.n_out_of_domain} of {self.n_domain_checked} images ({self.out_of_domain_share:.0%}) are out "
                f"of domain (more than {MAX_OUT_OF_DOMAIN_SHARE:.0%}): the models cannot judge them, so a share of "
                "normal forms over this batch would not describe the sample. See the per-image table.")

    @property
    def below_who_limit(self) -> bool | None:
        return None if self.share is None else self.share < WHO_2021_NORMAL_FORMS_LRL


def normal_share(results: Sequence[Prediction | None], spec: DatasetSpec) -> NormalShare:
    """Share of normal forms among images classified as sperm (see module docstring).

    ``results`` are one arch's verdicts for a batch (``None`` or an ``error`` = a file that failed): predictions,
    or anything carrying one as ``.prediction`` (the dashboard's ``triage.ArchResult``).
    """
    normal, non_sperm = NORMAL_LABEL[spec.name], NON_SPERM_LABEL.get(spec.name)
    predictions = [getattr(r, "prediction", r) for r in results]
    ok = [p for p in predictions if p is not None and not p.error and p.label is not None]
    n_failed = len(predictions) - len(ok)
    n_non = sum(p.label == non_sperm for p in ok) if non_sperm else 0
    return NormalShare(n_normal=sum(p.label == normal for p in ok), n_sperm=len(ok) - n_non,
                       n_non_sperm=n_non, n_failed=n_failed, n_out_of_domain=sum(p.in_domain is False for p in ok),
                       n_domain_checked=sum(p.in_domain is not None for p in ok))
