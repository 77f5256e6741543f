"""Errors that the command line turns into a one-line reason and a non-zero exit code."""


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
