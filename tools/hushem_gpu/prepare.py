"""Fill ``.gpu/`` (git-ignored; carried to the lent GPU machine) for the GPU scripts of this folder.

The machine has no internet and takes at most 64 MiB per call, code included, so it gets a copy of the dataset
and the offline ImageNet weights converted to timm keys and stored as fp16 safetensors (Lite0: 6.5 MB; training
upcasts them to fp32). HuSHeM (12 MB) is copied as it is. SMIDS (228 MB, mostly BMP) is re-encoded as lossless
WebP under the same file names (about 50 MB): the loader decodes by content, and every file is checked to decode
to exactly the pixels of its original.

    python -m tools.hushem_gpu.prepare --data-dir ../shared/data                      # HuSHeM, Lite0/1/2
    python -m tools.hushem_gpu.prepare --data-dir ../shared/data --dataset smids \\
        --backbones tf_efficientnet_lite0                                               # SMIDS, Lite0
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from spermlib.data.datasets import get_dataset, list_images, resolve_data_root
from spermlib.data.imageio import load_rgb_array
from spermlib.models.weights import lite_imagenet_state_dict

BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--dataset", default="hushem", choices=["hushem", "smids"])
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    ap.add_argument("--out", default=".gpu")
    args = ap.parse_args()
    out = Path(args.out)
    spec = get_dataset(args.dataset)
    root = resolve_data_root(spec, args.data_dir)
    dest = out / "data" / spec.folder
    if args.dataset == "smids":
        size = webp_copy(root, dest, list(list_images(spec, root)["path"]))
        for side_file in root.glob("*.*"):  # SOURCE.md, images.csv, duplicates.csv …: small, for provenance
            shutil.copy2(side_file, dest / side_file.name)
        print(f"{dest}: {size / 2**20:.1f} MiB of lossless WebP, every file pixel-identical to its original")
    else:
        shutil.copytree(root, dest, dirs_exist_ok=True)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    for backbone in args.backbones:
        state = {k: (v.half() if v.is_floating_point() else v).contiguous()
                 for k, v in lite_imagenet_state_dict(backbone).items()}
        save_file(state, str(out / "weights" / f"{backbone}.fp16.safetensors"))
    print(f"{out}: {spec.name} copy and {len(args.backbones)} fp16 weight files")


if __name__ == "__main__":
    main()
