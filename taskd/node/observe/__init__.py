"""Observing a node: events, rates, metrics and logs."""
