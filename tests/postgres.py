"""PostgreSQL for the tests: a schema of its own for each, dropped afterwards.

The server is the machine's (127.0.0.1:5432, user postgres, trust auth), or
``CODA_TEST_POSTGRES_URL``. Each test gets a fresh schema in that database
(``?schema=`` of the store URL), so tests run in parallel without seeing each
other's rows, and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psycopg

__all__ = ["SERVER_URL", "fresh_schema"]

SERVER_URL = os.environ.get(
    "CODA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A store URL on a new, empty schema; the schema is dropped on exit."""
    schema = f"coda_test_{os.urandom(6).hex()}"
    separator = "&" if "?" in SERVER_URL else "?"
    try:
        yield f"{SERVER_URL}{separator}schema={schema}"
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
