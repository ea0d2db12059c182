"""Streamlit entry point: `streamlit run app.py`. Pages are thin; logic lives in spermlib."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Sperm morphology — interpretable classification", page_icon="🔬", layout="wide")

pages = [
    st.Page("pages/overview.py", title="Overview", icon="🏠", default=True),
    st.Page("pages/explorer.py", title="Dataset explorer", icon="🗂️"),
    st.Page("pages/classify.py", title="Classify", icon="🔬"),
    st.Page("pages/compare.py", title="Model comparison", icon="📊"),
    st.Page("pages/mistakes.py", title="Misclassification explorer", icon="🔎"),
    st.Page("pages/embedding.py", title="Embedding map", icon="🗺️"),
]
st.navigation(pages).run()
