"""Overview: what the system does and which data and checkpoints this installation found."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from spermlib.status import installation_status

st.title("Interpretable sperm-morphology classification")
st.markdown(
    "EfficientNet with a CBAM attention module classifies sperm images; Grad-CAM++ shows which "
    "regions drove each decision. Models are evaluated with leakage-free, stratified 5-fold "
    "cross-validation (pixel-identical duplicates always share a fold)."
)


@st.cache_data(ttl=60)
def _status() -> list[dict]:
    return installation_status()


rows = _status()
st.subheader("Data and models found")
st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
if not any(r["checkpoints"] for r in rows):
    st.info(
        "No trained checkpoints are installed yet. Train them with "
        "`python -m spermlib train --dataset smids --arch effnet_cbam` (see README)."
    )
st.subheader("Datasets")
for r in rows:
    st.markdown(f"**{r['dataset']}** — {r['citation']}")
