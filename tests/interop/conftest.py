"""The interop clients' shared check is a helper module: let pytest explain its asserts."""

import pytest

pytest.register_assert_rewrite("tests.interop.expect")
