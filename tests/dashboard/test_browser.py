"""The dashboard in Chromium: what a person sees.

A submitted run appears in the list; its page draws its steps on the
timeline (the cached one told apart, the retried run marked); a failed step
shows its traceback; the cancel button cancels; an unknown run says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

import coda
from coda.testing import SupervisorProcess
from tests.dashboard.conftest import screenshot, start_dashboard

pytestmark = pytest.mark.e2e


def test_the_example_workflow_is_watched_step_by_step(
    dashboard: SupervisorProcess, page: Any
) -> None:
    """The README's tour: each step of process_event takes ``pause`` seconds."""
    event = {"event_id": "tour-1", "Message": "  Disk almost full  "}
    with dashboard.client() as client:
        handle = client.submit(
            "examples.ingest.workflows.process_event",
            {"project_id": 42, "event_data": event, "pause": 2},
        )
        page.goto(dashboard.dashboard_url)
        page.get_by_role("link", name="Runs").click()
        page.get_by_role("link", name=handle.run_id).click()
        steps = page.locator(".timeline .step:not(.run-row)")
        expect(steps.nth(0)).to_have_class("step state-running")
        expect(steps.nth(0)).to_contain_text("examples.ingest.tasks.normalize_event")
        expect(steps).to_have_count(1)
        screenshot(page, "example-first-step")
        expect(steps.nth(1)).to_have_class("step state-running")
        expect(steps.nth(1)).to_contain_text("examples.ingest.tasks.store_event")
        expect(steps.nth(0)).to_have_class("step state-succeeded")
        expect(page.locator("#run-state")).to_have_text("succeeded")
        expect(steps.nth(1)).to_have_class("step state-succeeded")
        assert handle.result(timeout=30)["key"] == "e:42:tour-1"
    screenshot(page, "example-done")


def test_a_submitted_run_appears_in_the_runs_list(
    dashboard: SupervisorProcess, page: Any, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        handle = client.submit(
            "tests.apps.steer.step", {"journal": str(tmp_path / "j"), "name": "listed"}
        )
        assert handle.result(timeout=30) == "listed"
    page.goto(f"{dashboard.dashboard_url}runs")
    row = page.locator(f'tr[data-run-id="{handle.run_id}"]')
    expect(row).to_contain_text("tests.apps.steer.step")
    expect(row).to_contain_text("succeeded")
    screenshot(page, "runs")
    row.get_by_role("link").click()
    expect(page.locator("#run-state")).to_have_text("succeeded")


def test_the_run_page_draws_each_step_on_the_timeline_cached_apart(
    dashboard: SupervisorProcess, page: Any, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        handle = client.submit(
            "tests.apps.steer.two_steps_then_fails_once", {"journal": str(tmp_path / "j")}
        )
        assert handle.result(timeout=30) == "ab"
    page.goto(f"{dashboard.dashboard_url}runs/{handle.run_id}")
    expect(page.locator("#run-state")).to_have_text("succeeded")
    steps = page.locator(".timeline .step:not(.run-row)")
    expect(steps).to_have_count(2)
    first, second = steps.nth(0), steps.nth(1)
    # step a ran in attempt 1 and answered attempt 2 from the cache; b ran in attempt 2
    expect(first).to_have_class("step state-succeeded cached")
    expect(first.locator(".cached-badge")).to_have_text("cached")
    expect(first.locator(".origin")).to_have_text("cached (ran in attempt 1)")
    expect(second).not_to_have_class("cached")
    expect(second.locator(".origin")).to_have_text("executed in attempt 2")
    expect(page.locator(".run-row .retry-badge")).to_have_text("attempt 2")
    for step in (first, second):  # a bar on the track, positioned along the run's span
        bar = step.locator(".bar.work")
        expect(bar).to_have_count(1)
        assert bar.bounding_box()["width"] > 0
    assert (
        first.locator(".bar.work").bounding_box()["x"]
        < second.locator(".bar.work").bounding_box()["x"]
    )
    screenshot(page, "run-cached-and-retried")


def test_a_failed_step_shows_its_traceback(
    dashboard: SupervisorProcess, page: Any, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        handle = client.submit("tests.apps.steer.fails_in_a_step", {"journal": str(tmp_path / "j")})
        with pytest.raises(coda.errors.RemoteError):
            handle.result(timeout=30)
    page.goto(f"{dashboard.dashboard_url}runs/{handle.run_id}")
    expect(page.locator("#run-state")).to_have_text("failed")
    failed = page.locator(".step-block .step.state-failed")
    expect(failed).to_contain_text("tests.apps.steer.breaks")
    traceback = page.locator("details.traceback")
    expect(traceback.locator("summary")).to_have_text("step 2 failed: ValueError: the step broke")
    expect(traceback.locator("pre")).not_to_be_visible()
    traceback.locator("summary").click()
    expect(traceback.locator("pre")).to_be_visible()
    expect(traceback.locator("pre")).to_contain_text('raise ValueError("the step broke")')
    screenshot(page, "run-failed-step")


def test_the_cancel_button_cancels_a_running_run(
    dashboard: SupervisorProcess, page: Any, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    with dashboard.client() as client:
        handle = client.submit("tests.apps.steer.cancellable", {"journal": str(journal)})
        page.goto(f"{dashboard.dashboard_url}runs/{handle.run_id}")
        expect(page.locator(".timeline .step.state-running:not(.run-row)")).to_contain_text(
            "tests.apps.steer.sleeps"
        )
        screenshot(page, "run-running")
        page.get_by_role("button", name="Cancel run").click()
        expect(page.locator("#run-state")).to_have_text("cancelled")
        expect(page.get_by_role("button", name="Cancel run")).to_be_disabled()
        expect(page.locator("details.run-traceback summary")).to_have_text(
            "the run was cancelled: coda.Cancelled: cancelled on request"
        )
        with pytest.raises(coda.errors.Cancelled):
            handle.result(timeout=30)
    assert "workflow finally" in journal.read_text().splitlines()
    screenshot(page, "run-cancelled")


def test_child_runs_are_linked_both_ways(dashboard: SupervisorProcess, page: Any) -> None:
    with dashboard.client() as client:
        handle = client.submit("tests.apps.basic.parent", {"x": 1})
        assert handle.result(timeout=30) == {"first": 101, "both": [201, 100]}
    page.goto(f"{dashboard.dashboard_url}runs/{handle.run_id}")
    children = page.locator(".timeline .step:not(.run-row) a.run-link")
    expect(children).to_have_count(3)
    expect(children.nth(0)).to_have_text("tests.apps.basic.child")
    children.nth(0).click()
    expect(page.locator("#run-name")).to_have_text("tests.apps.basic.child")
    expect(page.locator(".timeline .step:not(.run-row)")).to_contain_text("tests.apps.basic.add")
    page.locator("#run-facts").get_by_role("link", name=handle.run_id).click()
    expect(page.locator("#run-name")).to_have_text("tests.apps.basic.parent")


def test_the_overview_shows_workers_queues_and_counts(
    dashboard: SupervisorProcess, page: Any, tmp_path: Path
) -> None:
    with dashboard.client() as client:
        client.run(
            "tests.apps.steer.step", {"journal": str(tmp_path / "j"), "name": "x"}, timeout=30
        )
    page.goto(dashboard.dashboard_url)
    expect(page.locator("#workers tbody tr")).to_have_count(2)
    expect(page.locator("#queues tbody")).to_contain_text("default")
    expect(page.locator("#names tbody")).to_contain_text("tests.apps.steer.step")
    screenshot(page, "overview")


def test_an_unknown_run_page_says_so(dashboard: SupervisorProcess, page: Any) -> None:
    page.goto(f"{dashboard.dashboard_url}runs/no-such-run")
    expect(page.locator("#error")).to_have_text(
        "no run 'no-such-run': never submitted here, or expired"
    )
    expect(page.locator("#summary")).to_be_hidden()


def test_a_malformed_filter_shows_one_line_and_no_runs(
    dashboard: SupervisorProcess, page: Any
) -> None:
    page.goto(f"{dashboard.dashboard_url}runs?since=last+tuesday")
    expect(page.locator("#error")).to_have_text(
        "since: 'last tuesday' is neither a date (2026-11-29, 2026-11-29T06:55, with an "
        "optional offset) nor a duration back from now (30s, 10m, 2h, 1d, 1h30m)"
    )
    expect(page.locator("#runs tbody tr")).to_have_count(0)
    expect(page.locator("input[name=since]")).to_have_value("last tuesday")


def test_with_a_token_the_dashboard_opens_from_its_token_link(page: Any) -> None:
    with start_dashboard("--token", "browser-token", workers=0) as sup:
        url = sup.dashboard_url or ""
        refused = page.goto(url)
        assert refused is not None and refused.status == 401
        page.goto(f"{url}?token=browser-token")
        assert page.url == url  # the token left the address bar
        expect(page.locator("#supervisor")).to_contain_text("supervisor ")
        expect(page.locator("#workers tbody")).to_have_text("no workers connected")
        cookie = next(c for c in page.context.cookies() if c["name"].startswith("coda_token_"))
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
