"""The taskd client subcommands (submit, get, list, ...)."""
