"""Errors that reach the user.

`InputError` is bad input (a corrupt file, impossible metadata, a missing key): the CLI prints its
message on one line and exits with code 2. Anything else is an internal error (exit 1).
"""


class InputError(ValueError):
    """Bad input from the user; the message names the problem in one line."""
