#!/usr/bin/env bash
# Benchmark: `GET /v1/containers?all=true` through Berth on each host of an engines file
# (A: the local engine over its unix socket; B: engine B of scripts/test-env.sh over
# tcp with mutual TLS), next to the same list asked of each engine directly, alternately,
# in one run. Prints the median and p90 of each and the ratios.
#   N=100 CONTAINERS=20 scripts/bench/hosts.sh
# Needs the test environment (scripts/test-env.sh) and builds Berth in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${N:-100}"
CONTAINERS="${CONTAINERS:-20}"
PORT="${PORT:-18573}"
B_SOCK=/tmp/berth-test-env/engine-b/docker.sock
TLS=/tmp/berth-test-env/engine-b/tls
B_URL=https://10.213.0.2:2376
work="$(mktemp -d)"
label="bench-hosts-$(date +%s)"
cleanup() {
  kill "${pid:-0}" 2>/dev/null || true
  docker ps -aq --filter "label=berth.bench=$label" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker -H "unix://$B_SOCK" ps -aq --filter "label=berth.bench=$label" | xargs -r docker -H "unix://$B_SOCK" rm -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

./scripts/test-env.sh >/dev/null 2>&1
cargo build --release --quiet --bin berth
for i in $(seq 1 "$CONTAINERS"); do
  docker create --label "berth.bench=$label" berth-test/busybox:latest true >/dev/null
  docker -H "unix://$B_SOCK" create --label "berth.bench=$label" berth-test/busybox:latest true >/dev/null
done
cat >"$work/engines.toml" <<TOML
[[engine]]
name = "a"
url = "unix:///var/run/docker.sock"

[[engine]]
name = "b"
url = "tcp://10.213.0.2:2376"
ca = "$TLS/ca.pem"
cert = "$TLS/client.pem"
key = "$TLS/client-key.pem"
TOML
export BERTH_JWT_SECRET=$(openssl rand -hex 32) BERTH_LISTEN=127.0.0.1:$PORT BERTH_DATA_DIR="$work/data" \
  BERTH_ENGINES_FILE="$work/engines.toml" BERTH_LOG_FORMAT=json RUST_LOG=warn
./target/release/berth serve >"$work/berth.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
T=$(./target/release/berth token --sub bench --role admin --ttl 1h)
version=$(docker version -f '{{.Server.APIVersion}}')

python3 - "$N" "$PORT" "$T" "$version" "$B_SOCK" "$TLS" "$B_URL" <<'PY'
import json, socket, ssl, statistics, sys, time, http.client
n, port, token, version, b_sock, tls, b_url = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]

class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

ctx = ssl.create_default_context(cafile=f"{tls}/ca.pem")
ctx.load_cert_chain(f"{tls}/client.pem", f"{tls}/client-key.pem")
b_host = b_url.split("//")[1]
conns = {
    "engine A (unix)": UnixConn("/var/run/docker.sock"),
    "engine B (tls)": http.client.HTTPSConnection(b_host.split(":")[0], int(b_host.split(":")[1]), context=ctx),
    "berth host=a": http.client.HTTPConnection("127.0.0.1", int(port)),
    "berth host=b": http.client.HTTPConnection("127.0.0.1", int(port)),
}
paths = {
    "engine A (unix)": (f"/v{version}/containers/json?all=1", {}),
    "engine B (tls)": (f"/v{version}/containers/json?all=1", {}),
    "berth host=a": ("/v1/containers?all=true&host=a", {"Authorization": f"Bearer {token}"}),
    "berth host=b": ("/v1/containers?all=true&host=b", {"Authorization": f"Bearer {token}"}),
}
times = {k: [] for k in conns}
counts = {}
for i in range(n + 5):
    for k, c in conns.items():
        path, headers = paths[k]
        t0 = time.perf_counter()
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        dt = (time.perf_counter() - t0) * 1000
        assert r.status == 200, (k, r.status, body[:200])
        counts[k] = len(json.loads(body))
        if i >= 5:  # warm-up
            times[k].append(dt)
def p(v, q): return sorted(v)[min(len(v) - 1, int(q * len(v)))]
print(f"{'list':<18} {'containers':>10} {'median ms':>10} {'p90 ms':>8}")
for k, v in times.items():
    print(f"{k:<18} {counts[k]:>10} {statistics.median(v):>10.2f} {p(v, 0.9):>8.2f}")
for h, e in [("berth host=a", "engine A (unix)"), ("berth host=b", "engine B (tls)")]:
    print(f"ratio {h} / {e}: {statistics.median(times[h]) / statistics.median(times[e]):.2f}x")
PY
