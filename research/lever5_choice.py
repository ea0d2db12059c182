"""Apply the lever-5 shipping rule (docs, Experiments, *Lever 5*) to a recorded ``tune --robustness`` comparison.

Usage, after the two candidates (224 px with the whole schedule, then its 4-epoch hardening stage) are trained into
``runs/smids224_p20/ck`` and ``runs/smids224_p20_h4/ck``::

    spermlib tune --dataset smids --data-dir ../shared/data --arch effnet_cbam --baseline-name current \\
        --run p20=runs/smids224_p20/ck --run p20_h4=runs/smids224_p20_h4/ck --robustness \\
        --record --results research/results/lever5/ship
    python -m research.lever5_choice research/results/lever5/ship/smids/tuning.json [--arch effnet] \\
        [--apply --run p20=runs/smids224_p20/ck --run p20_h4=runs/smids224_p20_h4/ck]

Per fold k, reading fold k's inner-validation scores only: (1) the hardened 224 px model replaces the unhardened
one by ``choose_per_fold``; (2) the result replaces the current shipped model by ``improves_per_fold``.
``--apply`` copies the chosen fold checkpoints (weights + card) from the ``--run`` folders over the shipped ones.
The decision (every fold's scores, its 224 px model and what ships) goes to ``ship_choice_<arch>.json`` beside
the comparison.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from spermlib.evaluation.robustness import choose_per_fold, improves_per_fold
from spermlib.store.paths import default_checkpoints_dir

UNHARDENED, HARDENED = "p20", "p20_h4"


def decide(comparison: dict) -> dict:
    """The per-fold decision of the two-step rule, with the scores it read."""
    rows = {row["name"]: {int(k): v for k, v in row["inner_val_robustness"].items()}
            for row in comparison["configs"]}
    current, unhardened, hardened = rows[comparison["baseline"]], rows[UNHARDENED], rows[HARDENED]
    take_hardened = set(choose_per_fold(unhardened, hardened))
    m224 = {k: hardened[k] if k in take_hardened else unhardened[k] for k in unhardened}
    ships = set(improves_per_fold(current, m224))
    folds = {}
    for k in sorted(current):
        source = (HARDENED if k in take_hardened else UNHARDENED) if k in m224 else None
        folds[str(k)] = {"current": current[k], UNHARDENED: unhardened.get(k), HARDENED: hardened.get(k),
                         "m224": source, "ships": source if k in ships else "current"}
    return {"rule": "choose_per_fold(p20, p20_h4) → M224; improves_per_fold(current, M224) → ships", "folds": folds}


def run_folders(runs: list[str]) -> dict[str, Path]:
    """``NAME=FOLDER`` pairs (as ``tune --run`` takes them) for both candidates."""
    folders = dict(r.split("=", 1) for r in runs)
    missing = {UNHARDENED, HARDENED} - set(folders)
    if missing:
        raise SystemExit(f"--apply needs --run NAME=FOLDER for {', '.join(sorted(missing))}")
    return {name: Path(folder) for name, folder in folders.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tuning", type=Path, help="tuning.json written by tune --robustness --record")
    p.add_argument("--arch", default="effnet_cbam")
    p.add_argument("--apply", action="store_true", help="copy the chosen fold checkpoints over the shipped ones")
    p.add_argument("--run", action="append", default=[], metavar="NAME=FOLDER",
                   help=f"checkpoint folder of candidate {UNHARDENED} or {HARDENED} (needed by --apply)")
    args = p.parse_args(argv)
    folders = run_folders(args.run) if args.apply else {}
    tuning = json.loads(args.tuning.read_text())
    decision = decide(tuning["archs"][args.arch])
    decision["tuning"] = str(args.tuning)
    out = args.tuning.with_name(f"ship_choice_{args.arch}.json")  # one per arch: both archs share tuning.json
    out.write_text(json.dumps(decision, indent=1) + "\n")
    for k, d in decision["folds"].items():
        scores = "  ".join(f"{name} {s['clean_accuracy']:.3f}/{s['corrupted_accuracy']:.3f}"
                           for name in ("current", UNHARDENED, HARDENED) if (s := d[name]))
        print(f"fold {k}: {scores}  → M224 = {d['m224']}, ships: {d['ships']}")
    print(f"wrote {out}")
    if args.apply:
        dest = default_checkpoints_dir() / tuning["dataset"] / args.arch
        for k, d in decision["folds"].items():
            if d["ships"] != "current":
                src = folders[d["ships"]] / tuning["dataset"] / args.arch
                for suffix in (".safetensors", ".json"):
                    shutil.copy2(src / f"fold{k}{suffix}", dest / f"fold{k}{suffix}")
                print(f"fold {k}: {src} → {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
