"""Test function (http contract, standard library only) that publishes an
event through the sandbox's events endpoint, $HEARTH_EVENTS_API.

POST /<topic> (or POST / with the topic in $TOPIC, as an event trigger
delivers) sends the request body, with its Content-Type, to
POST http://$HEARTH_EVENTS_API/v1/events/<topic>, and answers 200 with the
endpoint's answer as the body and its status in X-Events-Status. GET /env
answers the endpoint's address ("" without one).
"""
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, os.environ.get("HEARTH_EVENTS_API", "").encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        topic = self.path.lstrip("/") or os.environ.get("TOPIC", "")
        api = os.environ.get("HEARTH_EVENTS_API")
        if not api:
            self._send(200, b"no events endpoint", [("X-Events-Status", "0")])
            return
        req = urllib.request.Request(
            "http://%s/v1/events/%s" % (api, topic), data=body, method="POST",
            headers={"Content-Type": self.headers.get("Content-Type", "application/octet-stream")})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                status, out = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, out = e.code, e.read()
        self._send(200, out, [("X-Events-Status", str(status)), ("Content-Type", "application/json")])

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
