"""How much work each benchmark does: the presets behind --quick, --size."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRESETS", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    noop: int
    sequential: int
    chain: int
    payloads: tuple[int, ...]
    rerun_steps: int
    rerun_repeats: int
    latency_samples: int
    floor_samples: int
    queue_levels: tuple[int, ...]
    celery_queue_levels: tuple[int, ...]
    worker_counts: tuple[int, ...]
    scale_tasks: int
    broker_messages: int


PRESETS: dict[str, Sizes] = {
    "quick": Sizes(
        noop=20,
        sequential=10,
        chain=10,
        payloads=(512, 50 * 1024),
        rerun_steps=20,
        rerun_repeats=1,
        latency_samples=20,
        floor_samples=50,
        queue_levels=(100, 1000),
        celery_queue_levels=(100, 1000),
        worker_counts=(1, 2),
        scale_tasks=20,
        broker_messages=200,
    ),
    "small": Sizes(  # for A/B runs on a busy machine: the default's rows, less work
        noop=1000,
        sequential=200,
        chain=200,
        payloads=(512, 50 * 1024),
        rerun_steps=100,
        rerun_repeats=5,
        latency_samples=300,
        floor_samples=2000,
        queue_levels=(1000, 10_000),
        celery_queue_levels=(1000, 10_000),
        worker_counts=(1, 2),
        scale_tasks=1000,
        broker_messages=2000,
    ),
    "default": Sizes(
        noop=4000,
        sequential=500,
        chain=500,
        payloads=(512, 5 * 1024, 50 * 1024),
        rerun_steps=100,
        rerun_repeats=5,
        latency_samples=1000,
        floor_samples=5000,
        queue_levels=(1000, 10_000, 50_000),
        celery_queue_levels=(1000, 10_000, 50_000),
        worker_counts=(1, 2, 4),
        scale_tasks=2000,
        broker_messages=8000,
    ),
    "large": Sizes(
        noop=20_000,
        sequential=2000,
        chain=2000,
        payloads=(512, 5 * 1024, 50 * 1024),
        rerun_steps=100,
        rerun_repeats=20,
        latency_samples=5000,
        floor_samples=20_000,
        queue_levels=(1000, 10_000, 100_000),
        celery_queue_levels=(1000, 10_000, 100_000),
        worker_counts=(1, 2, 4, 8),
        scale_tasks=10_000,
        broker_messages=40_000,
    ),
}
