"""The sockets the SO_REUSEPORT supervisor relies on: the parent's bound, non-listening socket
reserves the port and takes no connection; workers' sockets share the port; a port another
process holds without SO_REUSEPORT is refused."""

from __future__ import annotations

import errno
import socket

import pytest

pytest.importorskip("uvicorn", reason="serving tests need the 'serve' extra")
pytest.importorskip("fastapi", reason="serving tests need the 'serve' extra")

from dinrec.serving.http import supervisor

pytestmark = pytest.mark.skipif(not supervisor.REUSEPORT, reason="needs SO_REUSEPORT")


def test_an_address_puts_an_ipv6_host_in_brackets() -> None:
    assert supervisor.address("127.0.0.1", 8000) == "127.0.0.1:8000"
    assert supervisor.address("::1", 8000) == "[::1]:8000"


def test_a_bound_socket_that_does_not_listen_reserves_the_port_and_takes_no_connection(
) -> None:
    with supervisor.reuseport_socket("127.0.0.1", 0) as reserved:
        port = reserved.getsockname()[1]
        assert port != 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        # A worker's socket binds the same port beside it and takes the connections.
        with supervisor.reuseport_socket("127.0.0.1", port) as worker:
            worker.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                accepted, _ = worker.accept()
                accepted.close()
        with socket.socket() as plain, pytest.raises(OSError) as err:
            plain.bind(("127.0.0.1", port))  # no SO_REUSEPORT: the reservation holds
        assert err.value.errno == errno.EADDRINUSE


def test_a_port_held_without_so_reuseport_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError) as err:
            supervisor.reuseport_socket("127.0.0.1", taken.getsockname()[1])
    assert err.value.errno == errno.EADDRINUSE
