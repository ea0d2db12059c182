"""Reading evaluation outputs for the dashboard: leaderboard, comparison tables, error lists.

Everything here reads what ``spermlib evaluate`` wrote (``metrics.json`` and
``oof_<arch>.csv`` in ``<results>/<dataset>/``) and never recomputes a metric, so the numbers on
screen are the ones on disk. The paper's numbers come from a single hold-out split, ours from
out-of-fold predictions of 5-fold CV; both protocols are stated wherever both appear. The paper's numbers,
model titles and number formats are the shared vocabulary of the dashboard and the reports
(:mod:`spermlib.vocabulary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spermlib.data.datasets import DATASETS, DatasetSpec, get_dataset
from spermlib.fileio import csv_text
from spermlib.store.results import (
    arch_order,
    dataset_results_dir,
    evaluate_command,
    is_tta,
    load_metrics,
    prob_columns,
)
from spermlib.vocabulary import (  # PAPER_PROTOCOL and PAPER_TITLE: re-exported for the pages
    PAPER_PROTOCOL,  # noqa: F401
    PAPER_RESULTS,
    PAPER_TITLE,  # noqa: F401
    arch_title,
    ci_f1,
    ci_pct,
    mean_std_f1,
    mean_std_pct,
    num,
    pct,
)

SUBSET_NOTE = "subset (e.g. the bundled sample) — not the published protocol"


# ----------------------------------------------------------------------------- leaderboard


def leaderboard(results_dir: str | Path | None = None, datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per evaluated dataset × arch with the headline numbers (fractions, not %).

    Columns: dataset, dataset_title, arch, model, n_images, accuracy_mean/std/pooled/ci_lo/ci_hi (the
    bootstrap CI belongs to the pooled out-of-fold accuracy),
    macro_f1_mean/std/ci_lo/ci_hi, backbone, full_dataset, protocol, paper_accuracy,
    paper_macro_f1 (paper numbers only on the row of the paper's model). Datasets without
    metrics.json contribute no rows.
    """
    rows = []
    for name in list(DATASETS) if datasets is None else datasets:
        metrics = load_metrics(name, results_dir)
        if metrics is None:
            continue
        spec = get_dataset(name)
        paper = PAPER_RESULTS.get(spec.name, {})
        for arch in arch_order(metrics["archs"]):
            m = metrics["archs"][arch]
            on_paper_row = arch == paper.get("arch")
            rows.append({
                "dataset": spec.name, "dataset_title": spec.title, "arch": arch, "model": arch_title(arch),
                "n_images": int(m["n_images"]),
                "accuracy_mean": m["accuracy"]["mean"], "accuracy_std": m["accuracy"]["std"],
                "accuracy_pooled": m["accuracy"]["pooled"],
                "accuracy_ci_lo": m["accuracy"]["ci95"][0], "accuracy_ci_hi": m["accuracy"]["ci95"][1],
                "macro_f1_mean": m["macro_f1"]["mean"], "macro_f1_std": m["macro_f1"]["std"],
                "macro_f1_ci_lo": m["macro_f1"]["ci95"][0], "macro_f1_ci_hi": m["macro_f1"]["ci95"][1],
                "backbone": m.get("backbone", "—"), "full_dataset": bool(metrics.get("full_dataset", False)),
                "protocol": metrics.get("protocol", ""),
                "paper_accuracy": paper.get("accuracy") if on_paper_row else None,
                "paper_macro_f1": paper.get("macro_f1") if on_paper_row else None,
            })
    return pd.DataFrame(rows, columns=[
        "dataset", "dataset_title", "arch", "model", "n_images", "accuracy_mean", "accuracy_std", "accuracy_pooled",
        "accuracy_ci_lo",
        "accuracy_ci_hi", "macro_f1_mean", "macro_f1_std", "macro_f1_ci_lo", "macro_f1_ci_hi", "backbone",
        "full_dataset", "protocol", "paper_accuracy", "paper_macro_f1",
    ])


PAPER_COLUMN = "Paper (accuracy / macro-F1)"


def leaderboard_display(board: pd.DataFrame) -> pd.DataFrame:
    """Human-readable leaderboard (strings), one row per dataset × model: ours and the paper's numbers side
    by side, narrow enough for a page without scrolling sideways (spread and provenance are on the
    comparison page). A row of a :func:`~spermlib.dashboard.headline.default_board` led by test-time
    augmentation says so and gives its one-view accuracy in the model cell (a sixth column would not fit
    a phone)."""
    def row(r) -> dict:
        acc = {"mean": r.accuracy_mean, "std": r.accuracy_std, "ci95": [r.accuracy_ci_lo, r.accuracy_ci_hi]}
        f1 = {"mean": r.macro_f1_mean, "std": r.macro_f1_std}
        paper = "—" if pd.isna(r.paper_accuracy) else f"{pct(r.paper_accuracy)} / {num(r.paper_macro_f1)}"
        return {
            "Dataset": get_dataset(r.dataset).folder, "Model": _model_cell(r),
            "Accuracy (mean ± std)": mean_std_pct(acc), "Accuracy 95 % CI": ci_pct(acc),
            "Macro-F1 (mean ± std)": mean_std_f1(f1), PAPER_COLUMN: paper,
        }

    return pd.DataFrame([row(r) for r in board.itertuples(index=False)])


def _model_cell(r) -> str:
    """The model's name; beside a figure with test-time augmentation, the one-view accuracy."""
    one_view = getattr(r, "one_view_accuracy_mean", None)
    return r.model if one_view is None or pd.isna(one_view) else f"{r.model}; one view {pct(one_view)}"


# ----------------------------------------------------------------------------- comparison tables


# metrics_table is shown as two tables, each narrow enough for a 1440 px page: the scores, then
# discrimination, calibration and what each model is.
SCORE_COLUMNS = ["Model", "Images", "Accuracy (mean ± std)", "Accuracy 95 % CI", "Accuracy pooled",
                 "Macro-F1 (mean ± std)", "Macro-F1 95 % CI", "Macro-F1 pooled"]
DETAIL_COLUMNS = ["Model", "ROC-AUC (one-vs-rest, macro)", "ECE", "TTA", "Input (px)", "Training time (s, all folds)",
                  "Backbone", "Pretrained"]  # the long texts last


def metrics_table(metrics: Mapping) -> pd.DataFrame:
    """Every scalar metric of every arch, formatted, one row per arch (columns: ``SCORE_COLUMNS`` and
    ``DETAIL_COLUMNS``)."""
    rows = []
    for arch in arch_order(metrics["archs"]):
        m = metrics["archs"][arch]
        rows.append({
            "Model": arch_title(arch), "Images": int(m["n_images"]),
            "Accuracy (mean ± std)": mean_std_pct(m["accuracy"]), "Accuracy 95 % CI": ci_pct(m["accuracy"]),
            "Accuracy pooled": pct(m["accuracy"]["pooled"]),
            "Macro-F1 (mean ± std)": mean_std_f1(m["macro_f1"]), "Macro-F1 95 % CI": ci_f1(m["macro_f1"]),
            "Macro-F1 pooled": num(m["macro_f1"]["pooled"]),
            "ROC-AUC (one-vs-rest, macro)": num(m.get("roc_auc_ovr_macro")),
            "ECE": num(m.get("ece")),
            "Backbone": m.get("backbone", "—"), "Pretrained": m.get("pretrained_source", "—"),
            # one size, or per-fold sizes ("224 px on folds 0, 2, 160 px on fold 1"): text either way, one column type
            "Input (px)": str(m.get("input_size", "—")).replace(" px", ""), "TTA": "yes" if m.get("tta") else "no",
            "Training time (s, all folds)": num(m.get("training_seconds_total"), 0),
        })
    return pd.DataFrame(rows)


def per_class_table(metrics: Mapping, spec: DatasetSpec) -> pd.DataFrame:
    """Pooled out-of-fold precision / recall / F1 / support / ROC-AUC per arch × class."""
    rows = []
    for arch in arch_order(metrics["archs"]):
        m = metrics["archs"][arch]
        for c in spec.class_dirs:
            pc = m["per_class"].get(c, {})
            rows.append({"Model": arch_title(arch), "Class": spec.display(c),
                         "Precision": pc.get("precision"), "Recall": pc.get("recall"), "F1": pc.get("f1-score"),
                         "Support": int(pc.get("support", 0)), "ROC-AUC": m.get("roc_auc_per_class", {}).get(c)})
    return pd.DataFrame(rows)


def per_fold_table(metrics: Mapping) -> pd.DataFrame:
    """Long table: arch, model, fold, n, accuracy, macro_f1 (for per-fold bar charts)."""
    rows = [{"arch": arch, "model": arch_title(arch), **f}
            for arch in arch_order(metrics["archs"]) for f in metrics["archs"][arch]["per_fold"]]
    return pd.DataFrame(rows, columns=["arch", "model", "fold", "n", "accuracy", "macro_f1"])


def confusion_cells(metrics: Mapping, arch: str, spec: DatasetSpec) -> pd.DataFrame:
    """One row per (true, predicted) cell: count and share of the true class (row-normalised)."""
    cm = np.asarray(metrics["archs"][arch]["confusion_matrix"], dtype=float)
    classes = list(metrics.get("classes") or spec.class_dirs)
    totals = cm.sum(1, keepdims=True)
    share = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    rows = [{"true": t, "pred": p, "true_display": spec.display(t), "pred_display": spec.display(p),
             "count": int(cm[i, j]), "row_share": float(share[i, j])}
            for i, t in enumerate(classes) for j, p in enumerate(classes)]
    return pd.DataFrame(rows)


def cell_label(cell: Mapping) -> str:
    kind = "correct" if cell["true"] == cell["pred"] else "errors"
    return (f"true {cell['true_display']} → predicted {cell['pred_display']}: "
            f"{cell['count']} images ({100 * cell['row_share']:.0f} % of the class, {kind})")


def roc_table(metrics: Mapping, arch: str, spec: DatasetSpec) -> pd.DataFrame:
    """Long table of one-vs-rest ROC curves: label (class folder), class (its legend entry, with the
    AUC), fpr, tpr."""
    curves = metrics["archs"][arch].get("roc_curves", {})
    auc = metrics["archs"][arch].get("roc_auc_per_class", {})
    rows = []
    for c, curve in curves.items():
        name = f"{spec.display(c)} (AUC {auc[c]:.3f})" if c in auc else spec.display(c)
        rows.extend({"label": c, "class": name, "fpr": f, "tpr": t} for f, t in zip(curve["fpr"], curve["tpr"]))
    return pd.DataFrame(rows, columns=["label", "class", "fpr", "tpr"])


def reliability_table(metrics: Mapping) -> pd.DataFrame:
    """Reliability bins of every arch: arch, model, lo, hi, count, confidence, accuracy."""
    rows = [{"arch": arch, "model": arch_title(arch), **b}
            for arch in arch_order(metrics["archs"]) for b in metrics["archs"][arch].get("reliability_bins", [])]
    return pd.DataFrame(rows, columns=["arch", "model", "lo", "hi", "count", "confidence", "accuracy"])


def faithfulness_table(report: Mapping) -> pd.DataFrame:
    """One row per arch: each metric with its CI, its control, and how often the real map beats the control."""
    rows = []
    for arch in arch_order(report["archs"]):
        e = report["archs"][arch]
        row = {"Model": arch_title(arch), "Images": e["n_images"]}
        for key, name in (("road_combined", "ROAD combined"), ("cam_mult_confidence_change", "CamMult Δconfidence")):
            m = e[key]
            row[name] = f"{m['mean']:.3f} ({m['ci95'][0]:.3f}–{m['ci95'][1]:.3f})"
            row[f"{name}, control"] = f"{m['control']['mean']:.3f}"
            share = m.get("share_above_control")
            row[f"{name}: map beats control"] = "—" if share is None else f"{100 * share:.0f} %"
        rows.append(row)
    return pd.DataFrame(rows)


def faithfulness_column_groups(table: pd.DataFrame) -> list[list[str]]:
    """:func:`faithfulness_table`'s columns as one narrow table per metric (each with the model column)."""
    metrics = dict.fromkeys(c.split(",")[0].split(":")[0] for c in table.columns if c not in ("Model", "Images"))
    return [["Model", "Images", *(c for c in table.columns if c.startswith(m))] for m in metrics]


def mcnemar_table(metrics: Mapping) -> pd.DataFrame:
    """Pairwise exact McNemar tests as written by evaluate."""
    rows = []
    for pair, t in metrics.get("mcnemar", {}).items():
        a, _, b = pair.partition(" vs ")
        rows.append({"Model A": arch_title(a), "Model B": arch_title(b), "Images": t["n"],
                     "A right, B wrong": t["a_right_b_wrong"], "A wrong, B right": t["a_wrong_b_right"],
                     "p-value (exact McNemar)": t["p_value"]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- misclassifications


def disagreement(oofs: Mapping[str, pd.DataFrame]) -> pd.Series:
    """Per image path: True when the archs' out-of-fold predictions are not all the same.

    Only plain archs count (``+tta`` entries repeat an arch), and only images that at least two
    of them scored; with fewer than two archs nothing can disagree.
    """
    preds = [df.set_index("path")["pred"].rename(a) for a, df in oofs.items() if not is_tta(a)]
    if len(preds) < 2:
        paths = pd.Index(sorted({p for df in oofs.values() for p in df["path"]}), name="path")
        return pd.Series(False, index=paths, name="disagree")
    table = pd.concat(preds, axis=1)
    scored = table.notna().sum(axis=1)
    distinct = table.nunique(axis=1, dropna=True)
    out = (scored >= 2) & (distinct > 1)
    out.index.name = "path"
    return out.rename("disagree")


def prediction_table(oof: pd.DataFrame, spec: DatasetSpec, disagree: pd.Series | None = None,
                     others: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """OOF rows with derived columns: true/pred display names, confidence (probability of the
    predicted class), p_true, correct, disagree and, per other arch, its prediction."""
    df = oof.copy()
    probs = df[prob_columns(spec.class_dirs)].to_numpy(dtype=float)
    cidx = {c: i for i, c in enumerate(spec.class_dirs)}
    rows = np.arange(len(df))
    df["confidence"] = probs[rows, df["pred"].map(cidx).to_numpy()]
    df["p_true"] = probs[rows, df["label"].map(cidx).to_numpy()]
    df["correct"] = df["label"] == df["pred"]
    df["true_display"] = df["label"].map(spec.display)
    df["pred_display"] = df["pred"].map(spec.display)
    df["disagree"] = df["path"].map(disagree).fillna(False).astype(bool) if disagree is not None else False
    for arch, other in (others or {}).items():
        df[f"pred_{arch}"] = df["path"].map(other.set_index("path")["pred"]).fillna("")
    return df


@dataclass
class MistakeFilter:
    """What the misclassification explorer shows. Empty class lists mean "any class"."""

    true_classes: Sequence[str] = field(default_factory=list)
    pred_classes: Sequence[str] = field(default_factory=list)
    confidence: tuple[float, float] = (0.0, 1.0)
    errors_only: bool = True
    disagree_only: bool = False


def filter_predictions(table: pd.DataFrame, flt: MistakeFilter) -> pd.DataFrame:
    """Rows of ``prediction_table`` matching ``flt``, most confident first (the worst errors)."""
    keep = pd.Series(True, index=table.index)
    if flt.true_classes:
        keep &= table["label"].isin(list(flt.true_classes))
    if flt.pred_classes:
        keep &= table["pred"].isin(list(flt.pred_classes))
    lo, hi = flt.confidence
    keep &= table["confidence"].between(lo, hi, inclusive="both")
    if flt.errors_only:
        keep &= ~table["correct"]
    if flt.disagree_only:
        keep &= table["disagree"]
    return table[keep].sort_values(["confidence", "path"], ascending=[False, True]).reset_index(drop=True)


def mark_present(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Add ``file_present``: whether the image is under ``root`` (an OOF CSV of the full dataset
    lists images that a checkout with only the bundled sample does not have)."""
    df = table.copy()
    df["file_present"] = [(Path(root) / p).is_file() for p in df["path"]]
    return df


EXPORT_COLUMNS = ["path", "label", "pred", "confidence", "p_true", "fold", "correct", "disagree"]


def export_table(filtered: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The columns the explorer shows and exports: keys, classes, confidence, fold, probabilities."""
    extra = [c for c in filtered.columns if c.startswith("pred_")]
    cols = EXPORT_COLUMNS + prob_columns(spec.class_dirs) + extra
    return filtered[[c for c in cols if c in filtered.columns]].reset_index(drop=True)


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as UTF-8 CSV for a download button, formula-safe (a file name may begin with ``=``)."""
    return csv_text(df).encode("utf-8")


def missing_results_message(dataset: str, results_dir: str | Path | None = None) -> str:
    """What to run when a dataset has no metrics.json (evaluate needs trained checkpoints first)."""
    spec = get_dataset(dataset)
    where = dataset_results_dir(dataset, results_dir)
    return (
        f"No evaluation results for {spec.folder} in {where}. They are produced by "
        f"`{evaluate_command(spec.name)}` (after `spermlib train --dataset {spec.name} --arch all "
        f"--fold all`; add `--data-dir ../shared/data` for the full dataset — see docs/getting-started.md)."
    )
