"""Ray: archive prediction on Ray Data equals the local path, and a sweep on Ray Tune, on a two-node local cluster.

The cluster is ``ray.cluster_utils.Cluster`` with two nodes of one CPU each, so the whole module runs on a
2-core machine in about a minute.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from spermlib.cli import main
from spermlib.cluster import require_ray, runtime_env
from spermlib.data.datasets import folder_dataset
from spermlib.data.splits import assign_folds, hash_images, write_manifest
from spermlib.errors import SpermlibError
from spermlib.inference.distributed import predict_on_ray, prediction_row, rows_frame, write_table
from spermlib.inference.predict import Prediction, Predictor
from spermlib.store.cards import checkpoint_path, read_card
from spermlib.training.sweep import NESTED, SweepJob, grid, run_sweep
from tests.model_fixtures import TOY, toy_folder


def test_without_ray_the_message_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(SpermlibError, match=r"needs Ray.*\.\[scale\]"):
        require_ray()


def _inputs(toy_checkpoints: dict, tmp_path: Path) -> list[str]:
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"plain text")
    images = sorted(str(p) for p in Path(toy_checkpoints["data_root"]).rglob("*.png"))
    return [*images[::3], str(bad), str(tmp_path / "missing.png")]


def test_table_file_has_the_json_rows_columns(toy_checkpoints: dict, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    rows = [prediction_row(p) for p in (Prediction(path="a.png", error="a.png: no such file"),)]
    for name in ("p.parquet", "p.csv"):
        frame = pd.read_parquet(write_table(rows_frame(rows), tmp_path / name)) if name.endswith("parquet") else \
            pd.read_csv(write_table(rows_frame(rows), tmp_path / name))
        assert list(frame.columns) == list(Prediction(path="").to_dict())
    data = str(toy_checkpoints["data_root"])
    assert main(["predict", data, "--dataset", "hushem", "--out", str(tmp_path / "p.txt")]) == 2
    assert ".parquet or .csv" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_nodes():
    """A local Ray cluster of two nodes (one CPU each), connected for this module only."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env=runtime_env(), log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_ray_predictions_equal_the_local_path(two_nodes, toy_checkpoints: dict, tmp_path: Path) -> None:
    paths = _inputs(toy_checkpoints, tmp_path)
    local = Predictor.from_checkpoints(TOY, "simplecnn", checkpoints_dir=toy_checkpoints["checkpoints"])
    expected = rows_frame([prediction_row(p) for p in local.predict_files(paths)]).set_index("path")
    got = predict_on_ray(paths, TOY, "simplecnn", toy_checkpoints["checkpoints"], batch_size=4)
    assert list(got.columns) == list(expected.reset_index().columns)
    got = got.set_index("path").loc[expected.index]  # Ray's row order is not the input order
    assert got["label"].tolist() == expected["label"].tolist()
    assert got["error"].tolist() == expected["error"].tolist()
    assert got["error"].notna().sum() == 2 and "no such file" in got.loc[paths[-1], "error"]
    for path in expected.index[expected["error"].isna()]:
        ours, theirs = json.loads(got.loc[path, "probabilities"]), json.loads(expected.loc[path, "probabilities"])
        assert ours.keys() == theirs.keys()
        assert all(abs(ours[c] - theirs[c]) < 1e-6 for c in ours), path


def test_sweep_on_two_nodes_selects_per_fold_on_inner_validation(two_nodes, tmp_path: Path) -> None:
    root = tmp_path / "Shapes"
    toy_folder(root, n_per_class=10, seed=4)
    spec = folder_dataset(root)
    manifest = tmp_path / "shapes.csv"
    write_manifest(assign_folds(hash_images(spec, root)), manifest)
    job = SweepJob(spec=spec, arch="simplecnn", root=str(root), out=str(tmp_path / "sweep"), splits=str(manifest),
                   configs=grid({"lr": [3e-3, 1e-5], "epochs": [3], "input_size": [32], "batch_size": [8],
                                 "warmup_epochs": [0], "precision": ["fp32"]}), folds=[0, 1])
    summary = run_sweep(job, cpus_per_trial=1, grace_epochs=1)
    assert summary["errors"] == {}
    for k in (0, 1):
        scores, winner = summary["per_fold"][k]["scores"], summary["per_fold"][k]["winner"]
        assert winner == max(scores, key=lambda n: (scores[n]["macro_f1"], -scores[n]["nll"]))
        shipped = read_card(checkpoint_path(spec, "simplecnn", k, Path(job.out) / winner))
        nested = read_card(checkpoint_path(spec, "simplecnn", k, Path(job.out) / NESTED))
        assert nested["inner_val"] == shipped["inner_val"] == scores[winner] and nested["fold"] == k
        assert shipped["recipe"]["lr"] == job.configs[winner]["lr"]


def test_actor_forward_runs_with_the_actor_s_torch_threads(toy_checkpoints: dict, monkeypatch) -> None:
    """Ray Data calls an actor on another thread than its constructor, and OpenMP's thread count is per
    calling thread: the forward must still run with the threads the pool gave the actor (it once ran on one)."""
    import threading

    import torch

    from spermlib.inference.distributed import PredictBatch

    actor = PredictBatch(TOY, "simplecnn", [0], str(toy_checkpoints["checkpoints"]), "cpu", threads=1)
    seen = []
    real = actor.predictor.predict_sources
    monkeypatch.setattr(actor.predictor, "predict_sources",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    image = next(Path(toy_checkpoints["data_root"]).rglob("*.png"))
    batch = pd.DataFrame({"path": [str(image)], "name": [image.name]})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # what a fresh calling thread would use, not the actor's one thread
        worker = threading.Thread(target=actor, args=(batch,))
        worker.start()
        worker.join()
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
