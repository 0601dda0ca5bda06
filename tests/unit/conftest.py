from __future__ import annotations

import pytest

from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine
from tests.unit.engine_fakes import make_engine


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return make_engine(clock)
