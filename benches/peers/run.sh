#!/usr/bin/env bash
# Peer benchmark: the orders perimeter in Middy (Node), Powertools (Python) and Guard (Rust), side by side.
#
# Installs the peers into local, git-ignored folders (benches/peers/node/node_modules and
# benches/peers/python/.venv), runs every harness one after the other, and prints the table of
# per-invocation time from the payload bytes to the response bytes (total, bare runtime + adapter,
# overhead = total - bare; median and p99) with each peer's ratio to the Rust row, the adapter table
# (lambda_http as the reference) and, unless BENCH_COLD=0, the cold-start table (cold.sh). The
# output contract of each harness is in benches/peers/README.md.
#
# Environment: BENCH_WARMUP, BENCH_ITERS (all harnesses), BENCH_SHIPPED_WARMUP, BENCH_SHIPPED_ITERS
# (Powertools as shipped), MIDDY_TIMEOUT_EARLY=1 (Middy with its default per-call timer),
# POWERTOOLS_LOG_SINK=stream (Powertools formats its JSON log line instead of a NullHandler),
# BENCH_DEPLOY=0 (skip the deploy-profile Rust row, whose fat-LTO build takes minutes),
# BENCH_COLD=0 (skip the cold-start table), COLD_RUNS (cold-start runs per stack),
# BENCH_BUILD=0 (use the binaries already built in the target directory),
# PEERS_REINSTALL=1 (reinstall the peers even when the lock files did not change), CARGO_TARGET_DIR.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
started=$SECONDS

die() {
	echo "run.sh: $*" >&2
	exit 1
}
say() { echo "== $*" >&2; }

# ---- prerequisites -------------------------------------------------------------------------------------
command -v node >/dev/null || die "node not found: install Node.js >= 20 with npm"
command -v npm >/dev/null || die "npm not found: install npm (it comes with Node.js)"
command -v python3 >/dev/null || die "python3 not found: install Python >= 3.9 with its venv module"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	die "Middy 6 needs Node.js >= 20, found $(node --version)"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' ||
	die "Powertools 3 needs Python >= 3.9, found $(python3 --version)"

# ---- install the peers (skipped when the lock files are unchanged since the last install) --------------
node_dir="$here/node"
node_stamp="$node_dir/node_modules/.guard-installed-lock"
if [[ "${PEERS_REINSTALL:-0}" == 1 ]] || ! cmp -s "$node_dir/package-lock.json" "$node_stamp"; then
	say "installing Middy: npm ci in benches/peers/node"
	(cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
	cp "$node_dir/package-lock.json" "$node_stamp"
fi

py_dir="$here/python"
venv="$py_dir/.venv"
py_stamp="$venv/.guard-installed-requirements"
if [[ "${PEERS_REINSTALL:-0}" == 1 ]] || ! cmp -s "$py_dir/requirements.txt" "$py_stamp"; then
	say "installing Powertools: virtualenv at benches/peers/python/.venv"
	rm -rf "$venv"
	python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$py_dir/requirements.txt" >&2
	cp "$py_dir/requirements.txt" "$py_stamp"
fi

# ---- the Rust row: only when the workspace has the guard-peer-bench package ----------------------------
rust_note=""
have_rust=0
if ! command -v cargo >/dev/null; then
	rust_note="cargo not found: no Rust row, no ratios"
elif (cd "$repo" && cargo metadata --no-deps --format-version 1 2>/dev/null) |
	python3 -c 'import json, sys; sys.exit(0 if any(p["name"] == "guard-peer-bench" for p in json.load(sys.stdin)["packages"]) else 1)'; then
	have_rust=1
else
	rust_note="the workspace has no guard-peer-bench package yet: no Rust row, no ratios"
fi
target="${CARGO_TARGET_DIR:-$repo/target}"
if [[ $have_rust == 1 && "${BENCH_BUILD:-1}" == 0 ]]; then
	say "BENCH_BUILD=0: using the binaries already in $target"
elif [[ $have_rust == 1 ]]; then
	say "building guard-peer-bench (release), before any timing starts"
	cargo build --manifest-path "$repo/Cargo.toml" --release -q -p guard-peer-bench >&2
	if [[ "${BENCH_DEPLOY:-1}" == 1 ]]; then
		say "building guard-peer-bench (deploy profile: what cargo lambda build --profile deploy ships)"
		cargo build --manifest-path "$repo/Cargo.toml" --profile deploy -q -p guard-peer-bench >&2
	fi
	if [[ "${BENCH_COLD:-1}" == 1 ]]; then
		# Two builds: `-p aws-orders -p guard-peer-bench --bin lambda-hello` would build no
		# aws-orders at all (`--bin` filters every selected package), and one build of both
		# would compile aws-orders with guard-peer-bench's features (cargo unifies them), not
		# as it ships.
		say "building aws-orders and lambda-hello (deploy profile) for the cold-start table"
		cargo build --manifest-path "$repo/Cargo.toml" --profile deploy -q -p aws-orders >&2
		cargo build --manifest-path "$repo/Cargo.toml" --profile deploy -q -p guard-peer-bench \
			--bin lambda-hello >&2
	fi
fi
if [[ $have_rust == 1 ]]; then # every binary a table needs, before any timing starts
	need=("release/guard-peer-bench")
	[[ "${BENCH_DEPLOY:-1}" == 1 ]] && need+=("deploy/guard-peer-bench")
	[[ "${BENCH_COLD:-1}" == 1 ]] && need+=("deploy/aws-orders" "deploy/lambda-hello")
	for bin in "${need[@]}"; do
		[[ -x "$target/$bin" ]] || die "$target/$bin is missing (BENCH_BUILD=0 needs it built; or unset BENCH_BUILD)"
	done
fi

# ---- run every harness, one at a time, collecting their JSON lines ------------------------------------
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

collect() { # name, command...: keep the lines of stdout that are JSON objects
	local name="$1"
	shift
	say "running $name"
	local out
	out="$("$@")" || die "$name failed (see above): no figures were taken from it"
	grep '^{' <<<"$out" >>"$results" || die "$name printed no JSON result line"
}

if [[ $have_rust == 1 ]]; then
	collect "guard (rust, release)" "$target/release/guard-peer-bench"
	if [[ "${BENCH_DEPLOY:-1}" == 1 ]]; then
		collect "guard (rust, deploy)" env GUARD_BENCH_NAME="guard (deploy)" "$target/deploy/guard-peer-bench"
	fi
fi
collect "middy (node)" node "$node_dir/bench.mjs"
collect "powertools (python)" "$venv/bin/python" "$py_dir/bench.py"

load_after="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

cold="$(mktemp)"
trap 'rm -f "$results" "$cold" "$cold.table"' EXIT
if [[ "${BENCH_COLD:-1}" == 1 ]]; then
	say "cold start: ${COLD_RUNS:-20} starts of each stack against a local Runtime API"
	cold_stacks=()
	if [[ $have_rust == 1 ]]; then
		cold_stacks+=("guard aws-orders (deploy)=$target/deploy/aws-orders"
			"lambda_runtime hello (deploy)=$target/deploy/lambda-hello")
	fi
	cold_stacks+=("middy (node)=node $node_dir/bench.mjs" "powertools (python)=$venv/bin/python $py_dir/bench.py")
	cold_load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
	python3 "$here/cold/cold.py" "${COLD_RUNS:-20}" "${cold_stacks[@]}" >"$cold"
	cold_load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
	python3 - "$cold" "$cold_load_before" "$cold_load_after" >"$cold.table" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {r["name"]: r for r in rows}
guard = by.get("guard aws-orders (deploy)")
floor = by.get("lambda_runtime hello (deploy)")
print()
print("Cold start: process start → first answered invocation (orders event, local Runtime API)")
print(f"load average before {sys.argv[2]}, after {sys.argv[3]}")
head = ["stack", "median", "min", "p90", "runs", "÷ guard (median)"]
table = [head]
for r in rows:
    table.append([r["name"], f"{r['median_ms']:.1f} ms", f"{r['min_ms']:.1f} ms", f"{r['p90_ms']:.1f} ms",
                  str(r["runs"]), f"{r['median_ms'] / guard['median_ms']:.1f}×" if guard else ""])
w = [max(len(row[i]) for row in table) for i in range(len(head))]
for i, row in enumerate(table):
    print("  ".join(c.ljust(x) if j == 0 else c.rjust(x) for j, (c, x) in enumerate(zip(row, w))))
    if i == 0:
        print("  ".join("-" * x for x in w))
if guard and floor:
    above = guard["median_ms"] - floor["median_ms"]
    print(f"guard above the lambda_runtime floor: {above:.1f} ms (target ≤ 2 ms: {'met' if above <= 2 else 'missed'})")
middy = by.get("middy (node)")
if guard and middy:
    r = middy["median_ms"] / guard["median_ms"]
    print(f"middy ÷ guard: {r:.0f}× (target ≥ 20×: {'met' if r >= 20 else 'missed'})")
PY
fi

# ---- the table ---------------------------------------------------------------------------------------
python3 - "$results" "$rust_note" "$load_before" "$load_after" "$((SECONDS - started))" <<'PY'
import json
import os
import platform
import sys

path, rust_note, load_before, load_after, elapsed = sys.argv[1:]
REQUIRED = ("name", "median_us", "p99_us")
# Targets of issue 17 on the total: Guard's total at most this fraction of the peer's.
TARGETS = {"middy": 1 / 3, "powertools (precompiled)": 1 / 20}

rows, adapters = [], []
for line in open(path):
    row = json.loads(line)
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        sys.exit(f"run.sh: result line of {row.get('name', '?')} lacks {', '.join(missing)}")
    if row.get("kind") == "adapter":
        adapters.append(row)
        continue
    row["over_median"] = row["median_us"] - row["bare_median_us"]
    row["over_p99"] = row["p99_us"] - row["bare_p99_us"]
    rows.append(row)

rust = next((r for r in rows if r["name"] == "guard"), None)

def cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"

def fmt(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.2f} µs"

def ratio(peer, base):
    return f"{peer / base:.1f}×" if base > 0 else "n/a"

def show(table):
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))

header = ["stack", "total median", "total p99", "bare median", "bare p99", "overhead median", "overhead p99"]
if rust:
    header += ["total ÷ guard", "p99 ÷ guard", "overhead ÷ guard", "target (guard's total ≤)"]
table = [header]
for r in rows:
    cells = [r["name"], fmt(r["median_us"]), fmt(r["p99_us"]), fmt(r["bare_median_us"]),
             fmt(r["bare_p99_us"]), fmt(r["over_median"]), fmt(r["over_p99"])]
    if rust:
        target = TARGETS.get(r["name"])
        verdict = ""
        if target:
            ok = rust["median_us"] <= target * r["median_us"]
            verdict = f"1/{round(1 / target)} of it: {'met' if ok else 'missed'}"
        cells += [ratio(r["median_us"], rust["median_us"]), ratio(r["p99_us"], rust["p99_us"]),
                  ratio(r["over_median"], rust["over_median"]), verdict]
    table.append(cells)

print()
print("Per invocation, payload bytes to response bytes (orders event, in-process warm loop)")
print("  total = deserialize + adapter/runtime + perimeter + handler + serialize; bare = the same without the perimeter")
print(f"machine: {cpu()}, {os.cpu_count()} cores; load average before {load_before}, after {load_after}")
show(table)
if rust:
    middy = next((r for r in rows if r["name"] == "middy"), None)
    if middy:
        verdict = "met" if rust["p99_us"] <= middy["p99_us"] else "missed"
        print(f"Guard's p99 ≤ Middy's p99: {fmt(rust['p99_us'])} vs {fmt(middy['p99_us'])}: {verdict}")
    deploy = next((r for r in rows if r["name"] == "guard (deploy)"), None)
    if deploy:
        d = deploy["over_median"] / rust["over_median"] - 1 if rust["over_median"] > 0 else float("nan")
        print(f"deploy profile: overhead {fmt(deploy['over_median'])} vs release {fmt(rust['over_median'])} "
              f"({d:+.0%}; target within 10 %: {'met' if abs(d) <= 0.10 else 'missed'})")

if adapters:
    print()
    print("Adapter alone: payload bytes → request → trivial handler → response bytes (the bare column above)")
    table = [["adapter", "median", "p99", "÷ lambda_http (median)"]]
    ref = next((a for a in adapters if a["name"] == "lambda_http"), None)
    pairs = [(r["name"] + " (bare)", r["bare_median_us"], r["bare_p99_us"]) for r in rows]
    pairs += [(a["name"], a["median_us"], a["p99_us"]) for a in adapters]
    for name, med, p99 in pairs:
        table.append([name, fmt(med), fmt(p99), ratio(med, ref["median_us"]) if ref else ""])
    show(table)

print()
for r in rows + adapters:
    parts = [r.get("runtime"), f"{r['samples']} samples" if "samples" in r else None,
             ", ".join(f"{k} {v}" for k, v in sorted(r.get("versions", {}).items())), r.get("note")]
    print(f"{r['name']}: " + "; ".join(p for p in parts if p))
try:
    busy = float(load_before.split()[0]) >= 1.0
except ValueError:
    busy = False
if busy:
    print(f"\nWarning: the machine was busy before the run (1-min load {load_before.split()[0]}): other work"
          " inflates every row, unevenly; rerun on a quiet machine before quoting figures.")
if rust_note:
    print(f"\nNo Rust row: {rust_note}.")
print(f"\nrun.sh took {elapsed} s")
PY
[[ -s "$cold.table" ]] && cat "$cold.table"
exit 0
