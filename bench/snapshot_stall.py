#!/usr/bin/env python3
"""How long a state snapshot stalls the daemon's event loop, by live lease count.

Starts `ballast serve` on loopback with one budget large enough never to refuse,
takes N leases (never released, 1 h TTL), then asks for three snapshots
(POST /v1/snapshot) while another connection sends GET /healthz back to back.
A healthz answer waits for whatever the loop is doing, so the slowest one
during a snapshot is that snapshot's stall of the loop: the first snapshot maps
its lease buffer afresh, the later ones reuse it. Prints one line per lease
count.

Usage: bench/snapshot_stall.py [--binary build/ballast] [--leases 1000,10000,100000]
"""
import argparse
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time

PORT = 17171


def run(binary, n):
    d = tempfile.mkdtemp(prefix="ballast-snapstall-")
    cfg = os.path.join(d, "ballast.yaml")
    with open(cfg, "w") as f:
        f.write("""
listen: 127.0.0.1:%d
state_dir: %s/state
snapshot: {interval: 1h}
limits: {daemon_memory: 2GiB}
budgets:
  big:
    limits:
      requests: {limit: 100000000, per: 1m}
      concurrent: 1000000
    burst: 0.1
    lease_ttl: 1h
""" % (PORT, d))
    p = subprocess.Popen([binary, "serve", "--config", cfg], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
                c.request("GET", "/healthz")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.05)
        for _ in range(n):
            c.request("POST", "/v1/acquire", body='{"budget":"big"}',
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit("acquire: %d" % r.status)
        lat, ends, stop = [], [], []

        def ping():
            pc = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            while not stop:
                t = time.perf_counter()
                pc.request("GET", "/healthz")
                pc.getresponse().read()
                lat.append(time.perf_counter() - t)
                ends.append(time.perf_counter())

        th = threading.Thread(target=ping)
        th.start()
        time.sleep(0.3)
        took, windows, size = [], [], 0
        for _ in range(3):
            t = time.perf_counter()
            c.request("POST", "/v1/snapshot", body="{}",
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            size = json.loads(r.read())["bytes"]
            took.append(time.perf_counter() - t)
            windows.append((t, time.perf_counter()))
            time.sleep(0.3)
        stop.append(1)
        th.join()
        # The slowest healthz answered during each snapshot: the first one
        # maps its lease buffer afresh, the later ones reuse it.
        stall = [max([x for x, e in zip(lat, ends) if a <= e <= b + 0.05] or [0])
                 for a, b in windows]
        lat.sort()
        print("| %d | %.1f | %.2f | %.1f | %.1f | %.0f | %.1f |" % (
            n, size / 1e6, lat[int(len(lat) * 0.99)] * 1e3, stall[0] * 1e3,
            max(stall[1:]) * 1e3, sorted(took)[1] * 1e3, len(lat) / (0.3 * 4 + sum(took))))
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/ballast")
    ap.add_argument("--leases", default="1000,10000,100000")
    a = ap.parse_args()
    print("binary %s" % a.binary)
    print("| live leases | snapshot MB | healthz p99 ms | stall, 1st snapshot ms "
          "| stall, 2nd and 3rd ms | snapshot ms (median of 3) | healthz/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in a.leases.split(","):
        run(a.binary, int(n))


if __name__ == "__main__":
    main()
