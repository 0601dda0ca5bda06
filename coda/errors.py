"""Every exception Coda raises on purpose.

The hierarchy::

    CodaError
    ├── ConfigurationError        bad decorator option, CLI argument or setting
    ├── NotInWorkflowError        coda.context.* called outside a running workflow
    ├── UnknownNameError          no task or workflow is registered under that name
    ├── ProtocolError             the peer broke the wire protocol
    │   ├── FrameTooLargeError    a length prefix above the limit (refused before allocating)
    │   ├── FrameDecodeError      bytes that are not a valid frame or message
    │   └── HandshakeError        wrong version, role or token
    ├── SerializationError        a payload could not be encoded or decoded
    │   ├── ContentDisallowedError   its content type is not in ``accept``
    │   ├── EncodeError
    │   ├── DecodeError
    │   └── ValueTooLargeError    an argument or result above the supervisor's --frame-limit
    ├── ConnectionLostError       the supervisor went away mid-request
    │   └── SupervisorUnreachable (the Celery bridge) also kombu's OperationalError
    ├── ResultTimeoutError        a result did not arrive in time (also a TimeoutError)
    ├── RequestRefusedError       the supervisor answered a request with an error
    ├── BrokerError               a kombu-style broker operation was refused (no such queue, ...)
    ├── UnsupportedCanvas         (the Celery bridge) a canvas shape left to Celery
    ├── StepFailed                (the Celery bridge) a canvas leaf failed inside its workflow
    ├── Cancelled                 the run was cancelled on request (client.cancel)
    └── RemoteError               user code failed in a worker; carries the remote
        ├── TaskFailed            type name, message and traceback
        └── WorkflowFailed

    BaseException
    └── RetryRequested            a task asks to run again later: a signal, not an error
        └── RequeueRequested      a task gives its delivery back unchanged (a broker requeue)

Only ``RemoteError`` subclasses cross the wire as data; the rest are raised
where the problem is found.

``RetryRequested`` is outside ``CodaError``, and outside ``Exception``, for the
reason ``asyncio.CancelledError`` is: it is control flow that must reach the
worker. A task body that wraps its work in ``except CodaError:`` or
``except Exception:`` (to log, to return a fallback) would otherwise turn its
own retry into a success or a different failure. Cleanup belongs in
``finally``; code that must see it catches it by name and re-raises.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "Cancelled",
    "CodaError",
    "ConfigurationError",
    "ConnectionLostError",
    "ContentDisallowedError",
    "DecodeError",
    "EncodeError",
    "FrameDecodeError",
    "FrameTooLargeError",
    "HandshakeError",
    "NotInWorkflowError",
    "ProtocolError",
    "RemoteError",
    "RequestRefusedError",
    "RequeueRequested",
    "ResultTimeoutError",
    "RetryRequested",
    "SerializationError",
    "TaskFailed",
    "UnknownNameError",
    "ValueTooLargeError",
    "WorkflowFailed",
]


class CodaError(Exception):
    """Base of every error Coda raises deliberately."""


class ConfigurationError(CodaError):
    """An option, argument or setting that Coda cannot use."""


class NotInWorkflowError(CodaError):
    """A workflow-only function was called outside a running workflow."""


class UnknownNameError(CodaError):
    """No task or workflow is registered under the given name."""

    def __init__(self, name: str, kind: str = "task or workflow") -> None:
        super().__init__(f"no {kind} is registered under the name {name!r}")
        self.name = name


class ProtocolError(CodaError):
    """The peer sent something the protocol does not allow."""


class FrameTooLargeError(ProtocolError):
    """A frame's length prefix is above the configured limit."""


class FrameDecodeError(ProtocolError):
    """A frame's body is not a valid message."""


class HandshakeError(ProtocolError):
    """The handshake failed: protocol version, role or token."""


class SerializationError(CodaError):
    """A payload could not be turned into bytes or back."""


class ContentDisallowedError(SerializationError):
    """The payload's content type is not in the accepted set."""


class EncodeError(SerializationError):
    """The serializer could not encode the value."""


class DecodeError(SerializationError):
    """The serializer could not decode the bytes."""


class ValueTooLargeError(SerializationError):
    """An argument or result encodes to more bytes than one message may carry
    (the supervisor's ``--frame-limit``). Raised where the value is made (the
    client's submit, a workflow's spawn); a task or workflow whose result is
    too large fails with it, and is not retried: the same value would be too
    large again."""

    def __init__(self, message: str, *, size: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ConnectionLostError(CodaError):
    """The connection to the supervisor closed before the answer came."""


class ResultTimeoutError(CodaError, TimeoutError):
    """The result was not ready before the timeout."""


class RequestRefusedError(CodaError):
    """The supervisor refused a request; the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BrokerError(CodaError):
    """The supervisor's broker refused an operation, as an AMQP broker would.

    ``code`` is a short word (``not_found``, ``not_equivalent``, ``in_use``,
    ``locked``, ``not_allowed``) that the kombu transport maps to a channel error.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RetryRequested(BaseException):
    """Raised inside a task: end this attempt and run the task again in ``delay`` seconds.

    The retry is explicit, so the task's ``max_retries`` does not bound it
    (the task decides, as Celery's ``self.retry()`` does). ``args``, when
    given, replaces the task's keyword arguments for the next attempt;
    ``cause`` is the exception reported for this attempt.

    A ``BaseException`` (see the module docstring): a task's
    ``except Exception:`` lets it through, so the retry happens. Raised by a
    workflow, it counts as a failure of that attempt, rerun by the
    workflow's own ``max_retries``.
    """

    def __init__(
        self,
        delay: float = 0.0,
        *,
        args: dict[str, object] | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(f"retry in {delay:.3f}s")
        self.delay = max(0.0, float(delay))
        self.args_for_retry = args
        self.cause = cause


class RequeueRequested(RetryRequested):
    """Raised inside a task: give this delivery back, as a broker requeue does.

    The same arguments run again, and the next delivery is marked requeued
    (``TaskInfo.requeued``; Celery's ``delivery_info['redelivered']``). The
    supervisor chooses when: the first requeue at once, each following one of
    an unbroken run after a growing pause (``coda.supervisor.requeues``), so a
    task that rejects every delivery does not spin a core. Celery's
    ``Reject(requeue=True)`` becomes this.
    """

    def __init__(self, *, cause: BaseException | None = None) -> None:
        super().__init__(0.0, cause=cause)


class RemoteError(CodaError):
    """User code raised in a worker.

    ``type_name`` is the qualified name of the remote exception class,
    ``message`` its ``str()``, ``remote_traceback`` the formatted traceback.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class Cancelled(CodaError):
    """The run was cancelled on request: ``result()`` raises it, and so does
    awaiting a cancelled child inside a workflow. A cancelled run is never
    rerun."""


class TaskFailed(RemoteError):
    """A task failed (after its retries); raised where it was awaited."""


class WorkflowFailed(RemoteError):
    """A workflow failed after its reruns; raised to whoever waits on it."""
