"""The branch-node runtime: enrolment, upstream sync with headquarters, backoff, and
sync bundles (sealed changeset files for e-mail and USB).

Imports `sync`, `schema` and `crypto`; knows nothing of the web framework. The server
wires it into `branchline init branch`, `branchline sync` and the background task of
`branchline serve` on a branch.
"""

from branches._bundle_sync import (
    BundleNode,
    ExportReport,
    ImportReport,
    export_bundle,
    import_bundles,
)
from branches._bundles import (
    BundleHeader,
    BundleRejected,
    Folders,
    cursor_key,
    read_part_header,
)
from branches._client import SyncReport, Upstream, call, sync_once
from branches._enrol import Enrolment, new_expiry, read_enrolment, write_enrolment
from branches._errors import BranchError, EnrolmentError, UpstreamError
from branches._loop import run_forever
from branches._mail import (
    Mailbox,
    MailError,
    fetch_imap,
    fetch_maildir,
    read_eml,
    send_parts,
)

__all__ = [
    "BranchError",
    "BundleHeader",
    "BundleNode",
    "BundleRejected",
    "Enrolment",
    "EnrolmentError",
    "ExportReport",
    "Folders",
    "ImportReport",
    "MailError",
    "Mailbox",
    "SyncReport",
    "Upstream",
    "UpstreamError",
    "call",
    "cursor_key",
    "export_bundle",
    "fetch_imap",
    "fetch_maildir",
    "import_bundles",
    "new_expiry",
    "read_eml",
    "read_enrolment",
    "read_part_header",
    "run_forever",
    "send_parts",
    "sync_once",
    "write_enrolment",
]
