"""Streamlit entry point: `streamlit run app.py`. Pages are thin; logic lives in spermlib."""

from __future__ import annotations

import streamlit as st

st.set_page_config(
    page_title="Sperm morphology — interpretable classification", page_icon=":material/biotech:", layout="wide"
)

pages = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/explorer.py", title="Dataset explorer", icon=":material/photo_library:"),
    st.Page("views/classify.py", title="Classify", icon=":material/biotech:"),
    st.Page("views/compare.py", title="Model comparison", icon=":material/leaderboard:"),
    st.Page("views/mistakes.py", title="Misclassification explorer", icon=":material/search:"),
    st.Page("views/embedding.py", title="Embedding map", icon=":material/scatter_plot:"),
]
st.navigation(pages).run()
