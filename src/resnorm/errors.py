"""The one user-facing error type: a bad value, named by its field, with the valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A user-supplied value is invalid.

    The message names the offending field and, where there is a finite set, the valid choices and
    the closest match. The CLI prints it without a traceback and exits with status 2.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def choice_error(field: str, value: object, choices: Iterable[str]) -> ConfigError:
    """A ConfigError for `value` not in `choices`, suggesting the closest valid one."""
    options = sorted(choices)
    close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(field, f"unknown value {value!r}.{hint} Valid choices: {', '.join(options)}")
