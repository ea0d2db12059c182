"""One base class for every failure a user can cause and fix (bad file, missing checkpoint, …).

The CLI turns any :class:`SpermlibError` into one line on stderr and a non-zero exit; the app shows
its message in an ``st.error``. Anything else is a bug and keeps its traceback for developers.
"""


class SpermlibError(ValueError):
    """A user-facing error: its message says what is wrong and what to do."""
