#!/usr/bin/env bash
# Per-request cost of `weft proxy` in instructions (callgrind's Ir), which
# the machine's load does not move the way it moves CPU seconds: on a
# shared machine bench/proxy's "CPU s / 100k req" of a saturated
# one-worker proxy is about 100k / (its max rps), i.e. how fast the core
# ran that minute (weft at d89ebc1 measured 2.87 and 3.32 in two runs).
#
#   bash bench/callgrind.sh [WEFT] [REQUESTS; 2000] [h1|h2; h1]
#
#   WEFT         the weft binary (default target/release/weft; build it
#                with `cargo build --release -p weft-cli`)
#   CONNS=N      h1: keep-alive connections, requests spread over them,
#                all in flight at once (default 1; bench/proxy uses 64)
#   MODE=warm    (default) warm-up requests on the same connections, then
#                measure: the steady per-request cost
#   MODE=fresh   warm-up on other connections, then measure CONNS new
#                downstream connections (upstream pool already full)
#   MODE=cold    measure from before the first connection, as bench/proxy
#                does: downstream and upstream connections set up within
#   OUT=path     callgrind output (default /tmp/weft-callgrind/NAME.PROTO.out)
#   CG_OPTS=...  more callgrind options, e.g. "--cache-sim=yes --branch-sim=yes"
#   PROXY_BENCH  the bench binary whose `backend` subcommand serves
#                (default target/release/proxy-bench:
#                `cargo build --release -p weft-bench-proxy`)
#
# The proxy runs with bench/proxy's bootstrap (an HTTP listener routing /
# to one STATIC cluster, a TCP listener) and `--concurrency 1` under
# `valgrind --tool=callgrind`; the counters are zeroed after the warm-up
# (callgrind_control -z) and dumped after the measured requests (-d), so
# start-up is not counted. h1 uses bench/callgrind_load.py (python3, no
# packages), h2 bench/callgrind_h2.py (one h2c connection, 16 streams in
# flight; needs `pip install h2`). Prints Ir per request; compare two
# binaries with
#   callgrind_annotate --inclusive=yes OUT.1 | head -60
# Counts repeat to within about 1% run to run (timer and wake-up work
# depends on the client's timing); a difference smaller than that is not
# one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WEFT=$(realpath "${1:-$HERE/../target/release/weft}")
N=${2:-2000}
PROTO=${3:-h1}
CONNS=${CONNS:-1}
MODE=${MODE:-warm}
PROXY_BENCH=${PROXY_BENCH:-$HERE/../target/release/proxy-bench}
OUTDIR=/tmp/weft-callgrind
mkdir -p "$OUTDIR"
OUT=${OUT:-$OUTDIR/$(basename "$WEFT").$PROTO.out}
rm -f "$OUT" "$OUT".*
DIR=$(mktemp -d)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ADMIN=$(free_port); HTTP=$(free_port); TCP=$(free_port); BACK=$(free_port); ECHO=$(free_port)

"$PROXY_BENCH" backend "$BACK" "$ECHO" &
BACK_PID=$!
VG_PID=
cleanup() {
  [ -n "$VG_PID" ] && kill "$VG_PID" 2>/dev/null || true
  kill "$BACK_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

# bench/proxy/src/main.rs's bootstrap().
cat > "$DIR/weft.yaml" <<EOF
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN}}}
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: $HTTP}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: backend}}]
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: $TCP}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $BACK}}}}]}]
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $ECHO}}}}]}]
EOF

valgrind --tool=callgrind --callgrind-out-file="$OUT" --dump-instr=no ${CG_OPTS:-} \
  "$WEFT" proxy --concurrency 1 -c "$DIR/weft.yaml" >"$DIR/weft.log" 2>&1 &
VG_PID=$!

ready=
for _ in $(seq 600); do
  if curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[ -n "$ready" ] || { cat "$DIR/weft.log"; echo "weft did not become ready" >&2; exit 1; }
sleep 0.5

case "$PROTO" in
h1) python3 "$HERE/callgrind_load.py" "$HTTP" "$CONNS" $((CONNS * 50)) "$N" "$VG_PID" "$MODE" ;;
h2) python3 "$HERE/callgrind_h2.py" "$HTTP" 200 "$N" "$VG_PID" ;;
*) echo "unknown protocol $PROTO: h1 or h2" >&2; exit 2 ;;
esac

# The dump after zeroing ($OUT.1) holds the measured part only.
IR=$(awk '/^summary:/ {print $2}' "$OUT.1")
echo "$(basename "$WEFT") $PROTO conns=$CONNS mode=$MODE: $IR Ir / $N requests = $((IR / N)) Ir/request ($OUT.1)"
