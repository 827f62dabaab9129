"""What a failed disk write means for the Raft store, in words an operator can act on.

Theory of operation: the store's writes fail in two ways that call for different handling.

- ``write()`` (or creating a file) said ENOSPC or EDQUOT: the kernel refused the bytes. Nothing
  past the last fsync that returned reached the disk except what the store cuts back off, so
  the same write is safe to try again once space returns. The store drops the unpersisted
  entries, answers their proposers "not applied", and probes (``probe_space``) every second;
  writes resume by themselves as soon as a write of the failed batch's size fits.
- Anything else: a failed fsync, EIO, a read-only filesystem (EROFS, often the kernel's answer
  to a failing disk). After a failed fsync the kernel may have dropped the written pages and
  marked them clean, so a later fsync can return success without the data ever reaching the
  disk (the "fsyncgate" problem PostgreSQL met in 2018): nothing written afterwards could be
  trusted, so the node takes no more writes until it is restarted and re-reads its log.

``classify`` turns the ``OSError`` into a ``StorageFault`` whose message names the data
directory, the error and the remedy; the API layers show it as it is (503), and ``/readyz``
shows it as the reason the node is not ready. Reads never touch the disk and go on.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from taskd.errors import StorageFault

PROBE_NAME = "space-probe.tmp"  # under the log's directory; recovery deletes *.tmp leftovers
_PROBE_CHUNK = 1 << 20
PROBE_MIN = 64 << 10
PROBE_MAX = 16 << 20
_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class SyncFailed(OSError):
    """An fsync/fdatasync of the log failed: what it covered may be lost (never retried)."""


def out_of_space(exc: OSError) -> bool:
    return exc.errno in _OUT_OF_SPACE and not isinstance(exc, SyncFailed)


def classify(exc: OSError, data_dir: Path) -> StorageFault:
    """The ``StorageFault`` for ``exc``, with what is wrong and what an operator must do."""
    error = _describe(exc)
    if out_of_space(exc):
        what = "disk quota exceeded" if exc.errno == errno.EDQUOT else "disk full"
        remedy = (
            "raise the quota or free space"
            if exc.errno == errno.EDQUOT
            else "free space on the filesystem"
        )
        return StorageFault(
            f"{what} at {data_dir}: writing the Raft log failed ({error}). This node takes no "
            f"writes until an operator acts: {remedy} of {data_dir}; writes resume by "
            f"themselves within a few seconds of space returning. Reads go on, and nothing "
            f"acknowledged was lost",
            resumes_by_itself=True,
        )
    if exc.errno == errno.EROFS:
        return StorageFault(
            f"read-only filesystem at {data_dir}: writing the Raft log failed ({error}). The "
            f"kernel often remounts a failing disk read-only: check the disk (dmesg), repair "
            f"it or remount {data_dir} read-write, then restart this node; it takes no writes "
            f"until then. Reads go on, and nothing acknowledged was lost",
            resumes_by_itself=False,
        )
    if isinstance(exc, SyncFailed):
        return StorageFault(
            f"disk failure at {data_dir}: fsync of the Raft log failed ({error}). After a "
            f"failed fsync the kernel may have dropped written data, so this node takes no "
            f"writes until it is restarted: check the disk (dmesg, SMART), fix or replace it, "
            f"then restart the node. Reads go on, and nothing acknowledged was lost",
            resumes_by_itself=False,
        )
    return StorageFault(
        f"write error at {data_dir}: writing the Raft log failed ({error}). This node takes "
        f"no writes until it is restarted: check the disk (dmesg, SMART), fix or replace it, "
        f"then restart the node. Reads go on, and nothing acknowledged was lost",
        resumes_by_itself=False,
    )


def cannot_cut_back(exc: OSError, cut: OSError, data_dir: Path) -> StorageFault:
    """The log's write failed for lack of space and cutting its tail back failed too: what is
    past the last sync is unknown, so writes stop until a restart (recovery cuts it)."""
    return StorageFault(
        f"write error at {data_dir}: writing the Raft log failed ({_describe(exc)}) and "
        f"cutting back its unsynced tail failed too ({_describe(cut)}). This node takes no "
        f"writes until it is restarted: free space on the filesystem of {data_dir}, check "
        f"the disk (dmesg), then restart the node. Reads go on, and nothing acknowledged "
        f"was lost",
        resumes_by_itself=False,
    )


def at_startup(fault: StorageFault, data_dir: Path) -> StorageFault:
    """``fault`` met while recovering: the node cannot start, so nothing resumes by itself."""
    head = str(fault).split(". ", 1)[0]
    return StorageFault(
        f"{head}. The node cannot finish starting without writing to its Raft log: fix the "
        f"cause (free space on the filesystem of {data_dir}, or repair the disk), then start "
        f"it again; nothing acknowledged was lost",
        resumes_by_itself=False,
    )


def probe_space(directory: Path, size: int) -> None:
    """Write ``size`` bytes to a scratch file in ``directory`` and delete it; raise the
    ``OSError`` if they do not fit. Blocking: run it in a thread.

    No fsync: ENOSPC and EDQUOT are decided when ``write()`` allocates (or, with delayed
    allocation, reserves) the blocks, which is exactly where the log's own write failed.
    """
    path = directory / PROBE_NAME
    chunk = bytes(min(size, _PROBE_CHUNK))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, chunk[: min(left, len(chunk))])
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    where = f": {exc.filename}" if exc.filename else ""
    return f"[Errno {exc.errno}{' ' + name if name else ''}] {text}{where}"
