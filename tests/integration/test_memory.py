"""Memory reservations and the daemon's own memory cap, against the real daemon:
admission by priority and watermark, waiting, release, TTL reclaim,
persistence, reload, capacity auto, and 503 overloaded at limits.daemon_memory."""
import http.client
import json
import os
import re
import socket
import threading
import time
import unittest

from harness import Daemon, raw, read_response

MIB = 1 << 20

# capacity 1000 MiB, buffer 0.20: usable 800 MiB; low 0.80 -> 640 MiB,
# high 0.90 -> 720 MiB; critical may fill up to the capacity, 1000 MiB.
CONFIG = """
state_dir: {state_dir}
snapshot: {interval: 200ms}
memory:
  capacity: 1000MiB
  safety_buffer: 0.20
  watermarks: {low: 0.80, high: 0.90}
  lease_ttl: 60s
  max_queue: 2
budgets:
  api:
    limits:
      requests: {limit: 600, per: 1m}
"""


def reserve(d, body, expect=None, timeout=10):
    s, h, b = d.request("POST", "/v1/memory/reserve", body=body, timeout=timeout)
    doc = json.loads(b) if b else None
    if expect is not None and s != expect:
        raise AssertionError("reserve %r: %d %s" % (body, s, b))
    return s, h, doc


def release(d, lease, expect=200):
    s, _, b = d.request("POST", "/v1/release", body={"lease": lease})
    if s != expect:
        raise AssertionError("release %s: %d %s" % (lease, s, b))
    return json.loads(b)


def resize(d, lease, body, expect=None):
    s, _, b = d.request("POST", "/v1/leases/%s/resize" % lease, body=body)
    doc = json.loads(b) if b else None
    if expect is not None and s != expect:
        raise AssertionError("resize %s %r: %d %s" % (lease, body, s, b))
    return s, doc


def wait_for_waiters(test, d, cls, n, timeout=5):
    deadline = time.time() + timeout
    while d.get_json("/v1/memory")["waiters"][cls] != n:
        test.assertLess(time.time(), deadline, "waiting for %d %s waiters" % (n, cls))
        time.sleep(0.02)


def metric(d, name):
    _, _, b = d.request("GET", "/metrics")
    m = re.search(r"^%s (\S+)$" % re.escape(name), b.decode(), re.M)
    if not m:
        raise AssertionError("no metric %s" % name)
    return float(m.group(1))


class Admission(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(CONFIG).start()

    def tearDown(self):
        self.d.stop()

    def test_watermarks_and_priorities(self):
        d = self.d
        m = d.get_json("/v1/memory")
        self.assertTrue(m["configured"])
        self.assertEqual(m["capacity_bytes"], 1000 * MIB)
        self.assertEqual(m["capacity_source"], "config")
        self.assertEqual(m["usable_bytes"], 800 * MIB)
        self.assertEqual(m["watermarks"]["low_bytes"], 640 * MIB)
        self.assertEqual(m["watermarks"]["high_bytes"], 720 * MIB)
        self.assertEqual(m["pressure"], "ok")

        a = reserve(d, {"size": "700MiB", "tenant": "etl"}, 200)[2]
        self.assertEqual(a["bytes"], 700 * MIB)
        self.assertEqual(a["priority"], "normal")
        self.assertEqual(a["pressure"], "high")  # between the watermarks
        self.assertRegex(a["lease"], r"^[0-9a-f]{16}$")

        # low is refused above the low watermark, normal above the high one.
        s, h, e = reserve(d, {"bytes": MIB, "priority": "low"})
        self.assertEqual(s, 429)
        self.assertEqual(e["error"]["code"], "insufficient_memory")
        self.assertEqual(e["available_bytes"], 0)
        self.assertEqual(h["retry-after"], "1")
        s, _, e = reserve(d, {"bytes": 30 * MIB})
        self.assertEqual(s, 429)
        self.assertEqual(e["available_bytes"], 20 * MIB)
        self.assertIn("do not fit now", e["error"]["message"])
        # critical may enter the safety buffer, never pass the capacity.
        c = reserve(d, {"size": "250MiB", "priority": "critical", "tenant": "ops"}, 200)[2]
        self.assertEqual(c["pressure"], "critical")
        s, _, e = reserve(d, {"size": "60MiB", "priority": "critical"})
        self.assertEqual(s, 429)
        self.assertEqual(e["available_bytes"], 50 * MIB)

        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 950 * MIB)
        self.assertEqual(m["by_priority"]["normal"]["bytes"], 700 * MIB)
        self.assertEqual(m["by_priority"]["critical"]["reservations"], 1)
        self.assertEqual(m["by_tenant"], {"etl": {"bytes": 700 * MIB, "reservations": 1},
                                          "ops": {"bytes": 250 * MIB, "reservations": 1}})
        self.assertEqual(m["counters"]["denied"], 3)
        self.assertEqual(metric(d, 'ballast_memory_reserved_bytes{priority="critical"}'),
                         250 * MIB)
        self.assertEqual(metric(d, "ballast_memory_pressure"), 2)

        r = release(d, a["lease"])
        self.assertEqual(r["memory_bytes"], 700 * MIB)
        release(d, c["lease"])
        release(d, c["lease"], expect=404)  # a lease releases once
        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 0)
        self.assertEqual(m["by_tenant"], {})
        self.assertEqual(m["high_water_bytes"], 950 * MIB)

    def test_bad_input_changes_nothing(self):
        d = self.d
        cases = [
            ({}, "exactly one of 'bytes'"),
            ({"bytes": 1, "size": "1MiB"}, "exactly one of 'bytes'"),
            ({"bytes": 0}, "bytes"),
            ({"bytes": -5}, "bytes"),
            ({"bytes": "12"}, "bytes"),
            ({"size": "2XB"}, "is not a size"),
            ({"size": "0B"}, "is not a size"),
            ({"bytes": 10, "priority": "urgent"}, "not one of low, normal, critical"),
            ({"bytes": 10, "wait_ms": 10 ** 9}, "wait_ms"),
            ({"bytes": 10, "colour": "red"}, "colour"),
        ]
        for body, msg in cases:
            s, _, e = reserve(d, body)
            self.assertEqual(s, 400, body)
            self.assertIn(msg, e["error"]["message"], body)
        s, _, e = reserve(d, {"size": "641MiB", "priority": "low"})
        self.assertEqual(s, 400)
        self.assertEqual(e["error"]["code"], "too_large")
        self.assertEqual(e["max_bytes"], 640 * MIB)
        self.assertIn("low watermark", e["error"]["message"])
        s, _, _ = d.request("POST", "/v1/memory/reserve", body="{not json",
                            headers={"Content-Type": "application/json"})
        self.assertEqual(s, 400)
        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 0)
        self.assertEqual(m["counters"]["granted"], 0)

    def test_waiting_reservation_admitted_on_release(self):
        d = self.d
        a = reserve(d, {"size": "700MiB"}, 200)[2]
        got = {}

        def waiter():
            got["r"] = reserve(d, {"size": "100MiB", "wait_ms": 5000})

        t = threading.Thread(target=waiter)
        t.start()
        wait_for_waiters(self, d, "normal", 1)
        time.sleep(0.2)
        release(d, a["lease"])
        t.join(10)
        s, _, doc = got["r"]
        self.assertEqual(s, 200)
        self.assertGreaterEqual(doc["waited_ms"], 150)
        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 100 * MIB)
        self.assertEqual(m["counters"]["granted_after_wait"], 1)

    def test_wait_times_out_and_queue_is_bounded(self):
        d = self.d
        reserve(d, {"size": "720MiB"}, 200)
        t0 = time.time()
        s, _, e = reserve(d, {"bytes": MIB, "wait_ms": 300})
        self.assertEqual(s, 429)
        self.assertGreaterEqual(time.time() - t0, 0.25)
        self.assertGreaterEqual(e["waited_ms"], 250)
        # max_queue 2: a third waiter is turned away at once.
        threads = [threading.Thread(target=reserve, args=(d, {"bytes": MIB, "wait_ms": 1500}))
                   for _ in range(2)]
        for t in threads:
            t.start()
        wait_for_waiters(self, d, "normal", 2)
        s, _, e = reserve(d, {"bytes": MIB, "wait_ms": 1500})
        self.assertEqual(s, 429)
        self.assertEqual(e["error"]["code"], "queue_full")
        for t in threads:
            t.join(5)
        self.assertEqual(d.get_json("/v1/memory")["counters"]["wait_timeouts"], 3)

    def test_critical_waiter_goes_before_normal(self):
        d = self.d
        a = reserve(d, {"size": "720MiB"}, 200)[2]
        b = reserve(d, {"size": "200MiB", "priority": "critical"}, 200)[2]
        order = []

        def waiter(body):
            s, _, doc = reserve(d, body)
            order.append((body["priority"], s))

        tn = threading.Thread(target=waiter, args=({"size": "60MiB", "priority": "normal",
                                                    "wait_ms": 4000},))
        tn.start()
        wait_for_waiters(self, d, "normal", 1)
        tc = threading.Thread(target=waiter, args=({"size": "100MiB", "priority": "critical",
                                                    "wait_ms": 4000},))
        tc.start()
        wait_for_waiters(self, d, "critical", 1)  # 920 + 100 > 1000
        release(d, b["lease"])  # 720 + 100 fits critical only
        tc.join(5)
        self.assertEqual(order, [("critical", 200)])
        release(d, a["lease"])  # 100 + 60: now the normal one fits
        tn.join(5)
        self.assertEqual(order, [("critical", 200), ("normal", 200)])

    def test_ttl_reclaim_and_extend(self):
        d = self.d
        a = reserve(d, {"size": "100MiB", "ttl_ms": 1000, "tenant": "batch"}, 200)[2]
        b = reserve(d, {"size": "50MiB", "ttl_ms": 1000}, 200)[2]
        s, _, e = d.request("POST", "/v1/leases/%s/extend" % b["lease"], body={"ttl_ms": 8000})
        self.assertEqual(s, 200, e)
        d.wait_log(r'msg="memory lease expired" lease=%s tenant=batch bytes=%d'
                   % (a["lease"], 100 * MIB), timeout=5)
        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 50 * MIB)
        self.assertEqual(m["counters"]["expired"], 1)
        self.assertEqual(metric(d, "ballast_memory_expired_leases_total"), 1)
        release(d, a["lease"], expect=404)
        release(d, b["lease"])

    def test_resize_grows_and_shrinks_in_place(self):
        d = self.d
        a = reserve(d, {"size": "300MiB", "tenant": "etl"}, 200)[2]
        r = resize(d, a["lease"], {"size": "500MiB"}, 200)[1]
        self.assertEqual((r["bytes"], r["previous_bytes"]), (500 * MIB, 300 * MIB))
        self.assertEqual(r["priority"], "normal")
        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 500 * MIB)
        self.assertEqual(m["by_tenant"]["etl"]["bytes"], 500 * MIB)
        # Above the high watermark (normal's limit, 720 MiB): never admitted.
        s, e = resize(d, a["lease"], {"size": "800MiB"})
        self.assertEqual((s, e["error"]["code"]), (400, "too_large"))
        self.assertEqual(e["max_bytes"], 720 * MIB)
        # Fits the limit but not now: 429, the lease keeps its size.
        reserve(d, {"size": "200MiB"}, 200)
        s, e = resize(d, a["lease"], {"bytes": 600 * MIB})
        self.assertEqual((s, e["error"]["code"]), (429, "insufficient_memory"))
        self.assertEqual(e["held_bytes"], 500 * MIB)
        self.assertEqual(e["available_bytes"], 20 * MIB)
        self.assertEqual(d.get_json("/v1/memory")["reserved_bytes"], 700 * MIB)
        # Shrinking always works; the same size is a no-op that answers 200.
        resize(d, a["lease"], {"size": "100MiB"}, 200)
        resize(d, a["lease"], {"size": "100MiB"}, 200)
        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 300 * MIB)
        self.assertEqual(m["counters"]["resized"], 2)  # the no-op is not one
        self.assertEqual(metric(d, "ballast_memory_resizes_total"), 2)
        self.assertEqual(release(d, a["lease"])["memory_bytes"], 100 * MIB)
        self.assertEqual(d.get_json("/v1/memory")["reserved_bytes"], 200 * MIB)

    def test_resize_respects_the_queue_and_shrinking_admits_waiters(self):
        d = self.d
        a = reserve(d, {"size": "600MiB"}, 200)[2]
        small = reserve(d, {"size": "10MiB"}, 200)[2]
        crit = reserve(d, {"size": "10MiB", "priority": "critical"}, 200)[2]
        got = {}

        def waiter():
            got["r"] = reserve(d, {"size": "150MiB", "wait_ms": 5000})

        t = threading.Thread(target=waiter)
        t.start()
        wait_for_waiters(self, d, "normal", 1)  # 620 + 150 > 720
        # 620 + 40 would fit, but a normal reservation waits first.
        s, e = resize(d, small["lease"], {"size": "50MiB"})
        self.assertEqual((s, e["error"]["code"]), (429, "insufficient_memory"))
        self.assertIn("waits behind 1 queued", e["error"]["message"])
        # A critical reservation outranks the waiter.
        resize(d, crit["lease"], {"size": "50MiB"}, 200)
        # Shrinking makes room: the waiter is admitted at once.
        resize(d, a["lease"], {"size": "300MiB"}, 200)
        t.join(10)
        self.assertEqual(got["r"][0], 200)
        self.assertEqual(d.get_json("/v1/memory")["reserved_bytes"], 510 * MIB)

    def test_resize_bad_input_changes_nothing(self):
        d = self.d
        a = reserve(d, {"size": "100MiB"}, 200)[2]
        cases = [
            ({"bytes": 1, "size": "1MiB"}, 400, "exactly one of 'bytes'"),
            ({}, 400, "exactly one of 'bytes'"),
            ({"bytes": 0}, 400, "bytes"),
            ({"size": "lots"}, 400, "'lots' is not a size"),
            ({"size": "1MiB", "ttl_ms": 5}, 400, "ttl_ms"),
        ]
        for body, status, text in cases:
            s, e = resize(d, a["lease"], body)
            self.assertEqual(s, status, body)
            self.assertIn(text, e["error"]["message"], body)
        s, e = resize(d, "00000000deadbeef", {"bytes": MIB})
        self.assertEqual((s, e["error"]["code"]), (404, "unknown_lease"))
        s, _, b = d.request("POST", "/v1/acquire", body={"budget": "api"})
        self.assertEqual(s, 200, b)
        s, e = resize(d, json.loads(b)["lease"], {"bytes": MIB})
        self.assertEqual((s, e["error"]["code"]), (409, "not_resizable"))
        m = d.get_json("/v1/memory")
        self.assertEqual(m["reserved_bytes"], 100 * MIB)
        self.assertEqual(m["counters"]["resized"], 0)


class Persistence(unittest.TestCase):
    def test_reservations_survive_a_restart(self):
        d = Daemon(CONFIG).start()
        try:
            a = reserve(d, {"size": "200MiB", "tenant": "etl"}, 200)[2]
            resize(d, a["lease"], {"size": "300MiB"}, 200)  # the new size is kept
            reserve(d, {"size": "100MiB", "priority": "critical"}, 200)
            self.assertEqual(d.stop(), 0)
            d.start()
            m = d.get_json("/v1/memory")
            self.assertEqual(m["reserved_bytes"], 400 * MIB)
            self.assertEqual(m["by_tenant"]["etl"]["bytes"], 300 * MIB)
            self.assertEqual(m["counters"]["granted"], 0)  # counters of this run
            release(d, a["lease"])
            self.assertEqual(d.get_json("/v1/memory")["reserved_bytes"], 100 * MIB)
        finally:
            d.stop()

    def test_reload_changes_limits_and_keeps_reservations(self):
        d = Daemon(CONFIG).start()
        try:
            held = reserve(d, {"size": "600MiB"}, 200)[2]
            d.write_config(CONFIG.replace("{low: 0.80, high: 0.90}", "{low: 0.50, high: 0.70}"))
            s, _, b = d.request("POST", "/v1/reload", body={})
            self.assertEqual(s, 200, b)
            m = d.get_json("/v1/memory")
            self.assertEqual(m["reserved_bytes"], 600 * MIB)
            self.assertEqual(m["watermarks"]["high_bytes"], 560 * MIB)
            s, _, _ = reserve(d, {"bytes": MIB})
            self.assertEqual(s, 429)  # above the new high watermark
            # Without the section, nothing new is admitted, releases still work.
            d.write_config("state_dir: {state_dir}\n")
            s, _, b = d.request("POST", "/v1/reload", body={})
            self.assertEqual(s, 200, b)
            s, _, e = reserve(d, {"bytes": MIB})
            self.assertEqual(s, 404)
            self.assertEqual(e["error"]["code"], "memory_not_configured")
            # A held reservation may shrink, not grow.
            s, e = resize(d, held["lease"], {"size": "700MiB"})
            self.assertEqual((s, e["error"]["code"]), (404, "memory_not_configured"))
            resize(d, held["lease"], {"size": "500MiB"}, 200)
        finally:
            d.stop()


def expected_auto_capacity():
    """What memory.capacity: auto should find, computed independently."""
    total = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    best = 0
    with open("/proc/self/cgroup") as f:
        first = f.readline().strip()
    if first.startswith("0::"):
        path = first[3:].rstrip("/") or "/"
        while True:
            p = "/sys/fs/cgroup" + ("" if path == "/" else path) + "/memory.max"
            try:
                v = open(p).read().strip()
                if v != "max" and int(v) > 0 and (best == 0 or int(v) < best):
                    best = int(v)
            except (OSError, ValueError):
                pass
            if path == "/":
                break
            path = path.rsplit("/", 1)[0] or "/"
    if best and best < total:
        return best, "cgroup memory.max"
    return total, "MemTotal"


class Auto(unittest.TestCase):
    def test_capacity_auto(self):
        d = Daemon("state_dir: {state_dir}\nmemory: {capacity: auto}\n").start()
        try:
            m = d.get_json("/v1/memory")
            want, source = expected_auto_capacity()
            self.assertEqual((m["capacity_bytes"], m["capacity_source"]), (want, source))
            self.assertEqual(m["usable_bytes"], want * 4 // 5)
        finally:
            d.stop()

    def test_not_configured(self):
        d = Daemon("state_dir: {state_dir}\n").start()
        try:
            self.assertEqual(d.get_json("/v1/memory"), {"configured": False})
            s, _, e = reserve(d, {"bytes": 10})
            self.assertEqual(s, 404)
            self.assertIn("memory:", e["error"]["message"])
        finally:
            d.stop()


class DaemonMemoryCap(unittest.TestCase):
    """limits.daemon_memory: past 7/8 of it new work gets 503 overloaded, and
    the daemon recovers when the memory comes back."""

    def test_overloaded_at_the_cap_and_recovers(self):
        d = Daemon("state_dir: {state_dir}\nlimits: {daemon_memory: 16MiB}\n"
                   "budgets: {api: {limits: {requests: {limit: 100000, per: 1m}}}}\n").start()
        socks = []
        # A scraper on a keep-alive connection, opened before the pressure: it
        # keeps working past the soft level, where new connections are refused.
        scrape = http.client.HTTPConnection(d.host, d.port, timeout=5)

        def metric_ka(name):
            scrape.request("GET", "/metrics")
            r = scrape.getresponse()
            body = r.read().decode()
            self.assertEqual(r.status, 200)
            m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
            self.assertIsNotNone(m, name)
            return float(m.group(1))

        try:
            self.assertEqual(metric_ka("ballast_daemon_memory_cap_bytes"), 16 * MIB)
            base = metric_ka("ballast_daemon_memory_held_bytes")
            self.assertGreater(base, 0)
            # Each connection announces a 60000-byte body and sends most of it:
            # its arena holds the body until the request completes.
            head = (b"POST /v1/acquire HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                    b"\r\nContent-Length: 60000\r\n\r\n")
            refused = None
            for i in range(400):
                s = raw(d)
                socks.append(s)
                s.sendall(head + b" " * 50000)
                if i % 20 == 19:
                    # A fresh connection tells whether new work is still taken.
                    st, _, b = d.request("POST", "/v1/acquire", body={"budget": "api"})
                    if st == 503:
                        refused = json.loads(b)
                        break
                    self.assertEqual(st, 200, b)
            self.assertIsNotNone(refused, "never refused")
            self.assertEqual(refused["error"]["code"], "overloaded")
            self.assertIn("limits.daemon_memory", refused["error"]["message"])
            held = metric_ka("ballast_daemon_memory_held_bytes")
            self.assertLessEqual(held, 16 * MIB)
            self.assertGreaterEqual(held, 14 * MIB - 70000)
            self.assertGreater(metric_ka("ballast_daemon_overloaded_total"), 0)
            # Past the soft level a new connection is itself turned away.
            s = raw(d)
            st, h, b = read_response(s)
            s.close()
            self.assertEqual((st, json.loads(b)["error"]["code"]), (503, "overloaded"))
            self.assertEqual(h["retry-after"], "1")
            self.assertGreater(metric_ka("ballast_http_connections_refused_memory_total"), 0)
            # A connection already open finishes its request: the last eighth
            # is for work under way.
            s0 = socks[0]
            s0.sendall(b" " * 9998 + b"{}")
            resp = read_response(s0)
            self.assertEqual(resp[0], 400)  # {} names no budget: answered, not 503
            for s in socks:
                s.close()
            socks = []
            deadline = time.time() + 5
            # Slabs keep their grown capacity (about 1 KiB a connection, the
            # lease and waiter slabs their first chunk); the arenas and the
            # stashed bodies (14 MiB) go back.
            while metric_ka("ballast_daemon_memory_held_bytes") > base + 1024 * 1024:
                self.assertLess(time.time(), deadline,
                                metric_ka("ballast_daemon_memory_held_bytes") - base)
                time.sleep(0.05)
            st, _, b = d.request("POST", "/v1/acquire", body={"budget": "api"})
            self.assertEqual(st, 200, b)
            self.assertIsNone(d.proc.poll())
        finally:
            scrape.close()
            for s in socks:
                s.close()
            d.stop()


if __name__ == "__main__":
    unittest.main()
