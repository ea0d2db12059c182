"""Build tiny real checkpoints + results on the bundled sample, for developing the dashboard.

``python tools/make_app_artifacts.py OUT_DIR`` then
``SPERMLIB_CHECKPOINTS=OUT_DIR/checkpoints SPERMLIB_RESULTS=OUT_DIR/results streamlit run app.py``.
Same recipe as the test fixture in tests/app/conftest.py (1 epoch, 64 px): weak models, real formats.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spermlib.archs import ARCHS, DEFAULT_ARCH
from spermlib.dashboard.triage import NORMAL_LABEL
from spermlib.data.datasets import DATASETS, SAMPLE_DATA_ROOT, resolve_data_root
from spermlib.data.splits import manifest_for_root
from spermlib.evaluation.evaluate import evaluate_dataset
from spermlib.evaluation.worked_example import write_worked_example
from spermlib.training.train import Recipe, load_fold_data, train_fold

SIZE = 64


def build(base: Path) -> dict:
    ckpt, results, runs = base / "checkpoints", base / "results", base / "runs"
    for spec in DATASETS.values():
        root = resolve_data_root(spec, SAMPLE_DATA_ROOT)
        manifest, sha = manifest_for_root(spec, root)
        for arch in ARCHS:
            recipe = Recipe.for_arch(arch, epochs=1, warmup_epochs=0, input_size=SIZE, batch_size=16)
            for fold in range(5):
                data = load_fold_data(spec, root, manifest, fold, recipe, SIZE)
                train_fold(spec, arch, fold, data, recipe, manifest_sha256=sha, backbone="tf_efficientnet_lite0",
                           pretrained="offline", checkpoints_dir=ckpt, runs_dir=runs, progress=False)
        evaluate_dataset(spec, root, checkpoints_dir=ckpt, results_base=results)
        # the Overview's worked example, as `spermlib example` stores it (may be none: weak models)
        write_worked_example(spec, DEFAULT_ARCH, NORMAL_LABEL.get(spec.name), results, ckpt, root)
    return {"checkpoints": ckpt, "results": results, "base": base}


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
