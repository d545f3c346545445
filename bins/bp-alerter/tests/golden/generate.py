#!/usr/bin/env python3
"""Generates the version-1 golden replay corpus (v1.jsonl) with a given bp-alerter.

Run once with the bp-alerter *before* rules version 2 (commit b889ad1):
    python3 generate.py /path/to/bp-alerter > v1.jsonl
Each output line is one scenario: {"rules": [...], "interval": "10s", "ticks": [lines],
"expected": [replay output lines]}. bins/bp-alerter/tests/golden_v1.rs replays every scenario through the
current bp-alerter and compares (incident ids aside). Deterministic (seeded).
"""
import json, random, subprocess, sys, tempfile

BIN = sys.argv[1]
rng = random.Random(20261202)
FIELDS = ["cpu.usage", "mem.usage", "mem.free", "uptime", "requests.count",
          "requests.latency_avg", "errors.count", "custom.q", "custom.a.b-c_D9"]
AGGS = ["avg", "sum", "min", "max", "last", "count"]
HOSTS = ["node-a", "node-b", "web-1", "B", "a"]
NAMES = ["High CPU", "a", "B", "  spaced  ", "Queue", "Zed", "é-unicode"]
DURS = ["10s", "20s", "30s", "1m", "1m30s", "90000", "1.5m", "2 minutes", "500ms"]
COOLS = [None, "0s", "10s", "30s", "1m", "10 seconds"]

def rule(name):
    r = {"name": name, "field": rng.choice(FIELDS), "aggregation": rng.choice(AGGS),
         "operand": rng.choice(["equalOrMoreThan", "equalOrLessThan"]),
         "value": rng.choice([rng.randint(-2, 12), rng.randint(0, 100) / 4]),
         "timeframe": rng.choice(DURS)}
    c = rng.choice(COOLS)
    if c is not None or rng.random() < 0.2:
        r["cooldown"] = c
    return r

def scenario():
    names = rng.sample(NAMES, rng.randint(1, 4))
    rules = [rule(n) for n in names]
    interval = rng.choice(["10s", "10s", "5s", "15s"])
    hosts = rng.sample(HOSTS, rng.randint(1, 3))
    fields = list({r["field"] for r in rules} | set(rng.sample(FIELDS, 2)))
    ticks = []
    base = 1767225600000
    for _ in range(rng.randint(0, 70)):
        h = rng.choice(hosts)
        ts = base + rng.randint(0, 60) * 5000 + rng.choice([0, 0, 0, 1, 2500])
        values = {}
        for f in fields:
            x = rng.random()
            if x < 0.6:
                values[f] = rng.choice([rng.randint(-2, 12), round(rng.uniform(0, 100), 2)])
            elif x < 0.7:
                values[f] = None
        tsv = ts
        if rng.random() < 0.1:
            import datetime
            tsv = datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ticks.append(json.dumps({"host": h, "ts": tsv, "values": values}))
        if rng.random() < 0.08:  # a duplicate (host, ts) with other values
            ticks.append(json.dumps({"host": h, "ts": ts, "values": {f: 1 for f in fields}}))
    if rng.random() < 0.05:
        ticks.insert(rng.randint(0, len(ticks)), "")
    return rules, interval, ticks

def main():
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    with tempfile.NamedTemporaryFile("w", suffix=".json") as rf:
        for _ in range(n):
            rules, interval, ticks = scenario()
            rf.seek(0); rf.truncate(); json.dump(rules, rf); rf.flush()
            p = subprocess.run([BIN, "replay", "--rules", rf.name, "--watcher-interval", interval],
                               input="\n".join(ticks) + "\n", capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"replay failed: {p.stderr}")
            expected = [l for l in p.stdout.splitlines() if l]
            print(json.dumps({"rules": rules, "interval": interval, "ticks": ticks,
                              "expected": expected}, ensure_ascii=False))

main()
