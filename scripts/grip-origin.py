#!/usr/bin/env python3
"""Tiny GRIP origin for Pushpin: every GET /stream/<channel> is held as an SSE stream.

Usage: grip-origin.py [--listen 127.0.0.1:7998]

Pushpin forwards a subscriber's request here; the answer tells Pushpin to
hold the connection open (Grip-Hold: stream) subscribed to the channel named
in the path (Grip-Channel), and its body, `event: connected`, is the first
frame the subscriber sees, like Tidings' own stream. Events then come from
Pushpin's publish API, never from this process. Used by scripts/bench-peers.sh.
"""

import argparse
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHANNEL = re.compile(r"^/stream/([A-Za-z0-9._:-]{1,200})$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        match = CHANNEL.match(self.path.split("?", 1)[0])
        if not match:
            self.answer(404, "text/plain", b"not found\n", {})
            return
        channel = match.group(1)
        body = ('event: connected\ndata: {"topic":"%s"}\n\n' % channel).encode()
        headers = {
            "Grip-Hold": "stream",
            "Grip-Channel": channel,
            "Cache-Control": "no-cache",
        }
        self.answer(200, "text/event-stream", body, headers)

    def answer(self, status, content_type, body, headers):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Pushpin opens up to one origin request per new subscriber at once.
    request_queue_size = 4096


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:7998", help="HOST:PORT")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    try:
        server = Server((host or "127.0.0.1", int(port)), Handler)
    except (OSError, ValueError) as err:
        print(f"grip-origin: cannot listen on {args.listen}: {err}", file=sys.stderr)
        return 1
    print(f"listening on http://{args.listen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
