"""A test worker for the autoscaler: heartbeats every 200 ms with the in-flight
count read from $WORKER_DEMAND_FILE (default 0), and exits 0 on SIGTERM."""
import json
import os
import signal
import sys
import time
import urllib.request

url = os.environ["BALLAST_URL"]
wid = os.environ["BALLAST_WORKER_ID"]
demand_file = os.environ.get("WORKER_DEMAND_FILE")
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    inflight = 0.0
    if demand_file:
        try:
            with open(demand_file) as f:
                inflight = float(f.read().strip() or 0)
        except (OSError, ValueError):
            pass
    body = json.dumps({"inflight": inflight, "ready": True}).encode()
    req = urllib.request.Request("%s/v1/workers/%s/heartbeat" % (url, wid), data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=2).read()
    except OSError:
        pass
    time.sleep(0.2)
