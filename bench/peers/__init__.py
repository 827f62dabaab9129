"""Celery, RQ and Dramatiq side by side with taskd: design.md §4 workloads, one table of ratios.

bench/README.md ("Peers") says what is measured and how; ``run`` is the entry point.
"""
