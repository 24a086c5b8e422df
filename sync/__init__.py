"""The changeset protocol, clocks and merge engine. Pure: plain data in, plain data out.

`sync/SPEC.md` is the reference; this package holds the parts every node must agree
on bit for bit: the clock, the merge order of each policy, lineage, and the wire
messages.
"""

from sync._collector import collector_paused
from sync._crdt import counter_value, merge_totals, set_members
from sync._errors import ClockSkewError, SyncError
from sync._hlc import millis_of, pack, receive, tick
from sync._lineage import Lineage, concurrent, dominates, extend
from sync._lineage import merge as merge_lineage
from sync._merge import Decision, compact, decide, lineage_of
from sync._policy import CONFLICTING, Merge, Stamp, beats, state_rank
from sync._wire import (
    PAGE_ROWS,
    PROTOCOL_VERSION,
    Batch,
    Cell,
    Member,
    Message,
    PullRequest,
    PushAck,
    PushRequest,
    Quarantined,
    Refusal,
    Row,
    Tally,
    compress,
    decode,
    decompress,
    encode,
)

__all__ = [
    "CONFLICTING",
    "PAGE_ROWS",
    "PROTOCOL_VERSION",
    "Batch",
    "Cell",
    "ClockSkewError",
    "Decision",
    "Lineage",
    "Member",
    "Merge",
    "Message",
    "PullRequest",
    "PushAck",
    "PushRequest",
    "Quarantined",
    "Refusal",
    "Row",
    "Stamp",
    "SyncError",
    "Tally",
    "beats",
    "collector_paused",
    "compact",
    "compress",
    "concurrent",
    "counter_value",
    "decide",
    "decode",
    "decompress",
    "dominates",
    "encode",
    "extend",
    "lineage_of",
    "merge_lineage",
    "merge_totals",
    "millis_of",
    "pack",
    "receive",
    "set_members",
    "state_rank",
    "tick",
]
