"""Every command shows its help for -h, including those whose arguments may start with a dash."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from its_faust.cli import main


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", list(_commands(main)), ids=" ".join)
def test_dash_h_shows_the_help(path):
    done = CliRunner().invoke(main, [*path, "-h"])
    assert done.exit_code == 0 and done.output.startswith("Usage: "), done.output



@pytest.mark.parametrize("path", [p for p in _commands(main) if "-h, --help" not in CliRunner().invoke(main, [*p, "-h"]).output],
                         ids=" ".join)
def test_a_help_without_the_short_option_listed_says_that_h_works_too(path):
    """Commands whose arguments may start with a dash parse -h themselves; their help must still say so."""
    assert "(-h too)" in CliRunner().invoke(main, [*path, "-h"]).output
