"""The per-image catalog behind the dataset explorer: one row per image file of a data root.

Columns: ``path`` (relative, POSIX — the key used by manifests and OOF CSVs), ``label`` (class
folder), ``display`` (human class name), ``fold`` (-1 = excluded), ``group`` (pixel-identical
group id), ``group_size``, ``duplicate_of`` (the other members of the group, ``"; "``-joined),
``duplicate_labels`` (their labels), ``excluded`` (reason or ``""``), ``width``, ``height``,
``format`` (detected from the content, not the extension), ``ext_mismatch`` and, for every arch
with ``oof_<arch>.csv`` in the results folder, ``oof_<arch>`` (out-of-fold predicted label) and
``oof_<arch>_p`` (its probability).

Reading sizes and formats only parses image headers (``PIL.Image.open`` is lazy), so the 3000
SMIDS files take well under a second; the dashboard caches the table anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from spermlib.archs import ARCHS
from spermlib.dashboard.tables import arch_title
from spermlib.data.datasets import DatasetSpec, is_full_dataset, list_images
from spermlib.data.imageio import ImageError
from spermlib.data.splits import manifest_for_root, manifest_path
from spermlib.store.paths import default_results_dir
from spermlib.store.results import METRICS_FILE, ResultsError, dataset_results_dir, load_metrics, oof_path, prob_columns

# What an extension promises, by the format Pillow detects from the bytes.
_FORMAT_SUFFIXES = {
    "BMP": {".bmp"}, "PNG": {".png"}, "JPEG": {".jpg", ".jpeg"}, "TIFF": {".tif", ".tiff"},
    "GIF": {".gif"}, "WEBP": {".webp"},
}
EXCLUDED_FOLD = -1


@dataclass
class Catalog:
    """The table plus what a reader must know to trust it (where it came from, what is missing)."""

    table: pd.DataFrame
    root: str
    full_dataset: bool
    manifest_sha256: str | None
    oof_archs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # user-facing caveats (missing manifest, stale OOF, …)


def image_header(path: str | Path) -> tuple[int, int, str]:
    """(width, height, format) from the file header only; ``(0, 0, "unreadable")`` if Pillow can't parse it."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            return int(w), int(h), str(img.format or "unknown")
    except Exception:  # noqa: BLE001 - any unreadable file is just marked, the explorer goes on
        return 0, 0, "unreadable"


def read_oof(results_dir: str | Path, spec: DatasetSpec, arch: str) -> pd.DataFrame | None:
    """``results/<dataset>/oof_<arch>.csv`` as (path, oof_<arch>, oof_<arch>_p), or ``None`` if absent/unusable."""
    csv = oof_path(Path(results_dir) / spec.name, arch)
    if not csv.is_file():
        return None
    try:
        df = pd.read_csv(csv, dtype={"path": str, "pred": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if not {"path", "pred"} <= set(df.columns):
        return None
    prob_cols = prob_columns(spec.class_dirs)
    if set(prob_cols) <= set(df.columns):
        probs = df[prob_cols].to_numpy(dtype=float)
        idx = [spec.class_dirs.index(p) if p in spec.class_dirs else -1 for p in df["pred"]]
        p_pred = [float(probs[i, j]) if j >= 0 else math.nan for i, j in enumerate(idx)]
    else:
        p_pred = [math.nan] * len(df)
    return pd.DataFrame({"path": df["path"], f"oof_{arch}": df["pred"], f"oof_{arch}_p": p_pred})


def _oof_provenance(results_dir: Path, spec: DatasetSpec) -> dict:
    """``split_sha256`` and ``full_dataset`` of the evaluation that wrote the OOF CSVs (``{}`` if unknown: the
    pages that show metrics report an unreadable metrics.json themselves)."""
    try:
        return load_metrics(spec, results_dir) or {}
    except ResultsError:
        return {}


def _duplicate_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``group_size``, ``duplicate_of`` and ``duplicate_labels`` from ``group`` (-1 = unknown group)."""
    sizes = table.groupby("group")["path"].transform("size")
    table["group_size"] = sizes.where(table["group"] >= 0, 1).astype(int)
    members = table[table["group"] >= 0].groupby("group")
    paths = members["path"].apply(list).to_dict()
    labels = members["label"].apply(list).to_dict()
    dup_of, dup_labels = [], []
    for path, group in zip(table["path"], table["group"]):
        others = [(p, lab) for p, lab in zip(paths.get(group, []), labels.get(group, [])) if p != path]
        dup_of.append("; ".join(p for p, _ in others))
        dup_labels.append("; ".join(lab for _, lab in others))
    table["duplicate_of"] = dup_of
    table["duplicate_labels"] = dup_labels
    return table


def build_catalog(spec: DatasetSpec, root: str | Path, results_dir: str | Path | None = None,
                  splits_path: str | Path | None = None) -> Catalog:
    """The catalog of every image under ``root`` (see module docstring for the columns).

    Works on the bundled sample and on the full data: the committed manifest is restricted to the
    images present. If the manifest is missing or does not know some images, folds and groups are
    unknown (``fold`` = -1, ``excluded`` = ``"not in split manifest"``) and a note says why — the
    explorer still shows the images.
    """
    root = Path(root)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    notes: list[str] = []
    images = list_images(spec, root)
    sha: str | None = None
    try:
        manifest, sha = manifest_for_root(spec, root, splits_path)
        table = images.merge(manifest.drop(columns=["label", "pixel_sha256"]), on="path", how="left",
                             validate="one_to_one")
    except (FileNotFoundError, ValueError) as err:
        notes.append(f"Folds and duplicate groups are unknown: {err}")
        table = images.assign(fold=EXCLUDED_FOLD, group=-1, excluded="not in split manifest")
    table["fold"] = table["fold"].fillna(EXCLUDED_FOLD).astype(int)
    table["group"] = table["group"].fillna(-1).astype(int)
    table["excluded"] = table["excluded"].fillna("").astype(str)
    table.insert(2, "display", [spec.display(lab) for lab in table["label"]])
    table = _duplicate_columns(table)

    headers = [image_header(root / p) for p in table["path"]]
    table["width"] = [h[0] for h in headers]
    table["height"] = [h[1] for h in headers]
    table["format"] = [h[2] for h in headers]
    table["ext_mismatch"] = [
        fmt in _FORMAT_SUFFIXES and Path(p).suffix.lower() not in _FORMAT_SUFFIXES[fmt]
        for p, fmt in zip(table["path"], table["format"])
    ]

    oof_archs = []
    for arch in ARCHS:
        oof = read_oof(results_dir, spec, arch)
        if oof is None:
            continue
        oof_archs.append(arch)
        table = table.merge(oof, on="path", how="left", validate="one_to_one")
    if oof_archs:
        provenance = _oof_provenance(results_dir, spec)
        oof_sha = provenance.get("split_sha256")
        if sha and oof_sha and oof_sha != sha:
            notes.append(
                f"The out-of-fold predictions in {results_dir / spec.name} were computed on another split "
                f"manifest (sha256 {oof_sha[:12]}… ≠ {sha[:12]}…); re-run `spermlib evaluate "
                f"--dataset {spec.name}`."
            )
        oof_full = provenance.get("full_dataset")
        if oof_full is not None and bool(oof_full) != is_full_dataset(root):
            where = "the full dataset" if oof_full else "the bundled sample"
            notes.append(f"The out-of-fold predictions were computed on {where}; images outside it show none.")
    return Catalog(table=table.reset_index(drop=True), root=str(root), full_dataset=is_full_dataset(root),
                   manifest_sha256=sha, oof_archs=oof_archs, notes=notes)


def fold_label(fold: int) -> str:
    """How a fold is shown in filters: ``"fold 0"`` … or ``"excluded"`` for -1."""
    return "excluded" if int(fold) < 0 else f"fold {int(fold)}"


def filter_catalog(table: pd.DataFrame, labels: list[str] | None = None,
                   folds: list[int] | None = None) -> pd.DataFrame:
    """Rows whose ``label`` is in ``labels`` and ``fold`` in ``folds``; ``None`` or empty = no filter."""
    mask = pd.Series(True, index=table.index)
    if labels:
        mask &= table["label"].isin(labels)
    if folds:
        mask &= table["fold"].isin([int(f) for f in folds])
    return table[mask]


def page_count(n_rows: int, per_page: int) -> int:
    """Number of gallery pages (at least 1, so an empty filter still has a page to show)."""
    return max(1, math.ceil(n_rows / per_page))


def paginate(table: pd.DataFrame, page: int, per_page: int) -> pd.DataFrame:
    """Rows of 1-based ``page``; pages beyond the end are clamped to the last one."""
    page = min(max(1, int(page)), page_count(len(table), per_page))
    return table.iloc[(page - 1) * per_page : page * per_page]


def class_counts(table: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Images per class in the dataset's class order: label, display, images, excluded."""
    rows = []
    for label in spec.class_dirs:
        sub = table[table["label"] == label]
        rows.append({"label": label, "display": spec.display(label), "images": len(sub),
                     "excluded": int((sub["excluded"] != "").sum())})
    return pd.DataFrame(rows)


def fold_class_table(table: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Images per fold (rows, ``excluded`` last) × class (columns, display names)."""
    ct = pd.crosstab(table["fold"].map(fold_label), table["label"])
    ct = ct.reindex(columns=[c for c in spec.class_dirs if c in ct.columns], fill_value=0)
    ct.columns = [spec.display(c) for c in ct.columns]
    order = sorted(ct.index, key=lambda s: (s == "excluded", s))
    ct = ct.loc[order]
    ct.index.name = "fold"
    return ct


def conflicting_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Members of duplicate groups whose copies carry different labels (path, label, group)."""
    dup = table[(table["group"] >= 0) & (table["group_size"] > 1)]
    n_labels = dup.groupby("group")["label"].transform("nunique")
    return dup[n_labels > 1][["group", "path", "label", "display", "excluded"]].sort_values(["group", "path"])


def image_details(catalog: Catalog, path: str, spec: DatasetSpec) -> dict:
    """Everything the explorer shows beside one image: metadata, duplicates, OOF predictions.

    Returns ``{"metadata": DataFrame(field, value), "duplicates": DataFrame, "conflict": bool,
    "predictions": DataFrame(arch, prediction, probability, correct)}``.
    """
    table = catalog.table
    row = table[table["path"] == path]
    if row.empty:
        raise KeyError(f"{path} is not in the catalog")
    r = row.iloc[0]
    meta = [
        ("file", r["path"]),
        ("class (folder)", f"{r['display']} ({r['label']})"),
        ("size", f"{r['width']} × {r['height']} px"),
        ("format (by content)", r["format"] + (" — extension does not match" if r["ext_mismatch"] else "")),
        ("fold", fold_label(r["fold"]) if r["excluded"] != "not in split manifest" else "unknown"),
        ("duplicate group", f"{r['group']} ({r['group_size']} file{'s' if r['group_size'] != 1 else ''})"
         if r["group"] >= 0 else "unknown"),
        ("excluded", r["excluded"].replace("_", " ") or "no"),
    ]
    metadata = pd.DataFrame(meta, columns=["field", "value"])
    dup_paths = [p for p in r["duplicate_of"].split("; ") if p]
    duplicates = table[table["path"].isin(dup_paths)][["path", "label", "display", "fold", "excluded"]]
    conflict = bool((duplicates["label"] != r["label"]).any())
    preds = []
    for arch in catalog.oof_archs:
        pred = r.get(f"oof_{arch}")
        if not isinstance(pred, str) or not pred:
            preds.append({"arch": arch, "prediction": "— (not evaluated)", "probability": math.nan, "correct": None})
            continue
        preds.append({"arch": arch, "prediction": spec.display(pred), "probability": float(r[f"oof_{arch}_p"]),
                      "correct": pred == r["label"]})
    predictions = pd.DataFrame(preds, columns=["arch", "prediction", "probability", "correct"])
    return {"metadata": metadata, "duplicates": duplicates.reset_index(drop=True), "conflict": conflict,
            "predictions": predictions}


def predictions_display(predictions: pd.DataFrame) -> pd.DataFrame:
    """:func:`image_details`' out-of-fold predictions for reading: model titles, ✓ / ✗ for right and wrong."""
    shown = predictions.copy()
    shown["arch"] = shown["arch"].map(arch_title)
    shown["correct"] = shown["correct"].map({True: "✓", False: "✗"}).fillna("")
    return shown


def catalog_sources(spec: DatasetSpec, results_dir: str | Path) -> list[Path]:
    """The files :func:`build_catalog` reads besides the images (split manifest, metrics.json, OOF CSVs):
    a cache of the catalog must be refreshed when one of them changes."""
    out_dir = dataset_results_dir(spec, results_dir)
    return [manifest_path(spec), out_dir / METRICS_FILE, *(oof_path(out_dir, a) for a in ARCHS)]


__all__ = [
    "Catalog", "ImageError", "build_catalog", "class_counts", "conflicting_groups", "filter_catalog",
    "catalog_sources", "fold_class_table", "fold_label", "image_details", "image_header", "page_count", "paginate",
    "read_oof",
]
