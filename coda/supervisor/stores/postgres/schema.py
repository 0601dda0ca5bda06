"""The PostgreSQL database under ``PostgresStore``: URL, connections, schema.

URL: ``postgresql://user:password@host:port/database``, with libpq's own
query options, plus ``schema=NAME`` (default ``coda``): every table lives in
that schema, so one database can hold several independent fleets (and each
test its own). Notification channels carry the schema's name too, since
``LISTEN/NOTIFY`` channels are per database.

The schema is created on first start and versioned in ``coda_meta``; a
database whose schema is newer than this code is refused, since an older
supervisor could misread rows a newer one writes.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg

from ....errors import ConfigurationError

__all__ = [
    "SCHEMA_VERSION",
    "Connection",
    "PostgresUrl",
    "connect",
    "migrate",
    "parse_postgres_url",
]

Connection = psycopg.Connection[tuple[object, ...]]

SCHEMA_VERSION = 1
CONNECT_TIMEOUT = 10  # seconds; libpq's connect_timeout unless the URL sets one

DDL = """
CREATE TABLE IF NOT EXISTS coda_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS coda_jobs (
    id text PRIMARY KEY,
    parent_run text,
    kind text NOT NULL,
    queue text NOT NULL,
    state text NOT NULL,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    losses integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    ready_at double precision NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    finished_at double precision,
    args bytea NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS coda_jobs_claimable ON coda_jobs (kind, queue, created_at)
    WHERE owner IS NULL AND finished_at IS NULL;
CREATE INDEX IF NOT EXISTS coda_jobs_owned ON coda_jobs (owner) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS coda_jobs_children ON coda_jobs (parent_run)
    WHERE parent_run IS NOT NULL;
CREATE INDEX IF NOT EXISTS coda_jobs_finished_roots ON coda_jobs (finished_at, id)
    WHERE parent_run IS NULL;
CREATE INDEX IF NOT EXISTS coda_jobs_unfinished ON coda_jobs (created_at)
    WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS coda_jobs_roots ON coda_jobs (created_at, id)
    WHERE parent_run IS NULL;
CREATE TABLE IF NOT EXISTS coda_cache (
    run_id text NOT NULL,
    name text NOT NULL,
    key bytea NOT NULL,
    job_id text NOT NULL,
    PRIMARY KEY (run_id, name, key)
);
CREATE TABLE IF NOT EXISTS coda_schedules (
    name text PRIMARY KEY,
    covered double precision NOT NULL,
    last_tick double precision
);
CREATE TABLE IF NOT EXISTS coda_supervisors (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    queues text[] NOT NULL,
    started_at double precision NOT NULL,
    lease_until double precision NOT NULL
);
"""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUrl:
    """A parsed store URL: what to connect to, and which schema to use."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(f"bad store URL {url!r}: use postgresql://user@host/database")
        query = dict(parse_qsl(parts.query))
        self.schema = query.pop("schema", "coda")
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise ConfigurationError(
                f"bad store URL {url!r}: schema={self.schema!r} must be a lowercase SQL name"
            )
        query.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
        # every connection works in the store's schema (a checked SQL name)
        query["options"] = f"{query.get('options', '')} -c search_path={self.schema}".strip()
        self.dsn = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="")
        self.shown = urlunsplit(shown)  # without credentials, for messages

    def channel(self, name: str) -> str:
        """A notification channel of this schema's fleet."""
        return f"{self.schema}_{name}"


def parse_postgres_url(url: str) -> PostgresUrl:
    return PostgresUrl(url)


def connect(url: PostgresUrl, *, autocommit: bool = False) -> Connection:
    """A connection with the schema on its search path; a failure says why."""
    try:
        conn = psycopg.connect(url.dsn, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigurationError(f"cannot connect to the store {url.shown}: {reason}") from None
    return conn


def migrate(url: PostgresUrl) -> None:
    """Create the schema on first start; refuse one newer than this code."""
    with connect(url) as conn, conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {url.schema}")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (url.schema,))
        conn.execute(DDL)
        row = conn.execute("SELECT value FROM coda_meta WHERE key = 'schema_version'").fetchone()
        version = int(str(row[0])) if row is not None else 0
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the store {url.shown} (schema {url.schema}) has schema version {version}, "
                f"newer than this Coda's {SCHEMA_VERSION}: upgrade coda-workflows on this host"
            )
        conn.execute(
            "INSERT INTO coda_meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
