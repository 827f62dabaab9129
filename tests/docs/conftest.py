"""Fixtures of the docs tests: the in-process REST app of tests/http."""

from tests.http.conftest import api  # noqa: F401  # re-exported as a fixture of this directory
