"""How every command's `--help` is laid out: prose wrapped to the terminal, example lines kept as written.

This module owns the help formatter the `userstream` commands share and the shape of their "examples"
epilog, nothing else (each command writes its own texts, beside its flags). argparse's own formatter either
wraps everything, which folds the examples into one paragraph, or nothing (`RawDescriptionHelpFormatter`),
which leaves long descriptions unwrapped; this one wraps a paragraph unless one of its lines is indented.
tests/test_cli_help.py holds every command to it: each flag has a help text, a flag's default is shown,
each example parses.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["HelpFormatter", "credentials_paragraph", "parser_texts"]


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a paragraph with an indented line (an example) is kept verbatim."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line[:1].isspace() for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


def parser_texts(description: str, examples: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The keyword arguments of `add_parser` (or `ArgumentParser`) for a description and its examples,
    each `(what it does, the command line)`; paragraphs of the description are separated by blank lines."""
    lines = ["examples:"]
    for what, command in examples:
        lines += [f"  # {what}", f"  {command}"]
    return {
        "description": description,
        "epilog": "\n".join(lines),
        "formatter_class": HelpFormatter,
    }


def credentials_paragraph(environment: Mapping[str, str]) -> str:
    """Where a command that connects to one account reads its credentials, every variable spelled out
    (`environment` is `userstream.client.command.ENVIRONMENT`)."""
    return (
        "Credentials: the flags, or (safer: flags show in `ps`) the environment. Bitmusa reads "
        f"{environment['bitmusa_api_key']} and {environment['bitmusa_auth_key']}; Coinlocally reads "
        f"{environment['coinlocally_token']}, else {environment['coinlocally_api_key']}. A flag wins over "
        "its variable."
    )
