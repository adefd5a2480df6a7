from __future__ import annotations

import threading
from typing import Any

import pytest

from atune.utils import diagnose_serialization

GLOBAL_LOCK = threading.Lock()
GLOBAL_NUMBER = 3


def test_serializable_function_returns_true(capsys: pytest.CaptureFixture[str]) -> None:
    def train_fn(config: dict[str, Any]) -> int:
        return GLOBAL_NUMBER + int(config["x"])

    assert diagnose_serialization(train_fn) is True
    assert "Serialization succeeded!" in capsys.readouterr().out


def test_global_lock_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    def train_fn(config: dict[str, Any]) -> int:
        with GLOBAL_LOCK:
            return GLOBAL_NUMBER

    assert diagnose_serialization(train_fn) == {"GLOBAL_LOCK"}
    out = capsys.readouterr().out
    assert "Serialization failed" in out
    assert "Detected 2 global variables" in out
    assert "[name='GLOBAL_LOCK']... FAILED" in out
    assert "[name='GLOBAL_NUMBER']... PASSED" in out


def test_closure_over_lock_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    lock = threading.Lock()
    offset = 1

    def train_fn(config: dict[str, Any]) -> int:
        with lock:
            return offset

    assert diagnose_serialization(train_fn) == {"lock"}
    out = capsys.readouterr().out
    assert "Detected 2 nonlocal variables" in out
    assert "[name='lock']... FAILED" in out
    assert "[name='offset']... PASSED" in out


def test_class_methods_are_inspected(capsys: pytest.CaptureFixture[str]) -> None:
    lock = threading.Lock()

    class MyTrainable:
        def setup(self, config: dict[str, Any]) -> None:
            self.value = GLOBAL_NUMBER

        def step(self) -> dict[str, Any]:
            with GLOBAL_LOCK:
                return {"v": self.value}

        @staticmethod
        def helper() -> None:
            with lock:
                pass

    assert diagnose_serialization(MyTrainable) == {"GLOBAL_LOCK", "lock"}
    assert "Serialization failed" in capsys.readouterr().out


def test_class_with_super_does_not_report_itself() -> None:
    class Base:
        def setup(self) -> None:
            pass

    class Child(Base):
        def setup(self) -> None:
            super().setup()
            with GLOBAL_LOCK:
                pass

    assert diagnose_serialization(Child) == {"GLOBAL_LOCK"}


def test_unexplained_failure_returns_empty_set(capsys: pytest.CaptureFixture[str]) -> None:
    def train_fn(config: dict[str, Any], lock: Any = threading.Lock()) -> None:
        pass

    assert diagnose_serialization(train_fn) == set()
    assert "No single variable failed" in capsys.readouterr().out
