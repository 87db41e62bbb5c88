"""Error and warning types shown to users.

Every error a user can cause (bad file, bad parameter, missing snapshot) is a
:class:`FactorflowError` whose message is one line naming the thing, the rule,
the value and the fix. The CLI prints it as ``factorflow: error: <message>``
and exits 2; anything else is a bug and propagates with its traceback.
"""

from __future__ import annotations


class FactorflowError(Exception):
    """A user-facing error: its ``str`` is the whole message, on one line."""

    exit_code = 2


class InputError(FactorflowError):
    """A source file cannot be read or fails validation (names file and line)."""


class ParameterError(FactorflowError, ValueError):
    """A parameter is out of its domain (names the parameter, value and rule)."""


class NotFoundError(FactorflowError, LookupError):
    """A dataset, snapshot, split, model or id that was asked for does not exist."""


class ModelRejectedError(FactorflowError):
    """A trained model failed the publish gate: kept as a rejected version, CURRENT untouched (exit 3)."""

    exit_code = 3


class DataWarning(UserWarning):
    """Something in the data looks odd but is not fatal (e.g. an unusual rating range)."""


def check_param(ok: bool, name: str, value: object, rule: str) -> None:
    """Raise ``ParameterError`` "NAME=VALUE: must RULE" when ``ok`` is false."""
    if not ok:
        raise ParameterError(f"{name}={value!r}: must be {rule}")
