"""Training: every arch trains, the warm-up stage really freezes, runs are deterministic and resumable."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from spermlib.store.checkpoints import load_checkpoint
from spermlib.training.train import FoldData, Recipe, augment, lr_factor, train_fold
from tests.model_fixtures import TOY, toy_tensors

TINY = dict(batch_size=8, epochs=2, patience=50, input_size=48)


@pytest.fixture(scope="module")
def tiny_data():
    x, y = toy_tensors(8, seed=5)
    xv, yv = toy_tensors(2, seed=6)
    return FoldData(x, y, xv, yv)


@pytest.mark.parametrize("arch", ["simplecnn", "effnet", "effnet_cbam"])
def test_every_arch_trains_and_writes_a_checkpoint(tmp_path, tiny_data, arch):
    r = Recipe.for_arch(arch, **TINY, warmup_epochs=1)
    card = train_fold(TOY, arch, 0, tiny_data, r, manifest_sha256="abc", backbone="tf_efficientnet_lite0",
                      pretrained="offline" if arch != "simplecnn" else "auto", checkpoints_dir=tmp_path / "ck",
                      runs_dir=tmp_path / "runs", progress=False)
    assert card["arch"] == arch and card["classes"] == list(TOY.class_dirs)
    assert card["epochs_run"] == 2 and card["split_sha256"] == "abc"
    assert 0.0 <= card["inner_val"]["macro_f1"] <= 1.0
    for key in ("backbone", "pretrained_source", "input_size", "mean", "std", "recipe", "training_seconds",
                "git_commit", "history"):
        assert key in card
    if arch != "simplecnn":
        assert "efficientnet-lite0" in card["pretrained_source"]
        assert card["history"][0]["frozen"] and not card["history"][1]["frozen"]
    model, _ = load_checkpoint(tmp_path / "ck" / "toy" / arch / "fold0.safetensors")
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 3)
    assert (tmp_path / "runs" / "toy" / arch / "fold0" / "train.log").read_text().count("epoch") >= 2
    # The resumable state is removed once the fold is finished.
    assert not (tmp_path / "runs" / "toy" / arch / "fold0" / "state.safetensors").exists()


def test_frozen_stage_keeps_backbone_and_bn_stats(tmp_path, tiny_data):
    from spermlib.models import create_model

    r = Recipe.for_arch("effnet_cbam", **{**TINY, "epochs": 2}, warmup_epochs=2)
    train_fold(TOY, "effnet_cbam", 0, tiny_data, r, manifest_sha256="x", backbone="tf_efficientnet_lite0",
               pretrained="offline", checkpoints_dir=tmp_path, runs_dir=tmp_path / "runs", progress=False)
    trained, _ = load_checkpoint(tmp_path / "toy" / "effnet_cbam" / "fold0.safetensors")
    init, _ = create_model("effnet_cbam", 3, backbone="tf_efficientnet_lite0", pretrained="offline")
    t, i = trained.backbone.state_dict(), init.backbone.state_dict()
    for k in t:  # equal up to the fp16 rounding of the shipped weights
        if t[k].is_floating_point():
            torch.testing.assert_close(t[k], i[k].half().float(), rtol=0, atol=0)
    assert not torch.equal(trained.head.fc.weight, init.head.fc.weight.half().float())


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["plain", "ema"])
def test_resume_gives_the_same_weights(tmp_path, tiny_data, ema_decay):
    r = Recipe.for_arch("effnet_cbam", **{**TINY, "epochs": 3}, warmup_epochs=1, mixup_alpha=0.2,
                        ema_decay=ema_decay)
    kw = dict(manifest_sha256="x", backbone="tf_efficientnet_lite0", pretrained="offline", progress=False)
    train_fold(TOY, "effnet_cbam", 0, tiny_data, r, checkpoints_dir=tmp_path / "a", runs_dir=tmp_path / "ra", **kw)
    # Interrupted after the first and again after the second epoch, then resumed.
    for _ in range(2):
        assert train_fold(TOY, "effnet_cbam", 0, tiny_data, r, checkpoints_dir=tmp_path / "b",
                          runs_dir=tmp_path / "rb", max_epochs_this_call=1, **kw) is None
        assert (tmp_path / "rb" / "toy" / "effnet_cbam" / "fold0" / "state.safetensors").exists()
    card = train_fold(TOY, "effnet_cbam", 0, tiny_data, r, checkpoints_dir=tmp_path / "b", runs_dir=tmp_path / "rb",
                      **kw)
    assert card["epochs_run"] == 3
    a = load_file(str(tmp_path / "a" / "toy" / "effnet_cbam" / "fold0.safetensors"))
    b = load_file(str(tmp_path / "b" / "toy" / "effnet_cbam" / "fold0.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "rb" / "toy" / "effnet_cbam" / "fold0" / "train.log").read_text()
    assert "resuming after epoch" in log


def test_ema_weights_are_the_ones_validated_and_shipped(tmp_path, tiny_data):
    kw = dict(manifest_sha256="x", backbone="tf_efficientnet_lite0", pretrained="offline", progress=False)
    cards, weights = {}, {}
    for decay in (0.0, 0.9):
        r = Recipe.for_arch("effnet_cbam", **{**TINY, "epochs": 3}, warmup_epochs=1, ema_decay=decay)
        cards[decay] = train_fold(TOY, "effnet_cbam", 0, tiny_data, r, checkpoints_dir=tmp_path / str(decay),
                                  runs_dir=tmp_path / f"r{decay}", **kw)
        weights[decay] = load_file(str(tmp_path / str(decay) / "toy" / "effnet_cbam" / "fold0.safetensors"))
    assert cards[0.9]["recipe"]["ema_decay"] == 0.9
    # Same seed and batches: only the averaging differs, so the shipped head must differ...
    assert not torch.equal(weights[0.0]["head.fc.weight"], weights[0.9]["head.fc.weight"])
    # ...and the EMA model's first-epoch score differs from the raw model's (the EMA lags behind it).
    assert [h["val_nll"] for h in cards[0.0]["history"]] != [h["val_nll"] for h in cards[0.9]["history"]]


def test_hushem_backbone_recipe_is_the_tuned_one_and_overrides_win():
    tuned = Recipe.for_arch("effnet_cbam", "hushem")
    assert (tuned.batch_size, tuned.epochs, tuned.patience, tuned.input_size) == (16, 100, 100, 224)
    assert (tuned.rotate_deg, tuned.ema_decay) == (180, 0.98)
    assert Recipe.for_arch("effnet", "hushem") == tuned
    scratch = Recipe.for_arch("simplecnn", "hushem")  # trained with the first HuSHeM recipe
    assert (scratch.batch_size, scratch.epochs, scratch.patience, scratch.ema_decay) == (32, 40, 12, 0.0)
    smids = Recipe.for_arch("effnet_cbam", "smids")
    assert (smids.batch_size, smids.epochs, smids.ema_decay, smids.input_size) == (32, 20, 0.0, 0)
    assert Recipe.for_arch("effnet", "hushem", ema_decay=0.0, epochs=None).ema_decay == 0.0


def test_augment_is_deterministic_and_in_range():
    x = torch.rand(4, 3, 32, 32)
    r = Recipe()
    a = augment(x, torch.Generator().manual_seed(1), r)
    b = augment(x, torch.Generator().manual_seed(1), r)
    c = augment(x, torch.Generator().manual_seed(2), r)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_augment_identity_when_disabled_rotations_are_exact():
    # With all continuous jitter off, every output is one of the 8 dihedral images of its input.
    r = Recipe(rotate_deg=0, scale=0, translate=0, color_jitter=0)
    x = torch.rand(6, 3, 16, 16)
    out = augment(x, torch.Generator().manual_seed(0), r)
    for i in range(len(x)):
        views = [torch.rot90(v, k, dims=(-2, -1)) for v in (x[i], x[i].flip(-1)) for k in range(4)]
        assert min(float((out[i] - v).abs().max()) for v in views) < 1e-4


def test_lr_schedule():
    r = Recipe(epochs=10, warmup_epochs=2, lr_warmup_epochs=1, min_lr_ratio=0.1)
    assert lr_factor(0, 10, r, 2) == (1.0, True)
    assert lr_factor(19, 10, r, 2)[1] is True
    f, frozen = lr_factor(25, 10, r, 2)
    assert not frozen and math.isclose(f, 0.5)
    assert math.isclose(lr_factor(30, 10, r, 2)[0], 1.0)
    assert math.isclose(lr_factor(100, 10, r, 2)[0], 0.1)
    assert lr_factor(65, 10, r, 2)[0] < lr_factor(45, 10, r, 2)[0]


# Inner-validation macro-F1 / NLL per epoch, forced. Epoch 2 ties epoch 1 with a lower NLL, so it is the
# best; patience 2 then stops the run before epoch 5, whose 0.9 would otherwise have won.
FORCED_SCORES = [(0.3, 1.0), (0.6, 0.8), (0.6, 0.7), (0.6, 0.9), (0.5, 0.5), (0.9, 0.1), (0.9, 0.1)]


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["plain", "ema"])
def test_early_stopping_ships_the_best_inner_val_epoch(tmp_path, tiny_data, monkeypatch, ema_decay):
    import spermlib.training.train as train_module

    snapshots = []  # the weights inner validation scored, per call

    def forced_evaluate_inner(model, data, settings):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        f1, nll = FORCED_SCORES[len(snapshots) - 1]
        return {"accuracy": f1, "macro_f1": f1, "nll": nll}

    monkeypatch.setattr(train_module, "evaluate_inner", forced_evaluate_inner)
    r = Recipe.for_arch("simplecnn", **{**TINY, "epochs": 7, "patience": 2}, ema_decay=ema_decay)
    kw = dict(manifest_sha256="x", checkpoints_dir=tmp_path, runs_dir=tmp_path / "runs", progress=False)
    # One epoch per call, so that each epoch's saved state can be read (early stopping survives resuming).
    states = []
    while (card := train_fold(TOY, "simplecnn", 0, tiny_data, r, max_epochs_this_call=1, **kw)) is None:
        states.append(load_file(str(tmp_path / "runs" / "toy" / "simplecnn" / "fold0" / "state.safetensors")))
    assert card["stopped_early"] and card["epochs_run"] == 5 and card["best_epoch"] == 3 and len(states) == 5
    assert [h["val_macro_f1"] for h in card["history"]] == [f for f, _ in FORCED_SCORES[:5]]
    assert len(snapshots) == 6  # five epochs, then the shipped weights re-measured
    scored = "ema" if ema_decay else "model"
    for snap, state in zip(snapshots, states, strict=False):  # the EMA weights are the ones validated
        assert all(torch.equal(v, state[f"{scored}.{k}"]) for k, v in snap.items())
        assert torch.equal(snap["classifier.weight"], state["model.classifier.weight"]) is (not ema_decay)
    assert all(torch.equal(states[-1][f"best.{k}"], v) for k, v in snapshots[2].items())
    shipped = load_file(str(tmp_path / "toy" / "simplecnn" / "fold0.safetensors"))
    best, last = snapshots[2], snapshots[4]
    assert all(torch.equal(shipped[k], best[k].to(shipped[k].dtype)) for k in shipped)
    assert not torch.equal(shipped["classifier.weight"], last["classifier.weight"].half())
    assert torch.equal(snapshots[5]["classifier.weight"], best["classifier.weight"].half().float())


def test_state_from_another_configuration_is_not_resumed(tmp_path, tiny_data):
    kw = dict(manifest_sha256="x", runs_dir=tmp_path / "runs", checkpoints_dir=tmp_path, progress=False)
    r = Recipe.for_arch("simplecnn", **{**TINY, "epochs": 3})
    assert train_fold(TOY, "simplecnn", 0, tiny_data, r, max_epochs_this_call=2, **kw) is None
    card = train_fold(TOY, "simplecnn", 0, tiny_data, Recipe.for_arch("simplecnn", **{**TINY, "epochs": 3}, lr=5e-3),
                      **kw)
    assert card["epochs_run"] == 3 and [h["epoch"] for h in card["history"]] == [0, 1, 2]
    log = (tmp_path / "runs" / "toy" / "simplecnn" / "fold0" / "train.log").read_text()
    assert "another configuration; starting afresh" in log and "resuming" not in log


def _record_start_weights(monkeypatch) -> dict:
    """The weights ``train_fold`` starts training from (filled in when its TrainState is built)."""
    from spermlib.training import train as train_module

    started = {}
    real = train_module.TrainState

    def spy(model, *a, **k):
        started.update({n: p.detach().clone() for n, p in model.state_dict().items()})
        return real(model, *a, **k)

    monkeypatch.setattr(train_module, "TrainState", spy)
    return started


def test_init_from_starts_at_the_same_fold_s_weights_and_refuses_another_split(tmp_path, tiny_data, monkeypatch):
    from spermlib.store.checkpoints import CheckpointError

    first = train_fold(TOY, "simplecnn", 1, tiny_data, Recipe.for_arch("simplecnn", **TINY), manifest_sha256="abc",
                       checkpoints_dir=tmp_path / "ck", runs_dir=tmp_path / "runs", progress=False)
    started = _record_start_weights(monkeypatch)
    hardened = Recipe.for_arch("simplecnn", **{**TINY, "epochs": 1}, corrupt_p=1.0)
    card = train_fold(TOY, "simplecnn", 1, tiny_data, hardened, manifest_sha256="abc", init_from=tmp_path / "ck",
                      checkpoints_dir=tmp_path / "ck2", runs_dir=tmp_path / "runs2", progress=False)
    shipped, _ = load_checkpoint(tmp_path / "ck" / "toy" / "simplecnn" / "fold1.safetensors")
    assert all(torch.equal(started[n], v.float()) for n, v in shipped.state_dict().items())
    assert card["init_weights_sha256"] == first["weights_sha256"] and card["recipe"]["corrupt_p"] == 1.0
    assert card["init_from"].endswith("ck")
    # the first stage's cost travels with the model, so results can state what it took in all
    assert card["init_training_seconds"] == first["training_seconds"] and card["init_device"] == first["device"]
    for sha, fold in (("another split", 1), ("abc", 0)):  # other split; a fold the folder lacks
        with pytest.raises(CheckpointError):
            train_fold(TOY, "simplecnn", fold, tiny_data, hardened, manifest_sha256=sha, init_from=tmp_path / "ck",
                       checkpoints_dir=tmp_path / "ck3", runs_dir=tmp_path / "runs3", progress=False)


def test_without_quarter_turns_an_upright_image_stays_upright():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, :4, 6:10] = 1.0  # a bar at the top
    r = Recipe(rotate_deg=0.0, scale=0.0, translate=0.0, color_jitter=0.0, quarter_turns=False)
    out = augment(x.expand(-1, 3, -1, -1).contiguous(), torch.Generator().manual_seed(0), r)
    assert (out[:, 0, :4].sum((1, 2)) > out[:, 0, 12:].sum((1, 2))).all()  # never turned or flipped upside down
    turned = augment(x.expand(-1, 3, -1, -1).contiguous(), torch.Generator().manual_seed(0),
                     Recipe(**{**r.__dict__, "quarter_turns": True}))
    assert not (turned[:, 0, :4].sum((1, 2)) > turned[:, 0, 12:].sum((1, 2))).all()


def test_hardened_augment_corrupts_a_share_of_the_batch():
    x = torch.rand(64, 3, 32, 32)
    plain = Recipe(rotate_deg=0.0, scale=0.0, translate=0.0, color_jitter=0.0)
    same = augment(x, torch.Generator().manual_seed(0), plain)
    hard = augment(x, torch.Generator().manual_seed(0), Recipe(**{**plain.__dict__, "corrupt_p": 0.5}))
    changed = ((hard - same).abs().flatten(1).amax(1) > 2 / 255).float().mean()
    assert 0.25 < changed < 0.75 and hard.min() >= 0 and hard.max() <= 1


def test_transfer_from_another_dataset_copies_backbone_and_cbam_not_the_head(tmp_path, tiny_data, monkeypatch):
    import dataclasses

    from spermlib.store.checkpoints import CheckpointError

    r = Recipe.for_arch("effnet_cbam", **{**TINY, "epochs": 1}, warmup_epochs=1)
    kw = dict(backbone="tf_efficientnet_lite0", pretrained="none", progress=False)
    train_fold(TOY, "effnet_cbam", 0, tiny_data, r, manifest_sha256="abc", checkpoints_dir=tmp_path / "ck",
               runs_dir=tmp_path / "runs", **kw)
    source_path = tmp_path / "ck" / "toy" / "effnet_cbam" / "fold0.safetensors"
    source, source_card = load_checkpoint(source_path)
    other = dataclasses.replace(TOY, name="other")
    started = _record_start_weights(monkeypatch)
    card = train_fold(other, "effnet_cbam", 0, tiny_data, r, manifest_sha256="xyz", transfer_from=source_path,
                      checkpoints_dir=tmp_path / "ck", runs_dir=tmp_path / "runs", **kw)
    for name, value in source.state_dict().items():
        same = torch.equal(started[name].float(), value.float())
        assert same != name.startswith("head."), name  # backbone and CBAM copied, head new
    assert card["transfer_dataset"] == "toy" and card["transfer_weights_sha256"] == source_card["weights_sha256"]
    with pytest.raises(CheckpointError, match="use --init-from"):  # the same dataset: leakage
        train_fold(TOY, "effnet_cbam", 1, tiny_data, r, manifest_sha256="abc", transfer_from=source_path,
                   checkpoints_dir=tmp_path / "ck2", runs_dir=tmp_path / "runs2", **kw)
