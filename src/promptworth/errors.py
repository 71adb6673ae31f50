"""The one exception type that reaches users as a one-line message."""


class PromptworthError(Exception):
    """A problem with the user's input (config, data, arguments), reported in one line.

    The CLI prints ``promptworth: error: <message>`` and exits with status 2; nothing else
    is printed and no partial output is left behind.
    """
