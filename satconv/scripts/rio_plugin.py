"""``rio satconv``: satconv's commands inside rasterio's ``rio``, through its plugin entry point.

Registered in ``pyproject.toml`` under ``[project.entry-points."rasterio.rio_plugins"]``. The
group holds the very click commands of ``satconv`` (:mod:`satconv.scripts.cli`), loaded only
when a ``rio satconv`` command runs, so ``rio --help`` stays quick.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from .stops import StoppableGroup


class _SatconvCommands(StoppableGroup):
    """A group whose commands are ``satconv``'s own, imported on first use, and stop as
    they do under ``satconv`` (:mod:`satconv.scripts.stops`)."""

    @staticmethod
    def _cli() -> click.Group:
        from .cli import cli

        return cli

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._cli().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._cli().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        """A usage error of a satconv command is one line, exit 2, as under ``satconv``
        (``rio`` itself would print click's usage block)."""
        from .cli import _usage_line

        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            line = _usage_line(err)  # "satconv run: ..." here: rio's path has one word more
            click.echo(f"satconv: {line.removeprefix('satconv ')}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_SatconvCommands, name="satconv",
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="satconv")
def satconv() -> None:
    """Adaptive-stride convolution of large GeoTIFFs (satconv run, plan, preview, config)."""
