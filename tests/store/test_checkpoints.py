"""Checkpoints are safetensors + a JSON card; reload is bit-identical; anything else is refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from spermlib.models import build_model
from spermlib.store.cards import file_sha256
from spermlib.store.checkpoints import CheckpointError, load_checkpoint, round_to_fp16_, save_checkpoint


def _card(arch, backbone, n=3):
    return {"arch": arch, "backbone": backbone, "classes": [f"c{i}" for i in range(n)], "input_size": 64,
            "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "toy", "fold": 0}


def _vouching_card(weights):
    """A valid card that vouches for ``weights`` whatever they hold (what reaches the safetensors reader)."""
    card = {**_card("simplecnn", "simplecnn"), "weights_sha256": file_sha256(weights)}
    weights.with_suffix(".json").write_text(json.dumps(card))


@pytest.mark.parametrize("arch", ["simplecnn", "effnet", "effnet_cbam"])
def test_roundtrip_bit_identical(tmp_path, arch):
    torch.manual_seed(0)
    backbone = "simplecnn" if arch == "simplecnn" else "tf_efficientnet_lite0"
    m = build_model(arch, 3, backbone).eval()
    # Perturb BN statistics so the test also covers buffers, not only parameters.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
    round_to_fp16_(m)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = m(x)
    path = save_checkpoint(m, _card(arch, backbone), tmp_path / "fold0.safetensors")
    m2, card = load_checkpoint(path)
    with torch.no_grad():
        after = m2(x)
    assert torch.equal(before, after)
    assert card["arch"] == arch and len(card["weights_sha256"]) == 64
    assert path.stat().st_size < 20e6  # fp16


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/spermlib_pwned_marker",))


def test_pickle_posing_as_checkpoint_is_refused(tmp_path):
    import os

    marker = "/tmp/spermlib_pwned_marker"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "fold0.safetensors"
    path.write_bytes(pickle.dumps({"state": _Evil()}))
    _vouching_card(path)
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(path)
    assert not os.path.exists(marker)


def test_torch_save_file_refused(tmp_path):
    m = build_model("simplecnn", 3)
    path = tmp_path / "fold0.safetensors"
    torch.save(m.state_dict(), path)
    _vouching_card(path)
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(path)


def test_card_must_fit_weights(tmp_path):
    m = build_model("simplecnn", 3)
    path = save_checkpoint(m, _card("simplecnn", "simplecnn"), tmp_path / "fold0.safetensors")
    card = json.loads((tmp_path / "fold0.json").read_text())
    card["classes"] = ["a", "b", "c", "d"]  # 4 classes, weights have 3
    (tmp_path / "fold0.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="classes must name one class per output of the weights' head"):
        load_checkpoint(path)


def test_tampered_weights_detected(tmp_path):
    path = save_checkpoint(build_model("simplecnn", 3), _card("simplecnn", "simplecnn"), tmp_path / "f.safetensors")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_missing_card_and_unknown_arch(tmp_path):
    path = save_checkpoint(build_model("simplecnn", 3), _card("simplecnn", "simplecnn"), tmp_path / "f.safetensors")
    card = json.loads((tmp_path / "f.json").read_text())
    (tmp_path / "f.json").write_text(json.dumps({**card, "arch": "vit"}))
    with pytest.raises(CheckpointError, match="arch must be one of simplecnn, effnet, effnet_cbam"):
        load_checkpoint(path)
    (tmp_path / "f.json").unlink()
    with pytest.raises(CheckpointError, match="card"):
        load_checkpoint(path)


def test_shipped_checkpoints_are_compact_fp16_weights_only():
    """The committed fold checkpoints: fp16 floats, no optimizer/EMA/resume state, ≤ 160 MiB together."""
    from safetensors import safe_open

    from spermlib.data.datasets import PROJECT_ROOT

    files = sorted((PROJECT_ROOT / "checkpoints").glob("*/*/fold*.safetensors"))
    if not files:
        pytest.skip("no shipped checkpoints in this checkout")
    assert sum(f.stat().st_size for f in files) <= 160 * 2**20
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            keys = list(st.keys())
            assert not [k for k in keys if k.split(".")[0] in ("opt", "best", "ema", "model")], f
            floats = {str(st.get_slice(k).get_dtype()) for k in keys} - {"I64", "I32"}
            assert floats == {"F16"}, (f, floats)
