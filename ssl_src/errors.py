"""The one exception a user sees as a single line (the CLI prints it and exits 2)."""


class UserError(Exception):
    """Bad input or missing data: the message says what was wrong and what would be valid."""
