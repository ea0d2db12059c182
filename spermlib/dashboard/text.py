"""User text inside Markdown: escaped so that it stays text (no link, image, badge or HTML it could draw)."""

from __future__ import annotations

import re

# Markdown's and HTML's significant characters, plus "$" (Streamlit renders $…$ as LaTeX) and "~" (strikethrough)
_SIGNIFICANT = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md_escape(text: object) -> str:
    """``text`` (any value, via ``str``) safe to paste into an ``st.markdown`` body: every Markdown/HTML
    significant character backslash-escaped, newlines turned into spaces (no new block can start)."""
    flat = re.sub(r"[\r\n]+", " ", str(text))
    return _SIGNIFICANT.sub(r"\\\1", flat)
