"""The one exception type a user is meant to read.

Raised with a sentence that says what went wrong and what to do; the CLI prints it
on one line and exits non-zero instead of showing a traceback.
"""


class ClimateWatchError(Exception):
    """An expected failure with a message written for the person running ClimateWatch."""
