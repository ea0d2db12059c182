"""Archive-scale prediction on Ray Data, and the table file both prediction paths write.

``predict --ray`` reads the image files with Ray Data (``read_binary_files``), classifies them in a
pool of actors (``map_batches`` with a callable class: each actor loads the fold ensemble once, then
runs ``Predictor.predict_sources`` on batch after batch) and writes one row per file with exactly the
columns of the local path's ``--json`` rows (``Prediction.to_dict``). A file that cannot be read or
decoded becomes a row with its ``error``; the job itself does not fail for it.

Table files (``--out``, Parquet or CSV by extension) hold the nested ``to_dict`` values
(``probabilities``, ``fold_labels``) as JSON text, so that both formats have the same flat columns and
a batch whose rows are all errors has the same schema as any other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from spermlib.cluster import connect
from spermlib.data.datasets import DatasetSpec
from spermlib.errors import SpermlibError
from spermlib.inference.predict import Prediction

TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
# Images per actor call: four of the predictor's batches of 64, so that each call's fixed cost (moving the
# batch through the object store, scheduling) is spread over more images.
RAY_BATCH = 256


def table_format(out: str | Path) -> str:
    """``parquet`` or ``csv`` by ``out``'s extension (checked before a long run starts)."""
    fmt = TABLE_SUFFIXES.get(Path(out).suffix.lower())
    if fmt is None:
        raise SpermlibError(f"--out {out}: give a .parquet or .csv file name")
    return fmt


def prediction_row(pred: Prediction) -> dict:
    """``pred.to_dict()`` with its nested values (dicts, lists) as JSON text: one flat table row."""
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in pred.to_dict().items()}


def rows_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows in the columns of ``Prediction.to_dict`` (the same for a batch of errors only)."""
    return pd.DataFrame(list(rows), columns=list(Prediction(path="").to_dict()))


def write_table(frame: pd.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    if table_format(out) == "parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False, lineterminator="\n")
    return out


class PredictBatch:
    """Ray Data callable class: one ``Predictor`` per actor, loaded in ``__init__``, reused for every batch."""

    def __init__(self, spec: DatasetSpec, arch: str, folds: list[int] | None, checkpoints_dir: str,
                 device: str | None, threads: int, names: dict[str, str]):
        import torch

        from spermlib.inference.predict import Predictor

        self.threads = max(1, threads)
        torch.set_num_threads(self.threads)
        self.predictor = Predictor.from_checkpoints(spec, arch=arch, folds=folds,
                                                    checkpoints_dir=Path(checkpoints_dir), device=device)
        self.names = names  # the path Ray reports → the name the user gave (the local path's "path")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import torch

        # Ray Data calls this on another thread than __init__, and OpenMP's thread count is per calling thread
        # (it falls back to the OMP_NUM_THREADS=1 Ray gives a one-CPU actor): set it where the forward runs.
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        names = [self.names.get(p) or self.names.get("/" + p.lstrip("/"), p) for p in batch["path"]]
        preds = self.predictor.predict_sources(list(batch["bytes"]), names, keep_inputs=False)
        return rows_frame([prediction_row(p) for p in preds])


def _unreadable(paths: Sequence[str]) -> tuple[list[str], list[Prediction]]:
    """(files Ray Data can read, error predictions for the rest: missing, not a file, not readable)."""
    from spermlib.data.imageio import ImageError, load_rgb

    good, bad = [], []
    for p in paths:
        if os.path.isfile(p) and os.access(p, os.R_OK):
            good.append(p)
            continue
        try:  # the local path's own message for this file ("no such file", …)
            load_rgb(p)
            reason = "not readable"
        except ImageError as err:
            reason = err.reason
        bad.append(Prediction(path=p, error=f"{p}: {reason}"))
    return good, bad


def actor_pool(ray, actors: int | None = None) -> tuple[int, dict, int]:
    """(number of actors, Ray resources of each, torch threads of each).

    With GPUs: one actor per GPU. Without: one actor per two cores, each reserving one CPU slot and
    running two torch threads, so the other slot is left to Ray Data's read tasks (reading bytes is
    cheap; an actor on every slot would starve them) and the cores are still all busy with forwards.
    """
    res = ray.cluster_resources()
    if res.get("GPU", 0) >= 1:
        return actors or int(res["GPU"]), {"num_gpus": 1, "num_cpus": 1}, 1
    cpus = max(1, int(res.get("CPU", 1)))
    n = actors or max(1, cpus // 2)
    return n, {"num_cpus": 1}, max(1, cpus // n)


def predict_on_ray(paths: Sequence[str], spec: DatasetSpec, arch: str, checkpoints_dir: str | Path,
                   folds: list[int] | None = None, address: str | None = None, actors: int | None = None,
                   batch_size: int = RAY_BATCH, progress: bool = False) -> pd.DataFrame:
    """One row per path (``Prediction.to_dict`` columns, nested values as JSON), classified on Ray."""
    ray = connect(address)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    good, bad = _unreadable(list(paths))
    rows = [prediction_row(p) for p in bad]
    if good:
        n_actors, resources, threads = actor_pool(ray, actors)
        names = {os.path.abspath(p): p for p in good}
        device = "cuda" if resources.get("num_gpus") else "cpu"
        ds = ray.data.read_binary_files([os.path.abspath(p) for p in good], include_paths=True)  # repeats kept
        out = ds.map_batches(PredictBatch, batch_size=batch_size, batch_format="pandas",
                             compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(good))),
                             fn_constructor_kwargs={"spec": spec, "arch": arch, "folds": folds,
                                                    "checkpoints_dir": str(checkpoints_dir), "device": device,
                                                    "threads": threads, "names": names},
                             **resources)
        for batch in out.iter_batches(batch_format="pandas", batch_size=None):
            rows.extend(batch.to_dict("records"))
    return rows_frame(rows)
