"""Classify: upload images (or pick bundled samples) → prediction, warnings, Grad-CAM++.

An upload is classified by the fold ensemble; a bundled sample by the one fold model that never saw it
(the others trained on it: see spermlib.dashboard.samples). All decisions (decoding, warnings, which model,
the normal-forms share, the table) live in spermlib.dashboard.triage and .samples; this page only lays
them out. Predictions and explanations are cached by image content and model (in the process's prediction
cache, bounded in bytes), so moving the opacity slider does not recompute them. An upload of more files
than the server allows (``$SPERMLIB_MAX_UPLOAD_FILES``) is refused with one message. Query parameters
``?dataset=…&arch=…&sample=…`` preselect inputs (shareable links; ``arch=all`` shows every model side by side;
the browser tests use them too).
"""

from __future__ import annotations

import hashlib

import numpy as np
import plotly.express as px
import streamlit as st

from spermlib.dashboard import charts, palette, resources, samples, triage
from spermlib.dashboard import classify as vm
from spermlib.dashboard.compare import default_entry
from spermlib.dashboard.images import fit
from spermlib.dashboard.resources import get_dataset, listed_datasets
from spermlib.dashboard.tables import arch_title
from spermlib.dashboard.text import md_code, md_escape
from views.annotations import save_as_sample
from views.common import (
    bundled_samples,
    dataset_picker,
    get_fold_predictor,
    get_predictor,
)

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "gif", "webp"]
ALL_ARCHS = "__all__"
ALL_ARCHS_ALIASES = {"all", ALL_ARCHS}  # ?arch=all in a link
DISPLAY_SIDE = 256
SIDE_BY_SIDE_SIDE = 150


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _classify(dataset: str, archs: tuple[str, ...], checkpoints_dir: str, names: tuple[str, ...],
              digests: tuple[str, ...], routes: dict[str, list[samples.Route]], tta: bool,
              predictors: dict, inputs: list[triage.ImageInput]) -> dict[str, list[triage.ArchResult | None]]:
    """Cached by content (names + sha256 digests), model (routes) and test-time augmentation, in the process's
    prediction cache (bounded in bytes: ``resources.prediction_cache``)."""
    key = ("classify", dataset, archs, checkpoints_dir, names, digests,
           tuple((arch, tuple(r)) for arch, r in sorted(routes.items())), tta)
    return resources.prediction_cache().get_or_compute(key, lambda: triage.classify_inputs(
        predictors, inputs, get_dataset(dataset), routes,
        fold_predictor=lambda arch, fold: get_fold_predictor(dataset, arch, fold).with_tta(tta)))


def _explain(dataset: str, arch: str, fold: int | None, checkpoints_dir: str, digest: str, class_idx: int,
             predictor, image: np.ndarray):
    """Grad-CAM++ (and the CBAM map) for one image by ``predictor`` (the fold-``fold`` model alone, or the
    ensemble when ``fold`` is None), in the process's prediction cache."""
    key = ("explain", dataset, arch, fold, checkpoints_dir, digest, class_idx)
    return resources.prediction_cache().get_or_compute(key, lambda: vm.explain(predictor, image, class_idx))


@st.cache_data(show_spinner=False)
def _sample_folds(dataset: str) -> dict[str, int]:
    return samples.sample_folds(get_dataset(dataset))


def _apply_query_params() -> None:
    """Preselect dataset/arch/samples from the URL once per session."""
    if st.session_state.get("classify_query_applied"):
        return
    st.session_state["classify_query_applied"] = True
    qp = st.query_params
    if qp.get("dataset") in listed_datasets():
        st.session_state["classify_dataset"] = qp["dataset"]
    if qp.get("arch"):
        st.session_state["classify_arch_request"] = qp["arch"]
    samples = qp.get_all("sample")
    if samples:
        st.session_state["classify_samples_request"] = samples


def _render_result(arch: str, result: triage.ArchResult, item: triage.ImageInput, index: int, spec,
                   predictor, alpha: float, target: str | None, side_by_side: bool) -> None:
    """One model's verdict, warnings, probabilities and maps (side by side: the input and the note on
    which model classified it are shown once, above the columns)."""
    pred = result.prediction
    route = result.route
    st.markdown(f"#### {arch_title(arch)}")
    tta = " · mean of 8 flips/turns" if predictor.tta else ""
    st.markdown(f"{md_code(item.name)} → **{pred.display} ({pred.confidence:.1%})** · {result.verdict_source}{tta}")
    if route is not None and route.note and not side_by_side:
        st.caption(route.note)
    for warning in result.warnings:
        (st.error if warning.kind == "out_of_domain" else st.warning)(warning.message)
    st.plotly_chart(charts.probability_figure(pred.probabilities, pred.label, spec,
                                              f"{vm.model_name(route)} probability"),
                    key=f"probs_{index}_{arch}", width="stretch")
    if route is not None and route.single_fold:
        predictor = get_fold_predictor(spec.name, arch, route.fold).with_tta(predictor.tta)
    class_idx = predictor.classes.index(target or pred.label)
    try:
        with st.spinner("Computing Grad-CAM++ …"):
            exp = _explain(spec.name, arch, route.fold if route else None, str(resources.default_checkpoints_dir()),
                           _digest(item.data), class_idx, predictor,
                           result.prediction.model_input)  # the input the prediction used
    except Exception as err:  # noqa: BLE001 - an explanation failure must not hide the prediction
        st.error(f"{md_code(item.name)}: the explanation could not be computed ({md_escape(err)})")
        return
    panels = vm.explanation_panels(exp, spec.display(predictor.classes[class_idx]),
                                   vm.explained_by(route, len(predictor.folds)), alpha, with_input=not side_by_side)
    st.image([fit(image, DISPLAY_SIDE) for image in panels.images], caption=panels.captions,
             width=SIDE_BY_SIDE_SIDE if side_by_side else DISPLAY_SIDE)


def _normal_share_chart(shares: dict[str, triage.NormalShare]) -> None:
    st.plotly_chart(charts.normal_share_figure(shares), key="normal_share", width="stretch")
    for arch, share in shares.items():
        st.markdown(vm.normal_share_line(arch, share))


# ====================================================================== page
st.title("Classify sperm images")
_apply_query_params()
spec = dataset_picker("classify_dataset")
archs = resources.installed_archs(spec.name)  # the paper's model first, the weakest last
if not archs:
    st.info(
        f"No trained checkpoints for {spec.title} in `{resources.shown_path(resources.default_checkpoints_dir())}`. "
        "Train the fold models "
        "with "
        f"`spermlib train --dataset {spec.name} --arch effnet_cbam --fold all` "
        "(add `--data-dir ../shared/data` for the full data; see docs/getting-started.md), then reload this page."
    )
    st.stop()

arch_options = archs + ([ALL_ARCHS] if len(archs) > 1 else [])
requested = st.session_state.pop("classify_arch_request", None)
requested = ALL_ARCHS if requested in ALL_ARCHS_ALIASES else requested
if requested in arch_options:
    st.session_state["classify_arch"] = requested
elif "classify_arch" not in st.session_state or st.session_state["classify_arch"] not in arch_options:
    st.session_state["classify_arch"] = default_entry(archs)
choice = st.radio("Model", arch_options, key="classify_arch", horizontal=True,
                  format_func=lambda a: f"All {len(archs)} side by side" if a == ALL_ARCHS else arch_title(a))
chosen = archs if choice == ALL_ARCHS else [choice]
tta = st.toggle("Test-time augmentation", value=True, key="classify_tta",
                help="Each model's probabilities are averaged over the 8 flips and 90° turns of the image "
                     "(orientation says nothing about the class). The '+ TTA ×8' rows of the results: more accurate on "
                     "both datasets, ~2× the time for one image. The out-of-domain check and the maps use the image "
                     "as it is.")

limit_mb = float(st.get_option("server.maxUploadSize"))
uploads = st.file_uploader(
    "Upload images", type=UPLOAD_TYPES, accept_multiple_files=True, key="classify_upload",
    help=f"PNG, JPEG, BMP, TIFF, GIF or WebP up to {limit_mb:g} MB each. Files are decoded by their content, "
         "so a wrong extension does not matter; 16-bit, CMYK, palette and transparent images are converted to RGB.",
)
sample_paths = bundled_samples(spec.name)
wanted = st.session_state.pop("classify_samples_request", None)
if wanted:
    st.session_state["classify_samples"] = [s for s in wanted if s in sample_paths]
elif st.session_state.get("classify_samples"):  # after a dataset switch, drop the other dataset's picks
    st.session_state["classify_samples"] = [s for s in st.session_state["classify_samples"] if s in sample_paths]
picked = st.multiselect("…or pick bundled samples", sample_paths, key="classify_samples",
                        placeholder="e.g. Normal_Sperm/…",
                        help="Each sample is classified by the fold model that never saw it in training; "
                             "uploads by the ensemble of all fold models.")

if too_many := vm.too_many_uploads(len(uploads or [])):
    st.error(too_many)
    st.stop()
items = [(f.name, f.getvalue()) for f in uploads or []]
items += [(p, (resources.sample_root(spec.name) / p).read_bytes()) for p in picked]
if not items:
    st.info("Upload one or more images, or pick bundled samples, to classify them.")
    st.stop()

predictors = {a: p.with_tta(tta) for a in chosen if (p := get_predictor(spec.name, a)) is not None}
if not predictors:
    st.stop()
routes = {a: samples.routes(len(uploads or []), picked, _sample_folds(spec.name),
                            resources.installed_folds(spec, a)) for a in predictors}
with st.spinner(f"Classifying {len(items)} image{'s' if len(items) != 1 else ''} …"):
    inputs = triage.decode_inputs(items, limit_mb=limit_mb)
    results = _classify(spec.name, tuple(predictors), str(resources.default_checkpoints_dir()),
                        tuple(i.name for i in inputs), tuple(_digest(i.data) for i in inputs), routes, tta, predictors,
                        inputs)

for item in inputs:
    if item.error:
        st.error(md_escape(item.error))
good = [i for i, item in enumerate(inputs) if item.error is None]
if not good:
    st.stop()

if banner := triage.out_of_domain_banner(results):
    st.error(banner)
# ------------------------------------------------------------------ one image in detail
st.subheader("Prediction and explanation")
c1, c2, c3 = st.columns([3, 2, 2])
index = good[0]
if len(good) > 1:
    index = c1.selectbox("Inspect image", good, format_func=lambda i: inputs[i].name, key="classify_inspect")
alpha = c2.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key="classify_alpha")
target_options = [None, *spec.class_dirs]
target = c3.selectbox("Explain class", target_options, key="classify_target",
                      format_func=lambda c: "predicted class" if c is None else spec.display(c))
if len(predictors) > 1:
    st.image(fit(inputs[index].image, DISPLAY_SIDE), caption=inputs[index].name, width=DISPLAY_SIDE)
    for note in dict.fromkeys(r.note for a in predictors if (r := results[a][index].route) is not None and r.note):
        st.caption(note)
columns = st.columns(len(predictors)) if len(predictors) > 1 else [st.container()]
for column, (arch, predictor) in zip(columns, predictors.items()):
    with column:
        _render_result(arch, results[arch][index], inputs[index], index, spec, predictor, alpha, target,
                       side_by_side=len(predictors) > 1)
st.caption(
    "Warnings: out of domain (the models' out-of-domain detector, threshold set so that 5 % of held-out "
    "training-like images, some mildly compressed, blurred or recoloured, are flagged); "
    f"confidence below {triage.LOW_CONFIDENCE:.0%}; fewer than "
    f"{triage.MIN_AGREEMENT:.0%} of the fold "
    "models agreeing; for SMIDS, P(Non-Sperm) ≥ "
    f"{triage.NON_SPERM_PROB:.0%}; for HuSHeM, an image that is not a ~131 px square head crop."
)

# ------------------------------------------------------------------ all images
st.subheader("Results")
table = triage.results_table(inputs, results, spec)
st.dataframe(table, hide_index=True, width="stretch", column_order=triage.SHOWN_COLUMNS,
             column_config={"confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                          format="%.2f")})
st.caption("The CSV adds each class's probability and the fold models' agreement.")
st.download_button("Download results (CSV)", vm.results_csv(table), file_name=f"classify_{spec.name}.csv",
                   mime="text/csv", key="classify_download")
save_as_sample(spec, inputs, results, predictors)

if len(good) > 1:
    shares = {a: triage.normal_share(results[a], spec) for a in predictors}
    st.subheader("Share of normal forms in this batch")
    for arch in [a for a, share in shares.items() if share.withheld]:
        st.warning(f"{arch_title(arch)}: no share of normal forms for this batch. {shares[arch].withheld_reason}")
    if shown_shares := {a: share for a, share in shares.items() if not share.withheld}:
        _normal_share_chart(shown_shares)
    denominator = ("images classified as sperm (images predicted Non-Sperm are left out)"
                   if spec.name in triage.NON_SPERM_LABEL else "classified images")
    st.caption(
        f"Share = images predicted {spec.display(triage.NORMAL_LABEL[spec.name])} ÷ {denominator}; failed files "
        "are not counted. The dashed line is the WHO 2021 lower reference limit for normal forms (4 %). A "
        "screening aid for a few images, not a semen analysis (which assesses ≥ 200 spermatozoa)."
    )
    predicted = table.dropna(subset=["prediction"]).assign(model=lambda t: t["arch"].map(arch_title))
    fig = px.histogram(predicted, x="prediction", color="model", barmode="group",
                       category_orders={"prediction": [spec.display(c) for c in spec.class_dirs]},
                       color_discrete_map=palette.model_colour_map(predictors), title="Predicted classes")
    fig.update_layout(height=340, legend=charts.LEGEND_BELOW, xaxis_title=None)  # the classes name themselves
    st.plotly_chart(fig, key="predicted_classes", width="stretch")
