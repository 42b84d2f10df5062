"""newsletter: turn each day's trending AI papers into a daily email digest."""

from __future__ import annotations

__version__ = "0.1.0"
