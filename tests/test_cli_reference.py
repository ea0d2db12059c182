"""docs/cli.md is generated from the argparse parsers: stale means a command, flag, default or help text
changed without `spermlib report` being run."""

from __future__ import annotations

import argparse

from spermlib.cli import build_parser, main
from spermlib.cli.reference import CLI_REFERENCE, cli_reference_markdown, write_cli_reference


def test_the_committed_reference_is_current():
    assert write_cli_reference(CLI_REFERENCE, check=True), "docs/cli.md is stale: run `spermlib report`"


def _commands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _commands(sub)


def test_every_command_sub_command_and_flag_has_its_place():
    text = cli_reference_markdown()
    parsers = list(_commands(build_parser()))
    assert {"spermlib predict", "spermlib samples", "spermlib samples add"} <= {p.prog for p in parsers}
    for parser in parsers:
        section = text.split(f"\n## {parser.prog}\n", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, (parser.prog, flag)
    assert r"| `--out` | FILE.pdf\|FILE.html | required |" in text  # a cell's "|" does not split the table


def test_defaults_do_not_depend_on_the_machines_folders(monkeypatch, tmp_path):
    plain = cli_reference_markdown()
    monkeypatch.setenv("SPERMLIB_CHECKPOINTS", str(tmp_path / "redirected-checkpoints"))
    assert cli_reference_markdown() == plain
    assert "redirected-checkpoints" not in plain and "| checkpoints |" in plain


def test_writing_replaces_the_file_whole_and_check_only_compares(tmp_path):
    page = tmp_path / "docs" / "cli.md"
    page.parent.mkdir()
    page.write_text("old\n")
    assert write_cli_reference(page, check=True) is False and page.read_text() == "old\n"
    assert write_cli_reference(page) is False
    assert page.read_text() == cli_reference_markdown() and write_cli_reference(page, check=True) is True
    assert [p.name for p in page.parent.iterdir()] == ["cli.md"]  # no temporary file left


def test_report_check_names_the_stale_reference(monkeypatch, tmp_path, capsys):
    import spermlib.cli.reference as reference
    import spermlib.evaluation.report as report

    stale = tmp_path / "cli.md"
    stale.write_text("old\n")
    monkeypatch.setattr(reference, "CLI_REFERENCE", stale)
    monkeypatch.setattr(report, "update_generated", lambda *a, **kw: [])
    assert main(["report", "--check"]) == 1
    out = capsys.readouterr().out
    assert "stale:" in out and str(stale) in out and "README" not in out.split("stale:")[1].split(";")[0]
    assert main(["report"]) == 0 and stale.read_text() == cli_reference_markdown()
    assert f"rewrote {stale}" in capsys.readouterr().out
