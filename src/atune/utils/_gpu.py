"""``wait_for_gpu``: block until a GPU's memory has been freed by the previous trial.

GPU state is read through :func:`list_gpus`, which tries ``GPUtil`` and then ``pynvml``
(``nvidia-ml-py``), both imported lazily. Tests replace :func:`list_gpus` to run without
a GPU.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from atune._log import get_logger

__all__ = ["GPUInfo", "list_gpus", "wait_for_gpu"]

logger = get_logger(__name__)

_INSTALL_HINT = (
    "wait_for_gpu needs GPUtil or nvidia-ml-py to read GPU memory; install one of them: "
    "`pip install gputil` or `pip install nvidia-ml-py`."
)


@dataclass(frozen=True)
class GPUInfo:
    """One physical GPU as seen by the driver library.

    Attributes:
        index: The ordinal (as in ``nvidia-smi``; not renumbered by ``CUDA_VISIBLE_DEVICES``).
        uuid: The device UUID, e.g. ``"GPU-04546190-b68d-65ac-101b-035f8faed77d"``.
        memory_util: Used memory as a fraction of total memory, in ``[0, 1]``.
    """

    index: int
    uuid: str
    memory_util: float


def _list_with_gputil() -> list[GPUInfo] | None:
    try:
        import GPUtil
    except ImportError:
        return None
    return [GPUInfo(int(g.id), str(g.uuid), float(g.memoryUtil)) for g in GPUtil.getGPUs()]


def _list_with_pynvml() -> list[GPUInfo] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no driver or no device: the library is there, the GPU is not
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            raw_uuid: Any = pynvml.nvmlDeviceGetUUID(handle)
            uuid = raw_uuid.decode() if isinstance(raw_uuid, bytes) else str(raw_uuid)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = float(memory.used) / float(memory.total) if memory.total else 0.0
            gpus.append(GPUInfo(index, uuid, util))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def list_gpus() -> list[GPUInfo]:
    """List the machine's GPUs with their memory utilisation.

    Returns:
        One :class:`GPUInfo` per physical GPU; empty if the library finds none.

    Raises:
        RuntimeError: If neither ``GPUtil`` nor ``pynvml`` can be imported.
    """
    for backend in (_list_with_gputil, _list_with_pynvml):
        gpus = backend()
        if gpus is not None:
            return gpus
    raise RuntimeError(_INSTALL_HINT)


def _default_gpu_id() -> int | str:
    """The first GPU assigned by Ray to this worker, else the first CUDA_VISIBLE_DEVICES entry."""
    ray = sys.modules.get("ray")  # never import Ray just to ask it: not imported, not running
    if ray is not None and ray.is_initialized():
        ids = ray.get_gpu_ids()
        if ids:
            first: int | str = ids[0]
            return first
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible:
        return visible
    raise RuntimeError(
        "wait_for_gpu could not tell which GPU to watch: Ray assigned none to this worker "
        "and CUDA_VISIBLE_DEVICES is unset. Request GPUs for the trial (e.g. "
        "tune.with_resources(fn, {'gpu': 1})) or pass gpu_id."
    )


def _find(gpus: list[GPUInfo], gpu_id: int | str) -> GPUInfo | None:
    if isinstance(gpu_id, int):
        return next((g for g in gpus if g.index == gpu_id), None)
    return next((g for g in gpus if g.uuid == gpu_id), None)


def wait_for_gpu(
    gpu_id: int | str | None = None,
    target_util: float = 0.01,
    retry: int = 20,
    delay_s: float = 5,
    gpu_memory_limit: float | None = None,
) -> bool:
    """Block until a GPU's memory utilisation is at or below ``target_util``.

    Call it at the start of a trial so that the memory a previous trial on the same GPU
    held has been released. It checks up to ``retry`` times, sleeping ``delay_s`` seconds
    between checks (``time.sleep``: it blocks the calling thread, which is the trial's).

    Args:
        gpu_id: The GPU to watch: an ordinal (``0`` or ``"0"``) or a UUID string. Default:
            the first of ``ray.get_gpu_ids()`` when Ray is running in this process, else
            the first entry of ``CUDA_VISIBLE_DEVICES``.
        target_util: Memory utilisation (fraction of total) to wait for; 0 waits until
            the GPU is completely free.
        retry: How many times to check.
        delay_s: Seconds to sleep between checks.
        gpu_memory_limit: Deprecated in Ray Tune and unused; ignored.

    Returns:
        True once the GPU's memory utilisation is ``<= target_util``.

    Raises:
        RuntimeError: If neither GPUtil nor pynvml is installed, no GPU is visible, no
            ``gpu_id`` was given and none can be found, or the memory was not freed in time.
        ValueError: If ``gpu_id`` names no visible GPU or has the wrong type.
    """
    del gpu_memory_limit
    gpus = list_gpus()
    if not gpus:
        raise RuntimeError("no GPU is visible to GPUtil/pynvml on this machine.")
    wanted: int | str = _default_gpu_id() if gpu_id is None else gpu_id
    if isinstance(wanted, bool) or not isinstance(wanted, int | str):
        raise ValueError(f"gpu_id must be an int or str, got {type(wanted).__name__}.")
    if isinstance(wanted, str) and wanted.strip().isdigit():
        wanted = int(wanted)
    gpu = _find(gpus, wanted)
    if gpu is None:
        known = [g.index for g in gpus] + [g.uuid for g in gpus]
        raise ValueError(
            f"gpu_id {wanted!r} matches no visible GPU; known ordinals and UUIDs: {known}."
        )
    for attempt in range(int(retry)):
        if attempt:
            time.sleep(delay_s)
            gpu = _find(list_gpus(), wanted)
            if gpu is None:
                raise ValueError(f"gpu_id {wanted!r} is no longer visible.")
        if gpu.memory_util <= target_util:
            return True
        logger.info(
            "waiting for GPU memory to be freed",
            gpu_id=wanted,
            memory_util=round(gpu.memory_util, 3),
            target_util=target_util,
        )
    raise RuntimeError(
        f"GPU memory was not freed: GPU {wanted!r} stayed above {target_util} memory "
        f"utilisation over {retry} checks, {delay_s} s apart."
    )
