"""The lever-5 shipping rule as research.lever5_choice applies it to a recorded tune comparison."""
import json

import pytest

from research import lever5_choice


def _scores(clean, corrupted):
    return {"n_inner_val": 342, "clean_accuracy": clean, "corrupted_accuracy": corrupted}


def _row(name, per_fold):
    return {"name": name, "inner_val_robustness": {str(k): _scores(*v) for k, v in per_fold.items()}}


def test_the_hardened_model_is_chosen_first_then_it_must_beat_the_shipped_one(tmp_path, capsys):
    comparison = {"baseline": "current", "configs": [
        _row("current", {0: (0.90, 0.88), 1: (0.90, 0.88), 2: (0.90, 0.88)}),
        # fold 0: unhardened wins clean but is less robust, its hardened stage costs three images clean: stays current
        # fold 1: hardened (one image less clean, more robust) beats current on both: ships p20_h4
        # fold 2: hardened rejected (not more robust); unhardened better clean and as robust: ships p20
        _row("p20", {0: (0.93, 0.80), 1: (0.93, 0.80), 2: (0.92, 0.88)}),
        _row("p20_h4", {0: (0.92, 0.90), 1: (0.928, 0.89), 2: (0.95, 0.88)}),
    ]}
    path = tmp_path / "smids" / "tuning.json"
    path.parent.mkdir()
    plain = {"baseline": "current", "configs": [_row("current", {0: (0.90, 0.88)}), _row("p20", {0: (0.93, 0.89)}),
                                                 _row("p20_h4", {0: (0.90, 0.90)})]}
    path.write_text(json.dumps({"dataset": "smids", "archs": {"effnet_cbam": comparison, "effnet": plain}}))
    assert lever5_choice.main([str(path)]) == 0
    assert lever5_choice.main([str(path), "--arch", "effnet"]) == 0
    decision = json.loads(path.with_name("ship_choice_effnet_cbam.json").read_text())["folds"]
    assert {k: (d["m224"], d["ships"]) for k, d in decision.items()} == {
        "0": ("p20", "current"), "1": ("p20_h4", "p20_h4"), "2": ("p20", "p20")}
    # each arch keeps its own decision (plain fold 0: hardened 3 images fewer clean, so p20; better on both: ships)
    plain_decision = json.loads(path.with_name("ship_choice_effnet.json").read_text())["folds"]
    assert {k: (d["m224"], d["ships"]) for k, d in plain_decision.items()} == {"0": ("p20", "p20")}
    assert "fold 1:" in capsys.readouterr().out


def test_apply_copies_the_shipping_candidates_fold_from_its_run_folder(tmp_path, monkeypatch):
    shipped = tmp_path / "checkpoints" / "smids" / "effnet_cbam"
    shipped.mkdir(parents=True)
    for name in ("current", "p20", "p20_h4"):
        folder = tmp_path / name / "smids" / "effnet_cbam" if name != "current" else shipped
        folder.mkdir(parents=True, exist_ok=True)
        for k in (0, 1):
            (folder / f"fold{k}.safetensors").write_text(name)
            (folder / f"fold{k}.json").write_text(name)
    comparison = {"baseline": "current", "configs": [  # fold 0 stays, fold 1 takes the hardened model
        _row("current", {0: (0.90, 0.88), 1: (0.90, 0.88)}), _row("p20", {0: (0.90, 0.80), 1: (0.93, 0.80)}),
        _row("p20_h4", {0: (0.85, 0.90), 1: (0.928, 0.89)})]}
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"dataset": "smids", "archs": {"effnet_cbam": comparison}}))
    monkeypatch.setenv("SPERMLIB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    with pytest.raises(SystemExit, match="p20_h4"):
        lever5_choice.main([str(path), "--apply", f"--run=p20={tmp_path / 'p20'}"])
    runs = [f"--run=p20={tmp_path / 'p20'}", f"--run=p20_h4={tmp_path / 'p20_h4'}"]
    assert lever5_choice.main([str(path), "--apply", *runs]) == 0
    assert [(shipped / f"fold{k}.safetensors").read_text() for k in (0, 1)] == ["current", "p20_h4"]
    assert (shipped / "fold1.json").read_text() == "p20_h4"
