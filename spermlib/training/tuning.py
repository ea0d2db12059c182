"""Compare training configurations on inner validation only, never on a test fold.

A tuning run is ``spermlib train … --checkpoints runs/tune/<name>`` with some recipe change;
its fold cards carry the inner-validation scores of the epoch that early stopping kept. This module
lines such runs up against the shipped checkpoints, on the folds they have in common, and can write
the comparison to ``results/<dataset>/tuning.json`` so that README's "what was tried" is a table of
real runs. Test-fold predictions are not read here at all.

Caveat kept in the protocol text: the inner-val score of the kept epoch is the best of several
epochs, so it is optimistic; it is the same selection for every configuration, which keeps the
comparison fair, but the absolute numbers are not test estimates.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict
from pathlib import Path

from spermlib.data.datasets import DatasetSpec
from spermlib.errors import SpermlibError
from spermlib.store.cards import CheckpointError, fold_cards, trained_on
from spermlib.store.results import read_for_update, write_json
from spermlib.training.train import Recipe

PROTOCOL = ("inner-validation split of each fold's training part (the split early stopping uses), "
            "scores of the epoch early stopping kept, mean over the folds every configuration has; "
            "test folds never read")
# Card fields besides the recipe that define a configuration.
_CONFIG_FIELDS = ("backbone", "pretrained_source", "input_size", "init_from", "transfer_dataset")


def _config(card: dict) -> dict:
    # A recipe field added after a card was written was off for it: fill in the (off) default so it
    # does not count as a difference.
    recipe = {**asdict(Recipe()), **card.get("recipe", {})}
    recipe.pop("input_size")  # 0 = dataset default; the card's own input_size field is compared
    return {**{f: card.get(f) for f in _CONFIG_FIELDS}, **recipe}


def compare_configs(spec: DatasetSpec, arch: str, runs: dict[str, Path]) -> dict:
    """Inner-val comparison of named checkpoint folders (the first is the baseline).

    Raises ``CheckpointError`` when a folder has no cards for ``arch``, when the folders were trained
    on different split manifests, or when they share no fold.
    """
    cards = {name: fold_cards(spec, arch, Path(d)) for name, d in runs.items()}
    for name, c in cards.items():
        if not c:
            raise CheckpointError(f"{runs[name]} has no {spec.name}/{arch} checkpoints")
    shas = {card.get("split_sha256") for c in cards.values() for card in c.values()}
    if len(shas) > 1:
        raise CheckpointError("the runs were trained on different split manifests; they are not comparable")
    folds = sorted(set.intersection(*(set(c) for c in cards.values())))
    if not folds:
        raise CheckpointError("the runs share no fold")
    base_name = next(iter(cards))
    base = _config(cards[base_name][folds[0]])
    rows = []
    for name, c in cards.items():
        chosen = [c[k] for k in folds]
        cfg = _config(chosen[0])
        n = [int(card.get("n_inner_val", 0)) for card in chosen]
        rows.append({
            "name": name,
            "changes": {k: v for k, v in cfg.items() if base.get(k) != v} if name != base_name else {},
            "folds": folds,
            "inner_val_accuracy": sum(card["inner_val"]["accuracy"] for card in chosen) / len(chosen),
            "inner_val_macro_f1": sum(card["inner_val"]["macro_f1"] for card in chosen) / len(chosen),
            "inner_val_images": sum(n),
            "best_epochs": [int(card.get("best_epoch", 0)) for card in chosen],
            "training_minutes": round(sum(float(card.get("training_seconds", 0)) for card in chosen) / 60, 1),
            # Minutes on a GPU and on 2 CPU cores are not comparable; say where each run trained.
            "device": trained_on(chosen[0]),
        })
    return {"dataset": spec.name, "arch": arch, "baseline": base_name, "protocol": PROTOCOL,
            "split_sha256": shas.pop(), "configs": rows}


def format_comparison(comparison: dict) -> str:
    lines = [f"{comparison['dataset']}/{comparison['arch']}, folds {comparison['configs'][0]['folds']} "
             f"(inner validation only):"]
    for r in comparison["configs"]:
        change = ("baseline" if r["name"] == comparison["baseline"]
                  else ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "same configuration")
        lines.append(f"  {r['name']:<16} acc {r['inner_val_accuracy']:.3f}  macro-F1 {r['inner_val_macro_f1']:.3f}  "
                     f"best epochs {r['best_epochs']}  {r['training_minutes']} min  [{change}]")
    return "\n".join(lines)


def record_comparison(comparison: dict, path: Path, merge: bool = False) -> Path:
    """Add (or replace, by arch) this comparison in ``tuning.json``.

    With ``merge``, rows already recorded for this arch against the same baseline and absent from
    ``comparison`` are kept (a run whose checkpoints are gone still counts as tried); rows of the same
    name are replaced.
    """
    data = read_for_update(path, comparison["split_sha256"])  # another split: old rows no longer apply
    data.update({"dataset": comparison["dataset"], "split_sha256": comparison["split_sha256"],
                 "protocol": PROTOCOL})
    configs = list(comparison["configs"])
    old = data.get("archs", {}).get(comparison["arch"])
    if merge and old is not None:
        if old["baseline"] != comparison["baseline"]:
            raise SpermlibError(f"recorded {comparison['arch']} rows are against baseline {old['baseline']!r}, "
                             f"not {comparison['baseline']!r}: their changes would not line up")
        new_names = {r["name"] for r in configs}
        configs = [r for r in old["configs"] if r["name"] not in new_names] + configs
        configs.sort(key=lambda r: r["name"] != comparison["baseline"])  # baseline first, else stable
    data.setdefault("archs", {})[comparison["arch"]] = {
        "baseline": comparison["baseline"], "configs": configs,
        **{k: comparison[k] for k in ("robustness_protocol", "picked_per_fold") if k in comparison},
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return write_json(path, data)
