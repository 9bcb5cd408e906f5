"""``runq config view``: the effective settings and where each came from.

Every setting is a ``RUNQ_*`` variable read by ``runq.broker.settings.RunqSettings`` (the
one place they are read); this prints what this environment gives them, as Prefect's
``prefect config view`` does: the value, and ``env`` or ``default``. Passwords in URLs
are masked and the claim token is starred.
"""

from __future__ import annotations

import click

from runq.broker.settings import RunqSettings

from .common import add_row, new_table, output_option, print_json, print_table, wants_json


@click.group("config")
def config() -> None:
    """See runq's settings (RUNQ_* environment variables).

    \b
    Example:
        runq config view
    """


@config.command("view")
@output_option
@click.option(
    "--show-defaults/--hide-defaults",
    default=True,
    show_default=True,
    help="Also list the settings left at their defaults.",
)
def view(output: str, show_defaults: bool) -> None:
    """Print the effective settings and where each came from (env or default).

    Passwords in URLs are masked (redis://user:***@host) and the claim token is never
    shown. A bad value is an error naming its variable, as for every command.

    \b
    Examples:
        runq config view
        RUNQ_LEASE_SECONDS=60 runq config view --hide-defaults
        runq config view -o json
    """
    entries = [
        entry
        for entry in RunqSettings.from_env().entries()
        if show_defaults or entry["source"] == "env"
    ]
    if wants_json(output):
        print_json(
            [
                {key: entry[key] for key in ("variable", "value", "source", "description")}
                for entry in entries
            ]
        )
        return
    table = new_table("Settings", ["Variable", "Value", "Source", "Description"])
    for entry in entries:
        value = entry["value"]
        shown = (
            "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
        add_row(table, entry["variable"], shown, entry["source"], entry["description"])
    print_table(table)
