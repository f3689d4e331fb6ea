"""Exit codes and the one error type the commands raise for bad input (issue #5)."""

from __future__ import annotations

__all__ = ["CliError", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED"]

#: Everything asked for was done.
EXIT_OK = 0
#: The command ran but something failed: a batch skipped bad files, or an image had no infotext.
EXIT_FAILED = 1
#: Bad input: missing file, unreadable image, mask size mismatch, bad option value (also click's code).
EXIT_BAD_INPUT = 2
#: Stopped by Ctrl-C (128 + SIGINT, the shell convention).
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A problem to report as one line ``retouch: error: <message>`` and exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code
