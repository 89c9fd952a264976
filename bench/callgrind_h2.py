# PORT WARM N PID: one h2c (prior knowledge) connection, 16 streams in
# flight at a time; WARM requests, callgrind counters zeroed, N requests,
# dump. Needs the `h2` package (pip install h2).
import socket, subprocess, sys
import h2.config, h2.connection, h2.events

port, warm, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection()
s.sendall(c.data_to_send())
HEADERS = [(":method", "GET"), (":scheme", "http"), (":authority", "bench.test"), (":path", "/bench")]

def run(total, window=16):
    sent = done = 0
    while done < total:
        while sent < total and sent - done < window:
            c.send_headers(c.get_next_available_stream_id(), HEADERS, end_stream=True)
            sent += 1
        s.sendall(c.data_to_send())
        data = s.recv(65536)
        assert data, "connection closed"
        for e in c.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                assert dict(e.headers)[b":status"] == b"200", e.headers
            elif isinstance(e, h2.events.DataReceived):
                c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                done += 1
            elif isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise SystemExit(f"h2 error: {e}")
        s.sendall(c.data_to_send())

run(warm)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
run(n)
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
