#!/usr/bin/env python3
"""Order creation at a steady rate, the promotion burst's writes (bench/run.sh): POST /api/v1/orders from the
users of a `wxshop dev-tokens` file (`user_id token address_id` lines), round-robin, each with a fresh
Idempotency-Key, paced open-loop (request k is due at start + k/rate, whatever the answers before it took).

    python3 bench/burst_orders.py <base url> <tokens file> <rate/s> <seconds> <sku id[,sku id...]> <result json>

With several SKUs the orders take them in turn (one hot SKU is the promotion; several show what its stock row costs).

With SERVER_PIDS=name:pid,name:pid (wxshop, its MariaDB and its Redis), the result also gives the CPU time (user +
system) each of them spent per created order during the run: `cpu_ms_per_order`."""
import http.client, json, os, sys, threading, time, urllib.parse, uuid

from scenario import HZ, ticks  # bench/scenario.py: CPU ticks (user + system) of a set of processes

base, tokens_file, rate, seconds, skus, result_path = sys.argv[1:7]
skus = [int(s) for s in skus.split(",")]
rate, seconds = float(rate), float(seconds)
url = urllib.parse.urlparse(base)
buyers = [line.split() for line in open(tokens_file) if len(line.split()) == 3]
WORKERS = 64  # enough in flight to keep the rate while the reads saturate the server
total = int(rate * seconds)
lock = threading.Lock()
statuses, latencies, late = {}, [], [0]
start = time.monotonic() + 0.2


def worker(w):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    for k in range(w, total, WORKERS):
        due = start + k / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > 0.05:
            with lock:
                late[0] += 1
        user, token, address = buyers[k % len(buyers)]
        body = json.dumps({"items": [{"sku_id": skus[k % len(skus)], "quantity": 1}], "address_id": int(address)})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Idempotency-Key": f"burst-{uuid.uuid4().hex}"}
        t0 = time.monotonic()
        try:
            conn.request("POST", "/api/v1/orders", body, headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except Exception as error:  # a dropped connection: counted, and a new one for the next request
            status = type(error).__name__
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(time.monotonic() - t0)


server_pids = [p.split(":", 1) for p in os.environ.get("SERVER_PIDS", "").split(",") if ":" in p]
cpu_before = {name: ticks([pid]) for name, pid in server_pids}
threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
cpu_after = {name: ticks([pid]) for name, pid in server_pids}
created = statuses.get(201, 0)
latencies.sort()
pct = lambda p: round(1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 2) if latencies else 0
summary = {"sent": total, "seconds": round(elapsed, 2), "rate": round(total / elapsed, 1),
           "statuses": {str(k): v for k, v in statuses.items()}, "p50_ms": pct(50), "p99_ms": pct(99),
           "late_by_50ms": late[0]}
if server_pids and created:
    summary["cpu_ms_per_order"] = {name: round(1000 * (cpu_after[name] - cpu_before[name]) / HZ / created, 3)
                                   for name, _ in server_pids}
json.dump(summary, open(result_path, "w"))
print(json.dumps(summary))
