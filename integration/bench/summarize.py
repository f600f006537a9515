#!/usr/bin/env python3
"""Summarise amqpbench JSON lines (one per run, labelled by broker) into a
Markdown table of medians with min-max, ratios Warren/RabbitMQ, broker CPU
per 100k deliveries and peak RSS."""
import json
import statistics
import sys
from collections import defaultdict

MAIN = {"transient": "consume_rate", "ack": "consume_rate", "fanout": "consume_rate",
        "confirm": "confirm_rate", "backlog": "drain_rate"}

runs = defaultdict(list)
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    runs[(r.get("scenario"), r.get("label"))].append(r)

def med(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    return statistics.median(xs), min(xs), max(xs)

print("| scenario | broker | runs | msg/s median (min–max) | broker CPU s / 100k | broker peak RSS MB | ratio W/R |")
print("| --- | --- | --- | --- | --- | --- | --- |")
scen = sorted({s for s, _ in runs}, key=lambda s: list(MAIN).index(s) if s in MAIN else 99)
for s in scen:
    key = MAIN.get(s, "consume_rate")
    meds = {}
    for b in ("warren", "rabbitmq"):
        rs = [r for r in runs.get((s, b), []) if r.get("ok")]
        failed = len(runs.get((s, b), [])) - len(rs)
        m, lo, hi = med([r.get(key) for r in rs])
        cpu, _, _ = med([r.get("broker", {}).get("cpu_s_per_100k") for r in rs])
        rss, _, _ = med([r.get("broker", {}).get("rss_peak_kb") for r in rs])
        meds[b] = m
        rate = "–" if m is None else f"{m:,.0f} ({lo:,.0f}–{hi:,.0f})"
        ratio = ""
        if b == "rabbitmq" and meds.get("warren") and m:
            ratio = f"{meds['warren'] / m:.2f}×"
        note = f" ({failed} failed)" if failed else ""
        print(f"| {s} | {b} | {len(rs)}{note} | {rate} | {'–' if cpu is None else f'{cpu:.3f}'} | "
              f"{'–' if rss is None else f'{rss / 1024:.0f}'} | {ratio} |")
