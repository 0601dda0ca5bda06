"""Tasks and workflows that end in ways a careless worker would leave
unanswered: exceptions that cannot be printed, named or formatted,
``BaseException``s that are not ``Exception``s, results that cannot be
encoded. Each must still come back to the caller as a failure."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import coda


class UnprintableError(Exception):
    """Neither ``str()`` nor ``repr()`` works on it."""

    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")

    def __repr__(self) -> str:
        raise RuntimeError("nor represented")


class _NamelessMeta(type):
    """Every lookup of the class's name or module raises (so does traceback formatting)."""

    def __getattribute__(cls, name: str) -> Any:
        if name in ("__module__", "__qualname__", "__name__"):
            raise RuntimeError(f"no {name} for this class")
        return super().__getattribute__(name)


class NamelessError(Exception, metaclass=_NamelessMeta):
    pass


class BrokenNotesError(Exception):
    """``traceback.format_exception`` reads ``__notes__``, which raises."""

    @property
    def __notes__(self) -> list[str]:
        raise RuntimeError("no notes")


class ClasslessError(Exception):
    """``isinstance`` against an unrelated class reads ``__class__``, which raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("no class")


HOSTILE: dict[str, type[BaseException]] = {
    "unprintable": UnprintableError,
    "nameless": NamelessError,
    "broken_notes": BrokenNotesError,
    "classless": ClasslessError,
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "CancelledError": asyncio.CancelledError,
}


class _SystemExitingZone(datetime.tzinfo):
    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        raise SystemExit("raised while the result was being encoded")

    def dst(self, dt: datetime.datetime | None) -> None:
        return None


@coda.task()
def raises(kind: str) -> None:
    raise HOSTILE[kind]()


@coda.task()
async def async_raises(kind: str) -> None:
    await asyncio.sleep(0)
    raise HOSTILE[kind]()


@coda.task(timeout=30)
async def async_raises_with_timeout(kind: str) -> None:
    await asyncio.sleep(0)
    raise HOSTILE[kind]()


@coda.task()
def returns_unencodable() -> object:
    return object()


@coda.task()
def returns_result_whose_encoding_exits() -> datetime.datetime:
    return datetime.datetime(2024, 1, 1, tzinfo=_SystemExitingZone())


@coda.workflow(max_retries=0)
async def workflow_raises(kind: str) -> None:
    await asyncio.sleep(0)
    raise HOSTILE[kind]()


@coda.workflow(max_retries=0)
async def workflow_returns_unencodable() -> object:
    return object()
