#!/usr/bin/env python3
"""One table from a bench/run.sh output directory: wxshop vs the Gin peer vs nginx, the flash-sale runs, memory,
and where each target of the benchmark stands.   python3 bench/report.py /tmp/wxshop-bench/<timestamp>"""
import json, os, re, statistics, sys

out = sys.argv[1]
rows = []
for run in ("gin", "wxshop"):
    path = os.path.join(out, run, "results.json")
    if os.path.exists(path):
        rows += json.load(open(path))["rows"]


def cell(scenario, conns, target):
    rs = [r for r in rows if r["scenario"] == scenario and r["conns"] == conns and r["target"] == target]
    if not rs:
        return None
    return {
        "rps": statistics.median(r["rps"] for r in rs),
        "p50": statistics.median(r["p50_ms"] for r in rs),
        "p99": statistics.median(r["p99_ms"] for r in rs),
        "errors": sum(r["non2xx"] + r["sockerr"] for r in rs),
        "us": statistics.median(r["srv_us_per_req"] for r in rs),
    }


def fmt(c, key, spec):
    return format(c[key], spec) if c else "-"


def ratio(a, b, key):
    return f"{a[key] / b[key]:.2f}" if a and b and b[key] else "-"


rss = {}
if os.path.exists(os.path.join(out, "rss.txt")):
    for line in open(os.path.join(out, "rss.txt")):
        k, v = line.split()
        rss[k] = int(v) / 1024

titles = {"order_id": "GET /api/v1/orders/{id} (warm cache)", "order_list": "GET /api/v1/orders?limit=20",
          "healthz": "GET /healthz"}
print(f"# wxshop vs the Gin peer vs nginx ({out})\n")
print("| scenario | conns | wxshop RPS | p50 ms | p99 ms | errors | peer RPS | p50 ms | p99 ms | nginx RPS "
      "| wxshop/peer RPS | wxshop/peer p99 | wxshop/nginx RPS |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
conns_all = sorted({r["conns"] for r in rows})
results = {}
for scenario in ("order_id", "order_list", "healthz"):
    for conns in conns_all:
        w, g, h = cell(scenario, conns, "wxshop"), cell(scenario, conns, "gin"), cell(scenario, conns, "hello")
        if not (w or g):
            continue
        results[(scenario, conns)] = (w, g, h)
        print(f"| {titles[scenario]} | {conns} | {fmt(w, 'rps', ',.0f')} | {fmt(w, 'p50', '.2f')} | {fmt(w, 'p99', '.2f')} "
              f"| {w['errors'] if w else '-'} | {fmt(g, 'rps', ',.0f')} | {fmt(g, 'p50', '.2f')} | {fmt(g, 'p99', '.2f')} "
              f"| {fmt(h, 'rps', ',.0f')} | {ratio(w, g, 'rps')} | {ratio(w, g, 'p99')} | {ratio(w, h, 'rps')} |")

flash = []
for name in sorted(os.listdir(out)):
    m = re.match(r"flash-c(\d+)\.txt$", name)
    if not m:
        continue
    text = open(os.path.join(out, name)).read()
    found = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not found:
        continue
    rps = float(found.group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", text, re.M))
    counts = {}
    metrics_path = os.path.join(out, f"flash-c{m.group(1)}.metrics")
    if os.path.exists(metrics_path):
        before, _, after = open(metrics_path).read().partition("AFTER")
        def parse(t):
            return {k: float(v) for k, v in re.findall(r'outcome="(\w+)"\} ([\d.e+]+)', t)}
        b, a = parse(before), parse(after)
        counts = {k: int(a[k] - b.get(k, 0)) for k in a}
    flash.append((int(m.group(1)), rps, lat.get("50", "-"), lat.get("99", "-"), counts))
if flash:
    print("\n| flash-sale purchase attempts (wxshop) | conns | attempts/s | p50 | p99 | answered | reached Redis |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for conns, rps, p50, p99, counts in sorted(flash):
        total = sum(counts.values())
        redis = total - counts.get("sold_out_fast", 0)
        answered = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        share = f"{redis:,} of {total:,} ({100 * redis / total:.2f}%)" if total else "-"
        print(f"| 100 units, then sold out | {conns} | {rps:,.0f} | {p50} | {p99} | {answered} | {share} |")

if rss:
    print("\n| memory (RSS) | wxshop | peer |")
    print("| --- | --- | --- |")
    print(f"| idle, after start | {rss.get('wxshop_idle_rss_kib', 0):.1f} MiB | {rss.get('gin_idle_rss_kib', 0):.1f} MiB |")
    print(f"| peak over the run (VmHWM) | {rss.get('wxshop_peak_rss_kib', 0):.1f} MiB | {rss.get('gin_peak_rss_kib', 0):.1f} MiB |")

svg = os.path.join(out, "profile-order-id.svg")
if os.path.exists(svg):
    import html
    frames = {}
    for title in re.findall(r"<title>(.*?)</title>", open(svg).read(), re.S):
        m = re.match(r"(.*) \(([\d,]+) samples?, ([\d.]+)%\)$", html.unescape(title).strip())
        if m:
            name = re.sub(r"::h[0-9a-f]{16}$", "", m.group(1))
            frames[name] = max(frames.get(name, 0.0), float(m.group(3)))
    parts = [
        ("HTTP/1 connection task (hyper, with everything below)", "poll_loop<hyper"),
        ("the middleware stack (request id → … → timeout)", "PropagateRequestIdResponseFuture"),
        ("the handler `get_order` (auth extractor, cache, response)", "wxshop::orders::routes::get_order"),
        ("order cache lookup (`Layered::get_or_load`: moka L1, Redis L2)", "wxshop::cache::layered"),
        ("moka housekeeping (expiry, eviction)", "moka::"),
        ("JWT verification (`TokenKeys::verify`: base64, claims JSON, HMAC)", "=verify"),
        ("deny-list check (`Revocations::any_revoked`)", "any_revoked"),
        ("Redis client I/O (multiplexed connection)", "redis::aio"),
        ("metrics middleware", "track_metrics"),
    ]
    print("\n| profile of GET /api/v1/orders/{id} at c64, 10 s at 99 Hz | inclusive % of samples |")
    print("| --- | --- |")
    for label, pattern in parts:
        exact = pattern.startswith("=")
        pct = max((v for k, v in frames.items() if (k == pattern[1:] if exact else pattern in k)), default=0.0)
        print(f"| {label} | {pct:.1f} |")

print("\n| target | measured | met |")
print("| --- | --- | --- |")
def target(label, value, ok):
    print(f"| {label} | {value} | {'yes' if ok else 'NO'} |")
for conns in conns_all:
    w, g, h = results.get(("order_id", conns), (None, None, None))
    if w and g:
        target(f"order by id c{conns}: RPS ≥ 4× peer", f"{w['rps'] / g['rps']:.2f}×", w["rps"] >= 4 * g["rps"])
        target(f"order by id c{conns}: p99 ≤ ¼ of peer's", f"{w['p99'] / g['p99']:.2f}×", w["p99"] <= g["p99"] / 4)
    if w and h:
        target(f"order by id c{conns}: RPS ≥ 70% of nginx", f"{100 * w['rps'] / h['rps']:.0f}%", w["rps"] >= 0.7 * h["rps"])
    w, g, h = results.get(("order_list", conns), (None, None, None))
    if w and g:
        target(f"order list c{conns}: RPS ≥ 3× peer", f"{w['rps'] / g['rps']:.2f}×", w["rps"] >= 3 * g["rps"])
    w, g, h = results.get(("healthz", conns), (None, None, None))
    if w and h:
        target(f"healthz c{conns}: RPS ≥ 90% of nginx", f"{100 * w['rps'] / h['rps']:.0f}%", w["rps"] >= 0.9 * h["rps"])
if rss:
    idle, peak = rss.get("wxshop_idle_rss_kib", 0), rss.get("wxshop_peak_rss_kib", 0)
    target("idle RSS ≤ 20 MiB", f"{idle:.1f} MiB", idle <= 20)
    target("RSS at c400 ≤ 64 MiB", f"{peak:.1f} MiB (peak)", peak <= 64)
