"""``run.display()``: one notebook output updated in place; a printed snapshot elsewhere.

The notebook side runs on a real Jupyter kernel (an ipykernel driven by jupyter_client, no
browser) and checks the messages a frontend gets: one ``display_data`` and the
``update_display_data`` that replace its content, all as messages of the cell that called
``run.display()`` (a frontend shows them in that cell's output).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import atune as tune

pytestmark = pytest.mark.timeout(120)

_GATES: dict[str, threading.Event] = {}


@pytest.fixture
def gate() -> Iterator[str]:
    name = uuid.uuid4().hex
    _GATES[name] = threading.Event()
    yield name
    _GATES.pop(name).set()


def _gated(config: dict[str, Any]) -> None:
    for i in range(4):
        if i == 2:
            assert _GATES[config["gate"]].wait(timeout=30), "the test never opened the gate"
        tune.report({"loss": config["x"] * (4 - i)})


async def test_outside_a_notebook_it_prints_the_status_and_table_once(
    storage: str, gate: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tuner = tune.Tuner(
        _gated,
        param_space={"x": tune.grid_search([1, 2]), "gate": gate},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    async with tuner.start() as run:
        async for _ in run.events():
            if run.status().num_results == 4:  # both trials wait at their gate
                break
        capsys.readouterr()
        run.display()
        shown = capsys.readouterr().out
        _GATES[gate].set()
    assert shown.splitlines()[0].strip() == "Trials"
    assert "== 2 trials: 2 RUNNING | best loss=" in shown
    assert "_gated_" in shown and "\x1b" not in shown
    capsys.readouterr()
    run.display()  # after the end: the final state, once more
    assert "== 2 trials: 2 TERMINATED | best loss=1 " in capsys.readouterr().out


_SETUP = """
import asyncio
import threading

import atune as tune

gate = threading.Event()


def train(config):
    for i in range(4):
        if i == 2:
            gate.wait(30)
        tune.report({"loss": config["x"] * (4 - i)})


tuner = tune.Tuner(
    tune.with_resources(train, {"cpu": 0.25}),  # all three at once, even on one core
    param_space={"x": tune.grid_search([1, 2, 3])},
    tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0),
)
handles = {}
started = asyncio.Event()


async def keep():
    async with tuner.start() as run:
        handles["run"] = run
        started.set()
        await run.wait()


task = asyncio.create_task(keep())
await started.wait()
run = handles["run"]
while run.status().num_results < 3 * 2:  # every trial waits at the gate
    await asyncio.sleep(0.01)
"""


def _execute(client: Any, code: str) -> str:
    """Run ``code`` in the kernel, wait for its reply; the request's message id."""
    msg_id: str = client.execute(code)
    reply = client.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msg_id


def _iopub(client: Any, until_idle_of: str) -> list[dict[str, Any]]:
    """Every IOPub message up to the kernel's idle status after request ``until_idle_of``."""
    messages = []
    while True:
        msg = client.get_iopub_msg(timeout=60)
        messages.append(msg)
        if (
            msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
            and msg["parent_header"].get("msg_id") == until_idle_of
        ):
            return messages


@pytest.mark.slow
def test_in_a_notebook_one_output_updates_in_place(storage: str) -> None:
    manager = pytest.importorskip("jupyter_client.manager", reason="needs the notebooks extra")
    pytest.importorskip("ipykernel", reason="needs the notebooks extra")

    kernel, client = manager.start_new_kernel(kernel_name="python3")
    try:
        _execute(client, _SETUP.replace("STORAGE", repr(storage)))
        shown = _execute(client, "state_at_display = run.state\nrun.display()")
        # A later cell: the run ends while it executes.
        later = _execute(client, "assert state_at_display == 'running'\ngate.set()\nawait task")
        messages = _iopub(client, later)
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=True)

    outputs = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    (first, *updates) = outputs
    # One output, made by the run.display() cell while the run ran ...
    assert first["msg_type"] == "display_data"
    display_id = first["content"]["transient"]["display_id"]
    assert "RUNNING" in first["content"]["data"]["text/plain"]
    # ... and updated in place (the same display id, as messages of that same cell) while
    # the next cell ran, a last time at the end of the run.
    assert updates and all(m["msg_type"] == "update_display_data" for m in updates)
    assert {m["content"]["transient"]["display_id"] for m in updates} == {display_id}
    assert {m["parent_header"]["msg_id"] for m in outputs} == {shown}
    final = updates[-1]["content"]["data"]
    plain, html = final["text/plain"], final["text/html"]
    assert "== 3 trials: 3 TERMINATED | best loss=1 " in plain
    assert not any("\x1b" in m["content"]["data"]["text/plain"] for m in outputs)
    assert html.startswith("<div class='atune-progress'>")
    assert "<b>== 3 trials: 3 TERMINATED | best loss=1 " in html
    assert html.count("<td>TERMINATED</td>") == 3
