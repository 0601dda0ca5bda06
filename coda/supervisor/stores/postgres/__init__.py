"""The PostgreSQL store (see store.py): the database (schema.py) and its SQL
(rows.py); buffering and group commit are shared with the other durable
store. Needs the ``postgres`` extra (psycopg 3 and its pool)."""

from .store import PostgresStore

__all__ = ["PostgresStore"]
