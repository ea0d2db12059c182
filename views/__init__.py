"""The Streamlit pages (layout only; see docs/architecture.md for what they may import)."""
