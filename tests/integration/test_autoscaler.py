"""The autoscaler's control loop against the real daemon: the local actuator with
real worker processes scaling out and in on their in-flight work, the exec
actuator, recommend-only with heartbeats, the budget cap, and the API."""
import json
import os
import re
import tempfile
import time
import unittest

from harness import SOURCE_DIR, Daemon

WORKER = os.path.join(SOURCE_DIR, "tests", "integration", "data", "worker.py")


def autoscale(d):
    return d.get_json("/v1/autoscale")


def wait_for(test, fn, timeout=20, what=""):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    test.fail("timed out waiting for %s (last: %r)" % (what, last))


def counting_hook():
    """An exec actuator hook that appends each count it is run with to a
    file. Returns (that file, the hook)."""
    tmp = tempfile.mkdtemp(prefix="ballast-exec-")
    out = os.path.join(tmp, "counts")
    hook = os.path.join(tmp, "hook.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\necho \"$1\" >> %s\n" % out)
    os.chmod(hook, 0o755)
    return out, hook


def live_workers(doc):
    return [w for w in doc["workers"] if w.get("state") in ("starting", "running")]


class Local(unittest.TestCase):
    def test_scales_out_on_demand_and_back_in(self):
        tmp = tempfile.mkdtemp(prefix="ballast-as-")
        demand = os.path.join(tmp, "demand")
        with open(demand, "w") as f:
            f.write("4")
        cfg = """
state_dir: {state_dir}
autoscaler:
  min_replicas: 2
  max_replicas: 6
  interval: 1s
  targets: {inflight_per_replica: 2}
  stable_window: 4s
  panic: {window: 2s}
  stabilization: {down: 2s}
  actuator:
    kind: local
    command: ["python3", "%s"]
    env: {WORKER_DEMAND_FILE: "%s"}
    cwd: "%s"
    grace: 2s
""" % (WORKER, demand, tmp)
        d = Daemon(cfg).start()
        try:
            # Each worker reports 4 in flight at 2 per replica: the pool doubles
            # until max_replicas.
            doc = wait_for(self, lambda: (lambda a: a if a["current_replicas"] == 6 else None)(
                autoscale(d)), what="6 replicas")
            self.assertEqual(doc["desired_replicas"], 6)
            self.assertEqual(len(live_workers(doc)), 6)
            pids = {w["pid"] for w in live_workers(doc)}
            self.assertEqual(len(pids), 6)
            for pid in pids:
                os.kill(pid, 0)  # real processes
                self.assertEqual(os.readlink("/proc/%d/cwd" % pid), tmp)  # actuator.cwd
            ups = [x for x in doc["decisions"] if x["scaled"] and x["desired"] > x["current"]]
            self.assertTrue(ups)
            self.assertRegex(ups[-1]["reason"], r"inflight .* per replica")
            d.wait_log(r'msg="autoscaler scales" from=2 to=')
            _, _, b = d.request("GET", "/metrics")
            self.assertRegex(b.decode(), r"ballast_autoscaler_desired_replicas 6")
            # Demand gone: back to min_replicas once the down stabilization passes,
            # and the stopped workers are gone.
            with open(demand, "w") as f:
                f.write("0")
            doc = wait_for(self, lambda: (lambda a: a if a["current_replicas"] == 2 else None)(
                autoscale(d)), what="2 replicas")
            time.sleep(0.5)
            for pid in pids - {w["pid"] for w in live_workers(autoscale(d))}:
                self.assertFalse(os.path.exists("/proc/%d/stat" % pid) and
                                 open("/proc/%d/stat" % pid).read().split()[2] != "Z",
                                 "worker %d still running" % pid)
            self.assertGreaterEqual(autoscale(d)["scale_downs"], 1)
        finally:
            self.assertEqual(d.stop(), 0)
        # The daemon's stop took its workers with it.
        for pid in pids:
            try:
                st = open("/proc/%d/stat" % pid).read().split()[2]
            except OSError:
                continue
            self.assertEqual(st, "Z")


class RecommendOnly(unittest.TestCase):
    CFG = """
state_dir: {state_dir}
budgets:
  api: {limits: {concurrent: 2}, max_queue: 100}
autoscaler:
  min_replicas: 1
  max_replicas: 20
  interval: 1s
  targets: {queue_per_replica: 1}
  budget: api
"""

    def setUp(self):
        self.d = Daemon(self.CFG).start()

    def tearDown(self):
        self.d.stop()

    def beat(self, wid, **body):
        s, _, b = self.d.request("POST", "/v1/workers/%s/heartbeat" % wid, body=body)
        return s, json.loads(b)

    def test_heartbeats_drive_the_recommendation(self):
        d = self.d
        for i in range(3):
            s, doc = self.beat("w%d" % i, queue=4, inflight=1, cpu_cores=0.5,
                               cpu_request_cores=1, ready=True)
            self.assertEqual(s, 200, doc)
        # 12 queued at 1 per replica over 3 workers asks for 12; Kubernetes'
        # default scale-up policy (max of +100 % and +4 pods per 15 s) allows 7.
        doc = wait_for(self, lambda: (lambda a: a if a["desired_replicas"] == 7 else None)(
            autoscale(d)), what="desired 7")
        self.assertEqual(doc["actuator"], "none")
        self.assertEqual(doc["current_replicas"], 3)
        self.assertRegex(doc["decisions"][0]["reason"],
                         r"queue 4 > 1 per replica over 3 replicas → 12; capped by scale-up policy")
        _, _, b = d.request("GET", "/metrics")
        self.assertIn("ballast_autoscaler_desired_replicas 7", b.decode())
        # Recommend-only scales nothing, so the policy does not run out: it
        # keeps recommending 7 while 3 workers report.
        time.sleep(2.2)
        self.assertEqual(autoscale(d)["desired_replicas"], 7)

    def test_budget_cap(self):
        d = self.d
        # The budget runs both its concurrent slots (two workers hold leases)
        # and agents wait in its queue: it is the bottleneck.
        for w in ("w0", "w1"):
            s, _, b = d.request("POST", "/v1/acquire", body={"budget": "api", "worker": w})
            self.assertEqual(s, 200, b)
        import threading
        waiters = [threading.Thread(target=d.request, args=("POST", "/v1/acquire"),
                                    kwargs={"body": {"budget": "api", "wait_ms": 8000},
                                            "timeout": 10}) for _ in range(6)]
        for t in waiters:
            t.start()
        for i in range(2):
            self.beat("w%d" % i, queue=0, inflight=1)
        doc = wait_for(self, lambda: (lambda a: a if a["decisions"] and "budget" in
                                      a["decisions"][0]["reason"] else None)(autoscale(d)),
                       what="a budget-capped decision")
        self.assertRegex(doc["decisions"][0]["reason"], r"capped by budget api")
        self.assertEqual(doc["desired_replicas"], 2)
        for t in waiters:
            t.join(12)

    def test_bad_heartbeats(self):
        for body, msg in (({"cpu_cores": -1}, "cpu_cores"), ({"inflight": "x"}, "inflight"),
                          ({"ready": 3}, "ready"), ({"colour": 1}, "colour")):
            s, doc = self.beat("w0", **body)
            self.assertEqual(s, 400, body)
            self.assertIn(msg, doc["error"]["message"])
        s, doc = self.beat("x" * 100)
        self.assertEqual(s, 400)
        self.assertEqual(autoscale(self.d)["workers"], [])


class ManyWorkers(unittest.TestCase):
    """4096 reporting workers fill the table; the next is refused until silent
    ones are forgotten (ten intervals), then its slot is reused."""

    def test_heartbeat_table_fills_and_frees(self):
        import http.client
        d = Daemon("""
state_dir: {state_dir}
autoscaler:
  min_replicas: 1
  max_replicas: 100
  interval: 1s
  targets: {inflight_per_replica: 4}
""").start()
        try:
            c = http.client.HTTPConnection(d.host, d.port, timeout=10)
            for i in range(4096):
                c.request("POST", "/v1/workers/bulk-%d/heartbeat" % i, body='{"inflight":1}',
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200, i)
            # Known workers still report; a new one does not fit.
            c.request("POST", "/v1/workers/bulk-17/heartbeat", body='{"inflight":2}',
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            self.assertEqual(r.status, 200, r.read())
            c.request("POST", "/v1/workers/late/heartbeat", body="{}",
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            body = json.loads(r.read())
            self.assertEqual((r.status, body["error"]["code"]), (503, "overloaded"))
            c.close()
            doc = autoscale(d)
            self.assertEqual(len([w for w in doc["workers"] if w.get("source") == "heartbeat"]),
                             4096)
            # Silent for ten intervals: forgotten, and the late one gets a slot.
            time.sleep(11.5)
            s, _, b = d.request("POST", "/v1/workers/late/heartbeat", body={"inflight": 3})
            self.assertEqual(s, 200, b)
            ids = [w["id"] for w in autoscale(d)["workers"] if w.get("source") == "heartbeat"]
            self.assertEqual(ids, ["late"])
        finally:
            d.stop()


class MemoryPressure(unittest.TestCase):
    def test_critical_memory_holds_scale_up(self):
        d = Daemon("""
state_dir: {state_dir}
memory: {capacity: 1000MiB}
autoscaler:
  min_replicas: 1
  max_replicas: 20
  interval: 1s
  targets: {queue_per_replica: 1}
""").start()
        try:
            s, _, b = d.request("POST", "/v1/memory/reserve",
                                body={"size": "950MiB", "priority": "critical"})
            self.assertEqual(s, 200, b)
            lease = json.loads(b)["lease"]
            d.request("POST", "/v1/workers/a/heartbeat", body={"queue": 10})
            doc = wait_for(self, lambda: (lambda a: a if a["decisions"] else None)(autoscale(d)),
                           what="a decision")
            self.assertRegex(doc["decisions"][0]["reason"], r"held at 1: memory pressure critical")
            self.assertEqual(doc["desired_replicas"], 1)
            self.assertGreater(doc["loop"]["memory_holds"], 0)
            self.assertGreater(doc["loop"]["max_us"], 0)
            d.request("POST", "/v1/release", body={"lease": lease})
            d.request("POST", "/v1/workers/a/heartbeat", body={"queue": 10})
            wait_for(self, lambda: autoscale(d)["desired_replicas"] > 1, what="a scale-up")
        finally:
            self.assertEqual(d.stop(), 0)


class Exec(unittest.TestCase):
    def test_exec_runs_the_hook_with_the_count(self):
        out, hook = counting_hook()
        d = Daemon("""
state_dir: {state_dir}
autoscaler:
  min_replicas: 3
  max_replicas: 10
  interval: 1s
  targets: {queue_per_replica: 2}
  actuator: {kind: exec, command: ["%s"]}
""" % hook).start()
        try:
            wait_for(self, lambda: os.path.exists(out), what="the first hook run")
            d.request("POST", "/v1/workers/a/heartbeat", body={"queue": 14})
            wait_for(self, lambda: "7" in open(out).read().split(), what="the hook run with 7")
            counts = open(out).read().split()
            self.assertEqual(counts[0], "3")  # started at min_replicas
        finally:
            self.assertEqual(d.stop(), 0)


class Restart(unittest.TestCase):
    """A restart keeps the count and the history: the pool neither drops to
    min_replicas nor scales down before its stabilization window has run."""

    def test_restart_keeps_count_and_history(self):
        out, hook = counting_hook()
        cfg = """
state_dir: {state_dir}
autoscaler:
  min_replicas: 3
  max_replicas: 10
  interval: 1s
  targets: {queue_per_replica: 2}
  stabilization: {down: 60s}
  actuator: {kind: exec, command: ["%s"]}
""" % hook
        d = Daemon(cfg).start()
        try:
            wait_for(self, lambda: os.path.exists(out), what="the first hook run")
            d.request("POST", "/v1/workers/a/heartbeat", body={"queue": 14})
            wait_for(self, lambda: "7" in open(out).read().split(), what="the hook run with 7")
            self.assertEqual(d.stop(), 0)
            with open(os.path.join(d.state_dir, "state.json")) as f:
                saved = json.load(f)["components"]["autoscaler"]
            self.assertEqual(saved["applied"], 7)
            self.assertIn(7, [r[1] for r in saved["recommendations"]])
            self.assertEqual(len(saved["events"]), 1)  # 3 -> 7
            os.unlink(out)
            d.start()
            d.wait_log(r'msg="autoscaler state restored" replicas=7 saved_replicas=7')
            wait_for(self, lambda: os.path.exists(out), what="the hook after the restart")
            self.assertEqual(open(out).read().split()[0], "7")  # not min_replicas
            # No worker reports now, so the metrics ask for less, but the
            # restored 60 s window still holds 7.
            time.sleep(2.5)
            doc = autoscale(d)
            self.assertEqual(doc["desired_replicas"], 7)
            self.assertEqual(set(open(out).read().split()), {"7"})
            self.assertEqual(d.stop(), 0)
            # A state that does not parse is refused: the loop starts clean.
            path = os.path.join(d.state_dir, "state.json")
            with open(path) as f:
                doc = json.load(f)
            doc["components"]["autoscaler"]["recommendations"] = [[1, "x"]]
            with open(path, "w") as f:
                json.dump(doc, f)
            os.unlink(out)
            d.start()
            d.wait_log(r'msg="snapshot component not restored, starting it clean" '
                       r'component=autoscaler .*recommendations\[0\]')
            wait_for(self, lambda: os.path.exists(out), what="the hook after a clean start")
            self.assertEqual(open(out).read().split()[0], "3")
        finally:
            d.stop()


def gone_or_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Orphans(unittest.TestCase):
    """A daemon killed with SIGKILL leaves its workers running (each leads a
    session of its own). The next daemon stops them before starting its own,
    and numbers its workers after theirs, so ids never collide."""

    def test_restart_after_kill_stops_the_workers_left_behind(self):
        tmp = tempfile.mkdtemp(prefix="ballast-orphans-")
        cfg = """
state_dir: {state_dir}
snapshot: {interval: 1h}
autoscaler:
  min_replicas: 2
  max_replicas: 4
  interval: 1s
  targets: {inflight_per_replica: 2}
  actuator:
    kind: local
    command: ["python3", "%s"]
    cwd: "%s"
    grace: 2s
""" % (WORKER, tmp)
        d = Daemon(cfg).start()
        old = []
        try:
            doc = wait_for(self, lambda: (lambda a: a if len(
                [w for w in live_workers(a) if w.get("pid")]) == 2 else None)(autoscale(d)),
                what="2 workers")
            old = sorted((w["id"], w["pid"]) for w in live_workers(doc))
            self.assertEqual([i for i, _ in old], ["w-1", "w-2"])
            # No periodic snapshot for an hour: starting the workers wrote one.
            path = os.path.join(d.state_dir, "state.json")

            def saved_pids():
                try:
                    with open(path) as f:
                        doc = json.load(f)
                except (OSError, ValueError):
                    return None
                ws = doc["components"].get("autoscaler", {}).get("workers", [])
                return sorted(w[0] for w in ws) == sorted(p for _, p in old)

            wait_for(self, saved_pids, what="the workers in the snapshot")
            d.kill()
            time.sleep(0.3)
            for _, pid in old:
                self.assertFalse(gone_or_zombie(pid), "worker %d died with the daemon" % pid)
            d.start()
            for _, pid in old:
                d.wait_log(r'msg="orphaned worker stopped" pid=%d signal=TERM' % pid)
            wait_for(self, lambda: all(gone_or_zombie(pid) for _, pid in old),
                     what="the old workers gone")
            doc = wait_for(self, lambda: (lambda a: a if len(
                [w for w in live_workers(a) if w.get("pid")]) == 2 else None)(autoscale(d)),
                what="2 new workers")
            self.assertEqual(sorted(w["id"] for w in live_workers(doc)), ["w-3", "w-4"])
            self.assertEqual(doc["supervisor"]["orphans_stopped"], 2)
        finally:
            for _, pid in old:
                try:
                    os.killpg(pid, 9)
                except OSError:
                    pass
            d.stop()


class FakeKubernetes:
    """The scale subresource of one Deployment, as the API server serves it."""

    def __init__(self, token, replicas=2):
        import http.server
        import threading
        self.replicas, self.version, self.forbidden, self.patches = replicas, 1, False, []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def scale(self):
                return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                        "metadata": {"name": "workers", "namespace": "agents",
                                     "resourceVersion": str(outer.version)},
                        "spec": {"replicas": outer.replicas},
                        "status": {"replicas": outer.replicas, "selector": "app=workers"}}

            def answer(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def check(self):
                if self.path != "/apis/apps/v1/namespaces/agents/deployments/workers/scale":
                    self.answer(404, {"kind": "Status", "message": "not found", "code": 404})
                    return False
                if self.headers.get("Authorization") != "Bearer " + token:
                    self.answer(401, {"kind": "Status", "message": "Unauthorized", "code": 401})
                    return False
                if outer.forbidden:
                    self.answer(403, {"kind": "Status", "code": 403, "message":
                                      "deployments.apps \"workers\" is forbidden"})
                    return False
                return True

            def do_GET(self):
                if self.check():
                    self.answer(200, self.scale())

            def do_PATCH(self):
                n = int(self.headers.get("Content-Length", "0"))
                patch = json.loads(self.rfile.read(n))
                if not self.check():
                    return
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    self.answer(415, {"kind": "Status", "code": 415, "message": "unsupported"})
                    return
                rv = patch.get("metadata", {}).get("resourceVersion")
                if rv is not None and rv != str(outer.version):
                    self.answer(409, {"kind": "Status", "code": 409, "message": "conflict"})
                    return
                outer.patches.append(patch["spec"]["replicas"])
                outer.replicas = patch["spec"]["replicas"]
                outer.version += 1
                self.answer(200, self.scale())

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Kubernetes(unittest.TestCase):
    def test_scales_the_deployment_through_the_api(self):
        k8s = FakeKubernetes("tok-k8s", replicas=2)
        tmp = tempfile.mkdtemp(prefix="ballast-k8s-")
        with open(os.path.join(tmp, "sa-token"), "w") as f:
            f.write("tok-k8s\n")
        d = Daemon("""
state_dir: {state_dir}
autoscaler:
  min_replicas: 1
  max_replicas: 10
  interval: 1s
  targets: {queue_per_replica: 2}
  actuator:
    kind: kubernetes
    namespace: agents
    deployment: workers
    api_url: "%s"
    token_file: %s/sa-token
""" % (k8s.url, tmp)).start()
        try:
            # The Deployment's own count is the start: 2.
            wait_for(self, lambda: autoscale(d)["current_replicas"] == 2, what="current 2")
            self.assertEqual(k8s.patches, [])
            d.request("POST", "/v1/workers/a/heartbeat", body={"queue": 12})
            wait_for(self, lambda: k8s.replicas == 6, what="the Deployment at 6")
            doc = wait_for(self, lambda: (lambda a: a if a["current_replicas"] == 6 else None)(
                autoscale(d)), what="current 6")
            self.assertEqual(doc["kubernetes"]["spec_replicas"], 6)
            self.assertTrue(doc["kubernetes"]["url"].startswith(k8s.url + "/apis/apps/v1/"))
            # Forbidden: said clearly, nothing changes.
            k8s.forbidden = True
            d.request("POST", "/v1/workers/a/heartbeat", body={"queue": 16})
            d.wait_log(r'msg="kubernetes actuator failed".*403', timeout=10)
            self.assertIn("403", autoscale(d)["kubernetes"]["last_error"])
            self.assertEqual(k8s.replicas, 6)
        finally:
            self.assertEqual(d.stop(), 0)
            k8s.close()


class NotConfigured(unittest.TestCase):
    def test_404_and_kubernetes_refused(self):
        d = Daemon("state_dir: {state_dir}\n").start()
        try:
            s, _, b = d.request("GET", "/v1/autoscale")
            self.assertEqual((s, json.loads(b)["error"]["code"]), (404, "autoscaler_not_configured"))
            s, _, b = d.request("POST", "/v1/workers/w/heartbeat", body={})
            self.assertEqual(s, 404)
            self.assertIsNone(d.get_json("/v1/state")["autoscaler"])
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
