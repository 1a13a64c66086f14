#!/usr/bin/env python3
"""Prints criterion results as a Markdown table: median (criterion's median of per-iteration
times) with the 95 % interval of that median, and the mean.

usage: criterion_table.py [PREFIX ...]   (reads $CARGO_TARGET_DIR/criterion, default target/criterion)
Only benchmarks whose id starts with one of the prefixes are printed (all when none is given).
"""
import json
import os
import sys

root = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
prefixes = sys.argv[1:]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


rows = []
for dirpath, dirnames, filenames in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in filenames:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        bench = json.load(f)
    ident = bench.get("full_id") or bench.get("title")
    if prefixes and not any(ident.startswith(p) for p in prefixes):
        continue
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    med = est["median"]
    rows.append((ident, med["point_estimate"], med["confidence_interval"]["lower_bound"],
                 med["confidence_interval"]["upper_bound"], est["mean"]["point_estimate"]))

print("| bench | median | 95 % CI of median | mean |")
print("|---|---:|---:|---:|")
for ident, m, lo, hi, mean in sorted(rows):
    print(f"| `{ident}` | {fmt(m)} | {fmt(lo)} – {fmt(hi)} | {fmt(mean)} |")
