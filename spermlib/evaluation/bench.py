"""Speed benchmark: every measurement is a ratio against a baseline measured in the same process.

Run with ``python -m spermlib bench [--quick] [--out bench.json]``. Nothing here is a pass/fail test:
it prints a table of absolute times and ratios and writes it as JSON for tracking over time.
Models are built with random weights of the real architectures (speed does not depend on the
weights), so the benchmark runs on a fresh clone without trained checkpoints.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from PIL import Image

from spermlib.data.datasets import DATASETS, PROJECT_ROOT, SAMPLE_DATA_ROOT, get_dataset, list_images
from spermlib.data.preprocess import load_uint8_batch, normalize
from spermlib.inference.predict import Predictor
from spermlib.models import build_model
from spermlib.runtime import bf16_available, pick_device
from spermlib.store.checkpoints import available_folds, round_to_fp16_
from spermlib.training.train import FoldData, Recipe, train_fold

BACKBONE = "tf_efficientnet_lite0"


@dataclass
class Row:
    what: str
    value: float  # seconds, or images/s when ``unit`` says so
    unit: str
    baseline: str
    baseline_value: float
    ratio: float  # value / baseline_value (times: lower is better; throughputs: higher is better)
    target: str


def _median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fake_cards(arch: str, spec, size: int, n: int) -> list[dict]:
    return [{"arch": arch, "backbone": BACKBONE, "classes": list(spec.class_dirs), "input_size": size,
             "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": spec.name, "fold": k} for k in range(n)]


def _predictor(arch: str, spec, size: int, n_folds: int) -> Predictor:
    torch.manual_seed(0)
    models = [round_to_fp16_(build_model(arch, spec.num_classes, BACKBONE).eval()) for _ in range(n_folds)]
    return Predictor(spec, models, _fake_cards(arch, spec, size, n_folds))


def run_bench(quick: bool = False, out: str | None = None, dataset: str = "smids", arch: str = "effnet_cbam",
              input_size: int | None = None, app: bool = True) -> dict:
    spec = get_dataset(dataset)
    size = input_size or spec.input_size
    dev = pick_device()
    reps = 10 if quick else 30
    rows: list[Row] = []
    sample = list_images(spec, SAMPLE_DATA_ROOT / spec.folder)
    first = SAMPLE_DATA_ROOT / spec.folder / sample["path"].iloc[0]
    file_bytes = first.read_bytes()

    # Baseline: bare timm forward of the same backbone on a ready tensor, batch 1, default settings.
    bare = timm.create_model(BACKBONE, num_classes=spec.num_classes).eval().to(dev)
    x1 = torch.randn(1, 3, size, size, device=dev)

    def bare_forward():
        with torch.no_grad():
            return bare(x1)

    t_bare = _median_time(bare_forward, reps)

    one = _predictor(arch, spec, size, 1)
    t_pred = _median_time(lambda: one.predict_sources([file_bytes], ["x"]), reps)
    rows.append(Row("predict one image (decode+preprocess+forward+softmax)", t_pred, "s", "bare timm forward, batch 1",
                    t_bare, t_pred / t_bare, "≤ 1.3×"))

    def predict_and_cam():
        p = one.predict_sources([file_bytes], ["x"])[0]
        img = Image.open(io.BytesIO(file_bytes)).convert("RGB")
        one.explain(img, class_idx=one.classes.index(p.label))

    t_cam = _median_time(predict_and_cam, max(5, reps // 3))
    rows.append(Row("predict + Grad-CAM++ one image", t_cam, "s", "bare timm forward, batch 1", t_bare,
                    t_cam / t_bare, "≤ 3×"))

    five = _predictor(arch, spec, size, 5)
    t_ens = _median_time(lambda: five.predict_sources([file_bytes], ["x"]), max(5, reps // 2))
    rows.append(Row("5-fold ensemble predict one image", t_ens, "s", "bare timm forward × 5", 5 * t_bare,
                    t_ens / (5 * t_bare), "≤ 1.3×"))

    # Batch evaluation: decode + preprocess + forward of every bundled image vs bare batched forward.
    paths = list(sample["path"])
    n_img = len(paths)
    xb = torch.randn(64, 3, size, size, device=dev)

    def bare_batches():
        with torch.no_grad():
            for i in range(0, n_img, 64):
                bare(xb[: min(64, n_img - i)])

    def eval_batches():
        u8 = load_uint8_batch(SAMPLE_DATA_ROOT / spec.folder, paths, size)
        for i in range(0, n_img, 64):
            one.fold_probabilities(u8[i : i + 64])

    t_bare_b = _median_time(bare_batches, 3 if quick else 5, warmup=1)
    t_eval_b = _median_time(eval_batches, 3 if quick else 5, warmup=1)
    rows.append(Row(f"batch evaluation throughput ({n_img} images)", n_img / t_eval_b, "img/s",
                    "bare batched forward", n_img / t_bare_b, t_bare_b / t_eval_b, "≥ 0.8×"))

    # Training loop: the project's loop vs a plain loop on synthetic in-memory tensors, same model.
    n_train, bs, epochs = (64, 32, 1) if quick else (128, 32, 2)
    x_train = torch.randint(0, 256, (n_train, 3, size, size), dtype=torch.uint8)
    y_train = torch.randint(0, spec.num_classes, (n_train,))
    data = FoldData(x_train, y_train, x_train[:16], y_train[:16])
    recipe = Recipe.for_arch(arch, epochs=epochs, warmup_epochs=0, batch_size=bs, input_size=size, patience=99)
    tmp = Path(f"/tmp/spermlib_bench_{int(time.time())}")
    t0 = time.perf_counter()
    train_fold(spec, arch, 0, data, recipe, manifest_sha256="bench", backbone=BACKBONE, pretrained="none",
               checkpoints_dir=tmp / "ck", runs_dir=tmp / "runs", progress=False)
    t_loop = time.perf_counter() - t0
    torch.manual_seed(0)
    model = build_model(arch, spec.num_classes, BACKBONE).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    xs = normalize(x_train, (0.5,) * 3, (0.5,) * 3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, n_train - bs + 1, bs):
            loss = torch.nn.functional.cross_entropy(model(xs[i : i + bs]), y_train[i : i + bs])
            opt.zero_grad()
            loss.backward()
            opt.step()
    t_syn = time.perf_counter() - t0
    n_seen = epochs * (n_train // bs) * bs
    rows.append(Row("training loop throughput", n_seen / t_loop, "img/s", "plain loop on synthetic tensors",
                    n_seen / t_syn, t_syn / t_loop, "≥ 0.85×"))

    if app:
        rows.extend(dashboard_first_prediction(arch))

    result = {
        "device": str(dev), "torch": torch.__version__, "timm": timm.__version__, "threads": torch.get_num_threads(),
        "bf16": bf16_available(dev), "cpu": platform.processor() or platform.machine(), "arch": arch,
        "backbone": BACKBONE, "input_size": size, "quick": quick,
        "rows": [asdict(r) for r in rows],
    }
    print(format_rows(rows))
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


VERDICT_MARK = "→ **"  # how the Classify page writes a prediction ("`name` → **Normal (93.1%)** · 5/5 folds")


def app_child(dataset: str, arch: str, sample: str, t0: float | None = None) -> None:
    """Run in a fresh interpreter: open the app, go to Classify, pick one bundled sample, wait for the verdict.

    Prints one JSON line of stage timings (seconds since ``t0``, the child's first statement, taken
    before ``spermlib.evaluation.bench`` itself pulled in torch and timm).
    """
    t0 = time.perf_counter() if t0 is None else t0
    import importlib

    from streamlit.testing.v1 import AppTest

    # What the pages import, imported first so that the stages separate importing from the page's work.
    for module in ("torch", "timm", "torchvision", "pytorch_grad_cam", "plotly.express", "spermlib.inference.predict"):
        importlib.import_module(module)

    t_import = time.perf_counter() - t0
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=600)
    at.session_state["classify_dataset"] = dataset
    at.session_state["classify_arch_request"] = arch
    at.session_state["classify_samples_request"] = [sample]
    at.run()
    t_overview = time.perf_counter() - t0
    at.switch_page("views/classify.py").run()
    t_classify = time.perf_counter() - t0
    shown = [m.value for m in at.markdown if VERDICT_MARK in m.value]
    if at.exception or not shown:
        raise SystemExit(f"no prediction rendered: {at.exception or 'no verdict on the page'}")
    print(json.dumps({"imports": t_import, "overview": t_overview, "classify": t_classify}))


def dashboard_first_prediction(arch: str) -> list[Row]:
    """Seconds from a fresh ``python`` process to the Classify page's first prediction (with Grad-CAM++).

    Measured with Streamlit's AppTest in a new interpreter (so imports, model loading and the first
    forward pass are all counted, as after ``streamlit run``); the browser's rendering and the
    server's ~1 s start are not included. A second row isolates the page's own work (checkpoint
    loading, prediction, Grad-CAM++) once the libraries are imported. Uses the shipped checkpoints
    of the first dataset that has them; no rows when there are none.
    """
    dataset = next((d for d in DATASETS if available_folds(get_dataset(d), arch)), None)
    if dataset is None:
        print(f"dashboard rows skipped: no {arch} checkpoints to load (train first)")
        return []
    spec = get_dataset(dataset)
    sample = list_images(spec, SAMPLE_DATA_ROOT / spec.folder)["path"].iloc[0]
    code = ("import time; t0 = time.perf_counter(); from spermlib.evaluation.bench import app_child; "
            f"app_child({dataset!r}, {arch!r}, {sample!r}, t0)")
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    try:
        stages = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        print(f"dashboard rows skipped: {done.stderr.strip().splitlines()[-1:]}")
        return []
    page = stages["classify"] - stages["overview"]
    return [
        Row(f"dashboard: fresh process → first prediction ({dataset}, AppTest)", seconds, "s", "— (absolute)",
            seconds, 1.0, "≤ 5 s"),
        Row(f"  of which importing torch/timm/streamlit/grad-cam ({stages['imports']:.1f} s); Classify page",
            page, "s", "— (absolute)", page, 1.0, "—"),
    ]


def format_rows(rows: list[Row]) -> str:
    lines = [f"{'what':<58} {'value':>10}  {'baseline':<34} {'base':>10} {'ratio':>7}  target"]
    for r in rows:
        fmt = (lambda v: f"{v * 1000:8.1f}ms") if r.unit == "s" else (lambda v: f"{v:6.1f}img/s")
        if r.baseline.startswith("—"):  # an absolute measurement: no baseline, no ratio
            lines.append(f"{r.what:<58} {fmt(r.value):>10}  {r.baseline:<34} {'':>10} {'':>7}  {r.target}")
            continue
        lines.append(f"{r.what:<58} {fmt(r.value):>10}  {r.baseline:<34} {fmt(r.baseline_value):>10} "
                     f"{r.ratio:6.2f}×  {r.target}")
    return "\n".join(lines)

