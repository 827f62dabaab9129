"""Where the node layer took its ``Store`` from before ``taskd.store`` existed.

The protocol lives in ``taskd.store.seam``; this re-export keeps the old import working until
the layout change moves the node's modules (then it goes).
"""

from __future__ import annotations

from taskd.store.seam import Store

__all__ = ["Store"]
