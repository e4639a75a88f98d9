"""Errors a user can cause. The CLI prints them as one sentence and exits with code 2."""


class HarnessError(Exception):
    """A problem the user can fix: bad input, missing file, unknown name.

    The message is one sentence that names the thing and the fix.
    """


class CellError(HarnessError):
    """A problem confined to one cell of a matrix (bad adapter, wrong base): the cell fails, the run goes on."""
