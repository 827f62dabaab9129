"""Pack a PyInstaller one-folder build behind the launcher: the one-file ``dist/taskd``.

``build/build.sh`` runs it after PyInstaller; the tests in tests/build run it on small trees.
The result is ``[launcher ELF][file data][TOC][trailer]``; build/launcher/launcher.c reads it
from the end and build/README.md describes the launcher's behaviour. All integers are
little-endian.

- file data: each regular file zlib-compressed (level 9), each symlink's target as is.
- TOC: one record per entry, parents before children: kind (``d``, ``f`` or ``l``), a zero
  byte, the path's length (u16), permission bits (u32), the absolute offset (u64) and stored
  length (u64) of its data, the extracted size (u64), then the relative path (UTF-8).
- trailer (``TRAILER_SIZE`` bytes): ``TASKDPK1``, the TOC's offset (u64) and length (u64), the
  entry count (u32), the mtime every extracted file gets (u32), the build id (48 bytes,
  NUL-padded) and the program to run inside the tree (16 bytes, NUL-padded).

The build id is ``<version>-<first 16 hex digits of the SHA-256 of data and TOC>``: two builds
with the same content share one cache directory, any change gets a new one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"TASKDPK1"
BUILD_ID_SIZE = 48
PROGRAM_SIZE = 16
TRAILER = struct.Struct(f"<8sQQII{BUILD_ID_SIZE}s{PROGRAM_SIZE}s")
TRAILER_SIZE = TRAILER.size  # 96, as in launcher.c
ENTRY = struct.Struct("<cxHIQQQ")  # 32 bytes, as ENTRY_HEADER_SIZE in launcher.c
# Every extracted file gets this mtime (2020-01-01T00:00:00Z); an edited file no longer has it.
MTIME = 1577836800
LAUNCHER_SOURCE = Path(__file__).resolve().parent / "launcher" / "launcher.c"


class PackError(Exception):
    """The tree cannot be packed; the message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class Entry:
    kind: bytes  # b"d", b"f" or b"l"
    path: str  # relative to the tree, "/"-separated
    mode: int  # permission bits
    data: bytes  # compressed file content, or a link's target; b"" for directories
    size: int  # extracted size of a file


def walk(tree: Path) -> Iterator[Entry]:
    """The entries of ``tree``, sorted, each directory before what it holds."""
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted([*dirnames, *filenames]):
            path = base / name
            relative = path.relative_to(tree).as_posix()
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(path)
                if os.path.isabs(target):
                    raise PackError(f"{path}: absolute symlink target {target!r}; make it relative")
                yield Entry(b"l", relative, mode, os.fsencode(target), 0)
                if name in dirnames:  # os.walk does not descend into links: neither do we
                    dirnames.remove(name)
            elif stat.S_ISDIR(info.st_mode):
                yield Entry(b"d", relative, mode, b"", 0)
            elif stat.S_ISREG(info.st_mode):
                content = path.read_bytes()
                yield Entry(b"f", relative, mode, zlib.compress(content, 9), len(content))
            else:
                raise PackError(f"{path}: neither a file, a directory nor a symlink; remove it")


def payload(entries: list[Entry], start: int, version: str, program: str) -> bytes:
    """Data, TOC and trailer for ``entries``, to be written at offset ``start`` of the file."""
    if not entries or program not in {e.path for e in entries if e.kind == b"f"}:
        raise PackError(f"the tree has no program {program!r} at its top; check the build")
    data = bytearray()
    toc = bytearray()
    for entry in entries:
        path = entry.path.encode()
        toc += ENTRY.pack(
            entry.kind, len(path), entry.mode, start + len(data), len(entry.data), entry.size
        )
        toc += path
        data += entry.data
    digest = hashlib.sha256(data + toc).hexdigest()[:16]
    build_id = f"{version}-{digest}".encode()
    if len(build_id) > BUILD_ID_SIZE or "/" in version:
        raise PackError(f"version {version!r} is too long or has a '/'; shorten it")
    if len(program.encode()) > PROGRAM_SIZE:
        raise PackError(f"program name {program!r} is longer than {PROGRAM_SIZE} bytes")
    trailer = TRAILER.pack(
        MAGIC,
        start + len(data),
        len(toc),
        len(entries),
        MTIME,
        build_id,
        program.encode(),
    )
    return bytes(data + toc + trailer)


def build_id(packed: Path) -> str:
    """The build id in the trailer of a packed binary (the name of its cache directory)."""
    with packed.open("rb") as f:
        f.seek(-TRAILER_SIZE, os.SEEK_END)
        fields = TRAILER.unpack(f.read(TRAILER_SIZE))
    if fields[0] != MAGIC:
        raise PackError(f"{packed} is not a packed taskd binary")
    raw: bytes = fields[5]
    return raw.rstrip(b"\0").decode()


def compile_launcher(out: Path, cc: str = "cc") -> None:
    """Compile build/launcher/launcher.c to ``out``: glibc linked dynamically, zlib statically."""
    if shutil.which(cc) is None:
        raise PackError(f"no C compiler {cc!r}; install gcc and zlib1g-dev (or set CC)")
    command = [
        cc,
        "-O2",
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-s",
        "-o",
        str(out),
        str(LAUNCHER_SOURCE),
        "-Wl,-Bstatic",
        "-lz",
        "-Wl,-Bdynamic",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackError(
            f"compiling the launcher failed ({' '.join(command)}):\n{done.stderr.strip()}\n"
            "install gcc and zlib1g-dev (static libz.a)"
        )


def pack(launcher: Path, tree: Path, out: Path, version: str, program: str = "taskd") -> str:
    """Write ``out`` = launcher + packed ``tree``; returns the build id."""
    head = launcher.read_bytes()
    body = payload(list(walk(tree)), len(head), version, program)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(head + body)
    partial.chmod(0o755)
    partial.replace(out)
    return build_id(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pack a one-folder build behind the launcher")
    parser.add_argument("--tree", type=Path, required=True, help="the one-folder build")
    parser.add_argument("--out", type=Path, required=True, help="the one-file binary to write")
    parser.add_argument("--version", required=True, help="goes into the build id")
    parser.add_argument("--program", default="taskd", help="the executable inside the tree")
    parser.add_argument("--cc", default=os.environ.get("CC", "cc"), help="the C compiler")
    args = parser.parse_args(argv)
    launcher = args.out.with_name(args.out.name + ".launcher")
    try:
        compile_launcher(launcher, args.cc)
        ident = pack(launcher, args.tree, args.out, args.version, args.program)
    except (PackError, OSError) as exc:
        print(f"pack: {exc}", file=sys.stderr)
        return 1
    finally:
        launcher.unlink(missing_ok=True)
    print(f"pack: {args.out} (build {ident}, extracted to $XDG_CACHE_HOME/taskd/{ident})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
