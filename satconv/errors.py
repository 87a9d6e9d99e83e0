"""Exceptions raised by satconv, one per failure class, each with its exit code.

Exit codes follow the command-line contract: 0 all inputs done, 1 one or more inputs
failed, 2 usage or configuration error.
"""

from __future__ import annotations


class SatconvError(Exception):
    """Base class: a failure satconv can explain in one line."""

    exit_code = 1


class ConfigError(SatconvError):
    """The configuration (YAML file or options) is invalid."""

    exit_code = 2


class UsageError(SatconvError):
    """The command line asks for something that cannot work."""

    exit_code = 2


class InputError(SatconvError):
    """An input raster is missing, unreadable, or not usable."""


class PlanError(SatconvError):
    """A saved stride map does not fit the scene or the configuration."""


class OutputError(SatconvError):
    """An output cannot be written where it was asked for."""


class LimitError(InputError):
    """An input declares more than a configured limit allows (``limits:`` in the config)."""


class InputTimeout(InputError):
    """An input took longer than ``--timeout``; its run was stopped and nothing was written."""


class ClusterError(SatconvError):
    """The Dask cluster lost an input's work (the scheduler gone, a task that kept failing):
    that input fails, the others go on."""


class StoppedByClient(ClusterError):
    """The command that handed an input to the Dask cluster was stopped (Ctrl-C, SIGTERM):
    the input's task stops at its next tile and removes what it staged."""


class SatconvWarning(UserWarning):
    """Issued by the Python API for what the command line prints as a ``warning`` line: the
    input is done, but something may not be what was meant (a context source whose regions
    miss the scene, a budget below the least the scene can spend)."""
