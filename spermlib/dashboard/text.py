"""Untrusted text in Markdown: the one place that makes a user's string render as the string it is.

Streamlit renders Markdown in ``st.markdown``, ``st.caption``, ``st.error``/``warning``/``info``/``success``,
widget labels and ``help``. A file name, a sample or dataset name, a reviewer, a tag, a comment or an error
line that echoes one is text a user chose: pasted in raw it can close a code span and open a phishing link
or a tracking image (``x`](https://evil) ![t](https://evil/t.png)``), draw a badge the app never gave
(``:red-background[OUT OF DOMAIN]``), start a heading or a list, or become HTML. Every such string goes
through :func:`md_escape` (inline text) or :func:`md_code` (a code span) before it is placed in Markdown.

Backslashes are not enough in Streamlit: its Markdown also turns bare URLs, ``www.`` names and email
addresses into links (GitHub's autolink literals) and ``:material/…:`` into icons after the escapes are
resolved. An invisible WORD JOINER (U+2060) after every ``:`` and ``@`` and after a ``www`` before a dot
breaks those patterns without changing what the reader sees.
"""

from __future__ import annotations

import re

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that mean something in
# Markdown, HTML, LaTeX ($) or Streamlit's own syntax (":" starts :red[…], :material/…: and other
# directives, which a backslash before the colon turns back into text).
MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|<>~$:&")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\u0085\u2028\u2029]+")
WORD_JOINER = "\u2060"  # invisible, no line break: splits "https://", "www.", "a@b" and ":material/"
_LINK_STARTS = re.compile(r"(?i)(?<=www)(?=\.)")
_BACKTICK_RUNS = re.compile(r"`+")


def one_line(text: object) -> str:
    """``str(text)`` with every run of line breaks replaced by one space (a user's string never starts a
    new Markdown block: no heading, list, quote or table of its own)."""
    return _LINE_BREAKS.sub(" ", "" if text is None else str(text))


def md_escape(text: object) -> str:
    """``text`` as Markdown that renders as ``str(text)`` on one line: every Markdown-, HTML- and
    Streamlit-significant character backslash-escaped, line breaks collapsed to spaces, and a word joiner
    (invisible) where a link or an icon would otherwise start."""
    line = _LINK_STARTS.sub(WORD_JOINER, one_line(text))
    return "".join(_escaped(c) for c in line)


def _escaped(char: str) -> str:
    if char in ":@":
        return f"\\{char}{WORD_JOINER}" if char == ":" else f"@{WORD_JOINER}"
    return f"\\{char}" if char in MARKDOWN_SPECIALS else char


def md_code(text: object) -> str:
    """``text`` as an inline code span that cannot be closed from inside: fenced by one backtick more than
    its longest run of backticks, padded with spaces (CommonMark strips one from each side), on one line.
    Inside a code span nothing is Markdown, so the content needs no other escaping."""
    body = one_line(text).replace(":material/", f":{WORD_JOINER}material/")  # Streamlit rewrites it in code too
    fence = "`" * (1 + max((len(run) for run in _BACKTICK_RUNS.findall(body)), default=0))
    return f"{fence} {body} {fence}"
