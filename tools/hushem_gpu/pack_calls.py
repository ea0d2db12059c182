"""Every checkpoint under a folder, split over the calls that bring them back from the GPU machine.

A call returns at most 8 files of at most 16 MiB, 64 MiB together. Checkpoints (a ``.safetensors`` and its JSON
card, about 7 MiB) are taken in a fixed order (sorted paths, ``effnet_cbam`` first), a call is filled up to
``CALL_CAP``, and its checkpoints go two to a tar. The plan depends only on the files present, so a later call
recomputes it and emits its own share.

    python tools/hushem_gpu/pack_calls.py runs/gpu OUT N   # writes call N's tars into OUT; prints the number of calls
"""
import sys
import tarfile
from pathlib import Path

CALL_CAP = int(62.5 * 2**20)  # leaves room for the logs archive of call 1 (well under 1 MiB)
TAR_CAP = int(15.5 * 2**20)
MAX_TARS = 7


def items(root: Path) -> list[list[Path]]:
    weights = sorted(root.rglob("*.safetensors"), key=lambda p: (p.parent.name != "effnet_cbam", str(p)))
    return [[w, w.with_suffix(".json")] for w in weights if w.with_suffix(".json").exists()]


def plan(root: Path) -> list[list[list[list[Path]]]]:
    """calls → tars → checkpoints → files."""
    calls, tars, tar, size = [], [], [], 0
    for item in items(root):
        s = sum(f.stat().st_size for f in item)
        if tar and (sum(f.stat().st_size for i in tar for f in i) + s > TAR_CAP):
            tars.append(tar)
            tar = []
        if size + s > CALL_CAP or (not tar and len(tars) >= MAX_TARS):
            if tar:
                tars.append(tar)
            calls.append(tars)
            tars, tar, size = [], [], 0
        tar.append(item)
        size += s
    if tar:
        tars.append(tar)
    if tars:
        calls.append(tars)
    return calls


def main() -> None:
    root, out, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    calls = plan(root)
    print(f"{sum(len(t) for c in calls for t in c)} checkpoints in {len(calls)} calls")
    for i, tar in enumerate(calls[n - 1] if n <= len(calls) else []):
        name = out / f"ckpt_call{n}_{i}.tar"
        with tarfile.open(name, "w") as t:
            for item in tar:
                for f in item:
                    t.add(f)
        print(f"wrote {name}: {', '.join(str(item[0]) for item in tar)} ({name.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
