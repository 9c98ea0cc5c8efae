"""Errors a user can cause, from any layer, as the CLI reports them: one line, exit status 2."""
from __future__ import annotations

from hashbench.datasets.errors import DataError
from hashbench.methods.base import InputError
from hashbench.methods.registry import UnknownMethodError


class UsageError(Exception):
    """A command line that cannot be run as given (bad bits, unknown metric, empty store ...)."""


USER_ERRORS = (UsageError, DataError, InputError, UnknownMethodError)
