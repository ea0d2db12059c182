"""Streamlit glue for what users save (samples, reviews, tags): the cached store, who acts, the tag panel.

Pages never write files or SQL: they call the samples store (``SampleStore``, opened by
:func:`spermlib.dashboard.review.open_store`), passing the session's actor (``views.auth.current_actor``);
the store refuses what the actor's role may not do, and the pages do not show such controls. The store is one
engine per process and database URL (``st.cache_resource``; the engine pools connections and every call
is its own transaction, so sessions share it safely). A database that cannot be opened (locked, corrupt,
newer) is one st.error where the store is needed; the rest of the page, and every other page, still works.
Every user string shown in Markdown goes through ``md_escape``.
"""

from __future__ import annotations

import streamlit as st

from spermlib.dashboard import review as vm
from spermlib.dashboard.compare import default_entry
from spermlib.dashboard.identity import Actor
from spermlib.dashboard.pages import page
from spermlib.dashboard.resources import DatasetSpec
from spermlib.dashboard.review import SampleStore, SampleStoreError
from spermlib.dashboard.text import md_escape
from spermlib.errors import SpermlibError
from views.auth import auth_configured, current_actor


@st.cache_resource(show_spinner=False)
def _store(url: str) -> SampleStore:
    return vm.open_store(url)  # a failure is not cached: the next run tries again


def sample_store() -> SampleStore | None:
    """The samples store, or ``None`` after one st.error saying why it cannot be used."""
    try:
        return _store(vm.default_db_url())
    except SampleStoreError as err:
        st.error(f"Saved samples, reviews and tags are unavailable: {md_escape(err)}")
        return None


def store_call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the store; a refusal (role, stale sample, bad input) or database failure is
    one st.error and ``None``."""
    try:
        return fn(*args, **kwargs)
    except SpermlibError as err:
        st.error(md_escape(err))
        return None


def page_actor(key: str) -> Actor | None:
    """The session's actor; ``None`` (after a log-in prompt) when authentication is on and nobody is logged in."""
    actor = current_actor()
    if actor is None:
        st.info("Log in to see saved samples, reviews and tags.")
        st.button("Log in", key=f"{key}_login", on_click=st.login)
    return actor


def reviewer(actor: Actor, key: str) -> Actor | None:
    """Who reviews and tags: the logged-in user (shown, not editable), or without authentication the local
    user under a typed name. ``None`` until there is one."""
    if auth_configured():
        st.caption(f"Reviewing as **{md_escape(actor.display)}** ({actor.role.name.lower()})")
        return actor
    name = st.text_input("Your name (recorded with each review and tag)", key=key, max_chars=200,
                         placeholder="e.g. Dr A. Smith")
    return vm.reviewing_as(actor, name) if name.strip() else None


def _tag_line(t) -> str:
    comment = f": {md_escape(t.comment)}" if t.comment else ""
    return f"🏷️ **{md_escape(t.tag)}**{comment} — {md_escape(t.author)}"


def image_tags_panel(store: SampleStore, spec: DatasetSpec, path: str, key: str, actor: Actor) -> None:
    """Tags and comments on one dataset image: the ones it has (removable by a reviewer), and a form to add one."""
    tags = [t for t in store_call(store.dataset_tags, spec.name) or [] if t.path == path]
    for t in tags:
        c1, c2 = st.columns([5, 1])
        c1.markdown(_tag_line(t))
        if actor.can("untag") and c2.button("Remove", key=f"{key}_rm_{t.tag}"):
            store_call(store.untag_dataset_image, actor, spec.name, path, t.tag)
            st.rerun()
    if not actor.can("tag"):
        return
    author = reviewer(actor, f"{key}_author")
    with st.form(f"{key}_form", clear_on_submit=True, border=False):
        c1, c2 = st.columns(2)
        tag = c1.selectbox("Tag", vm.SUGGESTED_TAGS, accept_new_options=True, key=f"{key}_tag")
        comment = c2.text_input("Comment (optional)", key=f"{key}_comment")
        if st.form_submit_button("Add tag") and tag:
            if author is None:
                st.error("Enter your name first: every tag records who added it.")
            elif store_call(store.tag_dataset_image, author, spec.name, path, tag, comment) is not None:
                st.rerun()


def dataset_tags_section(spec: DatasetSpec, path: str | None, key: str) -> None:
    """The tag panel of the image shown (``path``) and every tag of the dataset: filterable, as CSV (admins)."""
    st.subheader("Tags and comments")
    store = sample_store()
    actor = page_actor(key) if store is not None else None
    if store is None or actor is None:
        return
    if path:
        st.markdown(f"**This image** ({md_escape(path)})")
        image_tags_panel(store, spec, path, key, actor)
    table = vm.tags_table(store_call(store.dataset_tags, spec.name) or [])
    if table.empty:
        st.caption(f"No image of {spec.title} is tagged yet.")
        return
    chosen = st.multiselect("Show tags", sorted(table["tag"].unique()), key=f"{key}_filter",
                            placeholder="All tags")
    shown = vm.filter_tags(table, chosen)
    st.dataframe(shown, hide_index=True, width="stretch")
    if actor.can("export"):
        st.download_button("Download tags (CSV)", vm.csv_bytes(shown), file_name=f"{spec.name}_tags.csv",
                           mime="text/csv", key=f"{key}_download")


def save_as_sample(spec: DatasetSpec, inputs, results, predictors) -> None:
    """Classify's "Save as sample": these images and the verdicts shown, under a name, for review and a report."""
    actor = current_actor()
    if actor is None or not actor.can("save"):
        return  # a viewer classifies; saving needs the reviewer role
    st.subheader("Save as sample")
    with st.form("classify_save_sample", border=False):
        name = st.text_input("Sample name", key="classify_sample_name", max_chars=200,
                             placeholder="e.g. 2026-11-26 run 3 (no patient identifier needed)")
        submitted = st.form_submit_button("Save as sample")
    st.caption("Keeps the images and every model's verdict in the samples database, for an expert's review, a "
               "PDF/HTML report and CSV export on the Samples page.")
    if not submitted:
        return
    store = sample_store()
    if store is None:
        return
    images, checkpoints = vm.classify_to_sample(inputs, results, predictors)
    arch = default_entry(list(results))  # the paper's model where it classified them
    summary = store_call(store.save_sample, actor, name, spec.name, arch, images, checkpoints)
    if summary is not None:
        st.session_state["samples_name"] = summary.name  # the Samples page opens on it
        st.success(f"Saved sample '{md_escape(summary.name)}': {summary.n_images} image(s).")
        st.page_link(page("samples").file, label="Review it on the Samples page", icon=":material/fact_check:")
