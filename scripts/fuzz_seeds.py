#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, written into a corpus directory.

load_validate starts from the repository's example and tour YAML;
listener_inspect from a real TLS ClientHello (made by Python's ssl module,
with SNI and ALPN) and HTTP/1.1 and HTTP/2 preludes; xds_requests from
gRPC-framed discovery requests (state-of-the-world and delta) behind the
byte that picks the HTTP/2 frame size; path_normalize from request paths
with dot segments, escapes, backslashes and queries. Usage: fuzz_seeds.py CORPUS_DIR
"""

import pathlib
import ssl
import struct
import sys

root = pathlib.Path(__file__).resolve().parent.parent
corpus = pathlib.Path(sys.argv[1])


def write(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


# load_validate: every YAML file the repository ships as an example.
for path in sorted(root.glob("examples/**/*.yaml")) + sorted(root.glob("tour/**/*.yaml")):
    data = path.read_bytes()
    if len(data) <= 65536:
        write("load_validate", str(path.relative_to(root)).replace("/", "_"), data)


# listener_inspect: a ClientHello as a client sends it, and HTTP preludes.
def client_hello(sni, alpn):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


write("listener_inspect", "hello-sni-alpn", client_hello("a.example.com", ["h2", "http/1.1"]))
write("listener_inspect", "hello-sni", client_hello("b.example", None))
write("listener_inspect", "http11", b"GET /path?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
write("listener_inspect", "http10", b"POST / HTTP/1.0\r\n\r\n")
write("listener_inspect", "h2-prior-knowledge", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")


# xds_requests: protobuf by hand (field numbers from discovery.proto).
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def grpc(message):
    return b"\x00" + struct.pack(">I", len(message)) + message


node = field(1, b"sidecar~10.0.0.1~a.ns~ns.svc.cluster.local")
eds = b"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
cds = b"type.googleapis.com/envoy.config.cluster.v3.Cluster"
# DiscoveryRequest: version_info 1, node 2, resource_names 3, type_url 4,
# response_nonce 5.
sotw = [
    field(2, node) + field(4, cds),
    field(1, b"7") + field(3, b"outbound|80||a") + field(3, b"outbound|80||b") + field(4, eds)
    + field(5, b"nonce-1"),
]
# DeltaDiscoveryRequest: node 1, type_url 2, resource_names_subscribe 3,
# resource_names_unsubscribe 4, response_nonce 6.
delta = [
    field(1, node) + field(2, eds) + field(3, b"outbound|80||a"),
    field(2, eds) + field(4, b"outbound|80||a") + field(6, b"nonce-2"),
]
write("xds_requests", "sotw", bytes([7]) + b"".join(grpc(m) for m in sotw))
write("xds_requests", "delta", bytes([3]) + b"".join(grpc(m) for m in delta))
write("xds_requests", "empty-message", bytes([1]) + grpc(b""))

# path_normalize: request paths that exercise each rule.
for i, path in enumerate([
    b"/a/../b/./c",
    b"//a//b?x=/../y//z",
    b"/a%2Fb%5c..%2e%2E/%61dmin",
    b"/a\\..\\b",
    b"/%%41%zz%00%",
    b"/a\"b<c>{d}",
]):
    write("path_normalize", f"path-{i}", path)
