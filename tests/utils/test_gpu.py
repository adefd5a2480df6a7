from __future__ import annotations

import re
import sys
import types
from typing import Any

import pytest

from atune.utils import _gpu, wait_for_gpu
from atune.utils._gpu import GPUInfo

UUID = "GPU-04546190-b68d-65ac-101b-035f8faed77d"


class _FakeGPUs:
    """A ``list_gpus`` replacement whose GPU 0 has the given utilisation on each poll."""

    def __init__(self, utils: list[float]) -> None:
        self.utils = utils
        self.calls = 0

    def __call__(self) -> list[GPUInfo]:
        util = self.utils[min(self.calls, len(self.utils) - 1)]
        self.calls += 1
        return [GPUInfo(0, UUID, util), GPUInfo(1, "GPU-other", 0.0)]


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    sleeps: list[float] = []
    monkeypatch.setattr("atune.utils._gpu.time.sleep", sleeps.append)
    return sleeps


def test_no_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "GPUtil", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(RuntimeError, match=r"gputil.*nvidia-ml-py"):
        wait_for_gpu(0)


def test_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu, "list_gpus", list)
    with pytest.raises(RuntimeError, match="no GPU"):
        wait_for_gpu(0)


@pytest.mark.parametrize("gpu_id", [5, "5", "GPU-nope"])
def test_unknown_id(monkeypatch: pytest.MonkeyPatch, gpu_id: int | str) -> None:
    monkeypatch.setattr(_gpu, "list_gpus", _FakeGPUs([0.0]))
    with pytest.raises(ValueError, match=re.escape(str(gpu_id))):
        wait_for_gpu(gpu_id)


def test_wrong_id_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu, "list_gpus", _FakeGPUs([0.0]))
    with pytest.raises(ValueError, match="float"):
        wait_for_gpu(0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("gpu_id", [0, "0", UUID])
def test_freed_after_two_polls(
    monkeypatch: pytest.MonkeyPatch, _no_sleep: list[float], gpu_id: int | str
) -> None:
    fake = _FakeGPUs([0.5, 0.0])
    monkeypatch.setattr(_gpu, "list_gpus", fake)
    assert wait_for_gpu(gpu_id, delay_s=0) is True
    assert _no_sleep == [0]
    assert fake.calls == 2


def test_never_freed(monkeypatch: pytest.MonkeyPatch, _no_sleep: list[float]) -> None:
    monkeypatch.setattr(_gpu, "list_gpus", _FakeGPUs([0.5]))
    with pytest.raises(RuntimeError, match="GPU memory was not freed"):
        wait_for_gpu(0, retry=3, delay_s=0.25)
    assert _no_sleep == [0.25, 0.25]


def test_target_util_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu, "list_gpus", _FakeGPUs([0.25]))
    assert wait_for_gpu(0, target_util=0.25, retry=1) is True


def test_default_id_from_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    fake = _FakeGPUs([0.9])  # GPU 0 stays busy, GPU 1 is free
    monkeypatch.setattr(_gpu, "list_gpus", fake)
    assert wait_for_gpu(retry=1) is True


def test_default_id_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(_gpu, "list_gpus", _FakeGPUs([0.0]))
    with pytest.raises(RuntimeError, match="gpu_id"):
        wait_for_gpu()


def test_default_id_from_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeRay:
        @staticmethod
        def is_initialized() -> bool:
            return True

        @staticmethod
        def get_gpu_ids() -> list[str]:
            return ["1"]

    monkeypatch.setitem(sys.modules, "ray", FakeRay)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(_gpu, "list_gpus", _FakeGPUs([0.9]))
    assert wait_for_gpu(retry=1) is True  # GPU 1 (from Ray) is free; GPU 0 is not


def test_gputil_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = types.SimpleNamespace(id=0, uuid=UUID, memoryUtil=0.125)
    fake = types.SimpleNamespace(getGPUs=lambda: [gpu])
    monkeypatch.setitem(sys.modules, "GPUtil", fake)
    assert _gpu.list_gpus() == [GPUInfo(0, UUID, 0.125)]


def _fake_pynvml(*, init_fails: bool = False) -> Any:
    class NVMLError(Exception):
        pass

    calls: list[str] = []

    def nvml_init() -> None:
        calls.append("init")
        if init_fails:
            raise NVMLError("driver not loaded")

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        calls=calls,
        nvmlInit=nvml_init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: UUID.encode() if h == 0 else "GPU-other",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=25 * (h + 1), total=100),
    )


def test_pynvml_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "GPUtil", None)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert _gpu.list_gpus() == [GPUInfo(0, UUID, 0.25), GPUInfo(1, "GPU-other", 0.5)]
    assert fake.calls == ["init", "shutdown"]


def test_pynvml_without_driver_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "GPUtil", None)
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_fails=True))
    with pytest.raises(RuntimeError, match="no GPU"):
        wait_for_gpu(0)
