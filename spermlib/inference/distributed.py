"""Archive-scale prediction on Ray Data, and the table file both prediction paths write.

``predict --ray`` hands the file list to Ray Data in blocks of paths, classifies them in a pool of actors
(``map_batches`` with a callable class: each actor loads the fold ensemble once, then reads, decodes and
classifies block after block with ``Predictor.predict_sources``, the local path's own function) and writes
one row per file with exactly the columns of the local path's ``--json`` rows (``Prediction.to_dict``). A
file that cannot be read or decoded becomes a row with the local path's ``error``; the job does not fail.

Why the actors read the files themselves rather than Ray Data's ``read_binary_files`` tasks: measured with
``bench`` on 2 cores, separate read tasks competed with the actors' forwards for the cores and moved every
file's bytes through the object store (steady state 0.69× the single-process path, against 1.00× when the
actor reads). Reading a ~15 KB image is cheap beside its forward, so the actor loses little by doing it,
and every node must see the files at the same paths either way (shared storage).

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
from spermlib.fileio import atomic_path
from spermlib.inference.predict import Prediction

TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
# Images per actor call: four of the predictor's batches of 64, so that each call's fixed cost (scheduling,
# moving the block and its rows through the object store) is spread over more images.
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
    """``frame`` as ``out`` (Parquet or CSV by its extension), atomically: a failure leaves the old file whole."""
    out = Path(out)
    fmt = table_format(out)
    with atomic_path(out) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, lineterminator="\n")
    return out


class PredictBatch:
    """Ray Data callable class: one ``Predictor`` per actor, loaded in ``__init__``, reused for every batch.

    A batch holds ``path`` (absolute, what the actor opens) and ``name`` (what the user gave: the row's path).
    """

    def __init__(self, spec: DatasetSpec, arch: str, folds: list[int] | None, checkpoints_dir: str,
                 device: str | None, threads: int, tta: bool = False):
        import torch

        from spermlib.allocator import tune_malloc
        from spermlib.inference.predict import Predictor

        tune_malloc()  # as the CLI does (the job's runtime env sets it at process start too: cluster.MALLOC_ENV)
        self.threads = max(1, threads)
        torch.set_num_threads(self.threads)
        self.predictor = Predictor.from_checkpoints(spec, arch=arch, folds=folds,
                                                    checkpoints_dir=Path(checkpoints_dir), device=device, tta=tta)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import torch

        # Ray Data calls this on another thread than __init__, and OpenMP's thread count is per calling thread
        # (it falls back to the OMP_NUM_THREADS=1 Ray gives a one-CPU actor): set it where the forward runs.
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        preds = self.predictor.predict_sources(list(batch["path"]), list(batch["name"]), keep_inputs=False)
        return rows_frame([prediction_row(p) for p in preds])


def actor_pool(ray, actors: int | None = None) -> tuple[int, dict, int]:
    """(number of actors, Ray resources of each, torch threads of each).

    With GPUs: one actor per GPU (one CPU slot for reading and decoding). Without: one actor per two
    cores, each reserving the two CPU slots its two torch threads keep busy (fewer, wider actors load the
    ensemble fewer times; a forward's two threads use two cores well at these sizes).
    """
    res = ray.cluster_resources()
    if res.get("GPU", 0) >= 1:
        return actors or int(res["GPU"]), {"num_gpus": 1, "num_cpus": 1}, 1
    cpus = max(1, int(res.get("CPU", 1)))
    n = actors or max(1, cpus // 2)
    widest = max((int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")), default=1)
    threads = max(1, min(cpus // n, widest))  # an actor lives on one node: never ask for more than one has
    return n, {"num_cpus": threads}, threads


def predict_on_ray(paths: Sequence[str], spec: DatasetSpec, arch: str, checkpoints_dir: str | Path,
                   folds: list[int] | None = None, address: str | None = None, actors: int | None = None,
                   batch_size: int = RAY_BATCH, progress: bool = False, tta: bool = False) -> pd.DataFrame:
    """One row per path (``Prediction.to_dict`` columns, nested values as JSON), classified on Ray (``tta``:
    with test-time augmentation, as ``Predictor.tta``)."""
    ray = connect(address)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    paths = [str(p) for p in paths]
    if not paths:
        return rows_frame([])
    n_actors, resources, threads = actor_pool(ray, actors)
    device = "cuda" if resources.get("num_gpus") else "cpu"
    # Absolute paths: an actor's working directory is not the driver's. Repeats are kept (one row each).
    items = [{"path": os.path.abspath(p), "name": p} for p in paths]
    blocks = -(-len(items) // batch_size)
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    out = ds.map_batches(PredictBatch, batch_size=batch_size, batch_format="pandas",
                         compute=ray.data.ActorPoolStrategy(size=min(n_actors, blocks)),
                         fn_constructor_kwargs={"spec": spec, "arch": arch, "folds": folds,
                                                "checkpoints_dir": str(checkpoints_dir), "device": device,
                                                "threads": threads, "tta": tta},
                         **resources)
    rows = []
    for batch in out.iter_batches(batch_format="pandas", batch_size=None):
        rows.extend(batch.to_dict("records"))
    return rows_frame(rows)
