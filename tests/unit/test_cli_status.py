"""``coda status`` as text: the lines about the supervisor itself."""

from __future__ import annotations

from coda._cli_status import format_status


def test_status_names_the_dashboard_when_one_is_served() -> None:
    sup = {"id": "s1", "pid": 7, "addresses": ["127.0.0.1:42069"], "uptime": 1.0}
    served = format_status({"supervisor": {**sup, "dashboard": "http://127.0.0.1:8080/"}})
    assert served.splitlines()[:2] == [
        "supervisor s1 (pid 7) on 127.0.0.1:42069, up 1.0s, 0 worker restarts",
        "dashboard: http://127.0.0.1:8080/",
    ]
    assert "dashboard" not in format_status({"supervisor": {**sup, "dashboard": None}})
