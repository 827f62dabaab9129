"""Task ids are real ULIDs, strictly increasing, also within one millisecond."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from taskd.node.app.ids import IdGenerator


@given(
    start_ms=st.integers(min_value=0, max_value=1 << 46),  # until the year 4199
    steps=st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.0004, 0.001, -0.002, 0.5]), max_size=200),
)
def test_ids_are_ulids_that_sort_in_the_order_they_were_made(
    start_ms: int, steps: list[float]
) -> None:
    now = [start_ms / 1000]

    def clock() -> float:
        return now[0]

    ids = IdGenerator(clock)
    made = []
    for step in [0.0, *steps]:
        now[0] += step
        made.append(ids.new())
    assert made == sorted(made) and len(set(made)) == len(made)
    for text in made:  # python-ulid parses each and writes it back the same way
        assert str(ULID.from_str(text)) == text
    assert ULID.from_str(made[0]).milliseconds == int(start_ms / 1000 * 1000)
