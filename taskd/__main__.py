"""``python -m taskd``: the same as the ``taskd`` command."""

import sys

from taskd.node.main import main

if __name__ == "__main__":
    sys.exit(main())
