"""One parser for the numbers atune reads from the environment."""

from __future__ import annotations

import pytest

from atune._env import env_number
from atune.errors import ConfigError

NAME = "ATUNE_TEST_NUMBER"


def _seconds() -> float:
    return env_number(NAME, 2.5, float, lambda v: v > 0, "a number of seconds > 0")


@pytest.mark.parametrize(("raw", "expected"), [(None, 2.5), ("", 2.5), ("  ", 2.5), (" 7 ", 7.0)])
def test_unset_or_blank_is_the_default(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: float
) -> None:
    if raw is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, raw)
    assert _seconds() == expected


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan"])
def test_a_bad_value_names_the_variable_the_rule_and_the_value(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(
        ConfigError, match=rf"^{NAME} must be a number of seconds > 0, got '{raw}'$"
    ):
        _seconds()


def test_whole_numbers_refuse_fractions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "1.5")
    with pytest.raises(ConfigError, match=r"a whole number >= 0, got '1\.5'"):
        env_number(NAME, 0, int, lambda v: v >= 0, "a whole number >= 0")
