"""Checkpoint cards are checked against their schema wherever they are read for use: every shipped card passes
unchanged, and each edit an attacker or a careless user might make ends in one error naming the card and the
field (the CLI: exit 2, one ``error:`` line), never a traceback and never a silently changed prediction."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from spermlib.cli import main
from spermlib.data.datasets import PROJECT_ROOT, SAMPLE_DATA_ROOT, get_dataset
from spermlib.inference.predict import Predictor
from spermlib.store.card_schema import MAX_CARD_BYTES, MAX_CARD_DEPTH, CheckpointCard, read_card_file
from spermlib.store.cards import CheckpointError, checkpoint_path, read_card, set_card_field
from spermlib.store.checkpoints import load_checkpoint, save_checkpoint
from tests.test_cli import one_error_line

SHIPPED = PROJECT_ROOT / "checkpoints"
SHIPPED_CARDS = sorted(SHIPPED.glob("*/*/fold*.json"))
HUSHEM = get_dataset("hushem")
IMAGE = str(sorted((SAMPLE_DATA_ROOT / "HuSHeM" / "01_Normal").iterdir())[0])


@pytest.mark.skipif(not SHIPPED_CARDS, reason="no shipped checkpoints in this checkout")
def test_every_shipped_card_passes_unchanged_and_loads_its_weights():
    for card_file in SHIPPED_CARDS:
        text = card_file.read_text()
        assert read_card(card_file) == json.loads(text), card_file  # returned as written: nothing coerced
        _, card = load_checkpoint(card_file.with_suffix(".safetensors"))  # head, backbone and sha256 checked
        assert card["fold"] == int(card_file.stem[4:]) and card_file.read_text() == text


def _copy_fold(tmp_path: Path, arch: str = "simplecnn", fold: int = 0) -> tuple[Path, Path]:
    """One shipped fold checkpoint copied to ``tmp_path/ck``: (checkpoints dir, its card file)."""
    ck = tmp_path / "ck"
    weights = checkpoint_path(HUSHEM, arch, fold, ck)
    weights.parent.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(checkpoint_path(HUSHEM, arch, fold, SHIPPED).with_suffix(suffix), weights.with_suffix(suffix))
    return ck, weights.with_suffix(".json")


def _set(key: str, value: object) -> Callable[[dict], dict]:
    return lambda card: {**card, key: value}


def _without(key: str) -> Callable[[dict], dict]:
    return lambda card: {k: v for k, v in card.items() if k != key}


# (edit of a shipped card, the field the error must name): each case the review reproduced.
EDITS = {
    "decision bias [0,0,0,50]": (_set("decision_bias", {"one_view": [0, 0, 0, 50], "tta": [0, 0, 0, 50]}),
                                 "decision_bias"),
    "decision bias a bare list": (_set("decision_bias", [0, 0, 0, 50]), "decision_bias"),
    "decision bias of the wrong length": (_set("decision_bias", {"tta": [0.0, 0.1]}), "decision_bias"),
    "decision bias NaN": (_set("decision_bias", {"tta": [0, float("nan"), 0, 0]}), "decision_bias"),
    "temperature -1": (_set("temperature", -1), "temperature must be a finite number > 0"),
    "temperature infinite": (_set("temperature", float("inf")), "temperature"),
    "std [0,0,0]": (_set("std", [0, 0, 0]), "std"),
    "no weights_sha256": (_without("weights_sha256"), "weights_sha256 is missing"),
    "weights_sha256 not hex": (_set("weights_sha256", "z" * 64), "weights_sha256"),
    "input_size 30000": (_set("input_size", 30000), "input_size"),
    "input_size 'abc'": (_set("input_size", "abc"), "input_size"),
    "input_size 0": (_set("input_size", 0), "input_size"),
    "input_size '224'": (_set("input_size", "224"), "input_size"),
    "one-element mean": (_set("mean", [0.5]), "mean"),
    "non-integer fold": (_set("fold", 0.5), "fold"),
    "another file's fold": (_set("fold", 3), "fold must be this file's fold, 0"),
    "unknown arch": (_set("arch", "vit"), "arch"),
    "one class": (_set("classes", ["01_Normal"]), "classes"),
    "classes that do not fit the head": (_set("classes", ["a", "b", "c", "d", "e"]), "classes must name one class "
                                                                                     "per output of the weights' head"),
    "no classes": (_without("classes"), "classes is missing"),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_an_edited_card_is_one_error_line_from_predict(tmp_path, capsys, edit):
    change, words = edit
    ck, card_file = _copy_fold(tmp_path)
    argv = ["predict", IMAGE, "--dataset", "hushem", "--arch", "simplecnn", "--fold", "0", "--json",
            "--checkpoints", str(ck)]
    assert main(argv) == 0  # the card as shipped classifies: the refusal below is the edit's doing
    capsys.readouterr()
    card_file.write_text(json.dumps(change(json.loads(card_file.read_text()))))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing classified with the edited card
    one_error_line(err, str(card_file), words)


def test_an_unknown_backbone_is_one_error_naming_the_card(tmp_path, capsys):
    ck, card_file = _copy_fold(tmp_path, "effnet")
    card_file.write_text(json.dumps({**json.loads(card_file.read_text()), "backbone": "no_such_backbone"}))
    assert main(["predict", IMAGE, "--dataset", "hushem", "--arch", "effnet", "--fold", "0", "--checkpoints",
                 str(ck)]) == 2
    one_error_line(capsys.readouterr().err, str(card_file), "backbone must name a backbone the model factory knows",
                   '"no_such_backbone"')


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a": ' * (MAX_CARD_DEPTH + 1) + "1" +
                                  "}" * (MAX_CARD_DEPTH + 1)], ids=["past the parser's limit", "past the card's"])
def test_deeply_nested_json_is_one_error_not_a_recursion_error(tmp_path, text):
    ck, card_file = _copy_fold(tmp_path)
    card_file.write_text(text)
    with pytest.raises(CheckpointError, match=rf"{card_file}.* nested too deeply"):
        Predictor.from_checkpoints(HUSHEM, "simplecnn", folds=[0], checkpoints_dir=ck, device="cpu")


def test_deep_history_inside_a_valid_card_is_refused_too(tmp_path):
    ck, card_file = _copy_fold(tmp_path)
    nested: object = 1
    for _ in range(MAX_CARD_DEPTH):
        nested = {"x": nested}
    card_file.write_text(json.dumps({**json.loads(card_file.read_text()), "history": nested}))
    with pytest.raises(CheckpointError, match="nested too deeply"):
        read_card(card_file)


def test_a_huge_card_is_refused_before_it_is_parsed(tmp_path):
    ck, card_file = _copy_fold(tmp_path)
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "notes": "x" * MAX_CARD_BYTES}))
    with pytest.raises(CheckpointError, match="too large for a checkpoint card"):
        read_card_file(card_file)


def test_another_folds_weights_under_this_folds_name_are_refused(tmp_path):
    ck, card_file = _copy_fold(tmp_path)
    weights = card_file.with_suffix(".safetensors")
    shutil.copy(checkpoint_path(HUSHEM, "simplecnn", 1, SHIPPED), weights)
    with pytest.raises(CheckpointError, match="does not match the weights_sha256"):
        load_checkpoint(weights)


def test_a_valid_card_is_read_exactly_as_written(tmp_path):
    ck, card_file = _copy_fold(tmp_path)
    card = {**json.loads(card_file.read_text()), "temperature": 2, "decision_bias": {"tta": [0, 1, -1, 0.5]},
            "notes": {"free": ["text", 1]}}
    card_file.write_text(json.dumps(card))
    assert read_card(card_file) == card
    assert isinstance(read_card(card_file)["temperature"], int)  # not silently turned into 2.0


def test_set_card_field_refuses_a_value_the_schema_refuses_and_keeps_the_card(tmp_path):
    ck, card_file = _copy_fold(tmp_path)
    before = card_file.read_bytes()
    weights = card_file.with_suffix(".safetensors")
    for key, value in (("temperature", -1.0), ("decision_bias", {"one_view": [0, 0, 0, 50]})):
        with pytest.raises(CheckpointError, match=key):
            set_card_field(weights, key, value)
        assert card_file.read_bytes() == before
    set_card_field(weights, "temperature", 1.5)
    assert read_card(weights)["temperature"] == 1.5


def test_save_checkpoint_refuses_a_bad_card_before_writing_anything(tmp_path):
    model, card = load_checkpoint(checkpoint_path(HUSHEM, "simplecnn", 0, SHIPPED))
    target = tmp_path / "fold0.safetensors"
    with pytest.raises(CheckpointError, match="std"):
        save_checkpoint(model, {**card, "std": [0, 0, 0]}, target)
    with pytest.raises(CheckpointError, match="fold must be this file's fold, 0"):
        save_checkpoint(model, {**card, "fold": 2}, target)
    assert list(tmp_path.iterdir()) == []


def test_the_schema_lists_what_a_card_cannot_be_without():
    required = {name for name, info in CheckpointCard.model_fields.items() if info.is_required()}
    assert required == {"arch", "backbone", "classes", "input_size", "mean", "std", "dataset", "fold",
                        "weights_sha256"}
