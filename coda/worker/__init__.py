"""Worker processes, started by the supervisor (``python -m coda.worker``).

- ``__main__``: the entry point: imports the user's modules, connects, serves.
- ``connection``: the link to the supervisor and the dispatch of its messages.
- ``tasks``: task slots, prefetched tasks held back, sync and async execution.
- ``workflows``: workflow coroutines, their spawns and the answers to them.
- ``mainthread``: an executor for tasks that must run on the main thread.
"""
