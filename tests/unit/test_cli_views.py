"""What ``coda runs`` and ``coda show`` print, from ``JobView`` values alone."""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest

from coda._cli_views import (
    describe_cache_key,
    format_duration,
    format_runs,
    parse_since,
    step_origin,
)
from coda.messages import JobView

NOW = 1_800_000_000.0


def view(**fields: object) -> JobView:
    base: dict[str, object] = {
        "id": "r",
        "kind": "task",
        "name": "n",
        "state": "succeeded",
        "queue": "default",
        "attempt": 1,
        "created_at": NOW,
    }
    return JobView(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "back"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_since_reads_durations_back_from_now(text: str, back: float) -> None:
    assert parse_since(text, NOW) == NOW - back


def test_since_reads_iso_dates_local_unless_they_have_an_offset() -> None:
    assert parse_since("2026-11-29T06:55:00+00:00", NOW) == 1_795_935_300.0
    assert parse_since("2026-11-29", NOW) == datetime(2026, 11, 29).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "10", "10x", "-5m", "", "2026-13-01"])
def test_since_refuses_what_it_cannot_read_in_one_sentence(text: str) -> None:
    with pytest.raises(ValueError, match="is neither a date .* nor a duration back from now"):
        parse_since(text, NOW)


def test_durations_read_at_a_glance() -> None:
    assert [format_duration(s) for s in (0.0123, 4.25, 192, 7500)] == [
        "12ms",
        "4.2s",
        "3m12s",
        "2h05m",
    ]


def test_cache_keys_are_shown_as_the_users_list_or_hex_when_undecodable() -> None:
    assert describe_cache_key(msgspec.msgpack.encode(["event-1", 2])) == '["event-1",2]'
    assert describe_cache_key(b"\xc1") == "0xc1"
    assert describe_cache_key(None) == ""


def test_a_step_of_an_earlier_attempt_with_a_key_was_answered_from_the_cache() -> None:
    run = view(kind="workflow", attempt=2)
    key = msgspec.msgpack.encode(["a"])
    assert step_origin(view(cache_key=key, parent_attempt=1), run) == "cached (ran in attempt 1)"
    assert step_origin(view(parent_attempt=1), run) == "executed in attempt 1"  # no key
    failed = view(cache_key=key, parent_attempt=1, state="failed")
    assert step_origin(failed, run) == "executed in attempt 1"
    assert step_origin(view(cache_key=key, parent_attempt=2), run) == "executed in attempt 2"
    assert step_origin(view(state="running", parent_attempt=2), run) == "running in attempt 2"
    assert step_origin(view(state="queued"), view(kind="workflow")) == "not started"


def test_runs_table_has_one_row_per_run_and_says_when_none_match() -> None:
    table = format_runs(
        [view(id="b", started_at=NOW + 1, finished_at=NOW + 3), view(id="a", state="queued")],
        now=NOW + 10,
    )
    header, first, second = table.splitlines()
    assert header.split() == [
        "RUN",
        "ID",
        "NAME",
        "KIND",
        "STATE",
        "ATTEMPT",
        "CREATED",
        "DURATION",
    ]
    assert first.split()[:5] + first.split()[-1:] == ["b", "n", "task", "succeeded", "1", "2.0s"]
    assert second.split()[:4] == ["a", "n", "task", "queued"]
    assert format_runs([]) == "no runs match"
