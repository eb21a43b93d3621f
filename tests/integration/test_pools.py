"""Backend pools against the real daemon and three real HTTP backends: picking,
breakers opening on failures and closing through half_open, budgets per backend,
consistent hashing, operator actions, reload, persistence and metrics."""
import http.client
import http.server
import json
import re
import threading
import time
import unittest
from collections import Counter

from harness import Daemon


class Backend:
    """A small model server on loopback that can be told to fail, slow down or recover."""

    def __init__(self, name):
        self.name = name
        self.mode = "ok"  # ok | fail | slow
        self.calls = 0
        self.waiting = 0          # what its /metrics reports as vLLM's queue
        self.metrics_mode = "ok"  # ok | fail
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if outer.metrics_mode == "fail":
                    body, code = b"down", 500
                else:
                    body, code = (
                        "# HELP vllm:num_requests_waiting Requests waiting.\n"
                        "# TYPE vllm:num_requests_waiting gauge\n"
                        'vllm:num_requests_waiting{model_name="m"} %d\n'
                        'vllm:gpu_cache_usage_perc{model_name="m"} 0.42\n'
                        % outer.waiting).encode(), 200
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                outer.calls += 1
                if outer.mode == "slow":
                    time.sleep(0.3)
                code = 500 if outer.mode == "fail" else 200
                body = json.dumps({"backend": outer.name}).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def pool_config(backends, strategy="round_robin", extra="", budgets="", open_for="1s",
                max_open_for="4s"):
    lines = ["state_dir: {state_dir}", "snapshot: {interval: 200ms}"]
    if budgets:
        lines.append("budgets:")
        lines.append(budgets)
    lines += ["pools:", "  llm:", "    strategy: %s" % strategy, "    backends:"]
    for b in backends:
        lines.append("      - %s" % b)
    lines += ["    breaker: {window: {count: 20}, min_calls: 5, failure_rate: 0.5,"
              " consecutive_failures: 3, open_for: %s, max_open_for: %s, half_open_probes: 2}"
              % (open_for, max_open_for)]
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


class Client:
    """One agent: acquire from the pool, call the chosen backend, release."""

    def __init__(self, d):
        self.d = d

    def acquire(self, timeout=5, **body):
        body.setdefault("pool", "llm")
        s, h, b = self.d.request("POST", "/v1/acquire", body=body, timeout=timeout)
        return s, h, json.loads(b) if b else None

    def call(self, key=None):
        body = {"key": key} if key else {}
        s, _, g = self.acquire(**body)
        if s != 200:
            return None, s, g
        url = g["backend"]["url"]
        host, port = url[len("http://"):].split(":")
        t0 = time.time()
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            c.request("POST", "/v1/messages", body=b"{}")
            r = c.getresponse()
            r.read()
            outcome = "ok" if r.status == 200 else "error"
        except OSError:
            outcome = "error"
        finally:
            c.close()
        rs, _, rb = self.d.request("POST", "/v1/release", body={
            "lease": g["lease"], "outcome": outcome,
            "latency_ms": int((time.time() - t0) * 1000)})
        assert rs == 200, rb
        return g["backend"]["name"], outcome, g


def pool(d):
    return d.get_json("/v1/pools/llm")


def backend_state(d, name):
    return {b["name"]: b for b in pool(d)["backends"]}[name]


def wait_for_load(d, name, load, timeout=5):
    deadline = time.time() + timeout
    while True:
        st = backend_state(d, name)
        if st["external_load"] == load:
            return st
        if time.time() > deadline:
            raise AssertionError("external_load of %s never became %s: %r" % (name, load, st))
        time.sleep(0.05)


class Pools(unittest.TestCase):
    def setUp(self):
        self.backs = {n: Backend(n) for n in "abc"}
        self.d = None

    def tearDown(self):
        if self.d:
            self.d.stop()
        for b in self.backs.values():
            b.close()

    def start(self, **kw):
        specs = ['{name: %s, url: "%s"}' % (n, b.url) for n, b in self.backs.items()]
        self.d = Daemon(pool_config(specs, **kw)).start()
        return self.d

    def test_round_robin_and_the_answer(self):
        d = self.start()
        cl = Client(d)
        names = [cl.call()[0] for _ in range(9)]
        self.assertEqual(Counter(names), {"a": 3, "b": 3, "c": 3})
        s, _, g = cl.acquire()
        self.assertEqual(s, 200)
        self.assertEqual(g["pool"], "llm")
        self.assertEqual(g["backend"]["url"], self.backs[g["backend"]["name"]].url)
        self.assertNotIn("budget", g)
        p = pool(d)
        self.assertEqual(p["strategy"], "round_robin")
        self.assertEqual(sum(b["in_flight"] for b in p["backends"]), 1)
        self.assertEqual(sum(b["outcomes"]["ok"] for b in p["backends"]), 9)

    def test_bad_requests(self):
        d = self.start()
        cl = Client(d)
        s, _, e = cl.acquire(pool="nope")
        self.assertEqual((s, e["error"]["code"]), (404, "unknown_pool"))
        s, _, e = d.request("POST", "/v1/acquire", body={"key": "k"})[0:3]
        self.assertEqual(s, 400)
        s, _, b = d.request("POST", "/v1/acquire", body={})
        self.assertIn("give 'budget'", json.loads(b)["error"]["message"])
        s, _, b = d.request("POST", "/v1/pools/llm/backends/a", body={"state": "open"})
        self.assertEqual(s, 400)
        self.assertIn("forced_open", json.loads(b)["error"]["message"])
        s, _, b = d.request("POST", "/v1/pools/llm/backends/zz", body={"state": "closed"})
        self.assertEqual((s, json.loads(b)["error"]["code"]), (404, "unknown_backend"))
        s, _, b = d.request("POST", "/v1/pools/nope/backends/a", body={"state": "closed"})
        self.assertEqual(s, 404)
        s, _, _ = d.request("GET", "/v1/pools/nope")
        self.assertEqual(s, 404)
        # Nothing changed.
        self.assertTrue(all(b["state"] == "closed" for b in pool(d)["backends"]))
        self.assertEqual(pool(d)["picks"], 0)

    def test_failing_backend_is_ejected_and_comes_back_through_half_open(self):
        d = self.start()
        cl = Client(d)
        self.backs["b"].mode = "fail"
        seen = []
        for _ in range(12):
            seen.append(cl.call())
        st = backend_state(d, "b")
        self.assertEqual(st["state"], "open")
        self.assertEqual(st["last_trip"], "consecutive_failures")
        self.assertEqual(st["trips"], 1)
        # b failed exactly consecutive_failures (3) times before it was ejected.
        self.assertEqual([x for x in seen if x[0] == "b"], [("b", "error", x[2]) for x in seen
                                                           if x[0] == "b"][:3])
        self.assertEqual(sum(1 for x in seen if x[0] == "b"), 3)
        d.wait_log(r'msg="backend ejected" pool=llm backend=b reason=consecutive_failures')
        # While open, traffic goes to a and c only.
        names = [cl.call()[0] for _ in range(6)]
        self.assertNotIn("b", names)
        self.assertGreater(backend_state(d, "b")["retry_after_ms"], 0)
        # Recovered: after open_for the breaker half-opens and 2 good probes close it.
        self.backs["b"].mode = "ok"
        time.sleep(1.1)
        names = [cl.call()[0] for _ in range(9)]
        self.assertIn("b", names)
        self.assertEqual(backend_state(d, "b")["state"], "closed")
        d.wait_log(r'msg="backend recovered" pool=llm backend=b')

    def test_repeated_trips_double_the_open_period(self):
        d = self.start()
        cl = Client(d)
        self.backs["b"].mode = "fail"
        while backend_state(d, "b")["state"] != "open":
            cl.call()
        time.sleep(1.1)  # half_open: the probe fails, open again for 2 s
        for _ in range(6):
            cl.call()
        st = backend_state(d, "b")
        self.assertEqual((st["state"], st["trips"], st["last_trip"]), ("open", 2, "probe"))
        self.assertGreater(st["retry_after_ms"], 1200)

    def test_no_backend_when_all_are_open(self):
        d = self.start(extra="    max_ejected: 1.0")
        cl = Client(d)
        for b in self.backs.values():
            b.mode = "fail"
        for _ in range(12):
            cl.call()
        before = pool(d)["no_backend"]
        s, h, e = cl.acquire()
        self.assertEqual(s, 503)
        self.assertEqual(e["error"]["code"], "no_backend")
        self.assertEqual(e["breakers_open"], 3)
        self.assertTrue(0 < e["retry_after_ms"] <= 1000, e)
        self.assertIn("retry-after", h)
        self.assertEqual(pool(d)["no_backend"], before + 1)

    def test_panic_routes_to_all_past_max_ejected(self):
        d = self.start()  # max_ejected 0.5: two of three open is past it
        cl = Client(d)
        self.backs["a"].mode = "fail"
        self.backs["b"].mode = "fail"
        for _ in range(15):
            cl.call()
        p = pool(d)
        self.assertTrue(p["panic"], p)
        names = Counter(cl.call()[0] for _ in range(9))
        self.assertEqual(set(names), {"a", "b", "c"})  # routed to all, as Envoy does
        self.assertGreater(pool(d)["panic_picks"], 0)

    def test_operator_forced_open_disabled_closed(self):
        d = self.start()
        cl = Client(d)
        s, _, b = d.request("POST", "/v1/pools/llm/backends/c", body={"state": "forced_open"})
        self.assertEqual(s, 200, b)
        self.assertEqual(json.loads(b)["state"], "forced_open")
        self.assertNotIn("c", [cl.call()[0] for _ in range(6)])
        d.wait_log(r'msg="backend state set by an operator" pool=llm backend=c from=closed '
                   r'to=forced_open')
        # disabled: failures do not eject it.
        d.request("POST", "/v1/pools/llm/backends/c", body={"state": "disabled"})
        self.backs["c"].mode = "fail"
        for _ in range(12):
            cl.call()
        self.assertEqual(backend_state(d, "c")["state"], "disabled")
        self.backs["c"].mode = "ok"
        d.request("POST", "/v1/pools/llm/backends/c", body={"state": "closed"})
        self.assertIn("c", [cl.call()[0] for _ in range(6)])

    def test_consistent_hash_keeps_a_key_on_its_backend(self):
        d = self.start(strategy="consistent_hash")
        cl = Client(d)
        first = {k: cl.call(key="session-%d" % k)[0] for k in range(30)}
        self.assertGreater(len(set(first.values())), 1)
        again = {k: cl.call(key="session-%d" % k)[0] for k in range(30)}
        self.assertEqual(first, again)

    def test_reload_keeps_state_of_kept_backends(self):
        d = self.start()
        cl = Client(d)
        self.backs["a"].mode = "fail"
        while backend_state(d, "a")["state"] != "open":
            cl.call()
        self.backs["d"] = Backend("d")
        specs = ['{name: %s, url: "%s"}' % (n, self.backs[n].url) for n in ("a", "b", "d")]
        d.write_config(pool_config(specs))
        s, _, b = d.request("POST", "/v1/reload", body={})
        self.assertEqual(s, 200, b)
        p = pool(d)
        self.assertEqual([x["name"] for x in p["backends"]], ["a", "b", "d"])
        self.assertEqual(backend_state(d, "a")["state"], "open")
        self.assertEqual(backend_state(d, "a")["trips"], 1)
        names = Counter(cl.call()[0] for _ in range(8))
        self.assertEqual(set(names), {"b", "d"})

    def test_breaker_state_survives_a_restart(self):
        # Open for a minute: a restart under load must not outlast it.
        d = self.start(open_for="60s", max_open_for="60s")
        d.request("POST", "/v1/pools/llm/backends/b", body={"state": "forced_open"})
        cl = Client(d)
        self.backs["a"].mode = "fail"
        while backend_state(d, "a")["state"] != "open":
            cl.call()
        s, _, g = cl.acquire()  # a call in flight across the restart
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(backend_state(d, "b")["state"], "forced_open")
        a = backend_state(d, "a")
        self.assertEqual((a["state"], a["trips"]), ("open", 1))
        self.assertEqual(backend_state(d, g["backend"]["name"])["in_flight"], 1)
        s, _, b = d.request("POST", "/v1/release", body={"lease": g["lease"]})
        self.assertEqual(s, 200, b)
        self.assertEqual(json.loads(b)["backend"], g["backend"]["name"])

    def test_expired_lease_counts_as_timeout(self):
        d = self.start()
        cl = Client(d)
        s, _, g = cl.acquire(ttl_ms=1000)
        d.wait_log(r'msg="lease expired" budget=- backend=%s' % g["backend"]["name"], timeout=5)
        st = backend_state(d, g["backend"]["name"])
        self.assertEqual((st["outcomes"]["timeout"], st["in_flight"]), (1, 0))

    def test_backend_load_from_metrics_url(self):
        self.backs["a"].waiting = 50
        specs = ['{name: %s, url: "%s", metrics_url: "%s/metrics"}' % (n, b.url, b.url)
                 for n, b in self.backs.items()]
        self.d = d = Daemon(pool_config(specs, strategy="least_inflight",
                                        extra="    metrics_interval: 100ms")).start()
        st = wait_for_load(d, "a", 50)
        self.assertEqual(st["scrape"]["gpu_cache_usage"], 0.42)
        self.assertTrue(st["scrape"]["fresh"])
        # a reports 50 waiting: least_inflight sends the calls elsewhere.
        cl = Client(d)
        names = Counter(cl.call()[0] for _ in range(8))
        self.assertNotIn("a", names)
        _, _, b = d.request("GET", "/metrics")
        self.assertRegex(b.decode(), r'ballast_backend_external_load\{pool="llm",backend="a"\} 50')
        # A failing scrape makes the load unknown, never zero.
        self.backs["a"].metrics_mode = "fail"
        deadline = time.time() + 5
        while backend_state(d, "a")["external_load"] is not None:
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        st = backend_state(d, "a")
        self.assertFalse(st["scrape"]["fresh"])
        self.assertIn("500", st["scrape"]["error"])
        d.wait_log(r'msg="backend load unknown" pool=llm backend=a')
        # Scrapers stop with the daemon: it still drains and exits 0.
        self.assertEqual(d.stop(), 0)
        self.d = None

    def test_metrics(self):
        d = self.start()
        cl = Client(d)
        for _ in range(3):
            cl.call()
        _, _, b = d.request("GET", "/metrics")
        text = b.decode()
        self.assertRegex(text, r'ballast_backend_state\{pool="llm",backend="a"\} 0')
        self.assertRegex(text, r'ballast_backend_calls_total\{pool="llm",backend="a",'
                               r'outcome="ok"\} 1')
        self.assertRegex(text, r'ballast_backend_latency_seconds_count\{pool="llm",backend="b"\} 1')
        self.assertRegex(text, r'ballast_backend_latency_seconds_bucket\{pool="llm",backend="c",'
                               r'le="\+Inf"\} 1')
        self.assertRegex(text, r'ballast_pool_panic\{pool="llm"\} 0')
        self.assertEqual(len(re.findall(r"^# TYPE ballast_backend_state ", text, re.M)), 1)


class BackendBudgets(unittest.TestCase):
    """Two API keys with their own quotas behind one pool."""

    def setUp(self):
        self.backs = {n: Backend(n) for n in ("key1", "key2")}
        budgets = ("  k1: {limits: {requests: {limit: 4, per: 1m}}, target_utilization: 0.95,"
                   " burst: 0.05}\n"
                   "  k2: {limits: {requests: {limit: 1000, per: 1m}, input_tokens: {limit: 100000,"
                   " per: 1m}}}\n"
                   "  shared: {limits: {requests: {limit: 100000, per: 1m}}}")
        specs = ['{name: key1, url: "%s", budget: k1}' % self.backs["key1"].url,
                 '{name: key2, url: "%s", budget: k2}' % self.backs["key2"].url]
        self.d = Daemon(pool_config(specs, budgets=budgets)).start()

    def tearDown(self):
        self.d.stop()
        for b in self.backs.values():
            b.close()

    def test_each_key_is_charged_and_a_spent_key_is_skipped(self):
        d, cl = self.d, Client(self.d)
        # key2's budget limits input_tokens: a request that does not say how
        # many cannot go there (key1's can take it).
        d.request("POST", "/v1/pools/llm/backends/key1", body={"state": "forced_open"})
        s, _, e = cl.acquire()
        self.assertEqual(s, 400)
        self.assertIn("budget 'k2', which limits input_tokens", e["error"]["message"])
        d.request("POST", "/v1/pools/llm/backends/key1", body={"state": "closed"})
        names = Counter()
        for _ in range(10):
            s, _, g = cl.acquire(input_tokens=10)
            self.assertEqual(s, 200, g)
            names[g["backend"]["name"]] += 1
            self.assertEqual(g["backend"]["budget"], {"key1": "k1", "key2": "k2"}[
                g["backend"]["name"]])
            d.request("POST", "/v1/release", body={"lease": g["lease"]})
        # k1 admits only its burst; after that every call goes through key2.
        self.assertLessEqual(names["key1"], 2)
        self.assertGreaterEqual(names["key2"], 8)
        self.assertEqual(d.get_json("/v1/budgets/k2")["counts"]["grants"], names["key2"])

    def test_shared_budget_and_pool_together(self):
        d, cl = self.d, Client(self.d)
        s, _, g = cl.acquire(budget="shared", input_tokens=5)
        self.assertEqual(s, 200, g)
        self.assertEqual(g["budget"], "shared")
        self.assertIn(g["backend"]["name"], ("key1", "key2"))
        s, _, b = d.request("POST", "/v1/release", body={"lease": g["lease"], "outcome":
                                                          "rate_limited"})
        r = json.loads(b)
        self.assertEqual(r["budget"], "shared")
        self.assertEqual(r["backend_budget"], g["backend"]["budget"])
        # The 429 slowed the key's budget, not the shared one.
        self.assertLess(d.get_json("/v1/budgets/" + g["backend"]["budget"])["rate_factor"], 1)
        self.assertEqual(d.get_json("/v1/budgets/shared")["rate_factor"], 1)

    def test_all_keys_spent_is_a_rate_limit(self):
        d, cl = self.d, Client(self.d)
        d.write_config(pool_config(
            ['{name: key1, url: "%s", budget: k1}' % self.backs["key1"].url],
            budgets="  k1: {limits: {requests: {limit: 60, per: 1m}}}"))
        s, _, b = d.request("POST", "/v1/reload", body={})
        self.assertEqual(s, 200, b)
        codes = [cl.acquire()[0] for _ in range(8)]
        self.assertIn(429, codes)
        s, h, e = cl.acquire()
        self.assertEqual((s, e["error"]["code"], e["reason"]), (429, "rate_limited",
                                                                "backend_budgets"))
        self.assertGreater(e["retry_after_ms"], 0)
        # With wait_ms the acquire waits for the key's budget to refill.
        t0 = time.time()
        s, _, g = cl.acquire(wait_ms=int(e["retry_after_ms"]) + 2000, timeout=30)
        self.assertEqual(s, 200, g)
        self.assertGreaterEqual(time.time() - t0, e["retry_after_ms"] / 1000.0 - 0.1)

    def test_a_freed_slot_goes_to_the_waiter_not_a_newcomer(self):
        import threading
        d, cl = self.d, Client(self.d)
        d.write_config(pool_config(
            ['{name: key1, url: "%s", budget: k1}' % self.backs["key1"].url],
            budgets="  k1: {limits: {concurrent: 1}}"))
        self.assertEqual(d.request("POST", "/v1/reload", body={})[0], 200)
        s, _, a = cl.acquire()
        self.assertEqual(s, 200, a)
        got = {}
        t = threading.Thread(target=lambda: got.update(r=cl.acquire(wait_ms=5000, timeout=10)))
        t.start()
        time.sleep(0.3)  # the key's one slot is taken: it waits
        self.assertEqual(d.request("POST", "/v1/release", body={"lease": a["lease"]})[0], 200)
        # The release handed the slot to the waiter before answering: the
        # next caller does not get it (it used to, until the waiter's retry
        # timer came round).
        s, _, e = cl.acquire()
        self.assertEqual(s, 429, e)
        t.join(10)
        s, _, g = got["r"]
        self.assertEqual(s, 200, g)
        self.assertGreaterEqual(g["waited_ms"], 250)

    def test_reload_removing_the_pool_answers_its_waiters(self):
        import threading
        d, cl = self.d, Client(self.d)
        budgets = ("  k1: {limits: {requests: {limit: 60, per: 1m}}}\n"  # one a second
                   "  s: {limits: {concurrent: 1}}")
        d.write_config(pool_config(
            ['{name: key1, url: "%s", budget: k1}' % self.backs["key1"].url], budgets=budgets))
        self.assertEqual(d.request("POST", "/v1/reload", body={})[0], 200)
        s, _, held = cl.acquire(budget="s")  # s's only slot, and a call in flight
        self.assertEqual(s, 200, held)
        while True:  # spend the key
            s, _, g = cl.acquire()
            if s != 200:
                break
            d.request("POST", "/v1/release", body={"lease": g["lease"]})
        got = {}
        waiters = [threading.Thread(target=lambda k=k, b=b: got.update(
            {k: cl.acquire(wait_ms=8000, timeout=15, **b)}))
            for k, b in (("pool", {}), ("budget", {"budget": "s"}))]
        for t in waiters:
            t.start()
        time.sleep(0.3)  # one waits for the key to refill, one for s's slot
        d.write_config("state_dir: {state_dir}\nbudgets:\n" + budgets + "\n")
        self.assertEqual(d.request("POST", "/v1/reload", body={})[0], 200)
        for t in waiters:
            t.join(15)
        for k in ("pool", "budget"):
            s, _, e = got[k]
            self.assertEqual((s, e["error"]["code"]), (404, "unknown_pool"), k)
            self.assertIn("removed by a config reload", e["error"]["message"])
        # The call in flight still comes back, to a backend that goes with it.
        s, _, b = d.request("POST", "/v1/release", body={"lease": held["lease"]})
        self.assertEqual(s, 200, b)
        self.assertEqual(d.request("GET", "/healthz")[0], 200)

    def test_shutdown_answers_a_waiting_pool_acquire(self):
        import threading
        d, cl = self.d, Client(self.d)
        d.write_config(pool_config(
            ['{name: key1, url: "%s", budget: k1}' % self.backs["key1"].url],
            budgets="  k1: {limits: {requests: {limit: 120, per: 1h}}}"))  # one per ~33 s
        self.assertEqual(d.request("POST", "/v1/reload", body={})[0], 200)
        while cl.acquire()[0] == 200:
            pass
        got = {}
        t = threading.Thread(target=lambda: got.update(r=cl.acquire(wait_ms=60000, timeout=30)))
        t.start()
        time.sleep(0.5)  # waiting on its retry timer (the key refills in ~33 s)
        t0 = time.time()
        self.assertEqual(d.stop(), 0)
        t.join(10)
        s, _, e = got["r"]
        self.assertEqual((s, e["error"]["code"]), (503, "draining"))
        self.assertLess(time.time() - t0, 3)  # answered at once, not at the drain deadline


if __name__ == "__main__":
    unittest.main()
