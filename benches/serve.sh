#!/usr/bin/env bash
# Measures `serve` as production runs it, with the table in PostgreSQL:
#
#   benches/serve.sh startup real       start-to-ready time and resident memory,
#   benches/serve.sh startup synthetic  full shared data or the synthetic set
#   benches/serve.sh loadgen real       loadgen against it, with table reloads
#
# Everything it starts is private to the run and removed at the end: a
# uniquely named database on the local PostgreSQL (5432, user postgres), a
# Redis and a NATS server on free loopback ports, and the service. It needs
# a release build (`cargo build --release`), python3, curl, psql and the
# redis-server and nats-server binaries. Extra arguments after the data set
# go to `loadgen`.
set -euo pipefail

mode=${1:?usage: benches/serve.sh startup|loadgen real|synthetic [loadgen flags]}
data=${2:?usage: benches/serve.sh startup|loadgen real|synthetic [loadgen flags]}
shift 2

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$repo/target/release/routing-engine}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }

run_id="perf_$$_$RANDOM"
work=$(mktemp -d "/tmp/${run_id}.XXXX")
db="$run_id"
admin_url="postgres://postgres@127.0.0.1:5432/$db"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    dropdb -h 127.0.0.1 -U postgres --if-exists "$db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

now() { date +%s.%N; }

# A fresh NKey user seed: NATS without accounts ignores it, but `serve`
# requires a credentials file it can read as one.
nkey_seed() {
    python3 - <<'EOF'
import base64, os
def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
seed, user = 18 << 3, 20 << 3
raw = bytes([seed | (user >> 5), (user & 31) << 3]) + os.urandom(32)
raw += crc16(raw).to_bytes(2, "little")
print(base64.b32encode(raw).decode().rstrip("="))
EOF
}

case "$data" in
    real)
        if [ -d "$repo/../shared/data/routing" ]; then
            dir="$repo/../shared/data"
        else
            echo "../shared/data is absent: using the sample in sample/" >&2
            dir="$repo/sample"
        fi
        carrier="$dir/numbering/carrier"
        [ -d "$carrier" ] || carrier="$dir/carrier"
        routing="$dir/routing"
        ;;
    synthetic)
        dir="$repo/target/bench-data/synthetic"
        [ -f "$dir/routing/routes.csv" ] || python3 "$repo/benches/synthetic_data.py" "$dir"
        carrier="$dir/numbering/carrier"
        routing="$dir/routing"
        ;;
    *) echo "data set is real or synthetic" >&2; exit 2 ;;
esac

echo "== loading $data data into database $db"
createdb -h 127.0.0.1 -U postgres "$db"
"$bin" load --database-url "$admin_url" --carrier-dir "$carrier" --routing-dir "$routing" \
    2> "$work/load.log"
# The limits would otherwise throttle a load test at the operators' real TPS.
psql -q -h 127.0.0.1 -U postgres -d "$db" -c "UPDATE operators SET tps_limit = 100000000"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    > "$work/redis.log" 2>&1 &
pids+=($!)
nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" > "$work/nats.log" 2>&1 &
pids+=($!)

# Certificates written by development mode, which is stopped once they exist.
"$bin" dev --tls-dir "$work/tls" --grpc-addr "127.0.0.1:$(free_port)" \
    --http-addr "127.0.0.1:$(free_port)" > /dev/null 2>&1 &
dev_pid=$!
until [ -f "$work/tls/client.key" ]; do sleep 0.05; done
kill "$dev_pid"; wait "$dev_pid" 2>/dev/null || true
nkey_seed > "$work/nkey.seed"

grpc_port=$(free_port)
http_port=$(free_port)
echo "== starting serve"
started=$(now)
DATABASE_URL="postgres://routing_engine_ro@127.0.0.1:5432/$db" \
REDIS_URL="redis://127.0.0.1:$redis_port" \
NATS_URL="nats://127.0.0.1:$nats_port" \
NATS_CREDS_FILE="$work/nkey.seed" \
TLS_DIR="$work/tls" \
GRPC_ADDR="127.0.0.1:$grpc_port" \
HTTP_ADDR="127.0.0.1:$http_port" \
PORTABILITY="${PORTABILITY:-lookup}" \
RUST_LOG=info \
    "$bin" serve > "$work/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")

deadline=$(( $(date +%s) + 120 ))
until curl -sf "http://127.0.0.1:$http_port/ready" > /dev/null; do
    if ! kill -0 "$serve_pid" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
        echo "serve did not become ready:" >&2; tail -20 "$work/serve.log" >&2; exit 1
    fi
    sleep 0.01
done
ready=$(now)
sleep 1
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$serve_pid/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$serve_pid/status")

python3 - "$work/serve.log" "$started" "$ready" "$rss_kb" "$hwm_kb" "$data" <<'EOF'
import json, sys
from datetime import datetime
log, started, ready, rss, hwm, data = sys.argv[1:]
started, ready = float(started), float(ready)
marks = {}
for line in open(log):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    when = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
    message = entry.get("message", "")
    if "warmed up" in message:
        marks.setdefault("metadata warmed up", when)
    if "installed" in message or "loaded" in message:
        marks.setdefault(message, when)
print(f"{data} table: start to ready {ready - started:.2f} s; "
      f"resident memory {int(rss) / 1024:.0f} MB (peak {int(hwm) / 1024:.0f} MB)")
warm = marks.get("metadata warmed up")
for name, when in sorted(marks.items(), key=lambda m: m[1]):
    print(f"  {when - started:6.2f} s  {name}")
if warm:
    table = max(marks.values())
    print(f"  table load after metadata warm-up: {table - warm:.2f} s")
EOF

if [ "$mode" = loadgen ]; then
    echo "== loadgen against serve (table reloads through PostgreSQL)"
    cd "$repo"
    "$bin" loadgen --server "https://127.0.0.1:$grpc_port" --tls-dir "$work/tls" \
        --reload-database-url "$admin_url" "$@"
fi
