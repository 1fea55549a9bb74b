"""An app module that fails while it is imported, as a broken deploy would."""

from __future__ import annotations

raise RuntimeError("bench_broken: the database URL is missing")
