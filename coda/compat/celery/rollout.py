"""Which share of each task's calls goes to Coda.

A rollout maps task names or ``fnmatch`` glob patterns to a fraction in
[0, 1]. An exact name wins over patterns; patterns are tried in the
mapping's order; a name matching nothing stays on Celery (0). The table is
read on *every* call, from one of:

- the mapping given to ``install(rollout=...)`` (mutate it to change fractions),
- a callable returning such a mapping (read a feature-flag service, a file...),
- else the app's ``coda_rollout`` setting (``app.conf.coda_rollout = {...}``).

So a fraction changes without restarting the producers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from coda.errors import ConfigurationError

__all__ = ["Rollout", "RolloutSource"]

RolloutSource = Mapping[str, float] | Callable[[], Mapping[str, float]] | None


class Rollout:
    def __init__(
        self, app: Any, source: RolloutSource = None, draw: Callable[[], float] = random.random
    ) -> None:
        if source is not None and not (isinstance(source, Mapping) or callable(source)):
            raise ConfigurationError("rollout must be a mapping, a callable or None")
        self._app = app
        self._source = source
        self._draw = draw

    def table(self) -> Mapping[str, float]:
        source = self._source
        if source is None:
            table = self._app.conf.get("coda_rollout") or {}
        elif isinstance(source, Mapping):
            table = source
        else:
            table = source() or {}
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"a rollout table must be a mapping, got {table!r}")
        return table

    def fraction(self, name: str) -> float:
        table = self.table()
        value = table.get(name)
        if value is None:
            value = next((f for p, f in table.items() if fnmatchcase(name, p)), 0.0)
        return _checked(name, value)

    def goes_to_coda(self, name: str) -> bool:
        """One draw per call: True with the task's probability."""
        fraction = self.fraction(name)
        return fraction >= 1.0 or (fraction > 0.0 and self._draw() < fraction)


def _checked(name: str, value: Any) -> float:
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        message = f"rollout fraction for {name!r} is not a number: {value!r}"
        raise ConfigurationError(message) from None
    if not 0.0 <= fraction <= 1.0:
        raise ConfigurationError(f"rollout fraction for {name!r} must be in [0, 1], got {value!r}")
    return fraction
