"""Worker processes, started by the supervisor (``python -m coda.worker``)."""
