"""The lever-5 shipping rule as tools.lever5_choice applies it to a recorded tune comparison."""
import json

from tools import lever5_choice


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
