"""A worker does not outlive its supervisor.

The supervisor can die alone: the OOM killer picks one process, not its
group. Its workers would go on running their tasks while the restarted
supervisor hands the same tasks to new workers; the work would be done twice
and the orphans' answers would go nowhere. Two guards end them:

- On Linux, ``PR_SET_PDEATHSIG`` asks the kernel to SIGKILL the worker the
  moment its parent dies (``die_with_parent``, called first thing at start).
  A parent that died before that call is caught by comparing ``getppid()``
  with the pid the supervisor passed (``--supervisor-pid``): once orphaned,
  a process has another parent.
- Everywhere, the worker's socket to the supervisor closes when the
  supervisor dies. ``exit_orphaned`` is what the connection calls then, if a
  task or workflow is in flight: the process exits at once, abandoning them
  (a sync task's thread cannot be interrupted, and finishing a task would
  repeat the work the new supervisor reruns).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys

__all__ = ["ORPHANED_EXIT_CODE", "die_with_parent", "exit_orphaned"]

log = logging.getLogger("coda.worker")

ORPHANED_EXIT_CODE = 71  # the supervisor is gone; what this worker held is abandoned

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(supervisor_pid: int | None) -> None:
    """Have the kernel kill this process when its parent dies (Linux), and
    exit now if the parent is already not ``supervisor_pid``."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if supervisor_pid is not None and os.getppid() != supervisor_pid:
        exit_orphaned("the supervisor (pid %d) died before this worker started", supervisor_pid)


def exit_orphaned(reason: str, *args: object) -> None:
    """End the process now: no cleanup, no waiting for threads (see above)."""
    log.error("exiting: " + reason, *args)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(ORPHANED_EXIT_CODE)
