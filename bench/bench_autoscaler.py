#!/usr/bin/env python3
"""Control-loop overhead of the autoscaler (issue 5): the daemon's own time per
decision (gather the workers' figures, plan, act) with N workers reporting by
heartbeat, read from GET /v1/autoscale ("loop"). Recommend-only, so nothing is
spawned; every worker reports cpu, memory, inflight and queue, so every metric
is planned. Usage: bench/bench_autoscaler.py [BUILD_DIR] (default build)."""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

build = sys.argv[1] if len(sys.argv) > 1 else "build"
top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.join(top, build, "ballast")


def run(n_workers, decisions=8):
    tmp = tempfile.mkdtemp(prefix="ballast-bench-as-")
    cfg = os.path.join(tmp, "ballast.yaml")
    with open(cfg, "w") as f:
        f.write("""state_dir: %s/state
memory: {capacity: 64GiB}
budgets: {api: {limits: {requests: {limit: 100000, per: 1m}}}}
autoscaler:
  min_replicas: 1
  max_replicas: 10000
  interval: 1s
  targets: {inflight_per_replica: 4, queue_per_replica: 10}
  budget: api
""" % tmp)
    p = subprocess.Popen([binary, "serve", "-c", cfg, "--listen", "127.0.0.1:0"],
                         stderr=subprocess.PIPE, text=True)
    addr = None
    for line in p.stderr:
        m = re.search(r'msg="listening" addr=(\S+)', line)
        if m:
            addr = m.group(1)
            break
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(method, path, body=None):
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return json.loads(r.read())

    def beat_all():
        for i in range(n_workers):
            call("POST", "/v1/workers/w%d/heartbeat" % i,
                 {"cpu_cores": 0.5 + (i % 7) / 10, "cpu_request_cores": 1,
                  "memory_bytes": 1 << 30, "memory_request_bytes": 2 << 30,
                  "inflight": i % 5, "queue": i % 3, "ready": True})

    beat_all()
    start = call("GET", "/v1/autoscale")["loop"]["decisions"]
    while call("GET", "/v1/autoscale")["loop"]["decisions"] < start + decisions:
        beat_all()  # keep every worker fresh
        time.sleep(0.2)
    loop = call("GET", "/v1/autoscale")["loop"]
    p.terminate()
    p.wait(10)
    return loop


print("autoscaler control loop: the daemon's time per decision, N workers by heartbeat")
print("%-8s %10s %10s %10s %10s" % ("workers", "decisions", "mean_us", "max_us", "last_us"))
for n in (100, 1000, 4000):
    loop = run(n)
    print("%-8d %10d %10.1f %10.1f %10.1f" % (n, loop["decisions"], loop["mean_us"],
                                               loop["max_us"], loop["last_us"]))
