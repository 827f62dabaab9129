"""``--store redis://...``: the URL checked before anything connects (taskd/store/shared/
redisurl.py): the prefix taken out, every mistyped part refused naming that part, never the
password, and ``taskd``'s own flag parsing refusing it the same way (exit 2)."""

from __future__ import annotations

import pytest

from taskd.node.config import ConfigError, load
from taskd.store.shared import redisurl

PASSWORD = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("redis://127.0.0.1:6379/0", "taskd")),
        ("redis://h", ("redis://h", "taskd")),
        ("redis://h:6379/", ("redis://h:6379/", "taskd")),
        ("redis://h/3?prefix=jobs", ("redis://h/3", "jobs")),
        (
            f"rediss://user:{PASSWORD}@h:6380/2?prefix=a.b-c&socket_timeout=5",
            (f"rediss://user:{PASSWORD}@h:6380/2?socket_timeout=5", "a.b-c"),
        ),
        ("redis://h?db=4", ("redis://h?db=4", "taskd")),
    ],
)
def test_a_good_url_loses_only_its_prefix(url: str, expected: tuple[str, str]) -> None:
    assert redisurl.split(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"redis://:{PASSWORD}@h:6379/abc", "the database after the host must be a number"),
        (f"redis://:{PASSWORD}@h:6379/-1", "must be a number"),
        (f"redis://:{PASSWORD}@h:6379/0/extra", "must be a number"),
        (f"redis://:{PASSWORD}@h:63x9/0", "the port after the host must be a number"),
        (f"redis://:{PASSWORD}@h:6379/0?db=two", "?db= must be a database number"),
        (f"redis://:{PASSWORD}@h/0?prefix=", "must not be empty"),
        (f"redis://:{PASSWORD}@h/0?prefix=a}}b", "nor hold braces"),
        (f"redis://:{PASSWORD}@h/0?prefix=a&prefix=b", "more than once"),
    ],
)
def test_a_mistyped_url_is_refused_naming_the_part_never_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as refused:
        redisurl.split(url)
    assert says in str(refused.value) and PASSWORD not in str(refused.value)
    # and taskd's flags refuse it the same way, naming --store
    with pytest.raises(ConfigError) as flag:
        load(["--store", url, "--grpc", "127.0.0.1:50051"], {})
    assert str(flag.value).startswith("--store: ") and says in str(flag.value)
    assert PASSWORD not in str(flag.value)
