"""atune's logs go through the standard library's ``logging``, to stderr, never stdout.

A real warning of atune's is used throughout: a ``sample_from`` function written against
the deprecated ``spec`` argument.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import atune as tune

_DEPRECATED = "sample_from functions that take a spec"


def _report(config: dict[str, Any]) -> None:
    tune.report({"x": config["x"]})


def _fit_with_a_warning(storage: str) -> None:
    tune.Tuner(
        _report,
        param_space={"x": tune.sample_from(lambda spec: spec.config.get("missing", 1))},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()


def test_warnings_are_stdlib_records_under_the_atune_logger(
    storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="atune"):
        _fit_with_a_warning(storage)
    (record,) = [r for r in caplog.records if _DEPRECATED in r.getMessage()]
    assert record.name.startswith("atune.") and record.levelno == logging.WARNING
    assert "func=" in record.getMessage()  # key-value pairs are part of the message
    assert record.pathname.endswith("_domain.py")  # the line that logged it, not structlog's


def test_the_atune_logger_level_silences_atune(
    storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    atune_logger = logging.getLogger("atune")
    old = atune_logger.level
    atune_logger.setLevel(logging.ERROR)
    try:
        with caplog.at_level(logging.DEBUG):  # the root accepts everything
            _fit_with_a_warning(storage)
    finally:
        atune_logger.setLevel(old)
    assert not [r for r in caplog.records if r.name.startswith("atune")]


def _run(script: str, tmp_path: Any) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        f"""
        import atune as tune

        def report(config):
            tune.report({{"x": config["x"]}})

        {textwrap.indent(textwrap.dedent(script), " " * 8).strip()}
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=True,
    )


def test_by_default_warnings_go_to_stderr_and_verbose_0_prints_nothing_else(
    tmp_path: Any,
) -> None:
    done = _run(
        """
        tune.Tuner(
            report,
            param_space={"x": tune.sample_from(lambda spec: spec.config.get("y", 1))},
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=".", verbose=0),
        ).fit()
        """,
        tmp_path,
    )
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()  # logging's last resort: the message, to stderr
    assert line.startswith(_DEPRECATED) and "func=" in line


def test_a_quiet_run_at_verbose_0_prints_nothing(tmp_path: Any) -> None:
    done = _run(
        """
        results = tune.Tuner(
            report,
            param_space={"x": tune.grid_search([1, 2])},
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=".", verbose=0),
        ).fit()
        assert results.num_terminated == 2
        """,
        tmp_path,
    )
    assert (done.stdout, done.stderr) == ("", "")


def test_importing_and_running_atune_configures_no_logging(tmp_path: Any) -> None:
    _run(
        """
        import logging
        import structlog

        tune.Tuner(
            report,
            param_space={"x": tune.sample_from(lambda spec: spec.config.get("y", 1))},
            tune_config=tune.TuneConfig(backend="local"),
            run_config=tune.RunConfig(storage_path=".", verbose=0),
        ).fit()
        assert logging.getLogger().handlers == []
        assert logging.getLogger("atune").handlers == []
        assert logging.getLogger("atune").level == logging.NOTSET
        assert not structlog.is_configured()
        """,
        tmp_path,
    )


def test_an_application_that_configures_structlog_gets_atune_events_there(
    storage: str,
) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        _fit_with_a_warning(storage)
    assert [e["log_level"] for e in logs if e["event"].startswith(_DEPRECATED)] == ["warning"]


def test_after_capture_logs_atune_goes_back_to_stdlib_logging(
    storage: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from structlog.testing import capture_logs

    with capture_logs():  # leaves structlog "configured" with its stdout default
        pass
    with caplog.at_level(logging.WARNING, logger="atune"):
        _fit_with_a_warning(storage)
    assert [r for r in caplog.records if _DEPRECATED in r.getMessage()]
    assert capsys.readouterr().out == ""


def test_a_call_below_the_level_does_not_import_structlog() -> None:
    # A debug call on the event loop must not pay structlog's first import (rich, pygments:
    # tens of milliseconds) when nobody listens at that level; a warning still arrives.
    code = (
        "import logging, sys\n"
        "from atune._log import get_logger\n"
        "log = get_logger('atune.probe')\n"
        "log.debug('not shown', x=1)\n"
        "print('structlog' in sys.modules)\n"
        "log.warning('shown', x=2)\n"
        "print('structlog' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    assert "shown x=2" in out.stderr
    assert "not shown" not in out.stderr
