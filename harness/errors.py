"""Errors a user can cause. The CLI prints them as one sentence and exits with code 2."""


class HarnessError(Exception):
    """A problem the user can fix: bad input, missing file, unknown name.

    The message is one sentence that names the thing and the fix.
    """


class CellError(HarnessError):
    """A problem confined to one cell of a matrix (bad adapter, wrong base): the cell fails, the run goes on."""


def first_line(error: BaseException) -> str:
    """An exception as one line for a failed cell's reason: its message's first line (at most 300
    characters), or its type's name when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__
