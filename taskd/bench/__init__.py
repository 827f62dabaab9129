"""``taskd bench``: the benchmark workloads of design.md §4 (W1 to W3), run against a live node.

The parent process only orchestrates: it probes the node, forks client processes (``fleet``),
shows their shared progress counters live and prints the results. All network I/O happens in
the children, each an asyncio loop (grpclib and httpx are asyncio code).
"""
