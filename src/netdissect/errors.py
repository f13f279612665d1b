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


class OptionError(NetDissectError, ValueError):
    """An option has a value outside its range (a ``ValueError`` too, for callers of the API)."""


#: What to do about an OS error, by errno name.
_OS_HINTS = {
    "EACCES": "permission denied: check the folder's permissions or choose another --out",
    "EPERM": "operation not permitted: check the folder's permissions or choose another --out",
    "EROFS": "read-only file system: choose another --out",
    "ENOSPC": "no space left on the device: free some space or choose another --out",
    "EDQUOT": "disk quota exceeded: free some space or choose another --out",
    "ENOTDIR": "a part of the path is a file, not a folder",
    "EISDIR": "is a folder, a file was expected",
    "ENOENT": "not found",
    "EEXIST": "already exists",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OS error: the path at fault and what to do about it."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    reason = _OS_HINTS.get(name) or (exc.strerror or "").lower() or _original_message(str(exc))
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return _original_message(str(exc)).strip().splitlines()[-1] if str(exc) else type(exc).__name__
    return f"{' -> '.join(paths)}: {reason}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
