"""The exception types that reach users as a one-line message, and the exit status of each."""


class PromptworthError(Exception):
    """A problem with the user's input (config, data, arguments), reported in one line.

    The CLI prints ``promptworth: error: <message>`` and exits with status 2; nothing else
    is printed and no partial output is left behind.
    """

    exit_status = 2


class RunFailed(PromptworthError):
    """A run that started from valid input and failed: its training diverged (a NaN loss or score),
    or the worker training it died. Reported in one line like any :class:`PromptworthError`, but
    with exit status 1, as any other failure of a run (an unexpected error's traceback) has: a
    workflow tells a run that failed from an input that was wrong by the status alone."""

    exit_status = 1
