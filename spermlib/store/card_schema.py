"""What a checkpoint card must say before anything uses it: a pydantic schema, and one error per violation.

A card is JSON that anyone can edit, and every number on it changes what a model computes: ``input_size`` and
``mean``/``std`` its input, ``temperature`` and ``decision_bias`` its probabilities, ``fold`` which test images
it may score, ``weights_sha256`` which weights it vouches for. :func:`validate_card` checks the types and
ranges of those fields (strictly: ``"224"`` is not an integer, ``true`` not a number) and that they agree
with each other and with the file's name; :mod:`spermlib.store.checkpoints` adds what only the weights can
tell (the head's size, a backbone the model factory builds, the sha256). Fields not listed here are allowed
(cards carry their training history) and are returned unchanged: validation never edits a card.

Any violation is one :class:`CheckpointError` naming the card file and the first field at fault, e.g.
``checkpoints/hushem/effnet_cbam/fold0.json: temperature must be a finite number > 0 … (got -1)``.
Torch-free (the pages read cards).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from spermlib.archs import ARCHS
from spermlib.errors import SpermlibError
from spermlib.store.paths import project_relative

CARD_VERSION = 1
# The shipped cards are about 11 kB (40 epochs of history) and 5 levels deep; these bounds are far above any
# card training writes, and keep a crafted file from exhausting memory or the parser's recursion limit.
MAX_CARD_BYTES = 1 << 20
MAX_CARD_DEPTH = 32
INPUT_SIZE_RANGE = (16, 1024)  # pixels: below, no backbone has a feature map left; above, a batch exhausts memory
# What ``calibration.temperature`` fits a temperature within: a stored one outside it was not fitted there.
TEMPERATURE_RANGE = (0.05, 20.0)
# A fitted decision bias (``calibration.decision_bias``) is a few tenths on the raw-logit scale; ±20 already
# multiplies a class's odds by e^20, so anything beyond is an edit, not a fit.
MAX_DECISION_BIAS = 20.0
DECISION_BIAS_MODES = ("one_view", "tta")  # the inference modes a bias is fitted per (calibration.decision_bias)
MAX_CLASSES = 100
SIMPLECNN_BACKBONE = "simplecnn"

# What each field must be, in words: the message of any violation of that field.
RULES = {
    "card_version": f"must be {CARD_VERSION}",
    "arch": f"must be one of {', '.join(ARCHS)}",
    "backbone": "must name a backbone the model factory knows (a timm model name for the EfficientNet archs; "
                f"'{SIMPLECNN_BACKBONE}' for the simplecnn arch, which has no other)",
    "classes": f"must list 2 to {MAX_CLASSES} distinct, non-empty class names",
    "input_size": f"must be an integer from {INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]} (pixels)",
    "mean": "must be 3 finite numbers (one per RGB channel)",
    "std": "must be 3 finite numbers > 0 (one per RGB channel)",
    "dataset": "must be a non-empty dataset name",
    "fold": "must be an integer ≥ 0",
    "weights_sha256": "must be the sha256 of the weights file (64 hex characters)",
    "temperature": f"must be a finite number > 0, from {TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g} "
                   "(the range a temperature is fitted in)",
    "decision_bias": f"must map {' and/or '.join(DECISION_BIAS_MODES)} to one finite number per class, each "
                     f"within ±{MAX_DECISION_BIAS:g}",
}

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Bias = Annotated[float, Field(ge=-MAX_DECISION_BIAS, le=MAX_DECISION_BIAS, allow_inf_nan=False)]
ClassName = Annotated[str, Field(min_length=1, max_length=200)]


class CheckpointError(SpermlibError):
    """A checkpoint that is missing, not safetensors, or inconsistent with its card (whose file and field the
    message names). Re-exported by ``store.cards`` and ``store.checkpoints``."""


def _rule(field: str, rule: str) -> PydanticCustomError:
    """A cross-field violation, kept with the field it is about (a model validator has no location of its own)."""
    return PydanticCustomError("card_rule", "{field} {rule}", {"field": field, "rule": rule})


class CheckpointCard(BaseModel):
    """The fields a checkpoint card must have (and the optional calibration ones), with their types and ranges."""

    model_config = ConfigDict(extra="allow", strict=True)

    card_version: Literal[1] | None = None
    arch: Literal[ARCHS]  # type: ignore[valid-type]  # the tuple of names, spelled once in spermlib.archs
    backbone: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
    classes: Annotated[list[ClassName], Field(min_length=2, max_length=MAX_CLASSES)]
    input_size: Annotated[int, Field(ge=INPUT_SIZE_RANGE[0], le=INPUT_SIZE_RANGE[1])]
    mean: Annotated[list[Finite], Field(min_length=3, max_length=3)]
    std: Annotated[list[Positive], Field(min_length=3, max_length=3)]
    dataset: Annotated[str, Field(min_length=1, max_length=200)]
    fold: Annotated[int, Field(ge=0)]
    weights_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    temperature: Annotated[float, Field(ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1],
                                        allow_inf_nan=False)] | None = None
    decision_bias: dict[Literal[DECISION_BIAS_MODES], list[Bias]] | None = None  # type: ignore[valid-type]

    @field_validator("fold")
    @classmethod
    def _fold_of_the_file(cls, fold: int, info: ValidationInfo) -> int:
        expected = (info.context or {}).get("fold")
        if expected is not None and fold != expected:
            raise _rule("fold", f"must be this file's fold, {expected}")
        return fold

    @model_validator(mode="after")
    def _fields_agree(self) -> CheckpointCard:
        if len(set(self.classes)) != len(self.classes):
            raise _rule("classes", RULES["classes"])
        if self.arch != "simplecnn" and self.backbone == SIMPLECNN_BACKBONE:
            raise _rule("backbone", RULES["backbone"])
        for mode, bias in (self.decision_bias or {}).items():
            if len(bias) != len(self.classes):
                raise _rule("decision_bias", f"must give one number per class in {mode} "
                                             f"({len(self.classes)} classes, {len(bias)} numbers)")
        return self


# What a card cannot be without: these make the checkpoint what it is (a retrain changes them, an edit may not).
REQUIRED_CARD_KEYS = tuple(name for name, info in CheckpointCard.model_fields.items() if info.is_required())


def file_fold(path: Path) -> int | None:
    """The fold a ``fold<K>.json`` / ``fold<K>.safetensors`` file is named for (``None`` for another name)."""
    found = re.fullmatch(r"fold(\d+)", Path(path).stem)
    return int(found.group(1)) if found else None


def read_card_file(path: Path) -> dict:
    """The card at ``path`` once it passes the schema, its fold checked against the file's name."""
    where = card_label(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CARD_BYTES + 1)
    except OSError as err:
        raise CheckpointError(f"{where} could not be read ({(err.strerror or type(err).__name__).lower()})") from None
    if len(data) > MAX_CARD_BYTES:
        raise CheckpointError(f"{where} is too large for a checkpoint card (limit {MAX_CARD_BYTES:,} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{where} is not valid JSON (not UTF-8 text)") from None
    return validate_card(parse_card_text(text, where), where, file_fold(path))


def parse_card_text(text: str, where: str) -> dict:
    """A card's JSON text as a dict, or :class:`CheckpointError`: not JSON, not an object, nested too deeply."""
    try:
        card = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{where} is not valid JSON ({err})") from None
    except RecursionError:
        card = None  # nested past the parser's own limit: reported as too deep below
    if card is not None and not isinstance(card, dict):
        raise CheckpointError(f"{where} must hold a JSON object (got {type(card).__name__})")
    if card is None or _depth(card) > MAX_CARD_DEPTH:
        raise CheckpointError(f"{where} is nested too deeply for a checkpoint card (limit {MAX_CARD_DEPTH} levels)")
    return card


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iteratively: a deep value must not overflow the stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_CARD_DEPTH:
            break
        todo.extend((child, level + 1) for child in children)
    return deepest


def validate_card(card: dict, where: str | Path, fold: int | None = None) -> dict:
    """``card`` itself once it passes the schema (and, with ``fold``, names that fold), else CheckpointError."""
    try:
        CheckpointCard.model_validate(card, context={"fold": fold})
    except ValidationError as err:
        raise CheckpointError(card_violation(card, where, err)) from None
    return card


def card_violation(card: dict, where: str | Path, err: ValidationError) -> str:
    """One sentence for a failed validation: the card, its first field at fault, what it must be, what it is."""
    problems = [_problem(card, e) for e in err.errors()]
    fields = list(dict.fromkeys(field for field, _ in problems))
    more = f" (also wrong: {', '.join(fields[1:])})" if len(fields) > 1 else ""
    return f"{where}: {problems[0][1]}{more}"


def _problem(card: dict, error: dict) -> tuple[str, str]:
    if error["type"] == "card_rule":
        field, rule = error["ctx"]["field"], error["ctx"]["rule"]
    else:
        field = str(error["loc"][0]) if error["loc"] else "card"
        rule = RULES.get(field, error["msg"])
    if error["type"] == "missing":
        return field, f"{field} is missing; it {rule}"
    return field, f"{field} {rule} (got {_shown(card.get(field))})"


def card_fault(card_file: Path, field: str, value: Any, rule: str | None = None) -> CheckpointError:
    """A violation only the weights reveal (``store.checkpoints``), in the same sentence as the schema's."""
    return CheckpointError(f"{card_label(card_file)}: {field} {rule or RULES[field]} (got {_shown(value)})")


def _shown(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def card_label(path: Path) -> str:
    """How messages name a card file: relative to the project when it lies inside it."""
    return project_relative(Path(path))
