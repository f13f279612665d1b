"""User-facing errors: one clear line that names the file, row, layer or option at fault."""

from __future__ import annotations


class NetDissectError(Exception):
    """An error caused by the user's input, shown as one line without a traceback.

    DataLoader workers re-raise exceptions with the worker's traceback folded into the
    message; the constructor keeps only the original one-line message so the error stays
    readable whichever process raised it.
    """

    def __init__(self, message: str) -> None:
        message = _original_message(str(message))
        super().__init__(message)
        self.message = message


def _original_message(message: str) -> str:
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.strip().splitlines() if line.strip()][-1]
    # "netdissect.errors.DatasetError: the message" -> "the message"
    head, sep, tail = last.partition(": ")
    return tail if sep and "Error" in head else last


class DatasetError(NetDissectError):
    """A concept dataset is missing a file or holds a malformed entry."""


class ModelError(NetDissectError):
    """A model spec, checkpoint or layer name cannot be used."""


class ActivationError(NetDissectError):
    """A layer produced activations that cannot be dissected (NaN, Inf, wrong shape)."""


class RunDirectoryError(NetDissectError):
    """The output directory holds a different run."""


class OptionError(NetDissectError):
    """An option has a value outside its range."""
