"""``python -m spermlib …``: the command line (see :mod:`spermlib.cli`)."""

from spermlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
