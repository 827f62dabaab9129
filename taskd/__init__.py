"""taskd: a distributed task scheduler in one self-contained executable."""

__version__ = "0.1.0"
