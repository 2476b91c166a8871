"""The one exception type for errors a user can cause.

Its message says what went wrong and what to do next; the CLI prints it without a
traceback and exits non-zero.
"""


class DittoError(Exception):
    """A problem with the user's input or environment, with the fix in its message."""
