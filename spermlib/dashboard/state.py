"""State one page hands to another through the Streamlit session state, typed.

Session state is a string-keyed mapping shared by every page of a browser session; what crosses
pages is written and read only through the helpers here, so the writer and the reader cannot
disagree on keys or types. Values are stored as plain dicts (not the dataclass itself) so that a
value written by an older copy of this module, or by hand, is validated instead of trusted.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import asdict, dataclass

MISTAKES_PRESET_KEY = "mistakes_preset"


@dataclass(frozen=True)
class MistakesPreset:
    """Filters handed to the misclassification explorer, applied once when it next runs.

    ``true`` / ``pred``: class folders to filter on (empty = any class).
    """

    dataset: str
    arch: str
    true: tuple[str, ...] = ()
    pred: tuple[str, ...] = ()
    errors_only: bool = True

    @classmethod
    def for_cell(cls, dataset: str, arch: str, true: str, pred: str) -> MistakesPreset:
        """The images of one confusion-matrix cell. A diagonal cell holds only correct predictions,
        so "errors only" is switched off for it (else the explorer would show nothing)."""
        return cls(dataset, arch, (true,), (pred,), errors_only=true != pred)

    def save(self, state: MutableMapping) -> None:
        state[MISTAKES_PRESET_KEY] = {**asdict(self), "true": list(self.true), "pred": list(self.pred)}

    @classmethod
    def take(cls, state: MutableMapping) -> MistakesPreset | None:
        """The preset waiting in ``state`` (removed, so it applies once), or ``None`` if there is none
        or it is malformed."""
        raw = state.pop(MISTAKES_PRESET_KEY, None)
        if not isinstance(raw, dict):
            return None
        try:
            preset = cls(dataset=raw["dataset"], arch=raw["arch"], true=tuple(raw.get("true", ())),
                         pred=tuple(raw.get("pred", ())), errors_only=raw.get("errors_only", True))
        except (KeyError, TypeError):
            return None
        fields_ok = (isinstance(preset.dataset, str) and isinstance(preset.arch, str)
                     and isinstance(preset.errors_only, bool)
                     and all(isinstance(c, str) for c in preset.true + preset.pred))
        return preset if fields_ok else None
