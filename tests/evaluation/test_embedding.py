"""Embedding map: penultimate features of one fold model, PCA to 2-D, held-out marking, selection."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from spermlib.data.preprocess import load_uint8_batch
from spermlib.evaluation.embedding import (
    EXCLUDED,
    HELD_OUT,
    TRAINING,
    UNKNOWN,
    embed,
    embedding_map,
    pca_2d,
    selected_paths,
    split_of,
)
from spermlib.inference.predict import Predictor
from spermlib.store.checkpoints import CheckpointError
from tests.model_fixtures import FOLD_CLASS, TOY, toy_checkpoints  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def predictor(toy_checkpoints):  # noqa: F811
    return Predictor.from_checkpoints(TOY, arch="simplecnn", checkpoints_dir=toy_checkpoints["checkpoints"])


@pytest.fixture(scope="module")
def toy_paths(toy_checkpoints):  # noqa: F811
    return list(pd.read_csv(toy_checkpoints["manifest"])["path"])


def test_features_are_the_pooled_pre_logits_and_probabilities_match_the_model(predictor, toy_checkpoints,  # noqa: F811
                                                                                toy_paths):
    root = toy_checkpoints["data_root"]
    feats, probs, errors, stats = embed(predictor, 1, root, toy_paths, batch_size=7)
    assert errors == {}
    model = predictor.models[1]
    assert feats.shape == (30, model.num_features) and feats.dtype == np.float32
    assert stats.shape[0] == 30 and stats.shape[1] > 0 and stats.dtype == np.float32  # for the domain detector
    # The fold-1 model's own pre-logits and softmax at the predictor's precision (a direct forward).
    u8 = load_uint8_batch(root, toy_paths, predictor.input_size)
    x = predictor.model_input(u8)
    with torch.inference_mode(), predictor.precision.autocast(predictor.device):
        pre = model.forward_head(model.forward_features(x), pre_logits=True).float()
        direct = torch.softmax(model(x).float(), 1)
    np.testing.assert_allclose(feats, pre, atol=1e-4)
    np.testing.assert_allclose(probs, direct, atol=1e-4)
    np.testing.assert_allclose(probs, predictor.fold_probabilities(u8)[predictor.folds.index(1)], atol=1e-4)
    # Different fold models give different features (not the same network twice).
    assert not np.allclose(embed(predictor, 0, root, toy_paths[:5])[0], feats[:5])


def test_each_fold_embeds_with_its_own_model(biased_checkpoints, toy_paths):
    both = Predictor.from_checkpoints(TOY, arch="simplecnn", checkpoints_dir=biased_checkpoints["checkpoints"])
    for fold, label in FOLD_CLASS.items():
        probs = embed(both, fold, biased_checkpoints["data_root"], toy_paths[:6])[1]
        assert set(probs.argmax(1)) == {TOY.class_dirs.index(label)}
    with pytest.raises(CheckpointError, match="not loaded"):
        embed(both, 7, biased_checkpoints["data_root"], toy_paths[:2])


def test_embedding_is_deterministic_and_batch_size_independent(predictor, toy_checkpoints, toy_paths):  # noqa: F811
    root = toy_checkpoints["data_root"]
    a = embed(predictor, 0, root, toy_paths, batch_size=32)[0]
    b = embed(predictor, 0, root, toy_paths, batch_size=5)[0]
    np.testing.assert_allclose(a, b, atol=1e-5)
    c1, r1 = pca_2d(a)
    c2, r2 = pca_2d(a.copy())
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(r1, r2)


def test_pca_2d_projects_onto_the_top_two_components():
    rng = np.random.default_rng(0)
    # 3 informative directions with decreasing spread, plus noise, in 16-D.
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0][:, :3]
    feats = (rng.normal(size=(200, 3)) * [10.0, 4.0, 1.0]) @ basis.T + rng.normal(scale=0.05, size=(200, 16))
    coords, ratio = pca_2d(feats)
    assert coords.shape == (200, 2) and ratio.shape == (2,)
    assert ratio[0] > ratio[1] > 0 and ratio.sum() < 1
    np.testing.assert_allclose(coords.std(0) / coords.std(0)[0], [1.0, 0.4], atol=0.05)
    np.testing.assert_allclose(coords.mean(0), 0, atol=1e-4)
    assert pca_2d(feats[:1])[0].shape == (1, 2)  # one image: nothing to project, still well-formed


def test_map_marks_what_the_fold_model_saw(predictor, toy_checkpoints):  # noqa: F811
    m = embedding_map(predictor, TOY, toy_checkpoints["data_root"], 0, splits_path=toy_checkpoints["manifest"])
    manifest = pd.read_csv(toy_checkpoints["manifest"]).set_index("path")
    assert len(m.frame) == len(manifest) and m.errors == {} and m.warnings == []
    held = m.frame.set_index("path")["split"] == HELD_OUT
    assert held.to_dict() == (manifest["fold"] == 0).to_dict()
    assert set(m.frame["split"]) == {HELD_OUT, TRAINING}
    assert m.frame[["x", "y"]].notna().all().all() and m.explained.shape == (2,)
    assert set(m.frame["pred"]) <= set(TOY.display_names) and m.frame["true"].isin(TOY.display_names).all()


def test_a_broken_image_is_reported_and_the_rest_still_mapped(predictor, toy_checkpoints, tmp_path):  # noqa: F811
    root = tmp_path / "data"
    shutil.copytree(toy_checkpoints["data_root"], root)
    manifest = pd.read_csv(toy_checkpoints["manifest"])
    broken = manifest["path"].iloc[3]
    (root / broken).write_bytes(b"not an image")
    m = embedding_map(predictor, TOY, root, 1, splits_path=toy_checkpoints["manifest"])
    assert list(m.errors) == [broken] and "not a recognised image" in m.errors[broken]
    assert len(m.frame) == len(manifest) - 1 and broken not in set(m.frame["path"])


def test_images_outside_the_manifest_get_an_unknown_split(predictor, toy_checkpoints, tmp_path):  # noqa: F811
    root = tmp_path / "data"
    shutil.copytree(toy_checkpoints["data_root"], root)
    shutil.copy(root / "disc" / "disc_000.png", root / "disc" / "extra.png")
    m = embedding_map(predictor, TOY, root, 0, splits_path=toy_checkpoints["manifest"])
    assert set(m.frame["split"]) == {UNKNOWN} and "unknown" in m.warnings[0].lower()
    assert len(m.frame) == 31


def test_split_of_and_selected_paths():
    folds = pd.Series([0, 1, -1, -2, 2])
    assert split_of(folds, 1).tolist() == [TRAINING, HELD_OUT, EXCLUDED, UNKNOWN, TRAINING]
    frame = pd.DataFrame({"path": ["a", "b", "c"]})
    points = [{"customdata": ["c"], "x": 1}, {"customdata": ["a"]}, {"customdata": ["zz"]}, {"x": 2}]
    assert selected_paths(points, frame) == ["a", "c"]  # frame order, unknown dropped
    assert selected_paths([], frame) == []


# --- the disk cache (spermlib.store.embeddings) -----------------------------------------------------


def _counting_embed(monkeypatch) -> list[int]:
    """Patch the embedding pass to count its calls (the cache must spare it on a hit)."""
    import spermlib.evaluation.embedding as module

    calls, real = [], module.embed
    monkeypatch.setattr(module, "embed", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_cache_hit_gives_the_same_map_without_embedding(predictor, toy_checkpoints, tmp_path, monkeypatch):  # noqa: F811
    calls = _counting_embed(monkeypatch)
    args = (predictor, TOY, toy_checkpoints["data_root"], 1)
    first = embedding_map(*args, splits_path=toy_checkpoints["manifest"], cache_dir=tmp_path)
    second = embedding_map(*args, splits_path=toy_checkpoints["manifest"], cache_dir=tmp_path)
    assert len(calls) == 1 and first.note is None and second.note is None
    pd.testing.assert_frame_equal(first.frame, second.frame)
    np.testing.assert_allclose(first.explained, second.explained)
    assert len(list(tmp_path.rglob("fold1-*.safetensors"))) == len(list(tmp_path.rglob("fold1-*.json"))) == 1
    uncached = embedding_map(*args, splits_path=toy_checkpoints["manifest"])  # no cache_dir: always computed
    pd.testing.assert_frame_equal(uncached.frame, first.frame)
    assert len(calls) == 2


def test_cache_misses_when_the_checkpoint_or_an_image_changes(predictor, toy_checkpoints, tmp_path,  # noqa: F811
                                                              monkeypatch):
    calls = _counting_embed(monkeypatch)
    root = tmp_path / "data"
    shutil.copytree(toy_checkpoints["data_root"], root)
    run = lambda: embedding_map(predictor, TOY, root, 0, splits_path=toy_checkpoints["manifest"],  # noqa: E731
                                cache_dir=tmp_path / "cache")
    run()
    run()
    assert len(calls) == 1
    monkeypatch.setitem(predictor.cards[predictor.folds.index(0)], "weights_sha256", "0" * 64)  # a retrained fold
    run()
    assert len(calls) == 2
    image = root / pd.read_csv(toy_checkpoints["manifest"])["path"].iloc[0]
    image.write_bytes(image.read_bytes())  # same pixels, new modification time: the data may have changed
    run()
    run()
    assert len(calls) == 3


def test_a_corrupt_cache_entry_is_recomputed_with_a_message(predictor, toy_checkpoints, tmp_path, monkeypatch):  # noqa: F811
    calls = _counting_embed(monkeypatch)
    args = (predictor, TOY, toy_checkpoints["data_root"], 0)
    good = embedding_map(*args, splits_path=toy_checkpoints["manifest"], cache_dir=tmp_path)
    (entry,) = tmp_path.rglob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    again = embedding_map(*args, splits_path=toy_checkpoints["manifest"], cache_dir=tmp_path)
    assert len(calls) == 2 and again.note and "unreadable" in again.note and "again" in again.note
    pd.testing.assert_frame_equal(again.frame, good.frame)
    repaired = embedding_map(*args, splits_path=toy_checkpoints["manifest"], cache_dir=tmp_path)
    assert len(calls) == 2 and repaired.note is None  # the recomputed entry was written back

    entry.with_suffix(".json").write_text("{not json")
    assert "unreadable" in embedding_map(*args, splits_path=toy_checkpoints["manifest"], cache_dir=tmp_path).note


def test_an_unwritable_cache_folder_costs_only_the_cache(predictor, toy_checkpoints, tmp_path):  # noqa: F811
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    m = embedding_map(predictor, TOY, toy_checkpoints["data_root"], 0, splits_path=toy_checkpoints["manifest"],
                      cache_dir=blocker)
    assert len(m.frame) == 30 and m.note and "Could not save the embedding cache" in m.note


def test_embed_command_precomputes_what_the_page_reads(tmp_path, monkeypatch, capsys):
    """`spermlib embed` on the bundled HuSHeM sample with the shipped checkpoints: one entry per fold
    model, and a second run reads it (no embedding pass)."""
    from spermlib.cli import main
    from spermlib.data.datasets import DATA_DIR_ENV, get_dataset
    from spermlib.store.checkpoints import available_folds

    if not available_folds(get_dataset("hushem"), "effnet_cbam"):
        pytest.skip("no shipped hushem/effnet_cbam checkpoints")
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)  # the bundled sample
    assert main(["embed", "--dataset", "hushem", "--fold", "1", "--out", str(tmp_path)]) == 0
    (entry,) = tmp_path.glob("hushem/effnet_cbam/fold1-*.safetensors")
    assert entry.with_suffix(".json").is_file() and "images mapped" in capsys.readouterr().err
    calls = _counting_embed(monkeypatch)
    assert main(["embed", "--dataset", "hushem", "--fold", "1", "--out", str(tmp_path)]) == 0
    assert calls == [] and list(tmp_path.rglob("*.safetensors")) == [entry]
