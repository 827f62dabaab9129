"""build/rthooks/deferred.py: PyInstaller runtime hooks run on first import, not at start.

Runs the runtime hook in a fresh interpreter of the dev venv, with ``sys._MEIPASS`` pointing at
a folder of hooks laid out as build/taskd.spec ships them
(``_deferred_rthooks/pyi_rth_<module>.py``), and the real import system finding the modules.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "build" / "rthooks" / "deferred.py"

HOOK_BODY = """
import sys
import {module}
{module}.HOOK_RUNS = getattr({module}, "HOOK_RUNS", 0) + 1
sys.stderr.write("hook {module}\\n")
"""

CHECK = """
import sys
sys._MEIPASS = sys.argv[1]
exec(compile(open(sys.argv[2]).read(), sys.argv[2], "exec"), {"__name__": "__main__"})
import os
assert os.HOOK_RUNS == 1, "a module imported before the hook is hooked at once"
assert "wave" not in sys.modules, "the hook itself must not import the deferred module"
sys.stderr.write("importing wave\\n")
import wave
import wave
import importlib
importlib.reload(wave)
assert wave.HOOK_RUNS == 1, wave.HOOK_RUNS
assert type(wave.__loader__).exec_module is wave.__loader__.exec_module.__func__, "loader restored"
print("ok")
"""


def test_a_deferred_hook_runs_once_right_after_its_module_is_first_imported(
    tmp_path: Path,
) -> None:
    # Given hooks for os (imported before the hook runs) and wave (imported later)
    folder = tmp_path / "_deferred_rthooks"
    folder.mkdir()
    for module in ("os", "wave"):
        (folder / f"pyi_rth_{module}.py").write_text(HOOK_BODY.format(module=module))

    # When an interpreter installs the deferred hooks, then imports wave (and again, and reloads)
    done = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(CHECK), str(tmp_path), str(HOOK)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    # Expect os hooked at once, wave hooked right after its first import and only then
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr.splitlines() == ["hook os", "importing wave", "hook wave"]


def test_no_deferred_hooks_folder_is_no_change(tmp_path: Path) -> None:
    # Given a build that ships no deferred hooks
    # When the hook runs
    code = (
        "import sys; sys._MEIPASS = sys.argv[1]; n = len(sys.meta_path); "
        "exec(open(sys.argv[2]).read()); assert len(sys.meta_path) == n; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code, str(tmp_path), str(HOOK)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    # Expect it to install nothing
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
