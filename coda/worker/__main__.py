"""Entry point of a worker process.

Not a user command: the supervisor starts it with the inherited file
descriptor of its socket pair. The worker imports the user's modules
(and adopts a Celery app's tasks with ``--celery-app``), says hello, and
serves until the supervisor closes the pair, and dies with the supervisor
(orphan.py). When a registered task must
run on the main thread (``Spec.main_thread``), the event loop moves to a
``coda-io`` thread and the main thread serves those tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from concurrent.futures import Executor

from .. import registry
from .._event_loop import run_event_loop
from .._malloc import return_large_blocks
from ..messages import PROTOCOL_VERSION, Hello
from ..protocol import DEFAULT_FRAME_LIMIT
from ..serialization import registry as serializers
from .connection import Worker, WorkerConnection
from .mainthread import MainThreadExecutor
from .orphan import die_with_parent


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coda.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("--supervisor-pid", type=int, default=None)
    parser.add_argument("-A", "--app", action="append", default=[])
    parser.add_argument("--queue", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--workflow-slots", type=int, default=100)
    parser.add_argument("--accept-pickle", action="store_true")
    parser.add_argument("--frame-limit", type=int, default=DEFAULT_FRAME_LIMIT)
    parser.add_argument("--celery-app", default=None, metavar="MODULE:ATTR")
    return parser.parse_args(argv)


async def serve(options: argparse.Namespace, main_thread: Executor | None = None) -> None:
    accepted = ["json", "msgpack"] + (["pickle"] if options.accept_pickle else [])
    worker = Worker(
        task_slots=options.concurrency,
        accept=frozenset(serializers.content_type_for(n) for n in accepted),
        main_thread=main_thread,
        value_limit=options.frame_limit,
    )
    sock = socket.socket(fileno=options.fd)
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: WorkerConnection(worker), sock=sock)
    worker.conn = conn
    conn.send(
        Hello(
            version=PROTOCOL_VERSION,
            role="worker",
            pid=os.getpid(),
            worker_id=options.worker_id,
            queues=options.queue or ["default"],
            task_slots=options.concurrency,
            workflow_slots=options.workflow_slots,
        )
    )
    await conn.welcomed
    await conn.closed.wait()


def main(argv: list[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("CODA_LOG_LEVEL", "WARNING"),
        format=f"%(asctime)s worker-{options.worker_id} %(levelname)s %(name)s: %(message)s",
    )
    die_with_parent(options.supervisor_pid)  # before importing the user's modules takes time
    return_large_blocks()  # a large argument's memory goes back once its task is done
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    registry.import_modules(options.app)
    if options.celery_app:
        registry.adopt_celery_app(options.celery_app, role="worker")
    if not any(spec.main_thread for spec in registry.all_specs().values()):
        run_event_loop(serve(options))
        return
    executor = MainThreadExecutor()

    def loop_thread() -> None:
        try:
            run_event_loop(serve(options, executor))
        finally:
            executor.shutdown()

    io = threading.Thread(target=loop_thread, name="coda-io", daemon=True)
    io.start()
    executor.run_until_shutdown()
    io.join()


if __name__ == "__main__":
    main()
