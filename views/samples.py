"""Samples: saved samples, a review queue ordered by need, one-click accept/correct, history, report, export,
delete and restore, the audit log.

Everything is read and written through the samples store (views.annotations → spermlib.dashboard.review),
as the session's actor: the store refuses what the actor's role may not do, and this page does not show such
controls (a viewer looks; a reviewer also reviews and tags; an admin also exports, deletes, restores and
reads the audit log). Every action carries the ids and version of what the page showed, so an action on a
sample changed or deleted meanwhile is refused. Building the report draws Grad-CAM++ maps, so it is made on
request. ``?sample=NAME`` preselects a sample (the Classify page links here after saving).
"""

from __future__ import annotations

import streamlit as st

from spermlib.dashboard import review as vm
from spermlib.dashboard.identity import Actor
from spermlib.dashboard.images import fit
from spermlib.dashboard.resources import DatasetSpec, ImageError, get_dataset, load_rgb
from spermlib.dashboard.review import SampleStore
from spermlib.dashboard.tables import arch_title
from spermlib.dashboard.text import md_escape
from views.annotations import page_actor, reviewer, sample_store, store_call
from views.auth import auth_configured
from views.common import get_predictor

PAGE_SIZE = 10
THUMB_SIDE = 120


def _review(store: SampleStore, actor: Actor, ref, label: str) -> None:
    key = f"comment::{ref.file_name}"
    if store_call(store.review, actor, ref, label, st.session_state.get(key)):
        st.session_state.pop(key, None)


def _verdict_lines(item: vm.QueueItem, spec: DatasetSpec) -> list[str]:
    img, pred = item.image, item.prediction
    verdict = f"**{spec.display(pred.label)}** ({pred.confidence:.0%})" if pred else "no verdict"
    lines = [f"{md_escape(img.file_name)} · model: {verdict}"]
    if item.reasons:
        lines.append(" ".join(f":orange-badge[{r}]" for r in item.reasons))
    if img.tags:
        lines.append(" ".join(f":blue-badge[{md_escape(t.tag)}]" for t in img.tags))
    latest = img.latest_review
    if latest:
        lines.append(f":green-badge[reviewed] **{spec.display(latest.label)}** by {md_escape(latest.reviewer)}")
    return lines


def _queue_item(store: SampleStore, detail, item: vm.QueueItem, spec: DatasetSpec, actor: Actor,
                who: Actor | None) -> None:
    """One image: thumbnail, the model's verdict and why it needs review, one button per label, history."""
    img, pred, ref = item.image, item.prediction, detail.image_ref(item.image)
    with st.container(border=True):
        c1, c2, c3 = st.columns([1, 3, 3])
        try:
            c1.image(fit(load_rgb(store.image_bytes(detail.summary.name, img.file_name), name=img.file_name),
                         THUMB_SIDE))
        except ImageError as err:
            c1.error(md_escape(err))
        for line in _verdict_lines(item, spec):
            c2.markdown(line)
        if actor.can("review"):
            c3.text_input("Comment (optional)", key=f"comment::{img.file_name}", label_visibility="collapsed",
                          placeholder="comment (optional)")
            buttons = c3.container(horizontal=True)
            for label in spec.class_dirs:
                accept = pred is not None and label == pred.label
                buttons.button(f"Accept {spec.display(label)}" if accept else spec.display(label),
                               key=f"review::{img.file_name}::{label}", type="primary" if accept else "secondary",
                               disabled=who is None, on_click=_review, args=(store, who, ref, label))
        if actor.can("tag"):
            with c3.popover("Tag this image", disabled=who is None):
                _tag_form(store, ref, who)
        if img.reviews:
            with st.expander(f"History ({len(img.reviews)} review{'s' if len(img.reviews) != 1 else ''})"):
                st.dataframe(vm.history_table(img.reviews, spec), hide_index=True, width="stretch")


def _tag_form(store: SampleStore, ref, who: Actor | None) -> None:
    with st.form(f"tag::{ref.file_name}", clear_on_submit=True, border=False):
        tag = st.selectbox("Tag", vm.SUGGESTED_TAGS, accept_new_options=True, key=f"tag::{ref.file_name}::tag")
        comment = st.text_input("Comment (optional)", key=f"tag::{ref.file_name}::comment")
        if st.form_submit_button("Add tag") and tag and who is not None and store_call(
                store.tag_image, who, ref, tag, comment) is not None:
            st.rerun()


def _queue(store: SampleStore, detail, spec: DatasetSpec, actor: Actor) -> None:
    st.subheader("Review queue")
    queue = vm.review_queue(detail.images, detail.summary.arch)
    n_done = sum(i.reviewed for i in queue)
    can_review = actor.can("review")
    st.caption(f"{n_done} of {len(queue)} images reviewed. Out-of-domain, low-confidence and fold-disagreement "
               "images come first" + ("; a click on a label records your review (earlier reviews are kept)."
                                      if can_review else "."))
    who = reviewer(actor, "samples_reviewer") if can_review or actor.can("tag") else None
    if can_review and who is None:
        st.info("Enter your name above to review.")
    shown = queue if st.toggle("Show reviewed images too", key="samples_show_reviewed") else [
        i for i in queue if not i.reviewed]
    if not shown:
        st.success("Every image of this sample has been reviewed.")
    for item in shown[:PAGE_SIZE]:
        _queue_item(store, detail, item, spec, actor, who)
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
    c1.download_button("Download report (PDF)", ready[0], file_name=vm.download_name(name, ".pdf"),
                       mime="application/pdf", key="samples_report_pdf")
    c2.download_button("Download report (HTML)", ready[1].encode("utf-8"), file_name=vm.download_name(name, ".html"),
                       mime="text/html", key="samples_report_html")


def _export(store: SampleStore, name: str, actor: Actor, stamp: tuple) -> None:
    """The CSV is made on request: each export is an audit entry."""
    st.subheader("Export")
    key = f"samples_export::{name}::{stamp}"
    if st.button("Prepare the CSV export (one row per image)", key="samples_prepare_export"):
        export = store_call(store.export_csv, actor, name)
        if export is not None:
            st.session_state[key] = export.text
    if st.session_state.get(key) is not None:
        st.download_button("Download one row per image (CSV)", st.session_state[key].encode("utf-8"),
                           file_name=vm.download_name(name, ".csv"), mime="text/csv", key="samples_export")


def _delete(store: SampleStore, summary, actor: Actor) -> None:
    name = md_escape(summary.name)
    with st.expander("Delete this sample"):
        st.warning(f"Hides '{name}' with its images, predictions, reviews and tags. An admin can restore it; "
                   "only `spermlib samples purge` erases it (its audit entries stay).")
        sure = st.checkbox(f"Yes, delete '{name}'", key=f"samples_confirm_delete::{summary.name}")
        clicked = st.button("Delete sample", key="samples_delete", disabled=not sure, type="primary")
        if clicked and store_call(store.delete_sample, actor, summary.ref) is not None:
            st.toast(f"Deleted sample '{name}'")
            st.rerun()  # the sample list no longer offers it


def _deleted(store: SampleStore, actor: Actor) -> None:
    gone = store_call(store.deleted_samples, actor) or []
    if not gone:
        return
    with st.expander(f"Deleted samples ({len(gone)})"):
        for s in gone:
            c1, c2 = st.columns([5, 1])
            c1.markdown(f"{md_escape(s.name)} · {s.n_images} images · deleted {s.deleted_at:%Y-%m-%d %H:%M} UTC "
                        f"by {md_escape(s.deleted_by or '?')}")
            if c2.button("Restore", key=f"samples_restore::{s.id}") and store_call(
                    store.restore_sample, actor, s.id) is not None:
                st.rerun()


def _audit(store: SampleStore, actor: Actor) -> None:
    st.subheader("Audit log")
    entries = store_call(store.audit_log, actor, limit=vm.AUDIT_ROWS_SHOWN)
    if entries is None:
        return
    st.caption(f"Every save, review, tag, delete, restore, purge and export, newest first (the last "
               f"{vm.AUDIT_ROWS_SHOWN} shown). Entries are never changed or removed.")
    st.dataframe(vm.audit_table(entries), hide_index=True, width="stretch")
    if st.button("Prepare the whole audit log (CSV)", key="samples_prepare_audit"):
        st.session_state["samples_audit_csv"] = store_call(store.audit_csv, actor)
    if st.session_state.get("samples_audit_csv"):
        st.download_button("Download the audit log (CSV)", st.session_state["samples_audit_csv"].encode("utf-8"),
                           file_name="spermlib_audit_log.csv", mime="text/csv", key="samples_audit_download")


def _admin(store: SampleStore, actor: Actor) -> None:
    if actor.can("restore"):
        _deleted(store, actor)
    if actor.can("audit"):
        _audit(store, actor)


def _warn(problems) -> None:
    for problem in problems:
        st.warning(md_escape(problem))


st.title("Samples")
st.markdown("Samples saved from Classify (or `spermlib samples add`): review the model's labels, "
            "download the report, export or delete. Decision support, not a diagnosis.")
if not auth_configured():
    st.caption(vm.LOCAL_TOOL_NOTE)
store = sample_store()
actor = page_actor("samples") if store is not None else None
if store is None or actor is None:
    st.stop()
summaries = store_call(store.list_samples)
if summaries is None:  # the error is shown; "no samples" would be a false answer
    st.stop()
_warn(summaries.problems)
if not summaries:
    st.info("No samples yet. On **Classify**, classify images and use **Save as sample**; or run "
            "`spermlib samples add NAME --dataset smids IMAGE…`.")
    _admin(store, actor)
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
_warn(detail.problems)
spec, arch = get_dataset(detail.summary.dataset), detail.summary.arch
st.caption(f"{spec.title} · classified by {arch_title(arch)} · {md_escape(detail.summary.code_version)}")
_queue(store, detail, spec, actor)
stamp = (detail.summary.id, detail.summary.version)
_report(store, name, spec, arch, tuple(len(i.reviews) for i in detail.images))
if actor.can("export"):
    _export(store, name, actor, stamp)
if actor.can("delete"):
    _delete(store, detail.summary, actor)
_admin(store, actor)
