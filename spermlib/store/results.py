"""Results on disk: where they live, their schemas, and the one reader/writer of each file.

Per dataset, ``<results>/<dataset>/`` holds ``metrics.json`` (``evaluate``), ``faithfulness.json``
(``faithfulness``), ``robustness.json`` (``robustness``), ``ood.json`` (``ood``), ``tuning.json``
(``tune --record``), one ``oof_<entry>.csv`` of out-of-fold predictions per evaluated entry, and
``robustness_folds/<entry>/fold<k>.csv.gz`` (+ ``.json``): the robustness suite's predictions of one fold's test
images, kept so that a rerun recomputes only the folds whose model changed. An
*entry* is an arch scored one way: plain, or with the 8-view test-time augmentation (TTA). The entry's file/key name
(``effnet_cbam+tta``) is built and parsed here only (:func:`entry_name`, :func:`parse_entry`);
everyone else asks :func:`is_tta` / :func:`base_arch`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from spermlib.archs import ARCHS
from spermlib.data.datasets import DatasetSpec, get_dataset, is_full_dataset
from spermlib.errors import SpermlibError
from spermlib.fileio import atomic_path, write_text
from spermlib.store.paths import PARTIAL_RESULTS_DIR, default_results_dir

METRICS_FILE = "metrics.json"
FAITHFULNESS_FILE = "faithfulness.json"
PUBLISHED_PER_CLASS = 2  # faithfulness.json's subset: images per class per test fold (the published protocol)
TUNING_FILE = "tuning.json"
ROBUSTNESS_FILE = "robustness.json"
OOD_FILE = "ood.json"
DECISION_BIAS_FILE = "decision_bias.json"
TTA_SUFFIX = "+tta"
OOF_KEY_COLUMNS = ("path", "label", "fold", "pred")
ROBUSTNESS_FOLDS_DIR = "robustness_folds"


def _spec(dataset: str | DatasetSpec) -> DatasetSpec:
    return dataset if isinstance(dataset, DatasetSpec) else get_dataset(dataset)


def prob_column(label: str) -> str:
    """The OOF column holding the probability of class ``label``."""
    return f"prob_{label}"


def prob_columns(classes: Sequence[str]) -> list[str]:
    return [prob_column(c) for c in classes]


def entry_name(arch: str, tta: bool = False) -> str:
    """Key of a results entry in metrics.json and the OOF file name: ``effnet`` or ``effnet+tta``."""
    return f"{arch}{TTA_SUFFIX}" if tta else arch


def parse_entry(name: str) -> tuple[str, bool]:
    """``(arch, tta)`` of an entry name."""
    return (name.removesuffix(TTA_SUFFIX), True) if name.endswith(TTA_SUFFIX) else (name, False)


def is_tta(name: str) -> bool:
    return parse_entry(name)[1]


def results_dir_for(spec: DatasetSpec, root: Path, base: Path | None = None) -> Path:
    """Where evaluations of the images under ``root`` go: ``results/`` for a full dataset, else ``runs/results/``."""
    if base is not None:
        return Path(base) / spec.name
    return (default_results_dir() if is_full_dataset(root) else PARTIAL_RESULTS_DIR) / spec.name


def oof_path(out_dir: Path, entry: str) -> Path:
    return Path(out_dir) / f"oof_{entry}.csv"


def write_oof(out_dir: Path, entry: str, oof: pd.DataFrame) -> Path:
    path = oof_path(out_dir, entry)
    with atomic_path(path) as tmp:
        oof.to_csv(tmp, index=False, lineterminator="\n")
    return path


def read_for_update(path: Path, split_sha256: str, **same: object) -> dict:
    """A results JSON to extend, or ``{}`` when absent or made on another split / with other settings."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    if data.get("split_sha256") not in (None, split_sha256):
        return {}  # results of another split are not comparable: start over
    if any(data.get(k) not in (None, v) for k, v in same.items()):
        return {}
    return data


def results_to_update(spec: DatasetSpec, root: Path, filename: str, split_sha256: str,
                      base: Path | None = None) -> tuple[Path, dict]:
    """Where results file ``filename`` of the images under ``root`` goes, and its entries to extend (an
    ``archs`` mapping; empty when absent or made on another split)."""
    path = results_dir_for(spec, root, base) / filename
    report = read_for_update(path, split_sha256)
    report.setdefault("archs", {})
    return path, report


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(data, indent=1) + "\n")


class ResultsError(SpermlibError):
    """A results file that exists but cannot be read (message is shown to the user)."""


def evaluate_command(dataset: str) -> str:
    return f"spermlib evaluate --dataset {dataset}"


def base_arch(arch: str) -> str:
    """The checkpoint arch behind a results entry (``effnet+tta`` was scored with ``effnet``'s folds)."""
    return parse_entry(arch)[0]


def arch_order(names: Iterable[str]) -> list[str]:
    def key(name: str) -> tuple[int, str]:
        b = base_arch(name)
        return (ARCHS.index(b) if b in ARCHS else len(ARCHS), name)

    return sorted(names, key=key)


# ----------------------------------------------------------------------------- loading


def dataset_results_dir(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> Path:
    return Path(results_dir or default_results_dir()) / _spec(dataset).name


def _load_results_json(path: Path, rerun: str) -> dict | None:
    """A results JSON with an ``archs`` mapping; ``None`` if absent, ``ResultsError`` (naming ``rerun``) if bad."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path} is not readable JSON ({err}); re-run `{rerun}`") from None
    if not isinstance(data, dict) or not isinstance(data.get("archs"), dict):
        raise ResultsError(f"{path} has no 'archs' entry; re-run `{rerun}`")
    return data


def load_metrics(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> dict | None:
    """``metrics.json`` of ``dataset``, or ``None`` when it has not been evaluated yet."""
    rerun = evaluate_command(_spec(dataset).name)
    return _load_results_json(dataset_results_dir(dataset, results_dir) / METRICS_FILE, rerun)


def load_faithfulness(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> dict | None:
    """``faithfulness.json`` of ``dataset`` (written by ``spermlib faithfulness``), or ``None``."""
    return _load_results_json(dataset_results_dir(dataset, results_dir) / FAITHFULNESS_FILE,
                              f"spermlib faithfulness --dataset {_spec(dataset).name}")


def load_robustness(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> dict | None:
    """``robustness.json`` of ``dataset`` (written by ``spermlib robustness``), or ``None``."""
    return _load_results_json(dataset_results_dir(dataset, results_dir) / ROBUSTNESS_FILE,
                              f"spermlib robustness --dataset {_spec(dataset).name}")


def load_ood(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> dict | None:
    """``ood.json`` of ``dataset`` (written by ``spermlib ood``), or ``None``."""
    return _load_results_json(dataset_results_dir(dataset, results_dir) / OOD_FILE,
                              f"spermlib ood --dataset {_spec(dataset).name}")


def load_decision_bias(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> dict | None:
    """``decision_bias.json`` of ``dataset`` (written by ``spermlib bias``), or ``None``."""
    return _load_results_json(dataset_results_dir(dataset, results_dir) / DECISION_BIAS_FILE,
                              f"spermlib bias --dataset {_spec(dataset).name}")


def load_tuning(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> dict | None:
    """``tuning.json`` of ``dataset`` (written by ``spermlib tune --record``), or ``None``."""
    return _load_results_json(dataset_results_dir(dataset, results_dir) / TUNING_FILE,
                              f"spermlib tune --dataset {_spec(dataset).name} --run NAME=FOLDER --record")


def oof_archs(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> list[str]:
    """Entries with an ``oof_<arch>.csv`` (including ``<arch>+tta``), in arch order."""
    d = dataset_results_dir(dataset, results_dir)
    return arch_order(p.stem[4:] for p in d.glob("oof_*.csv"))


def load_oof(dataset: str | DatasetSpec, arch: str, results_dir: str | Path | None = None) -> pd.DataFrame | None:
    """The out-of-fold predictions of one arch, or ``None`` when absent."""
    spec = _spec(dataset)
    path = oof_path(dataset_results_dir(dataset, results_dir), arch)
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, dtype={"path": str, "label": str, "pred": str}, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path} is not a readable CSV ({err})") from None
    needed = {*OOF_KEY_COLUMNS, *prob_columns(spec.class_dirs)}
    if missing := needed - set(df.columns):
        raise ResultsError(f"{path} lacks columns {sorted(missing)}; re-run `{evaluate_command(_spec(dataset).name)}`")
    return df


def load_oofs(dataset: str | DatasetSpec, results_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    out = {}
    for arch in oof_archs(dataset, results_dir):
        df = load_oof(dataset, arch, results_dir)
        if df is not None:
            out[arch] = df
    return out


def _robustness_fold_files(out_dir: Path, entry: str, fold: int) -> tuple[Path, Path]:
    folder = Path(out_dir) / ROBUSTNESS_FOLDS_DIR / entry
    return folder / f"fold{fold}.csv.gz", folder / f"fold{fold}.json"


def read_robustness_fold(out_dir: Path, entry: str, fold: int, key: str) -> tuple[pd.DataFrame, dict] | None:
    """A fold's stored robustness predictions (one row per test image, one column per pass, class indices) and the
    run that made them, or ``None`` when absent, unreadable, or made with anything else (``key`` differs)."""
    table, meta = _robustness_fold_files(out_dir, entry, fold)
    try:
        stored = json.loads(meta.read_text())
        if stored.get("key") != key:
            return None
        return pd.read_csv(table, index_col="path"), stored["run"]
    except (OSError, ValueError, KeyError):
        return None


def write_robustness_fold(out_dir: Path, entry: str, fold: int, key: str, wide: pd.DataFrame, run: dict) -> Path:
    table, meta = _robustness_fold_files(out_dir, entry, fold)
    table.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(table) as tmp:  # mtime 0: rerunning with the same model writes the same bytes (no git churn)
        wide.to_csv(tmp, index_label="path", lineterminator="\n", compression={"method": "gzip", "mtime": 0})
    write_text(meta, json.dumps({"key": key, "run": run}, indent=1) + "\n")
    return table
