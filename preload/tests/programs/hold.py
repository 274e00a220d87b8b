"""Holds a TCP port the way a Python dev server would (SO_REUSEADDR,
listening on 127.0.0.1), prints the port, and keeps it until stdin closes."""
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
s.listen()
print(f"listening 127.0.0.1 {s.getsockname()[1]}", flush=True)
sys.stdin.read()
