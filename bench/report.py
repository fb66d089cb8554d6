#!/usr/bin/env python3
"""One table from a bench/run.sh output directory: wxshop vs the Gin peer vs nginx, the flash-sale runs, memory,
and where each target of the benchmark stands.   python3 bench/report.py /tmp/wxshop-bench/<timestamp>"""
import json, os, re, statistics, sys

out = sys.argv[1]
rows = []
# One bench.py output directory per server, round and scenario (gin-1-order_id, wxshop-1-healthz, …; gin-1 and
# wxshop-1 in the runs of 1708735, gin and wxshop before).
for run in sorted(os.listdir(out)):
    path = os.path.join(out, run, "results.json")
    if re.fullmatch(r"(gin|wxshop)(-\d+(-\w+)?)?", run) and os.path.exists(path):
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

flash = {}
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
    flash[int(m.group(1))] = (rps, lat.get("50", "-"), lat.get("99", "-"), counts)
peer_flash = {}
for name in sorted(os.listdir(out)):
    m = re.match(r"peer-flash-c(\d+)\.txt$", name)
    found = m and re.search(r"^RESULT (.*)$", open(os.path.join(out, name)).read(), re.M)
    if found:
        r = {k: float(v) for k, v in (kv.split("=") for kv in found.group(1).split())}
        sold_path = os.path.join(out, f"peer-flash-c{m.group(1)}.sold")
        sold = open(sold_path).read().strip() if os.path.exists(sold_path) else "-"
        peer_flash[int(m.group(1))] = (r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000, sold)
if flash or peer_flash:
    print("\n| flash-sale purchase attempts | conns | wxshop attempts/s | p50 | p99 | answered | reached Redis | peer attempts/s | peer p50 ms | peer p99 ms | peer units sold | wxshop/peer |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for conns in sorted(set(flash) | set(peer_flash)):
        rps, p50, p99, counts = flash.get(conns, (0, "-", "-", {}))
        total = sum(counts.values())
        redis = total - counts.get("sold_out_fast", 0)
        answered = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        share = f"{redis:,} of {total:,} ({100 * redis / total:.2f}%)" if total else "-"
        prps, pp50, pp99, sold = peer_flash.get(conns, (0, 0, 0, "-"))
        ratio_s = f"{rps / prps:.2f}" if prps else "-"
        print(f"| 100 units, then sold out | {conns} | {rps:,.0f} | {p50} | {p99} | {answered} | {share} "
              f"| {prps:,.0f} | {pp50:.2f} | {pp99:.2f} | {sold} | {ratio_s} |")

# A scenario run more than once (the growth stage's rounds): each figure is the median of its runs, but errors and
# requests are their sums (an error in one run must not vanish in a median).
runs = {}
if os.path.exists(os.path.join(out, "scenarios.jsonl")):
    for line in open(os.path.join(out, "scenarios.jsonl")):
        row = json.loads(line)
        runs.setdefault(row["name"], []).append(row)
scen = {}
for name, rs in runs.items():
    scen[name] = {k: (sum if k in ("errors", "requests") else statistics.median)(r[k] for r in rs)
                  if isinstance(v, (int, float)) else v for k, v in rs[0].items()}
    scen[name]["runs"] = len(rs)
burst = json.load(open(os.path.join(out, "burst-orders.json"))) if os.path.exists(os.path.join(out, "burst-orders.json")) else None
if "burst_reads_only" in scen:
    print("\n| promotion burst (wxshop, c64, first page + one order per user) | RPS | p50 ms | p99 ms | errors | server µs/req |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, label in (("burst_reads_only", "reads alone"), ("burst_reads_during", "reads during the order burst")):
        r = scen.get(name)
        if r:
            print(f"| {label} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['srv_us_per_req']} |")
    if burst:
        print(f"\norder creation during the burst: {burst['sent']:,} sent over {burst['seconds']} s ({burst['rate']}/s), "
              f"answers {burst['statuses']}, p50 {burst['p50_ms']} ms, p99 {burst['p99_ms']} ms, "
              f"{burst['late_by_50ms']} sent more than 50 ms late")
    alone_path = os.path.join(out, "orders-alone.json")
    if os.path.exists(alone_path):
        alone = json.load(open(alone_path))
        print(f"order creation alone: {alone['rate']}/s, answers {alone['statuses']}, p50 {alone['p50_ms']} ms, "
              f"p99 {alone['p99_ms']} ms; server CPU per created order (ms): {alone.get('cpu_ms_per_order')}")
trade = [scen[n] for n in sorted(scen) if n.startswith("trade_order_id_c")]
if trade:
    print("\n| order by id, level-1 cache holding all 100k orders (the measured trade) | conns | RPS | p99 ms | server µs/req | /peer RPS | /peer p99 | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in trade:
        g = results.get(("order_id", r["conns"]), (None, None, None))[1]
        print(f"| {r['name']} | {r['conns']} | {r['rps']:,.0f} | {r['p99_ms']:.2f} | {r['srv_us_per_req']} "
              f"| {ratio({'rps': r['rps']}, g, 'rps')} | {ratio({'p99': r['p99_ms']}, g, 'p99')} | {rss.get('trade_peak_rss_kib', 0):.1f} MiB |")
growth = [r for n, r in scen.items() if n.startswith("growth_")]
seeds = {}
if os.path.exists(os.path.join(out, "seed-times.txt")):
    for line in open(os.path.join(out, "seed-times.txt")):
        k, v = line.split()
        seeds[k] = int(v)
if growth:
    print("\n| growth (c64; the median of each size's runs) | backend | orders | runs | RPS | p50 ms | p99 ms (each run) "
          "| errors | server µs/req |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(growth, key=lambda r: (r["name"].split("_")[1], "_db_" in r["name"], int(r["name"].rsplit("_", 1)[1]))):
        _, backend, *what, size = r["name"].split("_")
        label = "first page (as served)" if what == ["list"] else "limit=10 (the query)"
        each = " / ".join(f"{x['p99_ms']:.2f}" for x in runs[r["name"]])
        print(f"| {label} | {backend} | {int(size):,} | {r['runs']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
              f"| {r['p99_ms']:.2f} ({each}) | {r['errors']:.0f} | {r['srv_us_per_req']:.1f} |")
    if seeds:
        print("\nseeded in this run: " + ", ".join(f"{k} in {v} s" for k, v in seeds.items()))

if rss:
    print("\n| memory (RSS) | wxshop | peer |")
    print("| --- | --- | --- |")
    print(f"| idle, after start | {rss.get('wxshop_idle_rss_kib', 0):.1f} MiB | {rss.get('gin_idle_rss_kib', 0):.1f} MiB |")
    print(f"| peak over the run (VmHWM) | {rss.get('wxshop_peak_rss_kib', 0):.1f} MiB | {rss.get('gin_peak_rss_kib', 0):.1f} MiB |")
    if "wxshop_idle_rssanon_kib" in rss:
        print(f"\nwxshop idle: {rss['wxshop_idle_rssanon_kib']:.1f} MiB anonymous (heap, stacks), "
              f"{rss.get('wxshop_idle_rssfile_kib', 0):.1f} MiB file pages (code, read-only data)")
    order = os.path.join(out, "startup-order.txt")
    if os.path.exists(order):
        found, listed = open(order).read().split()
        # The file lists the release and the profiling build's names (their hashes differ): about half match one.
        print(f"start-up code ordered first in .text: {found} of the {listed} names in link/startup-order.txt "
              "match this build (the file holds two builds' names, so about half; far fewer: run "
              "scripts/startup-order.sh)")

def profile(svg):
    import html
    frames = {}
    for title in re.findall(r"<title>(.*?)</title>", open(svg).read(), re.S):
        m = re.match(r"(.*) \(([\d,]+) samples?, ([\d.]+)%\)$", html.unescape(title).strip())
        if m:
            name = re.sub(r"::h[0-9a-f]{16}$", "", m.group(1))
            frames[name] = max(frames.get(name, 0.0), float(m.group(3)))
            if name == "all":
                frames["_samples"] = int(m.group(2).replace(",", ""))
    return frames


def share(frames, patterns):
    """The largest inclusive share among frames whose name contains any of `patterns` (`|`-separated); None when
    no frame does: the function was inlined into its caller and has no frame of its own."""
    found = [v for k, v in frames.items() for pattern in patterns.split("|") if pattern in k]
    return max(found) if found else None


common_parts = [
    ("HTTP/1 connection task (hyper, with everything below)", "poll_loop<hyper"),
    ("the middleware stack (request id → … → timeout)", "PropagateRequestIdResponseFuture"),
    ("metrics middleware (and everything inside it)", "track_metrics|middleware::observe::"),
    ("request span (TraceLayer)", "tower_http::trace"),
    ("token check (`TokenKeys::verify`: cache hit, or base64, claims JSON, HMAC)", "auth::tokens::TokenKeys::verify"),
    ("…of which the full verification (cache misses)", "verify_signature"),
    ("deny-list check (`Revocations::any_revoked`)", "any_revoked"),
    ("two-level cache lookup (`Layered::get_or_load`: quick_cache L1, Redis L2)", "wxshop::cache::layered"),
    ("quick_cache (level 1 and verified tokens)", "quick_cache::"),
    ("moka (the deny-list, the embedded response cache)", "moka::"),
    ("Redis client I/O (multiplexed connection)", "redis::aio"),
]
# Order creation (the burst's other half) has its own parts: its reads and token check are a small share of it.
create_parts = [
    common_parts[0],
    ("the handler `create_order` (with everything below)", "wxshop::orders::routes::create_order"),
    ("…the transaction's commit (sqlx, MySQL)", "sqlx_core::transaction::{impl#0}::commit"),
    ("…its cache invalidations (`Layered::invalidate_together`, the larger of its two passes)",
     "wxshop::cache::layered::{impl#2}::invalidate_together"),
    ("the outbox relay (`events::relay::run`)", "wxshop::events::relay::run"),
    common_parts[-1],
    ("JSON (serde_json)", "serde_json::"),
]
for svg_name, title, parts in (
    ("profile-order-id.svg", "GET /api/v1/orders/{id} at c64", [("the handler `get_order`", "wxshop::orders::routes::get_order")]),
    ("profile-order-list.svg", "GET /api/v1/orders?limit=20 at c64", [
        ("the handler `list_orders`", "wxshop::orders::routes::list_orders"),
        ("flag evaluation (`orders.list_v2`)", "wxshop::flags::"),
        ("SQL (sqlx, cache misses)", "sqlx_core::"),
    ]),
    ("profile-order-create.svg", "POST /api/v1/orders alone at the burst's rate", None),
):
    svg = os.path.join(out, svg_name)
    if not os.path.exists(svg):
        continue
    frames = profile(svg)
    samples = frames.pop("_samples", None)
    print(f"\n| profile of {title}, 10 s at 99 Hz ({samples} samples) | inclusive % of samples |")
    print("| --- | --- |")
    for label, pattern in (create_parts if parts is None else common_parts[:3] + parts + common_parts[3:]):
        value = share(frames, pattern)
        print(f"| {label} | {'inlined (no frame of its own)' if value is None else f'{value:.1f}'} |")

print("\n| target | measured | met |")
print("| --- | --- | --- |")
def target(label, value, ok):
    print(f"| {label} | {value} | {'yes' if ok else 'NO'} |")
for conns in conns_all:
    w, g, h = results.get(("order_list", conns), (None, None, None))
    if w and g:
        target(f"order list c{conns}: RPS ≥ 3× peer", f"{w['rps'] / g['rps']:.2f}×", w["rps"] >= 3 * g["rps"])
        target(f"order list c{conns}: p99 ≤ ⅓ of peer's", f"{w['p99'] / g['p99']:.2f}×", w["p99"] <= g["p99"] / 3)
    w, g, h = results.get(("order_id", conns), (None, None, None))
    if w and g:
        target(f"order by id c{conns}: RPS ≥ 2.5× peer", f"{w['rps'] / g['rps']:.2f}×", w["rps"] >= 2.5 * g["rps"])
        target(f"order by id c{conns}: p99 ≤ ½ of peer's", f"{w['p99'] / g['p99']:.2f}×", w["p99"] <= g["p99"] / 2)
    w, g, h = results.get(("healthz", conns), (None, None, None))
    if w and h:
        target(f"healthz c{conns}: RPS ≥ 85% of nginx", f"{100 * w['rps'] / h['rps']:.0f}%", w["rps"] >= 0.85 * h["rps"])
if rss:
    idle, peak = rss.get("wxshop_idle_rss_kib", 0), rss.get("wxshop_peak_rss_kib", 0)
    target("idle RSS ≤ 20 MiB", f"{idle:.1f} MiB", idle <= 20)
    target("RSS at c400 ≤ 64 MiB", f"{peak:.1f} MiB (peak)", peak <= 64)
for backend, sizes in (("mariadb", 3), ("sqlite", 2)):
    rows_g = [r for r in growth if r["name"].startswith(f"growth_{backend}_list_") and "_db_" not in r["name"]]
    if rows_g:
        p99s, cpus = [r["p99_ms"] for r in rows_g], [r["srv_us_per_req"] for r in rows_g]
        spread = lambda v: max(v) / min(v) - 1 if min(v) > 0 else float("inf")
        target(f"growth {backend} ({len(rows_g)} sizes): order list p99 within 15%",
               " / ".join(f"{v:.2f} ms" for v in p99s) + f" (+{100 * spread(p99s):.0f}%)",
               len(rows_g) >= sizes and spread(p99s) <= 0.15)
        target(f"growth {backend}: server CPU per request within 15%",
               " / ".join(f"{v} µs" for v in cpus) + f" (+{100 * spread(cpus):.0f}%)",
               len(rows_g) >= sizes and spread(cpus) <= 0.15)
ro, during = scen.get("burst_reads_only"), scen.get("burst_reads_during")
if ro and during:
    rate_ok = burst is not None and burst["rate"] >= 475 and set(burst["statuses"]) == {"201"}
    target("promotion burst: reads p99 ≤ 2× read-only p99, orders at 500/s all 201",
           f"{during['p99_ms']:.2f} / {ro['p99_ms']:.2f} ms = {during['p99_ms'] / ro['p99_ms']:.2f}×"
           + (f", {burst['rate']}/s {burst['statuses']}" if burst else ""),
           during["p99_ms"] <= 2 * ro["p99_ms"] and rate_ok)
for conns in sorted(set(flash) & set(peer_flash)):
    rps, _, _, counts = flash[conns]
    prps, _, _, sold = peer_flash[conns]
    won = counts.get("won", 0)
    target(f"flash-sale attempts c{conns}: ≥ 2× peer, 100 units sold once on both",
           f"{rps / prps:.2f}× (wxshop won {won}, peer sold {sold})", rps >= 2 * prps and won == 100 and sold == "100")
