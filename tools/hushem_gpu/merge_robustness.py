"""Put the arch entries of robustness files computed elsewhere (tools/hushem_gpu/robustness.sh) into the committed
``results/<dataset>/robustness.json``, after checking they were scored on the same split and corruption suite.

    PYTHONPATH=. python tools/hushem_gpu/merge_robustness.py results/smids/robustness.json FILES/robustness_*.json
"""
import datetime as dt
import json
import sys
from pathlib import Path

from spermlib.store.results import write_json

target = Path(sys.argv[1])
merged = json.loads(target.read_text())
for src in map(Path, sys.argv[2:]):
    part = json.loads(src.read_text())
    for key in ("dataset", "split_sha256", "full_dataset", "protocol", "folds", "corruptions"):
        if part.get(key) != merged.get(key):
            raise SystemExit(f"{src}: {key} differs from {target}'s")
    merged["archs"].update(part["archs"])
    print(f"{src}: {', '.join(part['archs'])}")
merged["generated"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
write_json(target, merged)
