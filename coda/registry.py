"""The names this process knows, and the modules that define them.

Decorators register into one process-wide table, like Celery's
``app.tasks``. The supervisor and every worker import the same modules
(``-A``) so they agree on names, queues and policies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from .errors import ConfigurationError, UnknownNameError

if TYPE_CHECKING:
    from .decorators import Spec
    from .schedules import Schedule

__all__ = [
    "APP_LOADERS",
    "adopt_celery_app",
    "all_schedules",
    "all_specs",
    "get_spec",
    "import_modules",
    "register",
    "register_schedule",
    "resolve_name",
]

APP_LOADERS = "coda.app_loaders"
"""Entry points of loaders of foreign apps' tasks (``celery``: ``--celery-app``)."""

_specs: dict[str, Spec] = {}
_schedules: dict[str, Schedule] = {}


def register(spec: Spec) -> None:
    """Add a spec; a name may only be taken again by the same function.

    Re-registration of the same ``module.qualname`` happens when a module is
    imported twice (``__main__`` and its real name); it replaces the entry.
    """
    existing = _specs.get(spec.name)
    if existing is not None and existing.kind != spec.kind:
        raise ConfigurationError(
            f"{spec.name!r} is already registered as a {existing.kind}, "
            f"cannot register a {spec.kind}"
        )
    if existing is not None and _origin(existing) != _origin(spec):
        raise ConfigurationError(
            f"{spec.name!r} is already registered by {_origin(existing)}; "
            f"pick another name for {_origin(spec)}"
        )
    _specs[spec.name] = spec


def _origin(spec: Spec) -> str:
    return getattr(spec.fn, "__qualname__", repr(spec.fn))


def register_schedule(schedule: Schedule) -> None:
    """Add a schedule; its name (which names its ticks' runs) may only be
    taken again from where it was declared (a module imported twice)."""
    existing = _schedules.get(schedule.name)
    if existing is not None and existing.origin != schedule.origin:
        raise ConfigurationError(
            f"schedule {schedule.name!r} is declared twice, by {existing.origin} and by "
            f"{schedule.origin}: each schedule needs a name of its own"
        )
    _schedules[schedule.name] = schedule


def all_schedules() -> list[Schedule]:
    """The schedules this process knows, by name (the supervisor runs them)."""
    return [_schedules[name] for name in sorted(_schedules)]


def get_spec(name: str, kind: str | None = None) -> Spec:
    spec = _specs.get(name)
    if spec is None or (kind is not None and spec.kind != kind):
        raise UnknownNameError(name, kind or "task or workflow")
    return spec


def all_specs() -> dict[str, Spec]:
    return dict(_specs)


def resolve_name(target: object) -> str:
    """The registered name of a decorated function, a task object or a name."""
    if isinstance(target, str):
        return target
    spec = getattr(target, "spec", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str):
        return name
    name = getattr(target, "name", None)  # Celery task objects carry their name
    if isinstance(name, str):
        return name
    raise ConfigurationError(
        f"expected a @coda.task / @coda.workflow function or a registered name, got {target!r}"
    )


def import_modules(modules: list[str]) -> None:
    """Import the user's modules so their decorators register."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import module {module!r}: {exc}") from exc


def adopt_celery_app(path: str, role: str = "supervisor", *, beat: bool = False) -> None:
    """Register every task of the Celery app at ``module:attribute`` as a Coda task.

    The loader is the ``celery`` entry of ``coda.app_loaders``, which the Celery
    bridge registers, so the core depends on it by no name at all. ``role`` is
    ``"worker"`` in worker processes, which also prepare to execute the tasks.
    With ``beat`` (``--celery-beat``) the loader also registers the entries of
    the app's ``beat_schedule`` as schedules (``register_schedule``).
    """
    loader = _app_loader("celery", "--celery-app")
    if beat:
        loader(path, role=role, beat=True)
    else:
        loader(path, role=role)


def _app_loader(kind: str, option: str) -> Callable[..., object]:
    install = f"pip install 'coda-workflows[{kind}]'"
    found = entry_points(group=APP_LOADERS, name=kind)
    if not found:
        raise ConfigurationError(
            f"{option} needs the {kind} app loader, which is not installed: {install}"
        )
    entry = next(iter(found))
    try:
        loader: Callable[..., object] = entry.load()
    except ImportError as exc:
        raise ConfigurationError(f"{option} needs {kind} installed ({exc}): {install}") from exc
    return loader
