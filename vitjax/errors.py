"""Errors the user can fix from the message alone: the command line prints them as one line.

Checks of configs, files and data raise these (task plugins too: `from vitjax.errors import
BadValue`); any other exception is a bug of vitjax or of a plugin and keeps its traceback. Each also is the builtin it refines (`BadValue` a ValueError,
`BadKey` a KeyError), so callers catching the builtin still catch it.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the config, the command line, a file or the data; the message says the fix."""


class BadValue(UserError, ValueError):
    """A value (config key, file content, data) that cannot be used as it is."""


class BadKey(UserError, KeyError):
    """A name (config key, split, metric, tensor) that does not exist."""

    def __str__(self) -> str:  # the message itself, not KeyError's quoted repr of it
        return str(self.args[0]) if self.args else ""


class WriteFailed(UserError):
    """A file vitjax could not write (a full disk, no permission); the message names it and the fix."""
