"""``python -m spermlib …``: the same command line as the ``spermlib`` command (see :mod:`spermlib.cli`)."""

from spermlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
