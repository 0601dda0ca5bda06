"""Coda's benchmarks, side by side with Celery + Redis in the same run.

``python -m bench`` runs them all and prints one table; see ``bench/README.md``.
Absolute figures on a shared machine are noise, so every Coda figure is set
against a baseline measured in the same run: Celery 5 with Redis as broker
and result backend, or, for latency, a raw MessagePack round trip over a Unix
socket (the floor no Coda request can beat). Nothing here fails on timing.
"""
