"""The HuSHeM sweep's chosen checkpoints, split over the calls that bring them back (``pack_calls.plan``); call 1
also carries the results archive and the log, so it takes at most 56 MiB in 6 tars.

    PYTHONPATH=$PWD python tools/hushem_gpu/pack.py runs/gpu-probs/chosen.json OUT N   # call N's tars into OUT
"""
import json
import sys
from pathlib import Path

from tools.hushem_gpu.pack_calls import emit, plan  # run from the repository root with PYTHONPATH=$PWD (sweep.sh)

FIRST_CALL = (56 << 20, 6)


def chosen_checkpoints(chosen_json: Path, root: Path = Path("runs/gpu")) -> list[list[Path]]:
    chosen = json.loads(chosen_json.read_text())
    bases = [root / v["candidate"] / "hushem" / arch / f"fold{k}" for arch, ks in chosen.items() for k, v in ks.items()]
    return [[b.with_suffix(".safetensors"), b.with_suffix(".json")] for b in bases]


if __name__ == "__main__":
    emit(plan(chosen_checkpoints(Path(sys.argv[1])), first_call=FIRST_CALL), int(sys.argv[3]), Path(sys.argv[2]))
