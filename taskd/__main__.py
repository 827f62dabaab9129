"""``python -m taskd``: the same as the ``taskd`` command.

This module ships with the taskd-client distribution (it belongs to the ``taskd`` package, which
that distribution owns); the command itself is the server's, in taskd-scheduler. With only the
SDK installed, it says so instead of failing with a traceback.
"""

import sys

try:
    from taskd.node.main import main
except ModuleNotFoundError as missing:
    if missing.name is None or not missing.name.startswith("taskd."):
        raise  # a broken server install: show it
    sys.exit(
        "taskd: the node and the `taskd` command are in the taskd-scheduler distribution; "
        "this environment has only the SDK (taskd-client). Install the server with: "
        "pip install taskd-scheduler"
    )

if __name__ == "__main__":
    sys.exit(main())
