"""Column names every stage agrees on, whatever a dataset calls its own columns."""

from __future__ import annotations

TIME_COLUMN = "event_time"  # a snapshot's (and a raw request's) time column
RAW_PREFIX = "raw."  # a snapshot column holding a raw field a feature spec reads at serving time
