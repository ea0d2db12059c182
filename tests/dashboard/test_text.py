"""Untrusted text stays text: the issue's payloads, escaped by spermlib.dashboard.text, parse (CommonMark,
markdown-it) to one paragraph of plain text that reads as the original — no link, image, HTML, emphasis,
code span closed from inside, heading or list; Streamlit's ``:directive[…]`` syntax neutralised."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from spermlib.dashboard.text import MARKDOWN_SPECIALS, WORD_JOINER, md_code, md_escape, one_line

PHISHING_FILE_NAME = "x`](https://evil) ![t](https://evil/t.png)"
LINK_FILE_NAME = "x` [Log in again](https://evil) `"
FAKE_BADGE_REVIEWER = "Dr A :red-background[OUT OF DOMAIN] **verified**"
PAYLOADS = [
    PHISHING_FILE_NAME,
    LINK_FILE_NAME,
    FAKE_BADGE_REVIEWER,
    "<img src=x onerror=alert(1)> <b>bold</b> &lt;tag&gt;",
    "# Heading\n- item\n> quote\n1. one",
    "[click](javascript:alert(1)) <https://evil> $x^2$ ~~gone~~ | a | b |",
    "_under_ *star* __strong__ \\*escaped\\* `code`",
    ":material/delete: :red[alarm] :smile:",
    "see https://evil.test/login or www.evil.test, mail admin@evil.test",
]
MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _inline_tokens(markdown: str):
    tokens = MD.parse(markdown)
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"], "one paragraph only"
    return tokens[1].children


def _plain_text(markdown: str) -> str:
    children = _inline_tokens(markdown)
    assert {t.type for t in children} <= {"text", "softbreak"}, [t.type for t in children]
    return "".join(t.content for t in children).replace(WORD_JOINER, "")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_escaped_text_renders_as_itself_and_nothing_else(payload):
    assert _plain_text(md_escape(payload)) == one_line(payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_raw_payloads_are_markdown(payload):
    # The test above is not vacuous: unescaped, each payload is more than plain text.
    tokens = MD.parse(payload)
    kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
    assert kinds - {"paragraph_open", "inline", "paragraph_close", "text", "softbreak"} or ":" in payload


@pytest.mark.parametrize(("name", "injected"), [(PHISHING_FILE_NAME, "image"), (LINK_FILE_NAME, "link_open")])
def test_a_file_name_cannot_leave_its_code_span(name, injected):
    line = f"Saved {md_code(name)} as a sample"
    kinds = [t.type for t in _inline_tokens(line)]
    assert kinds == ["text", "code_inline", "text"]
    assert _inline_tokens(line)[1].content == name
    raw = f"Saved `{name}` as a sample"  # what the pages did: a tracking image, a phishing link
    assert injected in {t.type for t in _inline_tokens(raw)}


def test_streamlit_directives_are_neutralised():
    # Streamlit parses ":name[label]" (colours, badges) and ":material/icon:" as text directives; a
    # backslash before every colon makes each one literal text.
    escaped = md_escape(FAKE_BADGE_REVIEWER + " :material/warning:")
    assert ":" not in escaped.replace("\\:", "")
    assert "\\[OUT OF DOMAIN\\]" in escaped


def test_bare_links_and_icons_are_broken_invisibly():
    # Streamlit links bare URLs, www. names and emails (GFM autolink literals) and draws ":material/…:"
    # icons after the backslashes are resolved; a word joiner splits each pattern.
    text = "https://evil.test www.Evil.test a@evil.test :material/delete: mailto:x@y.z"
    escaped = md_escape(text).replace("\\", "")
    for pattern in ("://", "www.", "@e", "@y", ":material", ":x"):
        assert pattern not in escaped.lower()
    assert escaped.replace(WORD_JOINER, "") == text
    assert ":material/" not in md_code(":material/delete:")


def test_newlines_collapse_and_none_is_empty():
    assert md_escape("a\n\nb\r\nc\u2028d") == "a b c d"
    assert md_escape(None) == "" and md_escape(3.5) == "3\\.5"
    assert md_code("a\nb") == "` a b `"


def test_code_fence_outgrows_every_backtick_run():
    assert md_code("a``b") == "``` a``b ```"
    assert _inline_tokens(f"x {md_code('`a` ```b``` c')} y")[1].content == "`a` ```b``` c"


def test_every_ascii_markdown_character_is_escaped():
    assert set("\\`*_{}[]()#+-.!|<>~$:&") <= MARKDOWN_SPECIALS
    escaped = md_escape("".join(sorted(MARKDOWN_SPECIALS))).replace(WORD_JOINER, "")
    assert escaped == "".join(f"\\{c}" for c in sorted(MARKDOWN_SPECIALS))
