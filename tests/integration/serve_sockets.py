"""The TCP sockets a `dinrec serve` process holds, read from /proc (Linux): which worker
holds how many connections on the server's port, and whether it listens there itself.

A plain module, not a conftest (see cli_process.py): importable as
`tests.integration.serve_sockets`.
"""

from __future__ import annotations

import os
import select
import socket
from pathlib import Path

ESTABLISHED, LISTEN = "01", "0A"  # the st column of /proc/net/tcp


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds open (empty once it is gone)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def sockets_on_port(port: int, state: str) -> dict[str, int]:
    """inode -> 1 for every TCP socket whose local port is `port`, in `state`."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            cols = row.split()
            # cols: sl, local "HEXADDR:HEXPORT", remote, st, ..., inode (10th column)
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == state:
                found[cols[9]] = 1
    return found


def connections_held(pid: int, port: int) -> int:
    """How many established connections on local `port` process `pid` holds."""
    return len(socket_inodes(pid) & sockets_on_port(port, ESTABLISHED).keys())


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on `port`."""
    return bool(socket_inodes(pid) & sockets_on_port(port, LISTEN).keys())


def open_connections(port: int, n: int) -> list[socket.socket]:
    """`n` connections to loopback `port`, all connects in flight before any completes: the
    kernel completes the handshakes into the accept queue(s) whether or not a server process
    is running to accept them."""
    conns = [socket.socket() for _ in range(n)]
    for conn in conns:
        conn.setblocking(False)
        conn.connect_ex(("127.0.0.1", port))
    for conn in conns:
        if not select.select([], [conn], [], 30)[1] or conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_ERROR):
            raise ConnectionError(f"could not connect to port {port}")
        conn.setblocking(True)
        conn.settimeout(30)
    return conns


def get_healthz(conns: list[socket.socket]) -> None:
    """One GET /healthz on each connection, every response read; the connections stay open
    (HTTP/1.1 keep-alive)."""
    for conn in conns:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for conn in conns:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response: {data!r}")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"not a 200: {head!r}")
