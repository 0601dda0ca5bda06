"""Run by .ci/fresh_install.sh in a virtual environment that holds only
``pip install '.[celery,redis]'``, from a folder with a copy of ``examples/``
and no checkout: ``coda`` is the installed package.

Checks that every transport, result backend and serializer the README and
the migration guide name works without anything else installed, then runs
the examples and a stock Celery worker on ``coda://``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REDIS_URL = os.environ.get("CODA_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")

MODULES = [
    "coda",
    "coda.compat.celery",  # adopt(), install(), --celery-app
    "coda.compat.kombu",  # the coda:// transport
    "coda.compat.kombu.backend",  # the coda:// result backend
    "kombu.transport.redis",  # Celery on Redis beside Coda (needs kombu[redis])
    "celery.backends.redis",
]


def check_imports() -> None:
    for name in MODULES:
        importlib.import_module(name)


def check_resolution() -> None:
    """URLs resolve as the docs say, through installed metadata."""
    from celery import Celery
    from kombu import Connection
    from kombu.serialization import dumps, loads

    coda_app = Celery("fresh", broker="coda://127.0.0.1:1", backend="coda://127.0.0.1:1")
    assert type(coda_app.backend).__name__ == "CodaBackend", coda_app.backend  # entry point
    redis_app = Celery("fresh", broker=REDIS_URL, backend=REDIS_URL)
    assert type(redis_app.backend).__name__ == "RedisBackend", redis_app.backend
    assert redis_app.backend.client.ping()
    with Connection(REDIS_URL) as connection:
        connection.ensure_connection(max_retries=1)
    content_type, encoding, data = dumps({"n": 1}, serializer="msgpack")  # kombu's msgpack
    assert loads(data, content_type, encoding, accept=[content_type]) == {"n": 1}


def run_examples() -> None:
    for module in ("examples.ingest.main", "examples.sentry_ingest.main"):
        done = subprocess.run(
            [sys.executable, "-m", module], capture_output=True, text=True, timeout=180
        )
        if done.returncode != 0:
            sys.exit(f"python -m {module} failed:\n{done.stdout}{done.stderr}")
        print(f"python -m {module}: ok")


CELERY_APP = """
import os

from celery import Celery

url = os.environ["FRESH_CODA_URL"]
app = Celery("freshapp", broker=url, backend=url)
app.conf.broker_transport = "coda.compat.kombu.transport:Transport"  # no import needed
app.conf.broker_connection_retry_on_startup = True


@app.task
def add(x, y):
    return x + y
"""


def run_celery_on_coda() -> None:
    """The README's coda:// section: a supervisor as broker and result
    backend, a stock ``celery worker`` consuming from it; the app names the
    transport with the ``broker_transport`` setting (the documented
    alternative to ``import coda.compat.kombu``)."""
    from coda.testing import SupervisorProcess

    folder = Path(tempfile.mkdtemp(prefix="freshapp-"))
    (folder / "freshapp.py").write_text(textwrap.dedent(CELERY_APP))
    sys.path.insert(0, str(folder))
    quiet = ["--log-level", "WARNING"]
    with SupervisorProcess([], workers=0, store="memory://", extra_args=quiet) as broker:
        os.environ["FRESH_CODA_URL"] = f"coda://{broker.address}"
        argv = [sys.executable, "-m", "celery", "-A", "freshapp", "worker", "-P", "solo"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
        with open(folder / "worker.log", "wb") as log:
            worker = subprocess.Popen(argv, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        try:
            from freshapp import add  # type: ignore[import-not-found]

            started = time.monotonic()
            assert add.delay(2, 3).get(timeout=60) == 5
            print(f"celery worker on coda://: 2 + 3 = 5 in {time.monotonic() - started:.1f}s")
        except BaseException:
            print((folder / "worker.log").read_text(errors="replace"))
            raise
        finally:
            worker.terminate()
            worker.wait(30)


def check_dashboard() -> None:
    """``--http`` serves the pages and their files from the installed
    package (package data, not a checkout)."""
    from urllib.request import urlopen

    from coda.testing import SupervisorProcess

    argv = ["--http", "127.0.0.1:0", "--log-level", "WARNING"]
    with SupervisorProcess([], workers=0, store="memory://", extra_args=argv) as sup:
        assert sup.dashboard_url is not None
        for path in ("", "runs", "static/app.js", "static/style.css", "api/overview"):
            with urlopen(f"{sup.dashboard_url}{path}", timeout=10) as response:
                assert response.status == 200, (path, response.status)
    print("dashboard: pages, static files and the API served from the installed package")


def main() -> None:
    check_imports()
    check_resolution()
    run_examples()
    check_dashboard()
    run_celery_on_coda()
    print(
        "fresh install: ok (README command; '.[celery,redis]' alone: imports, URLs, examples, "
        "dashboard)"
    )


if __name__ == "__main__":
    main()
