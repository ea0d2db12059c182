"""Streamlit entry point: `streamlit run app.py`. Pages only lay out; decisions live in spermlib.dashboard.

With authentication configured (an ``[auth]`` section in ``.streamlit/secrets.toml``; docs/security.md), a
visitor who is not logged in gets the login screen alone: no page and no navigation is built for them, so no
URL reaches a page. A logged-in user gets the pages their role allows (spermlib.dashboard.pages.pages_for) and
their identity in the sidebar. Without authentication the single local user gets every page, as before.

The pages come from one registry (spermlib.dashboard.pages). The selected page runs inside
views.common.run_guarded: an error the user can fix is one st.error with its message, anything else one
generic st.error with the traceback in the server log (.streamlit/config.toml hides error details from
the browser as well). Tests set $SPERMLIB_APP_RAISE_ERRORS=1 so exceptions reach them.
"""

from __future__ import annotations

import streamlit as st

from spermlib.dashboard.pages import pages_for
from spermlib.dashboard.provenance import about
from views.auth import gate, sidebar_identity
from views.common import run_guarded, warm_up_models

st.set_page_config(
    page_title="Sperm morphology — interpretable classification", page_icon=":material/biotech:", layout="wide",
    menu_items={"About": about()},
)
actor = gate()
if actor is None:
    st.stop()  # the login screen is drawn; nothing else runs for a visitor who is not logged in
page = st.navigation([st.Page(p.file, title=p.title, icon=p.icon, default=p.default) for p in pages_for(actor)])
sidebar_identity(actor)
try:
    run_guarded(page.run)
finally:
    # After the page, not beside it: importing torch in a thread slows a torch-free first page (GIL, 2 cores).
    warm_up_models()  # torch and the default model then load in the background while the user reads
