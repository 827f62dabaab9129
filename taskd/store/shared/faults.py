"""What a database failure means for a shared store, in words an operator can act on.

``storage_fault`` turns a backend's ``BackendDown`` into the ``StorageFault`` the API shows
(503, and ``/readyz``'s reason): it names the database (never its credentials), says whether
writes come back by themselves, and what to do otherwise.
"""

from __future__ import annotations

from taskd.errors import StorageFault
from taskd.store.shared.backend import BackendDown


def storage_fault(exc: BackendDown) -> StorageFault:
    if exc.resumes_by_itself:
        return StorageFault(
            f"the database cannot take writes: {exc}. This node takes no writes until it "
            f"answers again; they resume by themselves then. Nothing acknowledged was lost",
            resumes_by_itself=True,
        )
    return StorageFault(
        f"the database refused a write: {exc}. This node takes no writes until an operator "
        f"fixes the database (permissions, read-only mode, the server's disk) and restarts "
        f"the node. Reads go on while it leads, and nothing acknowledged was lost",
        resumes_by_itself=False,
    )


def not_applied(fault: StorageFault) -> StorageFault:
    return StorageFault(
        f"{fault}; this request was not applied", resumes_by_itself=fault.resumes_by_itself
    )


def outcome_unknown(fault: StorageFault) -> StorageFault:
    return StorageFault(
        f"{fault}; the outcome of this request is unknown (its commit may have reached the "
        f"database): read it back before retrying",
        resumes_by_itself=fault.resumes_by_itself,
    )
