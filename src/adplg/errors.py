"""User-facing errors: the CLI prints these as one clear message and exits non-zero, without a traceback."""

from __future__ import annotations


class AdplgError(Exception):
    """A problem with the user's input (files, config, arguments), not a bug in adplg.

    ``parameter``: the library parameter the problem is about (``"queue_frames"``), when there is one. The message
    then reads ``"queue_frames: <detail>"`` in Python, and the CLI names its own flag instead (``"--queue-frames:
    <detail>"``, see :meth:`for_option`), so a library error never spells a command-line flag."""

    def __init__(self, message: str = "", *, parameter: str | None = None):
        self.parameter = parameter
        self.detail = message
        super().__init__(f"{parameter}: {message}" if parameter else message)

    def for_option(self, option: str) -> str:
        """The message with ``option`` (a CLI flag) in place of the parameter's name."""
        return f"{option}: {self.detail}"


class DataValidationError(AdplgError):
    """One or more data files failed validation; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str], context: str = "data validation"):
        self.problems = list(problems)
        head = f"{context}: {len(self.problems)} problem(s)"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))
