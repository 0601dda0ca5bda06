"""``--celery-app`` finds its loader through the ``coda.app_loaders`` entry
points (the core names no bridge), and says what to install when it cannot."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from coda import registry
from coda.errors import ConfigurationError

INSTALL = r"pip install 'coda-workflows\[celery\]'"


def installed(*entries: EntryPoint) -> Any:
    """Stands for ``importlib.metadata.entry_points`` with only these installed."""

    def entry_points(*, group: str, name: str) -> list[EntryPoint]:
        return [e for e in entries if e.group == group and e.name == name]

    return entry_points


adopted: list[tuple[str, str]] = []


def record_adoption(path: str, role: str = "supervisor") -> None:
    """A loader standing in for the Celery bridge's."""
    adopted.append((path, role))


def test_the_celery_loader_is_declared_under_the_app_loaders_group() -> None:
    from importlib.metadata import entry_points

    (entry,) = entry_points(group=registry.APP_LOADERS, name="celery")
    assert entry.value == "coda.compat.celery.adopt:adopt_app_path"


def test_no_celery_loader_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", installed())
    with pytest.raises(ConfigurationError, match=f"--celery-app .* not installed: {INSTALL}"):
        registry.adopt_celery_app("proj.celery:app")


def test_a_loader_that_cannot_be_imported_says_why_and_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = EntryPoint("celery", "coda_missing_bridge.adopt:adopt_app_path", registry.APP_LOADERS)
    monkeypatch.setattr(registry, "entry_points", installed(broken))
    with pytest.raises(ConfigurationError, match=f"coda_missing_bridge.*: {INSTALL}"):
        registry.adopt_celery_app("proj.celery:app")


def test_the_loader_found_is_called_with_the_app_path_and_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = EntryPoint("celery", f"{__name__}:record_adoption", registry.APP_LOADERS)
    monkeypatch.setattr(registry, "entry_points", installed(loader))
    adopted.clear()
    registry.adopt_celery_app("proj.celery:app", role="worker")
    assert adopted == [("proj.celery:app", "worker")]
