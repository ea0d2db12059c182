"""Pack what ``spermlib train`` needs on a training machine without internet: a copy of one dataset and the
offline ImageNet weights of the backbones, converted to timm keys and stored as fp16 safetensors (Lite0: 6.5 MB;
training upcasts them to fp32 and reads them with ``--weights``).

``--webp`` re-encodes every image as lossless WebP under the same file name (the loader decodes by content, so
the split manifest and ``--data-dir`` apply unchanged), and checks that every file decodes to exactly the pixels
of its original: SMIDS (228 MB, mostly BMP) becomes about 50 MB. Without it the dataset is copied as it is
(HuSHeM: 12 MB). ``--max-mib`` fails when the pack is larger than the transfer allows.

    python -m research.remote_training.pack_data --data-dir ../shared/data --dataset hushem      # Lite0/1/2
    python -m research.remote_training.pack_data --data-dir ../shared/data --dataset smids --webp \\
        --backbones tf_efficientnet_lite0 --max-mib 64
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from spermlib.data.datasets import DatasetSpec, get_dataset, list_images, resolve_data_root
from spermlib.data.imageio import load_rgb_array

BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
DEFAULT_OUT = Path("runs/remote")  # git-ignored; on the training machine: --data-dir runs/remote/data


def webp_copy(root: Path, out: Path, paths: list[str]) -> int:
    """Each image of ``paths`` as lossless WebP at the same relative path; returns the bytes written."""
    total = 0
    for rel in tqdm(paths, desc="lossless WebP"):
        pixels = load_rgb_array(root / rel)
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # lossless; quality/method are only effort here: method 6 took 6 s per image for 3 % less
        Image.fromarray(pixels).save(dest, "WEBP", lossless=True, quality=50, method=2)
        if not np.array_equal(load_rgb_array(dest), pixels):
            raise SystemExit(f"{rel}: the WebP copy does not decode to the original pixels")
        total += dest.stat().st_size
    return total


def copy_dataset(spec: DatasetSpec, root: Path, dest: Path, webp: bool) -> None:
    """``spec``'s images under ``root`` into ``dest`` (as lossless WebP with ``webp``), with the side files."""
    if not webp:
        shutil.copytree(root, dest, dirs_exist_ok=True)
        return
    size = webp_copy(root, dest, list(list_images(spec, root)["path"]))
    for side_file in root.glob("*.*"):  # SOURCE.md, images.csv, duplicates.csv …: small, for provenance
        shutil.copy2(side_file, dest / side_file.name)
    print(f"{dest}: {size / 2**20:.1f} MiB of lossless WebP, every file pixel-identical to its original")


def write_fp16_weights(backbones: list[str], dest: Path) -> None:
    """Each backbone's offline ImageNet weights as ``dest/<backbone>.fp16.safetensors``."""
    from safetensors.torch import save_file

    from spermlib.models.weights import lite_imagenet_state_dict

    dest.mkdir(parents=True, exist_ok=True)
    for backbone in backbones:
        state = {k: (v.half() if v.is_floating_point() else v).contiguous()
                 for k, v in lite_imagenet_state_dict(backbone).items()}
        save_file(state, str(dest / f"{backbone}.fp16.safetensors"))


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--dataset", default="hushem")
    ap.add_argument("--webp", action="store_true", help="re-encode the images as pixel-verified lossless WebP")
    ap.add_argument("--backbones", nargs="*", default=list(BACKBONES), help="fp16 weights to pack (none: data only)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="holds data/ and weights/ (default %(default)s)")
    ap.add_argument("--max-mib", type=float, default=None, help="fail when the pack is larger than this")
    args = ap.parse_args(argv)
    spec = get_dataset(args.dataset)
    copy_dataset(spec, resolve_data_root(spec, args.data_dir), args.out / "data" / spec.folder, args.webp)
    write_fp16_weights(args.backbones, args.out / "weights")
    mib = folder_mib(args.out)
    print(f"{args.out}: {spec.name} copy and {len(args.backbones)} fp16 weight files, {mib:.1f} MiB")
    if args.max_mib is not None and mib > args.max_mib:
        raise SystemExit(f"{args.out} holds {mib:.1f} MiB, more than --max-mib {args.max_mib:g}")


if __name__ == "__main__":
    main()
