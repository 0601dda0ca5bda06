"""The machine's services the suite talks to, from environment variables
with the defaults every machine of ours has (loopback, standard ports)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

__all__ = ["RABBITMQ_ADDRESS", "RABBITMQ_URL", "REDIS_ADDRESS"]

RABBITMQ_URL = os.environ.get("CODA_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _address(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"


RABBITMQ_ADDRESS = _address(RABBITMQ_URL, 5672)
REDIS_ADDRESS = _address(os.environ.get("CODA_TEST_REDIS_URL", "redis://127.0.0.1:6379/13"), 6379)
