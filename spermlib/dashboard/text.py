"""Untrusted text in Markdown: the one place that makes a user's string render as the string it is.

Streamlit renders Markdown in ``st.markdown``, ``st.caption``, ``st.error``/``warning``/``info``/``success``,
widget labels and ``help``. A file name, a sample or dataset name, a reviewer, a tag, a comment or an error
line that echoes one is text a user chose: pasted in raw it can close a code span and open a phishing link
or a tracking image (``x`](https://evil) ![t](https://evil/t.png)``), draw a badge the app never gave
(``:red-background[OUT OF DOMAIN]``), start a heading or a list, or become HTML. Every such string goes
through :func:`md_escape` (inline text) or :func:`md_code` (a code span) before it is placed in Markdown.
"""

from __future__ import annotations

import re

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that mean something in
# Markdown, HTML, LaTeX ($) or Streamlit's own syntax (":" starts :red[…], :material/…: and other
# directives, which a backslash before the colon turns back into text).
MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|<>~$:&")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\u0085\u2028\u2029]+")
_BACKTICK_RUNS = re.compile(r"`+")


def one_line(text: object) -> str:
    """``str(text)`` with every run of line breaks replaced by one space (a user's string never starts a
    new Markdown block: no heading, list, quote or table of its own)."""
    return _LINE_BREAKS.sub(" ", "" if text is None else str(text))


def md_escape(text: object) -> str:
    """``text`` as Markdown that renders exactly as ``str(text)`` on one line: every Markdown-, HTML- and
    Streamlit-significant character backslash-escaped, line breaks collapsed to spaces."""
    return "".join(f"\\{c}" if c in MARKDOWN_SPECIALS else c for c in one_line(text))


def md_code(text: object) -> str:
    """``text`` as an inline code span that cannot be closed from inside: fenced by one backtick more than
    its longest run of backticks, padded with spaces (CommonMark strips one from each side), on one line.
    Inside a code span nothing is Markdown, so the content needs no other escaping."""
    body = one_line(text)
    fence = "`" * (1 + max((len(run) for run in _BACKTICK_RUNS.findall(body)), default=0))
    return f"{fence} {body} {fence}"
