"""Starting the dashboard: refusals are one line naming the address and the flag."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from coda.errors import ConfigurationError
from coda.supervisor import SupervisorConfig

pytestmark = pytest.mark.e2e


def start(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "coda", "supervisor", "--workers", "0"]
    argv += ["--listen", "127.0.0.1:0", "--store", "memory://", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_non_loopback_address_without_a_token_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        SupervisorConfig(http="0.0.0.0:8080", store="memory://").check()
    assert str(refused.value) == (
        "refusing to serve the dashboard on '0.0.0.0' without a token: set --token or "
        "CODA_TOKEN, or serve it on a loopback address (--http 127.0.0.1:PORT)"
    )
    SupervisorConfig(http="0.0.0.0:8080", token="t", store="memory://").check()
    SupervisorConfig(http="localhost:8080", store="memory://").check()


def test_a_unix_path_is_not_an_http_address() -> None:
    with pytest.raises(ConfigurationError, match=r"^--http takes HOST:PORT, got '/tmp/x.sock'$"):
        SupervisorConfig(http="/tmp/x.sock", store="memory://").check()


def test_the_command_refuses_a_public_address_without_a_token_in_one_line() -> None:
    result = start("--http", "0.0.0.0:0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: refusing to serve the dashboard on '0.0.0.0' without a token: set --token or "
        "CODA_TOKEN, or serve it on a loopback address (--http 127.0.0.1:PORT)"
    ]


def test_a_port_in_use_is_one_line_naming_the_address_and_the_flag() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = start("--http", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot serve the dashboard on 127.0.0.1:{port}: the address is already in use "
        "(another supervisor, or another program, holds it); pick another with --http HOST:PORT"
    ]
