"""``its-faust settings``: every setting, its environment variable, the value this process would use and its default."""

from __future__ import annotations

import json
import textwrap

import click

from its_faust.cli_support import settings_or_fail


def _text(value) -> str:
    """As it would be written in the environment (lists as JSON, nothing as empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


@click.command("settings")
@click.argument("search", required=False)
@click.option("--changed", is_flag=True, help="Only the settings whose value is not the default.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list: variable, value, default, changed, set_by, description.")
def settings_command(search: str | None, changed: bool, as_json: bool) -> None:
    """List every setting: its variable, the value this environment gives it, its default and what it does.

    The value is what a command started here would use: the defaults, then the profile
    (ITS_FAUST_PROFILE), a .env file in this folder, then the environment. SEARCH keeps the
    settings whose variable or description contains it (any case). Examples:

    \b
      its-faust settings --changed      what the profile, .env and environment set here
      its-faust settings api            the API's settings
    """
    from its_faust.settings import describe

    rows = describe(settings_or_fail())
    if search:
        rows = [r for r in rows if search.lower() in (r["variable"] + " " + r["description"]).lower()]
    if changed:
        rows = [r for r in rows if r["changed"]]
    if as_json:
        click.echo(json.dumps([{**r, "value": _json(r["value"]), "default": _json(r["default"])} for r in rows], indent=2))
        return
    if not rows:
        if search:  # as grep does: said on stderr, exit status 1 (a script reading stdout got the message as a value)
            click.echo(f"no setting matches {search!r}", err=True)
            raise SystemExit(1)
        click.echo("every setting has its default here" if changed else "no settings")
        return
    for r in rows:
        by = f"; set by {r['set_by']}" if r["set_by"] else ""
        default = f"   (default: {_text(r['default']) or 'empty'}{by})" if r["changed"] else ""
        click.echo(f"{r['variable']}={_text(r['value'])}{default}")
        if r["description"]:
            click.echo(textwrap.fill(r["description"], width=100, initial_indent="    ", subsequent_indent="    "))


def _json(value):
    """Values JSON can hold (paths as text)."""
    return value if value is None or isinstance(value, (bool, int, float, str, list, dict)) else str(value)
