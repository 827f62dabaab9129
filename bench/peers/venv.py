"""The peers' own venv (``.venv-peers/``), made on first use from ``requirements.txt``.

Celery, RQ and Dramatiq never enter taskd's venv: their dependencies (redis, click, ...) could
clash with taskd's pins. The venv is made with the interpreter running this (its base, when
that is a venv), and re-made when requirements.txt changes: its SHA-256 is kept in
``.venv-peers/.stamp``, as the Makefile's stamp does for .venv. pip's output goes to stderr, so
a first run shows what it is installing.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REQUIREMENTS = HERE / "requirements.txt"
DEFAULT = ROOT / ".venv-peers"


def python(path: Path) -> Path:
    return path / "bin" / "python"


def digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def current(path: Path) -> bool:
    """Whether ``path`` holds a venv made from the current requirements.txt."""
    stamp = path / ".stamp"
    return python(path).exists() and stamp.exists() and stamp.read_text().strip() == digest()


def ensure(path: Path = DEFAULT) -> Path:
    """The venv's python, making or re-making the venv first when it is not current."""
    if current(path):
        return python(path)
    print(
        f"installing peers' venv into {path} (once; from {REQUIREMENTS.name})...", file=sys.stderr
    )
    venv.EnvBuilder(with_pip=True, clear=path.exists()).create(path)
    pip = [str(python(path)), "-m", "pip", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "install", "--progress-bar", "off", "-r", str(REQUIREMENTS)],
        stdout=sys.stderr,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {REQUIREMENTS} into {path} (see above)")
    (path / ".stamp").write_text(digest() + "\n")
    print(f"peers' venv ready: {path}", file=sys.stderr)
    return python(path)
