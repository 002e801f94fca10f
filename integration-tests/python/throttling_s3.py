"""An S3 endpoint that throttles every request: 503 with S3's `SlowDown` error, as S3 answers
when a prefix is asked too much. The delivery tests point a destination at it to see a run
fail with THROTTLED once the retries are spent (run by the Rust tests, not by pytest).

  throttling_s3.py --port P
"""

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>throttled</RequestId></Error>"
)


class Throttling(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        # Read the body first, so the client sees the answer rather than a reset connection.
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)
        self.send_response(503, "Slow Down")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(BODY)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = answer

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Throttling).serve_forever()


if __name__ == "__main__":
    main()
