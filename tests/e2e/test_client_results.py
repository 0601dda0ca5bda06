"""The blocking client's results: a submit's end comes to it unasked.

``Client.submit`` has the supervisor send the run's end on the same
connection once durable, so ``handle.result()`` costs no round trip when
the end has come already; a handle of an earlier connection, or made from a
run id, asks with ``Await``; a handle dropped unread gives its end up.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import coda
from coda.client import Client
from coda.errors import ResultTimeoutError
from coda.messages import Await
from coda.testing import SupervisorProcess, wait_until
from tests.apps import basic


@pytest.fixture
def awaits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The run ids the blocking client asks for with ``Await``."""
    asked: list[str] = []
    real = Client._request

    def spy(self: Client, request: object, deadline: float | None) -> object:
        if isinstance(request, Await):
            asked.append(request.run_id)
        return real(self, request, deadline)  # type: ignore[arg-type]

    monkeypatch.setattr(Client, "_request", spy)
    yield asked


def test_a_submit_loop_takes_each_result_without_asking_for_it(
    supervisor: SupervisorProcess, awaits: list[str]
) -> None:
    with supervisor.client() as client:
        handles = [client.submit(basic.add, {"x": i, "y": 1}) for i in range(20)]
        assert [handle.result(timeout=30) for handle in handles] == list(range(1, 21))
        assert awaits == []
        assert handles[3].result(timeout=30) == 4  # again: asked (it may have expired since)
    assert awaits == [handles[3].run_id]


def test_a_handle_made_from_a_run_id_asks_for_its_result(
    supervisor: SupervisorProcess, awaits: list[str]
) -> None:
    with supervisor.client() as client:
        run_id = client.submit(basic.add, {"x": 2, "y": 3}).run_id
        assert client.handle(run_id).result(timeout=30) == 5
    assert awaits == [run_id]


def test_after_a_reconnect_a_handle_asks_for_its_result(
    supervisor: SupervisorProcess, awaits: list[str]
) -> None:
    with supervisor.client() as client:
        handle = client.submit(basic.add, {"x": 4, "y": 4})
        client.close()  # the end was owed on that connection
        assert handle.result(timeout=30) == 8
    assert awaits == [handle.run_id]


def test_a_result_that_timed_out_comes_to_a_later_call(
    supervisor: SupervisorProcess, tmp_path: Path, awaits: list[str]
) -> None:
    gate = str(tmp_path / "gate")
    with supervisor.client() as client:
        handle = client.submit(basic.busy_until, {"gate": gate})
        with pytest.raises(ResultTimeoutError):
            handle.result(timeout=0.3)
        Path(gate).touch()
        assert isinstance(handle.result(timeout=30), int)
    assert awaits == []


def test_a_dropped_handle_gives_up_its_result(supervisor: SupervisorProcess) -> None:
    with supervisor.client() as client:
        kept = client.submit(basic.add, {"x": 1, "y": 1})
        client.submit(basic.add, {"x": 2, "y": 2})  # dropped at once
        gc.collect()
        assert kept.result(timeout=30) == 2
        conn = client._conn
        assert conn is not None
        wait_until(lambda: client.status() and conn.in_flight == 0, what="nothing owed")


def test_results_of_runs_that_failed_are_raised_from_their_handles(
    supervisor: SupervisorProcess,
) -> None:
    with supervisor.client() as client:
        handle = client.submit(basic.always_fails, {"message": "no"})
        with pytest.raises(coda.TaskFailed, match="no"):
            handle.result(timeout=30)


def test_a_client_shared_by_threads_gives_each_handle_its_own_result(
    supervisor: SupervisorProcess,
) -> None:
    with supervisor.client() as client:

        def submit_and_wait(i: int) -> int:
            return int(client.submit(basic.add, {"x": i, "y": 0}).result(timeout=60))

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(submit_and_wait, range(40))) == list(range(40))
