"""README and the documentation speak of the project alone. A figure's provenance is its command, data, date,
precision and hardware; the patterns below are the wording that would name anything else."""

from __future__ import annotations

import re

import pytest

from spermlib.data.datasets import PROJECT_ROOT

DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]

# Each pattern names how-it-was-made wording; "session" is allowed only as a Streamlit or browser session.
FORBIDDEN = {
    "a work session": re.compile(r"(?<!streamlit )(?<!browser )(?<!concurrent browser )\bsessions?\b", re.I),
    "a lent machine": re.compile(r"\blent\b", re.I),
    "a borrowed machine": re.compile(r"\bborrow(ed|ing)?\b", re.I),
    # "registered per call" and "a per-call wrapper" are about code; a limit per call is about a machine
    "a per-call limit": re.compile(r"\b\d+ ?[KMG]i?B (per|a|each) call\b|\bper[- ]call (limit|transfer)", re.I),
    "a lease": re.compile(r"\blease[ds]?\b", re.I),
    "device time": re.compile(r"\bdevice time\b", re.I),
    "an ordinal work period": re.compile(
        r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth"
        r"|\d+(st|nd|rd|th)) (session|round|period|sitting)\b", re.I),
    "a numbered round": re.compile(r"\bround \d+\b", re.I),
    "a lever number": re.compile(r"\blever \d+\b", re.I),
}


def _offences(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        found += [f"{number}: {what}: {line.strip()[:100]}" for what, pattern in FORBIDDEN.items()
                  if pattern.search(line)]
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_documents_speak_of_the_project_alone(path):
    offences = _offences(path.read_text())
    assert not offences, f"{path.relative_to(PROJECT_ROOT)}:\n" + "\n".join(offences)


@pytest.mark.parametrize("text", [
    "in the eleventh session the model was retrained", "on a lent GPU", "64 MiB per call",
    "Round 2 on the borrowed H200", "Lever 5 shipped", "the work session ended"])
def test_the_patterns_catch_how_it_was_made(text):
    assert _offences(text)


@pytest.mark.parametrize("text", [
    "concurrent browser sessions never see each other's activations", "a Streamlit session",
    "the second stage starts from a trained model", "224 px inputs + corruption hardening",
    "talent", "excellent", "hooks are registered per call", "a small per-call wrapper of the head"])
def test_the_patterns_leave_the_project_words_alone(text):
    assert not _offences(text)
