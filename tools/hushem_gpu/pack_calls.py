"""Checkpoints split over the calls that bring them back from the GPU machine.

A call returns at most 8 files of at most 16 MiB, 64 MiB together. Checkpoints (a ``.safetensors`` and its JSON
card, about 7 MiB) are taken in a fixed order, a call is filled up to its cap, and its checkpoints go together into
tars of at most ``TAR_CAP``. The plan depends only on the files present, so a later call recomputes it and emits its
own share. Call 1 may carry other files beside (a results archive): ``first_call`` gives its own cap.

    python tools/hushem_gpu/pack_calls.py runs/gpu OUT N   # every checkpoint under runs/gpu; call N's tars into OUT
"""
import sys
import tarfile
from pathlib import Path

CALL_CAP = int(62.5 * 2**20)  # leaves room for the logs archive of call 1 (well under 1 MiB)
TAR_CAP = int(15.5 * 2**20)
MAX_TARS = 7

Item = list[Path]  # a checkpoint: its weights and its card


def checkpoints_under(root: Path) -> list[Item]:
    """Every checkpoint under ``root``, sorted by path with ``effnet_cbam`` first."""
    weights = sorted(root.rglob("*.safetensors"), key=lambda p: (p.parent.name != "effnet_cbam", str(p)))
    return [[w, w.with_suffix(".json")] for w in weights if w.with_suffix(".json").exists()]


def _size(items: list[Item]) -> int:
    return sum(f.stat().st_size for item in items for f in item)


def plan(items: list[Item], first_call: tuple[int, int] = (CALL_CAP, MAX_TARS)) -> list[list[list[Item]]]:
    """calls → tars → checkpoints; call 1 holds at most ``first_call`` = (bytes, tars), later calls
    (``CALL_CAP``, ``MAX_TARS``)."""
    calls, tars, tar = [], [], []
    for item in items:
        cap, max_tars = first_call if not calls else (CALL_CAP, MAX_TARS)
        if tar and _size(tar + [item]) > TAR_CAP:
            tars.append(tar)
            tar = []
        if _size([i for t in tars for i in t] + tar + [item]) > cap or (not tar and len(tars) >= max_tars):
            if tar:
                tars.append(tar)
            calls.append(tars)
            tars, tar = [], []
        tar.append(item)
    if tar:
        tars.append(tar)
    if tars:
        calls.append(tars)
    return calls


def emit(calls: list[list[list[Item]]], n: int, out: Path) -> None:
    """Write call ``n``'s tars (1-based) into ``out``."""
    print(f"{sum(len(t) for c in calls for t in c)} checkpoints in {len(calls)} calls")
    for i, tar in enumerate(calls[n - 1] if n <= len(calls) else []):
        name = out / f"ckpt_call{n}_{i}.tar"
        with tarfile.open(name, "w") as t:
            for item in tar:
                for f in item:
                    t.add(f)
        print(f"wrote {name}: {', '.join(str(item[0]) for item in tar)} ({name.stat().st_size / 2**20:.1f} MiB)")


def main() -> None:
    root, out, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    emit(plan(checkpoints_under(root)), n, out)


if __name__ == "__main__":
    main()
