"""Hearth's example Python function for the sandbox tier (http contract).

Standard library only: an HTTP server on $PORT. GET answers a greeting,
POST echoes the request body. Runs with the host's /usr/bin/python3.
"""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Hearth reuses connections

    def _send(self, status, body, content_type="text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        name = parse_qs(url.query).get("name", ["world"])[0]
        greeting = os.environ.get("GREETING", "Hello")
        self._send(200, f"{greeting}, {name}! (python, path {url.path})\n".encode())

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        self._send(200, body, self.headers.get("Content-Type", "application/octet-stream"))

    do_PUT = do_POST

    def log_message(self, fmt, *args):  # one line per request on stderr
        print(fmt % args, file=__import__("sys").stderr, flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
