"""Errors of the branch runtime."""

from __future__ import annotations


class BranchError(Exception):
    """Base error of the `branches` package."""


class EnrolmentError(BranchError):
    """An enrolment file cannot be read (wrong passphrase, damaged, expired)."""


class UpstreamError(BranchError):
    """Headquarters refused a request or could not be reached."""
