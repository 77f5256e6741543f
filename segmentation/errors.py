"""Errors that the command line turns into a one-line reason and a non-zero exit code."""

from __future__ import annotations

import errno
import os


class SegmentationError(Exception):
    """A failure a user can act on; its message is shown as it is (one line)."""

    exit_code = 1


class ConfigurationError(SegmentationError):
    """A setting is missing or invalid; raised before any work starts."""

    exit_code = 2


class ImportRefused(SegmentationError):
    """A whole file was refused (bad header, encoding, empty...); nothing was loaded."""

    exit_code = 3


class RunLocked(SegmentationError):
    """Another run holds the lock and did not finish within the wait allowed."""

    exit_code = 4


class LockTimeout(SegmentationError):
    """Readers kept a lock that publishing needs (a view to drop) past every try; nothing was published."""

    exit_code = 4


class RunLockLost(SegmentationError):
    """The run's lock session ended before it published; nothing was published."""

    exit_code = 8


class NothingToSegment(SegmentationError):
    """There are too few active customers to fit the requested segments."""

    exit_code = 5


class RunHeld(SegmentationError):
    """The health gate held the run: stored with status held, not published."""

    exit_code = 6

    def __init__(self, message: str, outcome=None) -> None:
        super().__init__(message)
        self.outcome = outcome


class DatabaseUnavailable(SegmentationError):
    """The database connection was lost and the retries ran out."""

    exit_code = 7


class DatabaseUnreachable(SegmentationError):
    """The database could not be reached at all when the command started (not retried)."""

    exit_code = 7


class DatabaseError(SegmentationError):
    """The server refused a statement for a reason other than a lost connection (e.g. disk full)."""

    exit_code = 1


class Cancelled(BaseException):
    """SIGTERM asked the job to stop (a BaseException so no `except Exception` swallows it)."""


#: what to do about the file system errors an import or a report meets, by errno
_OS_ADVICE = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check the file's permissions",
    errno.EPERM: "check the file's permissions",
    errno.EISDIR: "give a file, not a folder",
    errno.EIO: "the disk or network share failed to read or write it; copy the file to a local disk and try again",
    errno.ENOSPC: "the disk is full; free some space and try again",
    errno.EROFS: "the file system is read-only; write somewhere else",
}


def stop_in(error: BaseException) -> BaseException | None:
    """The SIGTERM (`Cancelled`) or Ctrl-C behind `error`, if any: a stop that lands while the
    driver is mid-command (a COPY) can leave the connection unable to roll back, so the error
    that surfaces is the failed rollback, with the stop as its context."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, (Cancelled, KeyboardInterrupt)):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def describe(error: BaseException) -> str:
    """A failure as the one line a user reads: our own messages as they are; a file system error
    as "PATH: what happened (errno N); what to do"; anything else by its message alone, never
    Python's class name ("OSError: [Errno 5] ...")."""
    if isinstance(error, SegmentationError):
        return str(error)
    if isinstance(error, OSError) and error.errno is not None:
        where = f"{error.filename}: " if error.filename is not None else ""
        what = (error.strerror or os.strerror(error.errno)).lower()
        advice = _OS_ADVICE.get(error.errno)
        return f"{where}{what} (errno {error.errno})" + (f"; {advice}" if advice else "")
    text = " ".join(str(error).split())
    return f"unexpected failure: {text}" if text else "unexpected failure without a message; see the log"
