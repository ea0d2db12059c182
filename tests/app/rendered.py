"""What a reader sees of the Markdown a page sends: the pages escape untrusted text (spermlib.dashboard.text),
so tests that look for words compare the text without its backslash escapes and invisible word joiners."""

from __future__ import annotations

import re

from spermlib.dashboard.text import WORD_JOINER


def visible(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown).replace(WORD_JOINER, "")
