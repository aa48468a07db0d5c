"""User-facing errors: the CLI prints these as one clear message and exits non-zero, without a traceback."""


class AdplgError(Exception):
    """A problem with the user's input (files, config, arguments), not a bug in adplg."""


class DataValidationError(AdplgError):
    """One or more data files failed validation; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str], context: str = "data validation"):
        self.problems = list(problems)
        head = f"{context}: {len(self.problems)} problem(s)"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))
