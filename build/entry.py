"""Entry point of the frozen `taskd` binary (see build/taskd.spec)."""

import sys

from taskd.node.main import main

if __name__ == "__main__":
    sys.exit(main())
