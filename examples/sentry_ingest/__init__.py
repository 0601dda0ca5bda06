"""A worked port: Sentry's Redis-coordinated ingest chain, before and after.

- ``steps``: the bodies of the four steps (preprocess, symbolicate, process,
  save), plain functions on an event dict; the only code both versions share.
- ``before``: the Celery original. Four tasks chained with ``chain()``; each
  reads the event from Redis under ``e:{project_id}:{event_id}``, writes it
  back with a TTL and passes only the key on. ``symbolicate_event`` is flaky
  and retried by ``autoretry_for``.
- ``after``: the same bodies as Coda tasks behind one workflow. The event
  travels as the steps' arguments and results; ``cache_key=[event_id]`` makes
  a rerun (the workflow failed, or a worker died) skip finished steps. No
  Redis keys, no TTL to outlive, nothing to clean up.

``python -m examples.sentry_ingest.main`` runs the after version.
"""
