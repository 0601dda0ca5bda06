"""Entry point of a worker process.

Not a user command: the supervisor starts it with the inherited file
descriptor of its socket pair. The worker imports the user's modules,
says hello, and serves until the supervisor closes the pair.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from .. import registry
from ..messages import PROTOCOL_VERSION, Hello
from ..serialization import registry as serializers
from .runtime import Worker, WorkerConnection


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coda.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("-A", "--app", action="append", default=[])
    parser.add_argument("--queue", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--workflow-slots", type=int, default=100)
    parser.add_argument("--accept-pickle", action="store_true")
    return parser.parse_args(argv)


async def serve(options: argparse.Namespace) -> None:
    accepted = ["json", "msgpack"] + (["pickle"] if options.accept_pickle else [])
    worker = Worker(
        task_slots=options.concurrency,
        accept=frozenset(serializers.content_type_for(n) for n in accepted),
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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    registry.import_modules(options.app)
    try:
        import uvloop

        uvloop.run(serve(options))
    except ImportError:
        asyncio.run(serve(options))


if __name__ == "__main__":
    main()
