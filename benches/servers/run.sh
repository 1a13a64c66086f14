#!/usr/bin/env bash
# HTTP servers: requests per second on one core and latency percentiles (wrk) on the orders allow
# path, for the Cloud Run example (gcp-orders, POST /orders), the Azure custom handler in proxy
# mode (azure-orders, POST /api/orders) and a bare hyper server doing the handler's own work
# (orders-bare-server); plus each server's memory (RSS) after the run.
#
# Each server is pinned to one CPU (taskset -c $SERVER_CPU, default 1), wrk to another
# ($WRK_CPU, default 0), one wrk thread, $CONNS connections (default 16) for $DURATION (default
# 10s) after a 2 s warm-up. The policy is examples/orders/guard.toml with the rate limit raised to
# 10^9/s (one caller address would otherwise be limited to 5/s): every request is allowed and both
# limiters still check it. Audit lines go to /dev/null (written, as on a platform, by the sink).
# BENCH_BUILD=0 uses the binaries already built (a missing one is skipped with a note).
# Needs wrk and taskset (scripts/tools/bench-tools.sh installs wrk). CARGO_TARGET_DIR is honoured.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-16}"
SERVER_CPU="${SERVER_CPU:-1}"
WRK_CPU="${WRK_CPU:-0}"
command -v wrk >/dev/null || "$repo/scripts/tools/bench-tools.sh"
command -v taskset >/dev/null || { echo "taskset not found (util-linux)" >&2; exit 1; }

if [[ "${BENCH_BUILD:-1}" == 1 ]]; then
	echo "== building gcp-orders, azure-orders, orders-bare-server (release)" >&2
	cargo build --manifest-path "$repo/Cargo.toml" --release -q -p gcp-orders -p azure-orders \
		-p guard-peer-bench --bin orders-bare-server >&2
fi

work="$(mktemp -d)"
pid=""
cleanup() {
	[[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
# The orders policy with the rate raised; the GCP one with its push identity appended.
sed -e 's/^per_second = 5$/per_second = 1000000000/' -e 's/^burst = 10$/burst = 100/' \
	"$repo/examples/orders/guard.toml" >"$work/guard.toml"
grep -q '^per_second = 1000000000$' "$work/guard.toml" || { echo "could not raise the rate" >&2; exit 1; }
cp "$repo/examples/orders/order.schema.json" "$work/"
cat "$work/guard.toml" "$repo/examples/gcp-orders/gcp.toml" >"$work/gcp.toml"
export ORDER_FILE="$repo/examples/orders/order.json" GUARD_SECRETS_PROVIDER=env \
	GUARD_SECRET_ORDERS_API_KEY=bench-key GUARD_SECRET_ORDERS_WEBHOOK_HMAC=bench-hmac

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

results="$work/results"
: >"$results"
bench() { # name, path, policy ("" = none), binary
	local name="$1" path="$2" policy="$3" bin="$4" p
	if [[ ! -x "$bin" ]]; then
		echo "== $name: $bin is not built, skipped" >&2
		return
	fi
	p="$(port)"
	PORT="$p" FUNCTIONS_CUSTOMHANDLER_PORT="$p" GUARD_POLICY="$policy" \
		taskset -c "$SERVER_CPU" "$bin" >/dev/null 2>"$work/$name.err" &
	pid=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://127.0.0.1:$p/" && break
		sleep 0.05
	done
	local status
	status="$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
		-H 'x-forwarded-for: 203.0.113.10' --data @"$ORDER_FILE" "http://127.0.0.1:$p$path")"
	[[ "$status" == 201 ]] || { echo "$name answered $status, not 201: $(cat "$work/$name.err")" >&2; exit 1; }
	taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d2s -s "$here/post.lua" "http://127.0.0.1:$p$path" >/dev/null
	local load out
	load="$(cut -d' ' -f1-3 /proc/loadavg)"
	out="$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$here/post.lua" "http://127.0.0.1:$p$path")"
	local rss hwm
	rss="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
	hwm="$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
	local line
	line="$(grep '^GUARD_WRK ' <<<"$out" | cut -d' ' -f2-)"
	[[ -n "$line" ]] || { echo "$name: no wrk summary" >&2; echo "$out" >&2; exit 1; }
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(name=sys.argv[2], rss_kb=int(sys.argv[3]), hwm_kb=int(sys.argv[4]), load=sys.argv[5]); print(json.dumps(d))' \
		"$line" "$name" "$rss" "$hwm" "$load" >>"$results"
	echo "== $name: done" >&2
}

bench "bare hyper (orders-bare-server)" /orders "" "$target/release/orders-bare-server"
bench "gcp-orders (Cloud Run)" /orders "$work/gcp.toml" "$target/release/gcp-orders"
bench "azure-orders (proxy mode)" /api/orders "$work/guard.toml" "$target/release/azure-orders"

python3 - "$results" "$DURATION" "$CONNS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bare = rows[0]
print(f"\nHTTP servers, orders allow path, server on one core, wrk -t1 -c{sys.argv[3]} -d{sys.argv[2]}")
head = ["server", "req/s", "÷ bare", "p50", "p90", "p99", "p99.9", "RSS", "peak RSS", "errors", "load (1/5/15 min)"]
table = [head]
for r in rows:
    table.append([r["name"], f"{r['rps']:.0f}", f"{r['rps'] / bare['rps']:.0%}", f"{r['p50_us']} µs",
                  f"{r['p90_us']} µs", f"{r['p99_us']} µs", f"{r['p999_us']} µs",
                  f"{r['rss_kb'] / 1024:.1f} MiB", f"{r['hwm_kb'] / 1024:.1f} MiB", str(r["errors"]), r["load"]])
w = [max(len(row[i]) for row in table) for i in range(len(head))]
for i, row in enumerate(table):
    print("  ".join(c.ljust(x) if j == 0 else c.rjust(x) for j, (c, x) in enumerate(zip(row, w))))
    if i == 0:
        print("  ".join("-" * x for x in w))
for r in rows[1:]:
    print(f"{r['name']}: {r['rps'] / bare['rps']:.0%} of the bare server (target ≥ 85 %: "
          f"{'met' if r['rps'] >= 0.85 * bare['rps'] else 'missed'})")
PY
