"""A small TCP-only echo server for the `bench-all --server` test: not one of ours, and no
UDP, so the harness must skip it there. Usage: python3 pyecho.py PORT"""
import resource
import selectors
import socket
import sys

# The memory phase holds 10,000 idle connections.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

sel = selectors.DefaultSelector()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(4096)
listener.setblocking(False)
sel.register(listener, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is listener:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            continue
        # Blocking for the reply: the load generator reads while a message is in flight.
        s.setblocking(True)
        try:
            s.sendall(data)
        except OSError:
            sel.unregister(s)
            s.close()
            continue
        s.setblocking(False)
