"""The exceptions a user sees as a single line: bad input (exit 2) and a run that stopped early."""


class UserError(Exception):
    """Bad input or missing data: the message says what was wrong and what would be valid."""


class TrainingStopped(Exception):
    """A run stopped before its last step (a signal, or a non-finite loss); the message says what was kept
    and how to go on. `exit_code` is what the command line returns (128 + signal, or 1)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):  # rebuilt in the parent when a sweep's worker process raises it
        return type(self), (str(self), self.exit_code)


def matches_type(value, kind: type) -> bool:
    """isinstance for checking user input, except that a bool is no int and an int is a float (YAML and
    JSON write 1 for 1.0)."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)
