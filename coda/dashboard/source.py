"""What the dashboard reads: the interface the supervisor implements.

The dashboard never imports the supervisor; the supervisor hands it an
object of this shape (``coda.supervisor.readmodel``). Refusals are
``RequestRefusedError`` with the code and the one line the protocol sends
(``bad_filter``, ``not_found``, ``already_finished``).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..messages import JobView

__all__ = ["RunSource"]


class RunSource(Protocol):
    def overview(self) -> dict[str, Any]:
        """Workers and what each runs, queues with depth and rates, counts
        per name, recent failures, schedules (JSON-ready values)."""
        ...

    def list_runs(
        self, *, state: str | None, name: str | None, since: float | None, limit: int
    ) -> list[JobView]:
        """Root runs, newest first, filtered."""
        ...

    def run(self, run_id: str) -> tuple[JobView, list[JobView]]:
        """A run and every job it spawned, oldest first."""
        ...

    async def cancel(self, run_id: str) -> str:
        """Cancel a run; its state once the cancel is durable."""
        ...
