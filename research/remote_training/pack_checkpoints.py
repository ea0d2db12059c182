"""Fold checkpoints (a ``.safetensors`` and its JSON card) packed into tar files of at most ``--max-mib`` each, to
bring them back from the machine that trained them. A checkpoint is never split across tars and every one goes
exactly once; the order is fixed (sorted by path), so the same files always give the same tars.

    python -m research.remote_training.pack_checkpoints OUT runs/remote/ck               # every checkpoint under it
    python -m research.remote_training.pack_checkpoints OUT --max-mib 16 runs/remote/ck/p20/smids/effnet/fold2.*

Paths are stored as given (relative to where it runs), so ``for t in OUT/*.tar; do tar xf "$t"; done`` from the
same folder puts every checkpoint back at its path.
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

Checkpoint = tuple[Path, Path]  # its weights and its card


def checkpoints_in(sources: list[Path]) -> list[Checkpoint]:
    """Every checkpoint named by ``sources`` (a folder: every checkpoint under it; a ``.safetensors`` file: itself),
    sorted by path; weights without a card beside them are refused."""
    weights = {w for s in sources if s.suffix != ".json"  # a card named beside its weights comes with them anyway
               for w in ([s] if s.suffix == ".safetensors" else s.rglob("*.safetensors"))}
    orphans = [str(w) for w in weights if not w.with_suffix(".json").exists()]
    if orphans:
        raise SystemExit(f"no card beside {', '.join(sorted(orphans))}")
    return [(w, w.with_suffix(".json")) for w in sorted(weights)]


def _size(checkpoints: list[Checkpoint]) -> int:
    return sum(f.stat().st_size for c in checkpoints for f in c)


def plan(checkpoints: list[Checkpoint], max_bytes: int) -> list[list[Checkpoint]]:
    """``checkpoints`` in order, cut into tars of at most ``max_bytes`` of files each."""
    tars: list[list[Checkpoint]] = [[]]
    for c in checkpoints:
        if _size([c]) > max_bytes:
            raise SystemExit(f"{c[0]} and its card alone exceed the size limit ({_size([c]) / 2**20:.1f} MiB)")
        if _size(tars[-1] + [c]) > max_bytes:
            tars.append([])
        tars[-1].append(c)
    return [t for t in tars if t]


def write_tars(tars: list[list[Checkpoint]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i, checkpoints in enumerate(tars):
        name = out / f"checkpoints_{i:02d}.tar"
        with tarfile.open(name, "w") as t:
            for f in (f for c in checkpoints for f in c):
                t.add(f)
        print(f"wrote {name}: {len(checkpoints)} checkpoints, {name.stat().st_size / 2**20:.1f} MiB")
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the tar files")
    ap.add_argument("sources", type=Path, nargs="+", help="checkpoint folders or .safetensors files")
    # a tar holds a little more than its files (512-byte headers); 0.5 MiB stays free for them
    ap.add_argument("--max-mib", type=float, default=16.0, help="largest tar file (default %(default)s)")
    args = ap.parse_args(argv)
    write_tars(plan(checkpoints_in(args.sources), int((args.max_mib - 0.5) * 2**20)), args.out)


if __name__ == "__main__":
    main()
