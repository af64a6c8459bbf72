"""The ``tripletlab`` command line. It only parses arguments and calls the library.

Errors a user can cause (a bad flag value, config, path or dataset) are printed as one line,
``error: …``, and the process exits with status 2, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from tripletlab.errors import TripletlabError

USER_ERRORS = (
    TripletlabError,
    ValueError,
    TypeError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tripletlab")
def main() -> None:
    """Deep metric learning with the triplet loss: train, evaluate, mine, analyse."""


# --- sub-commands are registered below, one section per area -------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
