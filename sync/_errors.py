"""Errors of the sync package."""

from __future__ import annotations


class SyncError(Exception):
    """Base error of the `sync` package."""


class ClockSkewError(SyncError):
    """A remote clock is further ahead of the local wall clock than allowed."""
