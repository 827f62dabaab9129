"""``--accept-data-loss`` and ``TASKD_ACCEPT_DATA_LOSS``: off unless asked for, in either form."""

from __future__ import annotations

import pytest

from taskd.node.config import ConfigError, load


def test_off_by_default_on_by_flag_or_variable() -> None:
    assert load([], {}).accept_data_loss is False
    assert load(["--accept-data-loss"], {}).accept_data_loss is True
    for value in ("1", "true", "yes", "TRUE"):
        assert load([], {"TASKD_ACCEPT_DATA_LOSS": value}).accept_data_loss is True
    for value in ("0", "false", "no", ""):
        assert load([], {"TASKD_ACCEPT_DATA_LOSS": value}).accept_data_loss is False
    # the flag wins over the variable
    assert load(["--accept-data-loss"], {"TASKD_ACCEPT_DATA_LOSS": "0"}).accept_data_loss


def test_a_bad_variable_value_names_the_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"TASKD_ACCEPT_DATA_LOSS.*'maybe'.*1 \(accept\)"):
        load([], {"TASKD_ACCEPT_DATA_LOSS": "maybe"})
