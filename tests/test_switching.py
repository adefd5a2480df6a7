"""The GIL switch interval is short while an experiment runs, and put back afterwards."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import atune as tune
from atune._switching import ENV_VAR, short_switch_interval
from atune.errors import ConfigError


@pytest.fixture(autouse=True)
def _default_interval(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def test_lowered_inside_and_restored_after() -> None:
    with short_switch_interval():
        assert sys.getswitchinterval() == pytest.approx(0.001)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_nested_blocks_restore_only_when_the_last_ends() -> None:
    with short_switch_interval():
        with short_switch_interval():
            assert sys.getswitchinterval() == pytest.approx(0.001)
        assert sys.getswitchinterval() == pytest.approx(0.001)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_never_raised() -> None:
    sys.setswitchinterval(0.0002)
    with short_switch_interval():
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    assert sys.getswitchinterval() == pytest.approx(0.0002)


def test_a_change_made_meanwhile_is_kept() -> None:
    with short_switch_interval():
        sys.setswitchinterval(0.002)
    assert sys.getswitchinterval() == pytest.approx(0.002)


def test_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), short_switch_interval():
        raise RuntimeError("boom")
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_env_var_sets_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "0.002")
    with short_switch_interval():
        assert sys.getswitchinterval() == pytest.approx(0.002)


def test_env_var_zero_leaves_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "0")
    with short_switch_interval():
        assert sys.getswitchinterval() == pytest.approx(0.005)


@pytest.mark.parametrize("raw", ["fast", "-1", "nan"])
def test_bad_env_var_names_the_value(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(ENV_VAR, raw)
    with pytest.raises(ConfigError, match=f"{ENV_VAR}.*{raw!r}"), short_switch_interval():
        pass
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_fit_runs_with_the_short_interval(tmp_path: Path) -> None:
    seen: list[float] = []

    def trainable(config: dict[str, float]) -> None:
        seen.append(sys.getswitchinterval())
        tune.report({"x": 1})

    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    tuner.fit()
    assert seen == [pytest.approx(0.001)]
    assert sys.getswitchinterval() == pytest.approx(0.005)


async def test_the_first_fits_imports_run_with_the_short_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first fit() of a process imports its machinery in a worker thread; those imports
    # hold the GIL in switch-interval slices, so they run under the short interval too.
    import atune.tuner

    seen: list[float] = []
    load = atune.tuner._load_fit_machinery

    def recording_load() -> None:
        seen.append(sys.getswitchinterval())
        load()

    monkeypatch.setattr(atune.tuner, "_load_fit_machinery", recording_load)
    tuner = tune.Tuner(
        lambda config: tune.report({"x": 1}),
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    await tuner.fit()
    assert seen == [pytest.approx(0.001)]
    assert sys.getswitchinterval() == pytest.approx(0.005)
