"""spermlib.dashboard.provenance: the footer's model versions come from the checkpoint cards."""

from __future__ import annotations

import json

from spermlib import __version__
from spermlib.dashboard.provenance import model_versions, summary
from spermlib.store.cards import checkpoint_path


def _card(root, dataset, arch, fold, commit, created, version="0.1.0"):
    path = checkpoint_path(dataset, arch, fold, root).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    classes = {"smids": ["Normal_Sperm", "Abnormal_Sperm", "Non-Sperm"]}[dataset]
    path.write_text(json.dumps({
        "card_version": 1, "dataset": dataset, "fold": fold, "arch": arch, "backbone": "b", "classes": classes,
        "input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "git_commit": commit, "spermlib_version": version,
        "created": created, "weights_sha256": f"{fold}" * 64}))


def test_versions_per_dataset_and_arch_from_the_cards(tmp_path):
    for fold, commit in enumerate(["abc1234", "abc1234", "def5678"]):
        _card(tmp_path, "smids", "effnet_cbam", fold, commit, f"2026-11-2{5 + fold // 2}T10:00:00Z")
    _card(tmp_path, "smids", "simplecnn", 0, "fff0000", "2026-11-20T01:00:00Z", version="0.0.9")
    versions = model_versions(tmp_path)
    assert [(v.dataset, v.arch) for v in versions] == [("smids", "simplecnn"), ("smids", "effnet_cbam")]
    cbam = versions[1]
    assert cbam.folds == (0, 1, 2) and cbam.commits == ("abc1234", "def5678")
    assert cbam.line() == ("SMIDS · EfficientNet + CBAM: 3 folds, spermlib 0.1.0, commits abc1234, def5678 "
                           "(2026-11-25 – 2026-11-26)")
    assert versions[0].line() == "SMIDS · SimpleCNN: 1 fold, spermlib 0.0.9, commit fff0000 (2026-11-20)"
    assert summary(versions) == f"spermlib {__version__} · 4 fold models installed, trained 2026-11-20 – 2026-11-26"


def test_an_unreadable_card_is_reported_not_raised(tmp_path):
    path = checkpoint_path("smids", "effnet", 0, tmp_path).with_suffix(".json")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    (entry,) = model_versions(tmp_path)
    assert entry.error and "not valid JSON" in entry.line()


def test_no_models_installed(tmp_path):
    assert model_versions(tmp_path) == []
    assert summary([]) == f"spermlib {__version__} · no trained models installed"
