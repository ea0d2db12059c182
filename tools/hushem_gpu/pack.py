"""Chosen checkpoints into tar files of at most 15.5 MiB; `pack.py plan` bins them, `pack.py emit N OUT` writes
call N's share (call 1 carries up to 6 bins beside the results archive, call 2 the rest)."""
import json
import sys
import tarfile
from pathlib import Path

LIMIT = int(15.5 * 2**20)
if sys.argv[1] == "plan":
    chosen = json.loads(Path(sys.argv[2]).read_text())
    files = []
    for arch, ks in chosen.items():
        for k, v in ks.items():
            base = Path("runs/gpu") / v["candidate"] / "hushem" / arch / f"fold{k}"
            files.append([str(base) + ".safetensors", str(base) + ".json"])
    bins, cur, size = [], [], 0
    for pair in files:
        s = sum(Path(f).stat().st_size for f in pair)
        if cur and size + s > LIMIT:
            bins.append(cur)
            cur, size = [], 0
        cur += pair
        size += s
    if cur:
        bins.append(cur)
    Path("/tmp/bins.json").write_text(json.dumps(bins))
    print(len(bins), "bins", [sum(Path(f).stat().st_size for f in b) >> 20 for b in bins], "MiB")
else:
    n, out = int(sys.argv[2]), Path(sys.argv[3])
    bins = json.loads(Path("/tmp/bins.json").read_text())
    # call 1 also carries the results archive and the log: 56 MiB / 6 files; later calls 62 MiB / 8 files
    calls, cur, size = [], [], 0
    for i, b in enumerate(bins):
        s = sum(Path(f).stat().st_size for f in b)
        cap, nmax = (56 << 20, 6) if not calls else (62 << 20, 8)
        if cur and (size + s > cap or len(cur) >= nmax):
            calls.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += s
    calls.append(cur)
    share = [(i, bins[i]) for i in (calls[n - 1] if n <= len(calls) else [])]
    print(len(calls), "calls needed")
    for i, b in share:
        with tarfile.open(out / f"ckpt{i}.tar", "w") as t:
            for f in b:
                t.add(f)
        print("wrote", out / f"ckpt{i}.tar", len(b) // 2, "checkpoints")
