"""The changeset protocol, clocks and merge engine. Pure: plain data in, plain data out."""

from sync._errors import ClockSkewError, SyncError
from sync._hlc import millis_of, pack, receive, tick

__all__ = ["ClockSkewError", "SyncError", "millis_of", "pack", "receive", "tick"]
