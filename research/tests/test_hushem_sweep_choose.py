"""The HuSHeM recipe sweep's nested per-fold choice: inner validation only, ties by NLL, then the incumbent."""

import json
from pathlib import Path

from research.hushem_sweep.choose import choose


def _write(probs: Path, name: str, arch: str, fold: int, val_p: list[list[float]], val_y: list[int]) -> None:
    f = probs / f"{name}.{arch}.json"
    d = json.loads(f.read_text()) if f.exists() else {}
    # test-fold probabilities are present in real files and must not matter: make them contradict inner-val
    d[str(fold)] = {"val_p": val_p, "val_y": val_y, "test_p": [[0.0, 1.0]], "test_y": [0]}
    f.write_text(json.dumps(d))


def test_more_accurate_on_inner_validation_wins(tmp_path: Path) -> None:
    _write(tmp_path, "cbam_l0_h", "effnet_cbam", 0, [[0.9, 0.1], [0.9, 0.1]], [0, 1])  # 1 of 2
    _write(tmp_path, "cbam_l2_h", "effnet_cbam", 0, [[0.9, 0.1], [0.2, 0.8]], [0, 1])  # 2 of 2
    chosen = choose(tmp_path)
    assert chosen["effnet_cbam"][0]["candidate"] == "cbam_l2_h"
    assert chosen["effnet_cbam"][0]["inner_val_accuracy"] == 1.0
    assert chosen["effnet"] == {}


def test_tie_goes_to_lower_nll_then_to_the_incumbent(tmp_path: Path) -> None:
    _write(tmp_path, "eff_l0_h", "effnet", 1, [[0.6, 0.4]], [0])
    _write(tmp_path, "eff_l1_h", "effnet", 1, [[0.9, 0.1]], [0])  # same accuracy, lower NLL
    _write(tmp_path, "eff_l0_h", "effnet", 2, [[0.9, 0.1]], [0])
    _write(tmp_path, "eff_l2_h", "effnet", 2, [[0.9, 0.1]], [0])  # exact tie: the incumbent (l0) stays
    chosen = choose(tmp_path)["effnet"]
    assert chosen[1]["candidate"] == "eff_l1_h"
    assert chosen[2]["candidate"] == "eff_l0_h"
    assert set(chosen[2]["considered"]) == {"eff_l0_h", "eff_l2_h"}
