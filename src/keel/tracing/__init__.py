"""Tracing: every call leaves a trace record; the recorder gets it to the store off the request path.

    recorder.py   Recorder: record() on the hot path, flush(), recover(), close()
    journal.py    the on-disk spool: per-process directories of JSON-line segments
    writer.py     the background thread that commits batches and rides out store outages

Importing this package does not import SQLAlchemy: the writer thread opens the store.
"""

from __future__ import annotations

from .recorder import Recorder as Recorder

__all__ = ["Recorder"]
