#!/usr/bin/env python3
"""Non-reading clients against a running echo server, and what it costs the server.

    python3 bench/non_readers.py PORT CLIENTS SERVER_PID

Connects CLIENTS sockets to 127.0.0.1:PORT (4 KiB receive buffer each), writes 64 KiB
chunks to all of them without ever reading until three 50 ms rounds in a row get nothing
in (or 60 s pass), then times five fresh 1,000-byte echoes (checked byte-exact) 2 s
later, closes every non-reader, and times one more. Prints the server's RSS (from
/proc/SERVER_PID/status) before, during and after. The README's "Hostile clients" table
comes from this, one run per engine.
"""
import os
import socket
import sys
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise SystemExit("no VmRSS for pid %d" % pid)


def fresh_echo_ms(port):
    t0 = time.monotonic()
    data = os.urandom(1000)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(data)
        got = b""
        while len(got) < len(data):
            part = c.recv(4096)
            if not part:
                raise SystemExit("fresh client: connection closed before its echo")
            got += part
    if got != data:
        raise SystemExit("fresh client: echo differs")
    return (time.monotonic() - t0) * 1000


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    port, clients, pid = (int(a) for a in sys.argv[1:])
    print("RSS before: %d MB; fresh echo %.2f ms" % (rss_mb(pid), fresh_echo_ms(port)))
    socks = []
    for _ in range(clients):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    chunk = b"x" * 65536
    total, quiet, t0 = 0, 0, time.monotonic()
    while quiet < 3 and time.monotonic() - t0 < 60:
        wrote = 0
        for s in socks:
            for _ in range(16):
                try:
                    wrote += s.send(chunk)
                except OSError:  # blocked, or reset by the server
                    break
        total += wrote
        quiet = quiet + 1 if wrote == 0 else 0
        time.sleep(0.05)
    print("non-readers got %d MB in %.1f s; RSS %d MB"
          % (total >> 20, time.monotonic() - t0, rss_mb(pid)))
    time.sleep(2)
    lat = [fresh_echo_ms(port) for _ in range(5)]
    print("RSS %d MB; fresh echoes %s ms" % (rss_mb(pid), ", ".join("%.1f" % x for x in lat)))
    for s in socks:
        s.close()
    time.sleep(2)
    print("after they closed: RSS %d MB; fresh echo %.2f ms" % (rss_mb(pid), fresh_echo_ms(port)))


main()
