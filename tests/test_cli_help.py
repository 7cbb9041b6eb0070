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

