#!/usr/bin/env python3
"""One wrk run of a wxshop scenario with the server side's CPU accounted (bench/run.sh's growth and
promotion-burst stages). Appends one JSON line to $OUT/scenarios.jsonl and prints it.

    python3 bench/scenario.py <name> <url> <lua script> <conns> <seconds> <server pids, comma-separated> -- <lua args>

wrk runs with -t1 on CLIENT_CPU (default 1); `srv_us_per_req` is the CPU time (user + system) the listed server
processes (wxshop, and its MariaDB and Redis when it uses them) spent during the run, per request answered."""
import json, os, re, subprocess, sys, time

HZ = os.sysconf("SC_CLK_TCK")


def ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
        except FileNotFoundError:
            pass
    return total


def main():
    sep = sys.argv.index("--")
    name, url, script, conns, seconds, pids = sys.argv[1:sep]
    lua_args = sys.argv[sep + 1:]
    pids = [p for p in pids.split(",") if p]
    cmd = ["taskset", "-c", os.environ.get("CLIENT_CPU", "1"), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
           "--latency", "--timeout", "5s", "-s", script, url, "--", *lua_args]
    before, start = ticks(pids), time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu_s, wall = (ticks(pids) - before) / HZ, time.time() - start
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        sys.exit(f"no RESULT line from wrk:\n{out}")
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    if "sockerr" not in r:  # ../shared/bench/wrk/common.lua's RESULT line
        r["sockerr"] = sum(r.get(k, 0) for k in ("connect_err", "read_err", "write_err", "timeout"))
    row = {
        "name": name, "conns": int(conns), "seconds": int(seconds), "rps": r["rps"],
        "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
        "errors": int(r["non2xx"] + r["sockerr"]), "requests": int(r["requests"]),
        "srv_cpu_pct": round(100 * cpu_s / wall, 1),
        "srv_us_per_req": round(1e6 * cpu_s / r["requests"], 1) if r["requests"] else 0,
    }
    line = json.dumps(row)
    with open(os.path.join(os.environ["OUT"], "scenarios.jsonl"), "a") as f:
        f.write(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    main()
