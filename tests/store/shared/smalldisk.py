"""A small filesystem of a test's own that the test fills up and frees again, so that a
database server writing on it meets a real full disk (``ENOSPC`` from the kernel), not a
simulated error: Redis's append-only file, or a PostgreSQL tablespace.

``SmallDisk`` mounts a tmpfs of ``size_mb`` on a new temporary directory (owned by ``owner``
when given: PostgreSQL's user). ``fill()`` writes a filler file until the kernel says there is
no space left; ``free()`` deletes it. Leaving the ``with`` block unmounts it (lazily: a server
killed a moment before may still hold a file open) and removes the directory. Mounting needs
root, as CI runs the tests; a user without it gets a skip that says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

_CHUNK = b"\0" * 65536


class SmallDisk:
    def __init__(self, size_mb: int = 16, *, owner: pwd.struct_passwd | None = None) -> None:
        self.size_mb = size_mb
        self.owner = owner
        self.path = Path(tempfile.mkdtemp(prefix="taskd-small-disk-"))
        self.filler = self.path / "filler"
        self.mounted = False

    def __enter__(self) -> Self:
        if os.geteuid() != 0:
            shutil.rmtree(self.path, ignore_errors=True)
            pytest.skip("a full-disk test mounts a tmpfs, which needs root (CI runs as root)")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs", self.path],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(self.path, ignore_errors=True)
            pytest.fail(f"mounting a tmpfs on {self.path} failed: {done.stderr.strip()}")
        self.mounted = True
        if self.owner is not None:
            os.chown(self.path, self.owner.pw_uid, self.owner.pw_gid)
        return self

    def directory(self, name: str) -> Path:
        """A directory on the disk (owned like the disk)."""
        made = self.path / name
        made.mkdir()
        if self.owner is not None:
            os.chown(made, self.owner.pw_uid, self.owner.pw_gid)
        return made

    def fill(self) -> int:
        """Write the filler until the disk is full; the bytes written."""
        written = 0
        with self.filler.open("ab") as out:
            while True:
                try:
                    written += out.write(_CHUNK)
                    out.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.mounted:
            with contextlib.suppress(OSError):
                self.filler.unlink(missing_ok=True)
            subprocess.run(["umount", "-l", self.path], capture_output=True, check=False)
        shutil.rmtree(self.path, ignore_errors=True)
