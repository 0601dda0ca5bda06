"""The dashboard's app with a fake RunSource, in-process (Starlette's
TestClient): JSON of steps, refusals as one line, the access rules."""

from __future__ import annotations

import warnings
from typing import Any

import msgspec
import pytest

with warnings.catch_warnings():  # recent Starlette asks for "httpx2"; httpx serves these tests
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from coda.dashboard import create_app
from coda.dashboard.access import is_loopback_host
from coda.errors import RequestRefusedError
from coda.messages import Failure, JobView
from coda.supervisor.throttle import FREE_FAILURES, TokenThrottle

RUN = JobView(
    id="r1", kind="workflow", name="wf", state="succeeded", queue="default", attempt=2,
    created_at=100.0, started_at=100.5, finished_at=103.0,
)  # fmt: skip
CACHED = JobView(
    id="s1", kind="task", name="step", state="succeeded", queue="default", attempt=1,
    created_at=100.1, started_at=100.2, finished_at=100.3, parent_run="r1", parent_attempt=1,
    cache_key=msgspec.msgpack.encode(["a", b"\x00\x01"]),
)  # fmt: skip
FAILED = JobView(
    id="s2", kind="task", name="breaks", state="failed", queue="default", attempt=3,
    created_at=100.6, started_at=100.7, finished_at=101.0, parent_run="r1", parent_attempt=2,
    failure=Failure(type_name="ValueError", message="broke", traceback="Traceback ...\n"),
)  # fmt: skip


class FakeSource:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def overview(self) -> dict[str, Any]:
        return {"workers": []}

    def list_runs(
        self, *, state: str | None, name: str | None, since: float | None, limit: int
    ) -> list[JobView]:
        if state == "bogus":
            raise RequestRefusedError("bad_filter", "unknown state 'bogus'")
        return [RUN]

    def run(self, run_id: str) -> tuple[JobView, list[JobView]]:
        if run_id != "r1":
            raise RequestRefusedError("not_found", f"no run {run_id!r}")
        return RUN, [CACHED, FAILED]

    async def cancel(self, run_id: str) -> str:
        self.cancelled.append(run_id)
        return "cancelling"


def client(token: str | None = None, **kwargs: Any) -> TestClient:
    app = create_app(FakeSource(), token=token, **kwargs)
    return TestClient(app, base_url="http://127.0.0.1:8080")


def test_a_step_says_whether_it_was_cached_and_how_it_came_to_be() -> None:
    data = client().get("/api/runs/r1").json()
    cached, failed = data["steps"]
    assert (cached["cached"], cached["origin"]) == (True, "cached (ran in attempt 1)")
    assert cached["cache_key"] == ["a", "b'\\x00\\x01'"]  # bytes in a key: shown, not an error
    assert (failed["cached"], failed["origin"], failed["attempt"]) == (
        False,
        "executed in attempt 2",
        3,
    )
    assert failed["failure"]["traceback"] == "Traceback ...\n"


def test_refusals_are_one_line_with_their_status() -> None:
    http = client()
    assert http.get("/api/runs/zz").json() == {
        "error": {"code": "not_found", "message": "no run 'zz'"}
    }
    assert http.get("/api/runs/zz").status_code == 404
    assert http.get("/api/runs?state=bogus").status_code == 400
    assert http.get("/nowhere").text == "not_found: nothing at /nowhere\n"


def test_a_page_is_served_for_any_run_id() -> None:
    page = client().get("/runs/anything")
    assert page.status_code == 200
    assert 'data-page="run"' in page.text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("localhost", True),
        ("app.localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("localhost.evil.example", False),
        ("", False),
    ],
)
def test_loopback_host_names(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_extra_routes_sit_behind_the_same_token() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def metrics(request: Any) -> PlainTextResponse:
        return PlainTextResponse("coda_up 1\n")

    http = client(token="t", extra_routes=[Route("/metrics", metrics)])
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers={"Authorization": "Bearer t"}).text == "coda_up 1\n"


def test_wrong_tokens_are_throttled_per_address() -> None:
    http = client(token="right", throttle=TokenThrottle())
    wrong = {"Authorization": "Bearer wrong"}
    codes = [http.get("/api/overview", headers=wrong).status_code for _ in range(FREE_FAILURES)]
    assert codes == [401] * FREE_FAILURES
    assert http.get("/api/overview", headers=wrong).status_code == 401  # the first locked one
    locked = http.get("/api/overview", headers={"Authorization": "Bearer right"})
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "token_throttled"


def test_a_cross_site_cancel_reaches_nothing() -> None:
    source = FakeSource()
    http = TestClient(create_app(source), base_url="http://127.0.0.1:8080")
    refused = http.post("/api/runs/r1/cancel", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert source.cancelled == []
    own = http.post("/api/runs/r1/cancel", headers={"Origin": "http://127.0.0.1:8080"})
    assert own.json() == {"run_id": "r1", "state": "cancelling"}
    assert source.cancelled == ["r1"]


def test_no_other_site_may_frame_the_pages() -> None:
    for response in (client().get("/"), client(token="t").get("/")):  # served, and refused
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
