"""The CLI reference page ``docs/cli.md``, rendered from the argparse parsers so that it cannot drift from them.

``spermlib report`` rewrites it, ``spermlib report --check`` says whether it is current, and
tests/test_cli_reference.py fails when it is stale. One ``## spermlib VERB`` section per command and
sub-command: what it does, its usage line and a table of every option and positional argument.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spermlib.data.datasets import DATASETS_ENV, PROJECT_ROOT
from spermlib.fileio import write_text
from spermlib.store.paths import CHECKPOINTS_ENV, RESULTS_ENV, project_relative

CLI_REFERENCE = PROJECT_ROOT / "docs" / "cli.md"
_USAGE_WIDTH = 10_000  # one usage line, whatever the terminal's width
_INTRO = """# Command-line reference

Generated from the command's argument parsers by `spermlib report` (`spermlib/cli/reference.py`); do not
edit by hand. Every command also runs as `python -m spermlib VERB …`, and every command and sub-command
takes `-h` / `--help`. Defaults are shown as on a machine without `$SPERMLIB_CHECKPOINTS`,
`$SPERMLIB_RESULTS` or `$SPERMLIB_DATASETS`; paths are relative to the repository root.
"""


@contextmanager
def _without_store_redirection() -> Iterator[None]:
    """Parsers whose defaults do not depend on this machine's ``$SPERMLIB_*`` folders."""
    saved = {name: os.environ.pop(name) for name in (CHECKPOINTS_ENV, RESULTS_ENV, DATASETS_ENV) if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of each sub-command of ``parser``, in ``--help`` order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _escape(text: str) -> str:
    """Markdown-safe text: ``<arch>`` is not an HTML tag."""
    return text.replace("<", "&lt;")


def _cell(text: str) -> str:
    return _escape(text).replace("|", r"\|")


def _anchor(prog: str) -> str:
    return prog.replace(" ", "-")  # MkDocs' heading ids: "spermlib samples add" → "spermlib-samples-add"


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=_USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _value(action: argparse.Action, prog: str) -> str:
    """What the argument takes, as ``--help`` writes it: ``FOLDER``, ``{auto,timm}``, ``[ADDRESS]``."""
    if action.nargs == 0 or (not action.option_strings and action.nargs is None and not action.choices):
        return ""
    default_metavar = action.dest.upper() if action.option_strings else action.dest
    return argparse.HelpFormatter(prog)._format_args(action, default_metavar)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if action.default else "off"
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS, []):
        return ""
    default = str(action.default)
    return project_relative(Path(default)) if os.path.isabs(default) else default


def _help(action: argparse.Action, prog: str) -> str:
    text = (action.help or "").removesuffix(" (default: %(default)s)")  # BooleanOptionalAction's, on some Pythons
    return text % {**vars(action), "prog": prog}


def _argument_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| Argument | Value | Default | Description |", "| --- | --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.metavar or action.dest}`"
        cells = (_value(action, parser.prog), _default(action), _help(action, parser.prog))
        rows.append(f"| {names} | " + " | ".join(_cell(c) for c in cells) + " |")
    return rows if len(rows) > 2 else []


def _command_list(parser: argparse.ArgumentParser) -> list[str]:
    return [f"- [`{sub.prog}`](#{_anchor(sub.prog)}): {_escape(help_text)}"
            for _, help_text, sub in _subcommands(parser)]


def _section(parser: argparse.ArgumentParser, help_text: str) -> str:
    lines = [f"## {parser.prog}", ""]
    lines += [_escape(text) + "\n" for text in (help_text, parser.description) if text]
    lines += ["```text", _usage(parser), "```", ""]
    for block in (_argument_table(parser), _command_list(parser)):
        lines += [*block, ""] if block else []
    return "\n".join(lines)


def _sections(parser: argparse.ArgumentParser) -> Iterator[str]:
    for _, help_text, sub in _subcommands(parser):
        yield _section(sub, help_text)
        yield from _sections(sub)


def cli_reference_markdown() -> str:
    """The whole page: the commands' list, then one section per command and sub-command."""
    from spermlib.cli import build_parser  # (this module is part of the package it documents)

    with _without_store_redirection():
        parser = build_parser()
    head = [_INTRO, "```text", _usage(parser), "```", "", *_command_list(parser), ""]
    return "\n".join([*head, *_sections(parser)]).rstrip("\n") + "\n"


def write_cli_reference(path: Path = CLI_REFERENCE, check: bool = False) -> bool:
    """Rewrite ``path`` (atomically: a temporary file renamed over it), or with ``check`` only compare.
    Returns whether it was current."""
    text = cli_reference_markdown()
    current = path.is_file() and path.read_text(encoding="utf-8") == text
    if not check and not current:
        write_text(path, text)  # a reader sees the old page or the new one, never half of one
    return current
