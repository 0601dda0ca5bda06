"""TLS for TCP connections between clients and the supervisor.

The supervisor serves TLS on its TCP listener when given a certificate and
key; with a CA file as well it requires clients to present a certificate
signed by that CA (mutual TLS). Unix sockets never use TLS: reaching one
already takes file-system access on the machine. Workers talk over socket
pairs and never use TLS either.

Clients take ``ssl=``: ``True`` for the system's trusted CAs with host name
checking, or an ``ssl.SSLContext`` built by the caller (a private CA, a
client certificate). Failures to load files are ``ConfigurationError``;
a handshake that fails is a ``HandshakeError`` at connection time.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from ._wire import parse_address
from .errors import ConfigurationError, ConnectionLostError, HandshakeError

__all__ = [
    "SSLOption",
    "check_server_options",
    "client_context",
    "client_context_from_files",
    "listener_options",
    "peer_context",
    "server_context",
    "tls_failure",
    "wrap_client_socket",
]

SSLOption = ssl.SSLContext | bool | None


def server_context(cert: str, key: str | None, client_ca: str | None = None) -> ssl.SSLContext:
    """The supervisor's context: TLS 1.2 or later, client certificates
    required only when ``client_ca`` is given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if client_ca is not None:
            context.load_verify_locations(cafile=client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS certificate, key or CA: {exc}") from None
    return context


def client_context(option: SSLOption) -> ssl.SSLContext | None:
    """What a client's ``ssl=`` argument means: None/False for plain TCP."""
    if option is None or option is False:
        return None
    if option is True:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if isinstance(option, ssl.SSLContext):
        return option
    raise ConfigurationError(f"ssl must be an ssl.SSLContext, True or None, not {option!r}")


def client_context_from_files(
    *, enabled: bool, ca: str | None, cert: str | None, key: str | None
) -> ssl.SSLContext | None:
    """A client context from command-line options; None for plain TCP.

    Any of the files turns TLS on; ``ca`` replaces the system's trusted CAs;
    ``cert`` (and ``key``, unless the key is in the same file) is presented
    to a supervisor that asks for client certificates.
    """
    if not (enabled or ca or cert):
        return None
    if key and not cert:
        raise ConfigurationError("a TLS key was given without its certificate")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS certificate, key or CA: {exc}") from None
    return context


def peer_context(cert: str, key: str | None, ca: str | None) -> ssl.SSLContext:
    """How a supervisor served with ``--tls-cert`` connects to another
    supervisor of its fleet (the broker relay). It trusts the system's CAs,
    ``--tls-ca`` if given, and its own certificate (a fleet that shares one
    certificate, or a self-signed one, needs nothing more; per-host
    certificates from a private CA need that CA in ``--tls-ca`` or the
    system's store). With ``--tls-ca`` the others ask for a client
    certificate, and it shows its own."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        context.load_verify_locations(cert)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a trusted leaf suffices
        if ca is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS certificate, key or CA: {exc}") from None
    return context


HANDSHAKE_TIMEOUT = 10.0  # a peer that connects but never completes TLS is dropped


def check_server_options(cert: str | None, key: str | None, ca: str | None, *, tcp: bool) -> None:
    """Refuse combinations and files that cannot work, before anything starts."""
    if key is not None and cert is None:
        raise ConfigurationError("--tls-key needs --tls-cert")
    if ca is not None and cert is None:
        raise ConfigurationError("--tls-ca (client certificates) needs --tls-cert and --tls-key")
    if cert is not None and not tcp:
        raise ConfigurationError("TLS applies to the TCP listener: give --listen HOST:PORT")
    if cert is not None:
        server_context(cert, key, ca)  # unreadable files fail now, not after the store opened


def listener_options(cert: str | None, key: str | None, ca: str | None) -> dict[str, Any]:
    """Extra arguments for ``loop.create_server``: none for plain TCP."""
    if cert is None:
        return {}
    return {"ssl": server_context(cert, key, ca), "ssl_handshake_timeout": HANDSHAKE_TIMEOUT}


def wrap_client_socket(
    context: ssl.SSLContext, sock: socket.socket, host: str, address: str
) -> ssl.SSLSocket:
    """TLS over a connected socket (blocking handshake, under the socket's
    timeout); a refused certificate or protocol is a ``HandshakeError``."""
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLError as exc:
        sock.close()
        raise tls_failure(address, exc) from None


def tls_failure(address: str, exc: ssl.SSLError) -> HandshakeError:
    return HandshakeError(f"TLS handshake with the supervisor at {address} failed: {exc}")


def open_socket(address: str, context: ssl.SSLContext | None, timeout: float) -> socket.socket:
    """A blocking connection to a supervisor address (TCP with optional TLS, or
    a Unix socket), shared by the blocking client and the kombu link."""
    family, target = parse_address(address)
    try:
        if family == "unix":
            if context is not None:
                raise ConfigurationError("TLS applies to TCP addresses, not Unix sockets")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(target)
            return sock
        sock = socket.create_connection(target, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            sock = wrap_client_socket(context, sock, target[0], address)
        return sock
    except OSError as exc:
        raise ConnectionLostError(f"cannot reach the Coda supervisor at {address}: {exc}") from exc
