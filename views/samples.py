"""Samples: saved samples, a review queue ordered by need, one-click accept/correct, history, report, delete.

Everything is read and written through the samples store (views.annotations → spermlib.dashboard.review);
the queue order, the reviewer's identity, the tables and the report (PDF and HTML) come from
spermlib.dashboard.review. Building the report draws Grad-CAM++ maps, so it is made on request.
``?sample=NAME`` preselects a sample (the Classify page links here after saving).
"""

from __future__ import annotations

import streamlit as st

from spermlib.dashboard import review as vm
from spermlib.dashboard.images import fit
from spermlib.dashboard.resources import DatasetSpec, ImageError, get_dataset, load_rgb
from spermlib.dashboard.review import SampleStore
from spermlib.dashboard.tables import arch_title
from views.annotations import reviewer_name, sample_store, store_call
from views.common import get_predictor

PAGE_SIZE = 10
THUMB_SIDE = 120


def _review(store: SampleStore, name: str, file_name: str, label: str, reviewer: str) -> None:
    if store_call(store.review, name, file_name, label, reviewer, st.session_state.get(f"comment::{file_name}")):
        st.session_state.pop(f"comment::{file_name}", None)


def _queue_item(store: SampleStore, name: str, item: vm.QueueItem, spec: DatasetSpec, reviewer: str | None) -> None:
    """One image: thumbnail, the model's verdict and why it needs review, one button per label, history."""
    img, pred = item.image, item.prediction
    with st.container(border=True):
        c1, c2, c3 = st.columns([1, 3, 3])
        try:
            c1.image(fit(load_rgb(store.image_bytes(name, img.file_name), name=img.file_name), THUMB_SIDE))
        except ImageError as err:
            c1.error(str(err))
        verdict = f"**{spec.display(pred.label)}** ({pred.confidence:.0%})" if pred else "no verdict"
        c2.markdown(f"`{img.file_name}` · model: {verdict}")
        if item.reasons:
            c2.markdown(" ".join(f":orange-badge[{r}]" for r in item.reasons))
        if img.tags:
            c2.markdown(" ".join(f":blue-badge[{t.tag}]" for t in img.tags))
        latest = img.latest_review
        if latest:
            c2.markdown(f":green-badge[reviewed] **{spec.display(latest.label)}** by {latest.reviewer}")
        c3.text_input("Comment (optional)", key=f"comment::{img.file_name}", label_visibility="collapsed",
                      placeholder="comment (optional)")
        buttons = c3.container(horizontal=True)
        for label in spec.class_dirs:
            accept = pred is not None and label == pred.label
            buttons.button(f"Accept {spec.display(label)}" if accept else spec.display(label),
                           key=f"review::{img.file_name}::{label}", type="primary" if accept else "secondary",
                           disabled=reviewer is None, on_click=_review,
                           args=(store, name, img.file_name, label, reviewer or ""))
        with c3.popover("Tag this image", disabled=reviewer is None):
            _tag_form(store, name, img.file_name, reviewer or "")
        if img.reviews:
            with st.expander(f"History ({len(img.reviews)} review{'s' if len(img.reviews) != 1 else ''})"):
                st.dataframe(vm.history_table(img.reviews, spec), hide_index=True, width="stretch")


def _tag_form(store: SampleStore, name: str, file_name: str, author: str) -> None:
    with st.form(f"tag::{file_name}", clear_on_submit=True, border=False):
        tag = st.selectbox("Tag", vm.SUGGESTED_TAGS, accept_new_options=True, key=f"tag::{file_name}::tag")
        comment = st.text_input("Comment (optional)", key=f"tag::{file_name}::comment")
        if st.form_submit_button("Add tag") and tag and store_call(store.tag_image, name, file_name, tag, author,
                                                                   comment) is not None:
            st.rerun()


def _queue(store: SampleStore, name: str, images, arch: str, spec: DatasetSpec) -> None:
    st.subheader("Review queue")
    queue = vm.review_queue(images, arch)
    n_done = sum(i.reviewed for i in queue)
    st.caption(f"{n_done} of {len(queue)} images reviewed. Out-of-domain, low-confidence and fold-disagreement "
               "images come first; a click on a label records your review (earlier reviews are kept).")
    reviewer = reviewer_name("samples_reviewer")
    if reviewer is None:
        st.info("Enter your name above to review.")
    shown = queue if st.toggle("Show reviewed images too", key="samples_show_reviewed") else [
        i for i in queue if not i.reviewed]
    if not shown:
        st.success("Every image of this sample has been reviewed.")
    for item in shown[:PAGE_SIZE]:
        _queue_item(store, name, item, spec, reviewer)
    if len(shown) > PAGE_SIZE:
        st.caption(f"{len(shown) - PAGE_SIZE} more: review these first.")


def _report(store: SampleStore, name: str, spec: DatasetSpec, arch: str, stamp: tuple) -> None:
    """Build the report on request (Grad-CAM++ of the reviewed images) and offer both formats."""
    st.subheader("Report")
    key = f"samples_report::{name}::{stamp}"  # a new review makes a new report
    if st.button("Prepare the report (PDF and HTML)", key="samples_prepare_report"):
        with st.spinner("Drawing Grad-CAM++ maps of the reviewed images …"):
            report = store_call(vm.report_files, store, name, get_predictor(spec.name, arch))
            if report is not None:
                st.session_state[key] = report
    ready = st.session_state.get(key)
    if ready is None:
        st.caption("Counts by the model and after review, the share of normal forms with its 95 % CI against the "
                   "WHO 2021 limit, out-of-domain warnings, reviewed images with Grad-CAM++, the model card.")
        return
    c1, c2 = st.columns(2)
    c1.download_button("Download report (PDF)", ready[0], file_name=f"{name}.pdf", mime="application/pdf",
                       key="samples_report_pdf")
    c2.download_button("Download report (HTML)", ready[1].encode("utf-8"), file_name=f"{name}.html",
                       mime="text/html", key="samples_report_html")


def _delete(store: SampleStore, name: str) -> None:
    with st.expander("Delete this sample"):
        st.warning(f"Deletes {name!r} with its images, predictions, reviews and tags. This cannot be undone.")
        sure = st.checkbox(f"Yes, delete {name!r}", key=f"samples_confirm_delete::{name}")
        clicked = st.button("Delete sample", key="samples_delete", disabled=not sure, type="primary")
        if clicked and store_call(store.delete_sample, name) is not None:
            st.toast(f"Deleted sample {name!r}")
            st.rerun()  # the sample list no longer offers it


st.title("Samples")
st.markdown("Samples saved from Classify (or `spermlib samples add`): review the model's labels, "
            "download the report, export or delete. Decision support, not a diagnosis.")
store = sample_store()
if store is None:
    st.stop()
summaries = store_call(store.list_samples)
if not summaries:
    st.info("No samples yet. On **Classify**, classify images and use **Save as sample**; or run "
            "`spermlib samples add NAME --dataset smids IMAGE…`.")
    st.stop()
st.dataframe(vm.samples_table(summaries), hide_index=True, width="stretch")
names = [s.name for s in summaries]
if st.query_params.get("sample") in names and "samples_name" not in st.session_state:
    st.session_state["samples_name"] = st.query_params["sample"]
if st.session_state.get("samples_name") not in names:  # deleted, or saved in another database
    st.session_state.pop("samples_name", None)
name = st.selectbox("Sample", names, key="samples_name")
detail = store_call(store.sample, name)
if detail is None:
    st.stop()
spec, arch = get_dataset(detail.summary.dataset), detail.summary.arch
st.caption(f"{spec.title} · classified by {arch_title(arch)} · {detail.summary.code_version}")
_queue(store, name, detail.images, arch, spec)
_report(store, name, spec, arch, tuple(len(i.reviews) for i in detail.images))
st.subheader("Export")
csv = store_call(store.export_csv, name)
if csv is not None:
    st.download_button("Download one row per image (CSV)", csv.encode("utf-8"), file_name=f"{name}.csv",
                       mime="text/csv", key="samples_export")
_delete(store, name)
