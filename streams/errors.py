"""The error every user-facing failure of the stream shell is raised as.

The CLI prints ``str(error)`` as one line and exits non-zero; no traceback reaches the user.
"""

from __future__ import annotations


class GridshiftError(Exception):
    """A failure the user can act on; the message says what is wrong and how to fix it."""
