"""Streamlit entry point: `streamlit run app.py`. Pages are thin; logic lives in spermlib."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Sperm morphology — interpretable classification", page_icon="🔬", layout="wide")

overview = st.Page("pages/overview.py", title="Overview", icon="🏠", default=True)
st.navigation([overview]).run()
