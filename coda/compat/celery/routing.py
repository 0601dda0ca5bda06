"""``install()``: send each call of a rolled-out task to Coda or to Celery's broker.

After ``install(app, supervisor="127.0.0.1:42069", rollout={"proj.tasks.*": 0.1})``
every ``.delay()``, ``.apply_async()``, ``Signature.apply_async()`` and
``app.send_task()`` of the app draws once against the task's fraction
(``rollout``). A call that goes to Coda is built by Celery itself (same ids,
``countdown``/``eta``, ``expires``, ``headers``, ``time_limit``, ``priority``,
``before_task_publish``/``after_task_publish``), published into a
``MessageProducer`` instead of the broker, and submitted to the supervisor:

- ``task_id`` is the Coda run id (a resubmission with the same id is a no-op),
- ``eta``/``countdown`` become ``Submit.not_before``,
- ``queue``: the routing queue, Celery's default queue being Coda's "default",
- ``priority`` is carried in the message but not used to order Coda queues,
- ``expires`` is checked by the Coda worker (REVOKED, as in Celery).

Everything else (calls that lose the draw, ``celery.*`` built-ins, apps
without ``install``) goes to the broker exactly as before, so Celery workers
keep running beside Coda's. The call returns the app's own ``AsyncResult``
(results are stored in the app's result backend by whichever fleet runs the
task); see ``results`` for apps without a backend.

**Supervisor unreachable** (``on_unreachable``, or the ``coda_on_unreachable``
setting): ``"raise"`` (default) raises ``SupervisorUnreachable``, a
``kombu.exceptions.OperationalError`` like a broker outage; ``"celery"`` logs
a warning, counts it in ``router.fallbacks`` and publishes to Celery's broker
instead. Never a silent drop. A submission is retried once on a fresh
connection first (safe: the run id makes it idempotent).

**Remote control**: ``app.control`` reaches Coda too (``control``):
``revoke`` cancels a Coda-held task, ``purge`` drops the Coda jobs of the
app's queues, ``inspect``/``ping`` include the supervisor's node.

Call ``install`` where the app is defined, so producers, Celery workers (for
chain continuations and callbacks) and Coda workers route alike.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.backends.base import DisabledBackend
from kombu.exceptions import OperationalError

import coda.compat.kombu  # noqa: F401 - install() also registers the coda:// scheme
from coda.client import Client
from coda.errors import ConfigurationError, ConnectionLostError, HandshakeError

from .adopt import coda_queue
from .control import ControlHooks
from .events import EventForwarder
from .hook import SendTask, hook_for
from .message import CeleryMessage
from .producer import MessageProducer
from .results import result_class_for
from .rollout import Rollout, RolloutSource

__all__ = ["CodaRouter", "SupervisorUnreachable", "install", "message_queue", "uninstall"]

log = logging.getLogger("coda.compat.celery")

ON_UNREACHABLE = ("raise", "celery")


def message_queue(app: Any, message: CeleryMessage) -> str | None:
    """The Coda queue of a Celery message: its routing key when it goes to
    the default exchange, else None (the task's own queue)."""
    exchange = (message.properties.get("delivery_info") or {}).get("exchange")
    return coda_queue(app, message.routing_key) if not exchange else None


class SupervisorUnreachable(ConnectionLostError, OperationalError):
    """The Coda supervisor could not take a task (and falling back is off)."""


class CodaRouter:
    """Decides per call; submits the Coda share through one client per process."""

    def __init__(
        self,
        app: Any,
        supervisor: str | None,
        rollout: Rollout,
        on_unreachable: str,
        token: str | None = None,
    ) -> None:
        if on_unreachable not in ON_UNREACHABLE:
            raise ConfigurationError(f"on_unreachable must be one of {ON_UNREACHABLE}")
        self.app = app
        self.supervisor = supervisor
        self.rollout = rollout
        self.on_unreachable = on_unreachable
        self.token = token
        self.fallbacks = 0
        self.sent_to_coda = 0
        self._client: Client | None = None
        self._client_pid = 0
        self._lock = threading.Lock()
        self.result_cls = result_class_for(app, self)
        self.events = EventForwarder(app)  # task-sent events (task_send_sent_event)
        self.control = ControlHooks(app, self)  # revoke, purge, inspect reach Coda

    def send(
        self, send_task: SendTask, name: str, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> Any:
        if not self.rollout.goes_to_coda(name):
            return send_task(name, args, kwargs, **options)
        coda_options = {k: v for k, v in options.items() if k not in ("producer", "connection")}
        if isinstance(self.app.backend, DisabledBackend):  # results come from the supervisor
            coda_options["result_cls"] = self.result_cls
        try:
            result = send_task(
                name,
                args,
                kwargs,
                producer=MessageProducer(self.submit, self.events),
                **coda_options,
            )
        except SupervisorUnreachable as exc:
            if self.on_unreachable == "raise":
                raise
            self.fallbacks += 1
            log.warning("Coda supervisor unreachable (%s); sending %s to Celery", exc, name)
            return send_task(name, args, kwargs, **options)
        self.sent_to_coda += 1
        return result

    def submit(self, message: CeleryMessage) -> None:
        """The producer's sink: hand one message to the supervisor."""
        queue = message_queue(self.app, message)
        self._submit(message.name, message.to_job_args(), message.task_id, queue, message.eta)

    def submit_workflow(self, name: str, job_args: dict[str, Any], run_id: str) -> bool:
        """Submit a canvas workflow; False if unreachable and falling back to Celery."""
        try:
            self._submit(name, job_args, run_id, None, None)
        except SupervisorUnreachable as exc:
            if self.on_unreachable == "raise":
                raise
            self.fallbacks += 1
            log.warning("Coda supervisor unreachable (%s); running a canvas on Celery", exc)
            return False
        self.sent_to_coda += 1
        return True

    def _submit(
        self,
        name: str,
        job_args: dict[str, Any],
        run_id: str,
        queue: str | None,
        not_before: float | None,
    ) -> None:
        """Submit once, and once more on a fresh connection (the run id makes it idempotent)."""
        for attempt in (1, 2):
            client = self.client()
            try:
                client.submit(name, job_args, run_id=run_id, queue=queue, not_before=not_before)
                return
            except (ConnectionLostError, HandshakeError) as exc:
                self._drop_client()
                if attempt == 2:
                    where = self.supervisor or "the default address"
                    raise SupervisorUnreachable(f"Coda supervisor at {where}: {exc}") from exc

    def client(self) -> Client:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():  # not across fork
                self._client = Client(self.supervisor, token=self.token, connect_timeout=5.0)
                self._client_pid = os.getpid()
            return self._client

    def _drop_client(self) -> None:
        with self._lock:
            if self._client is not None and self._client_pid == os.getpid():
                self._client.close()
            self._client = None

    def close(self) -> None:
        self._drop_client()
        self.control.close()


def install(
    app: Any,
    supervisor: str | None = None,
    rollout: RolloutSource = None,
    *,
    on_unreachable: str | None = None,
    token: str | None = None,
) -> CodaRouter:
    """Route the app's calls between Coda and Celery (see the module docstring).

    ``supervisor`` defaults to the ``coda_supervisor`` setting, then
    ``$CODA_SUPERVISOR``, then 127.0.0.1:42069. Installing again replaces the
    previous router.
    """
    conf = app.conf
    router = CodaRouter(
        app,
        supervisor or conf.get("coda_supervisor"),
        Rollout(app, rollout),
        on_unreachable or conf.get("coda_on_unreachable") or "raise",
        token or conf.get("coda_token"),
    )
    hook = hook_for(app)
    if hook.router is not None:
        hook.router.close()
    hook.router = router
    router.control.install()
    from .canvas_route import patch_canvas

    patch_canvas()
    return router


def uninstall(app: Any) -> None:
    """Send every call to Celery's broker again."""
    hook = hook_for(app)
    if isinstance(hook.router, CodaRouter):
        hook.router.control.uninstall()
    if hook.router is not None:
        hook.router.close()
    hook.router = None
