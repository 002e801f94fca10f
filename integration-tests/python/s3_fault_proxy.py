"""A proxy in front of an S3 server on loopback that injects the faults the delivery tests need,
and records every request it forwards (run by the Rust tests, not by pytest).

  s3_fault_proxy.py --write-certs DIR     (makes the certificates below, and exits)
  s3_fault_proxy.py --port P --log requests.jsonl [--tls-dir DIR]
                    (--upstream http://127.0.0.1:Q [--expire-session-after N] [--corrupt-upload N]
                     | --throttle)

--expire-session-after N
    The first temporary credentials seen (requests carrying X-Amz-Security-Token) get N requests
    through; every later request signed with them is answered 400 `ExpiredToken`, as S3 answers
    once a session has expired. Requests signed with any other credentials pass.
--corrupt-upload N
    The body of the N-th upload (PutObject or UploadPart, counted from 1) has one byte flipped
    on the way, as a faulty network would; its checksum no longer matches.
--throttle
    Every request is answered 503 `SlowDown`, as S3 answers when a prefix is asked too much
    (no upstream needed).
--tls-dir DIR
    Serve HTTPS: a private CA (DIR/ca.pem) and a certificate it signed for 127.0.0.1 and
    localhost are made at start, for clients told to trust the CA (SSL_CERT_FILE).

Requests keep their Host header, so the upstream server checks the client's signatures as if
it had been called directly. Each forwarded request is logged as one JSON line:
{"method", "path", "query", "status", "fault"}.
"""

import argparse
import datetime
import http.client
import ipaddress
import os
import ssl
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>throttled</RequestId></Error>"
)
EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>ExpiredToken</Code>"
    b"<Message>The provided token has expired.</Message>"
    b"<RequestId>expired</RequestId></Error>"
)
# Hop-by-hop headers, which a proxy does not pass on.
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.first_session = None
        self.first_session_requests = 0
        self.uploads_seen = 0
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None

    def record(self, entry: dict) -> None:
        if self.log:
            with self.lock:
                self.log.write(json.dumps(entry) + "\n")
                self.log.flush()


def access_key_id(headers) -> str:
    match = re.search(r"Credential=([^/,\s]+)/", headers.get("Authorization") or "")
    return match.group(1) if match else ""


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State

    def forward(self) -> None:
        state = self.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        fault = "throttled" if state.args.throttle else None
        with state.lock:
            if state.args.expire_session_after is not None and self.headers.get(
                "X-Amz-Security-Token"
            ):
                key = access_key_id(self.headers)
                if state.first_session is None:
                    state.first_session = key
                if key == state.first_session:
                    state.first_session_requests += 1
                    if state.first_session_requests > state.args.expire_session_after:
                        fault = "expired-token"
            if self.command == "PUT" and body and not self.headers.get("x-amz-copy-source"):
                state.uploads_seen += 1
                if state.uploads_seen == state.args.corrupt_upload:
                    middle = len(body) // 2
                    body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
                    fault = "corrupted-upload"
        if fault == "throttled":
            status, headers, data = 503, [("Content-Type", "application/xml")], SLOW_DOWN
        elif fault == "expired-token":
            status, headers, data = 400, [("Content-Type", "application/xml")], EXPIRED
        else:
            status, headers, data = self.relay(body)
        relayed = fault not in ("throttled", "expired-token")
        # Logged before the client has its answer: whatever the client does next (a test
        # reading the log included) sees this request recorded.
        state.record(
            {
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "status": status,
                "fault": fault,
            }
        )
        self.answer(status, headers, data, keep_length=relayed and self.command == "HEAD")

    def relay(self, body: bytes) -> tuple[int, list, bytes]:
        upstream = urllib.parse.urlsplit(self.state.args.upstream)
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
        connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP:
                connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        headers = [(n, v) for n, v in response.getheaders() if n.lower() not in HOP]
        connection.close()
        return response.status, headers, data

    def answer(self, status: int, headers, data: bytes, keep_length: bool = False) -> None:
        # A HEAD answer tells the length a GET would have, without the body.
        self.send_response(status)
        for name, value in headers:
            if name.lower() == "content-length" and not keep_length:
                continue
            self.send_header(name, value)
        if not keep_length:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    def log_message(self, *args) -> None:
        pass


def make_certificates(directory: str) -> tuple[str, str]:
    """A CA (ca.pem) and a server certificate it signed for 127.0.0.1 and localhost; returns
    the server's certificate and key files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("filedrop test CA"))
        .issuer_name(name("filedrop test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key")}
    with open(paths["ca.pem"], "wb") as out:
        out.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.pem"], "wb") as out:
        out.write(server.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.key"], "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths["server.pem"], paths["server.key"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-certs")
    parser.add_argument("--port", type=int)
    parser.add_argument("--upstream")
    parser.add_argument("--log")
    parser.add_argument("--expire-session-after", type=int)
    parser.add_argument("--corrupt-upload", type=int)
    parser.add_argument("--throttle", action="store_true")
    parser.add_argument("--tls-dir")
    args = parser.parse_args()
    if args.write_certs:
        make_certificates(args.write_certs)
        return
    if args.port is None:
        parser.error("give --port")
    if not args.throttle and not args.upstream:
        parser.error("give --upstream, or --throttle")
    Proxy.state = State(args)
    # The certificates exist before the port listens: a client that sees the port open may
    # read the CA at once.
    context = None
    if args.tls_dir:
        certificate, key = make_certificates(args.tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Proxy)
    if context:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
