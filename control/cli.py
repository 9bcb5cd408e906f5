"""The ``runq`` command line (the operator's commands arrive with the CLI issue)."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runq")
def cli() -> None:
    """runq: work queues and agents on Redis.

    \b
    Example:
        runq --version
    """


def main() -> None:
    cli()
