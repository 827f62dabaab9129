"""Runtime hook of the frozen taskd: run some of PyInstaller's runtime hooks on first import.

PyInstaller runs a runtime hook for inspect, pkgutil and multiprocessing at every start when
the build contains those modules, and each hook imports its module (with zipfile, ast, pickle,
subprocess...): ~35 ms of CPU before a client command such as ``taskd list`` even starts, for
modules it never uses. build/taskd.spec takes those hooks out of the start-up sequence and
ships them unchanged as data in ``_deferred_rthooks/pyi_rth_<module>.py``; this hook (run
first, before PyInstaller's own) runs each one right after its module is first imported, so
the node, which does import them, sees the same patched modules as before.
"""

import sys


def _install() -> None:
    import os  # noqa: PLC0415  # already loaded by the bootstrap; local to keep globals clean

    folder = os.path.join(sys._MEIPASS, "_deferred_rthooks")  # type: ignore[attr-defined]
    try:
        names = os.listdir(folder)
    except FileNotFoundError:  # nothing deferred in this build
        return
    pending = {
        name[len("pyi_rth_") : -len(".py")]: os.path.join(folder, name)
        for name in names
        if name.startswith("pyi_rth_") and name.endswith(".py")
    }

    def run_hook(module: str) -> None:
        path = pending.pop(module)
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
        exec(code, {"__name__": "__pyi_deferred_rthook__", "__file__": path})

    class DeferredHooks:
        """A meta path finder that finds nothing itself: it wraps the real loader's exec_module."""

        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> object:
            if name not in pending:
                return None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is DeferredHooks or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            loader = spec.loader
            if loader is None or not hasattr(loader, "exec_module"):
                run_hook(name)  # cannot wait for it: run the hook now, as PyInstaller would
                return spec

            def exec_module(module: object) -> None:
                del loader.exec_module  # the loader's own method again, for any later use
                loader.exec_module(module)
                run_hook(name)

            loader.exec_module = exec_module
            return spec

    for module in [m for m in pending if m in sys.modules]:  # imported already: hook it now
        run_hook(module)
    if pending:
        sys.meta_path.insert(0, DeferredHooks)  # type: ignore[arg-type]


_install()
del _install
