# The shop's backend: answers every GET with the name of the worktree it
# runs in, on $PORT (else the port the test wrote into backend.port).
import http.server
import os
import socket

name = os.path.basename(os.getcwd())
port = int(os.environ.get("PORT") or open("backend.port").read())


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    # Dual-stack, so "localhost" reaches it as ::1 or 127.0.0.1.
    address_family = socket.AF_INET6


Server(("::", port), Handler).serve_forever()
