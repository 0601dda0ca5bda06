"""The dashboard's HTTP API against a real supervisor: bad input gets one
clear line and changes nothing; the access rules (host, origin, token)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coda.testing import SupervisorProcess, wait_until
from tests.dashboard.conftest import start_dashboard
from tests.e2e.certs import make_pki

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-dashboard-token"


@pytest.fixture(scope="module")
def http(dashboard: SupervisorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard.dashboard_url or "", timeout=10) as client:
        yield client


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def test_the_api_lists_a_finished_run_and_its_steps(
    dashboard: SupervisorProcess, http: httpx.Client, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        handle = client.submit(
            "tests.apps.steer.two_steps_then_fails_once", {"journal": str(tmp_path / "j")}
        )
        assert handle.result(timeout=30) == "ab"
    listed = http.get("/api/runs", params={"name": "tests.apps.steer.two_steps_then_fails_once"})
    assert listed.status_code == 200
    assert handle.run_id in [run["id"] for run in listed.json()["runs"]]
    shown = http.get(f"/api/runs/{handle.run_id}").json()
    assert shown["run"]["state"] == "succeeded"
    assert shown["run"]["attempt"] == 2
    assert [(s["cache_key"], s["cached"], s["origin"]) for s in shown["steps"]] == [
        (["a"], True, "cached (ran in attempt 1)"),
        (["b"], False, "executed in attempt 2"),
    ]


def test_an_unknown_run_is_a_404_with_one_line(http: httpx.Client) -> None:
    assert error(http.get("/api/runs/no-such-run")) == (
        404,
        "not_found",
        "no run 'no-such-run': never submitted here, or expired",
    )


def test_cancelling_a_finished_run_is_refused_and_changes_nothing(
    dashboard: SupervisorProcess, http: httpx.Client, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        handle = client.submit(
            "tests.apps.steer.step", {"journal": str(tmp_path / "j"), "name": "x"}
        )
        assert handle.result(timeout=30) == "x"
    refused = http.post(f"/api/runs/{handle.run_id}/cancel")
    assert error(refused) == (
        409,
        "already_finished",
        f"cannot cancel run {handle.run_id!r}: it has already succeeded; nothing was changed",
    )
    assert http.get(f"/api/runs/{handle.run_id}").json()["run"]["state"] == "succeeded"


def test_cancelling_an_unknown_run_is_a_404(http: httpx.Client) -> None:
    assert error(http.post("/api/runs/nope/cancel")) == (
        404,
        "not_found",
        "cannot cancel run 'nope': never submitted here, or expired",
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"state": "sleeping"},
            "unknown state 'sleeping': use one of cancelled, delayed, failed, queued, running, "
            "succeeded",
        ),
        (
            {"since": "last tuesday"},
            "since: 'last tuesday' is neither a date (2026-11-29, 2026-11-29T06:55, with an "
            "optional offset) nor a duration back from now (30s, 10m, 2h, 1d, 1h30m)",
        ),
        ({"limit": "many"}, "limit must be a whole number, got 'many'"),
        ({"limit": "0"}, "limit must be between 1 and 1000, got 0"),
    ],
)
def test_a_malformed_filter_is_a_400_with_one_line(
    http: httpx.Client, params: dict[str, str], message: str
) -> None:
    assert error(http.get("/api/runs", params=params)) == (400, "bad_filter", message)


def test_cancel_is_post_only(
    dashboard: SupervisorProcess, http: httpx.Client, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        handle = client.submit("tests.apps.steer.cancellable", {"journal": str(tmp_path / "j")})
        wait_until(
            lambda: http.get(f"/api/runs/{handle.run_id}").json()["run"]["state"] == "running",
            what="the run running",
        )
        assert error(http.get(f"/api/runs/{handle.run_id}/cancel")) == (
            405,
            "method_not_allowed",
            f"GET is not accepted at /api/runs/{handle.run_id}/cancel (a change is a POST)",
        )
        refused = http.post(
            f"/api/runs/{handle.run_id}/cancel", headers={"Origin": "http://evil.example"}
        )
        assert error(refused) == (
            403,
            "cross_origin",
            "changes are accepted only from the dashboard's pages",
        )
        assert http.get(f"/api/runs/{handle.run_id}").json()["run"]["state"] == "running"
        same_site = http.post(
            f"/api/runs/{handle.run_id}/cancel", headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert same_site.status_code == 403
        own = f"{dashboard.dashboard_url}".rstrip("/")
        cancelled = http.post(f"/api/runs/{handle.run_id}/cancel", headers={"Origin": own})
        assert cancelled.status_code == 200
        # its worker stops it (asyncio.CancelledError at its await), then it ends cancelled
        assert cancelled.json() == {"run_id": handle.run_id, "state": "cancelling"}
        wait_until(
            lambda: http.get(f"/api/runs/{handle.run_id}").json()["run"]["state"] == "cancelled",
            what="the run cancelled",
        )


def test_the_overview_shows_what_each_worker_runs_now(
    dashboard: SupervisorProcess, http: httpx.Client, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        handle = client.submit("tests.apps.steer.cancellable", {"journal": str(tmp_path / "j")})

        def running() -> set[tuple[str, str, str]]:
            workers = http.get("/api/overview").json()["workers"]
            return {(j["name"], j["run"], j["state"]) for w in workers for j in w["running"]}

        wait_until(
            lambda: (
                running()
                == {
                    ("tests.apps.steer.cancellable", handle.run_id, "running"),
                    ("tests.apps.steer.sleeps", handle.run_id, "running"),
                }
            ),
            what="the workflow and its step on the workers",
        )
        client.cancel(handle.run_id)
        wait_until(lambda: running() == set(), what="the workers idle again")


def test_a_foreign_host_name_is_refused_without_a_token(http: httpx.Client) -> None:
    """A page whose name was rebound to 127.0.0.1 sends its own Host."""
    refused = http.get("/api/overview", headers={"Host": "attacker.example"})
    assert error(refused)[:2] == (403, "wrong_host")
    assert http.get("/api/overview", headers={"Host": "localhost"}).status_code == 200


def test_an_unknown_endpoint_is_a_404(http: httpx.Client) -> None:
    assert error(http.get("/api/nothing-here")) == (
        404,
        "not_found",
        "nothing at /api/nothing-here",
    )


def test_the_overview_shows_workers_queues_and_schedules(http: httpx.Client) -> None:
    data = http.get("/api/overview").json()
    assert [(w["queues"], w["tasks"]) for w in data["workers"]] == [(["default"], "0/1")] * 2
    assert "default" in [q["name"] for q in data["queues"]]
    assert data["schedules"] == []
    assert data["supervisor"]["dashboard"] == str(http.base_url)


def test_with_a_token_every_request_carries_it() -> None:
    with start_dashboard("--token", TOKEN, workers=0) as sup:
        url = sup.dashboard_url or ""
        with httpx.Client(base_url=url, timeout=10) as http:
            assert error(http.get("/api/overview"))[:2] == (401, "token_required")
            assert http.get("/").status_code == 401
            assert error(http.get("/api/overview", headers={"Authorization": "Bearer wrong"}))[
                :2
            ] == (401, "token_invalid")
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert http.get("/api/overview", headers=bearer).status_code == 200
            # a foreign Host is fine with the token: the token is the guard
            headers = {**bearer, "Host": "dashboard.example"}
            assert http.get("/api/overview", headers=headers).status_code == 200
            remembered = http.get("/runs", params={"token": TOKEN, "state": "failed"})
            assert remembered.status_code == 303
            assert remembered.headers["location"] == f"{url}runs?state=failed"
            cookie = remembered.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            # the cookie jar now holds it: pages and the API answer
            assert http.get("/runs").status_code == 200
            assert http.get("/api/runs").status_code == 200
            assert error(http.post("/api/runs/nope/cancel"))[:2] == (404, "not_found")


def test_with_the_supervisors_tls_options_it_serves_https(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    with start_dashboard(*tls, workers=0) as sup:
        url = sup.dashboard_url or ""
        assert url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(pki.ca))
        with httpx.Client(base_url=url, timeout=10, verify=trusting) as http:
            assert http.get("/api/overview").status_code == 200
        with (
            httpx.Client(base_url=url, timeout=10) as untrusting,
            pytest.raises(httpx.ConnectError),
        ):
            untrusting.get("/api/overview")
