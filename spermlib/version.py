"""The library's version, in a module of its own so that a card or a report can record it without importing
``spermlib`` itself (whose ``__init__`` re-exports the notebook API, the top layer)."""

__version__ = "0.1.0"
