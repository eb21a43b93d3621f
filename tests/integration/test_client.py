"""The stdlib Python client (clients/python) against the real daemon."""
import os
import sys
import unittest

from harness import SOURCE_DIR, Daemon

sys.path.insert(0, os.path.join(SOURCE_DIR, "clients", "python"))
from ballast_client import Ballast, BallastError, RateLimited  # noqa: E402

CONFIG = """
state_dir: {state_dir}
auth: {token_file: {token_file}}
budgets:
  api:
    limits:
      requests: {limit: 6000, per: 1m}
      input_tokens: {limit: 100000, per: 1m}
      concurrent: 1
memory:
  capacity: 1000MiB
pools:
  llm:
    strategy: round_robin
    backends:
      - {name: a, url: "http://127.0.0.1:9"}
      - {name: b, url: "http://127.0.0.1:10"}
    breaker: {consecutive_failures: 2, min_calls: 5, window: {count: 10}}
"""


class Client(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(CONFIG, token="tok-123").start()
        cls.url = "http://" + cls.d.addr

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0

    def budget(self):
        return Ballast(self.url, token="tok-123").budgets()["api"]

    def test_lease_block_releases_with_usage(self):
        b = Ballast(self.url, token="tok-123")
        with b.lease("api", input_tokens=1000, tenant="t1") as lease:
            self.assertRegex(lease.id, r"^[0-9a-f]{16}$")
            self.assertEqual(self.budget()["in_flight"], 1)
            lease.used(input_tokens=400)
        self.assertTrue(lease.released["released"])
        st = self.budget()
        self.assertEqual(st["in_flight"], 0)
        self.assertEqual(st["counts"]["releases"]["ok"], 1)
        b.close()

    def test_memory_reservation_block(self):
        b = Ballast(self.url, token="tok-123")
        with b.reserve_memory(size="100MiB", tenant="etl") as r:
            self.assertEqual(r.bytes, 100 << 20)
            self.assertEqual(b.memory()["by_tenant"]["etl"]["bytes"], 100 << 20)
            self.assertEqual(r.resize(size="150MiB")["previous_bytes"], 100 << 20)
            self.assertEqual(r.bytes, 150 << 20)
            with b.reserve_memory(size="550MiB"):
                with self.assertRaises(RateLimited) as ctx:
                    r.resize(bytes=200 << 20)  # 750 MiB > the high watermark, 720
            self.assertEqual(ctx.exception.code, "insufficient_memory")
            self.assertEqual(r.bytes, 150 << 20)
            with self.assertRaises(ValueError):
                r.resize()
        self.assertEqual(r.released["memory_bytes"], 150 << 20)
        self.assertEqual(b.memory()["reserved_bytes"], 0)
        with b.reserve_memory(bytes=600 << 20):
            with self.assertRaises(RateLimited) as ctx:
                b.reserve_memory(size="100MiB", priority="low")
        self.assertEqual(ctx.exception.code, "insufficient_memory")
        with self.assertRaises(BallastError) as ctx:
            b.reserve_memory(size="700MiB", priority="low")
        self.assertEqual(ctx.exception.code, "too_large")
        with self.assertRaises(ValueError):
            b.reserve_memory()
        b.close()

    def test_pool_lease_and_failures_reach_the_breaker(self):
        b = Ballast(self.url, token="tok-123")
        with b.lease(pool="llm", key="s1") as lease:
            self.assertIn(lease.backend["name"], ("a", "b"))
            self.assertTrue(lease.backend["url"].startswith("http://127.0.0.1:"))
        for _ in range(2):
            with self.assertRaises(OSError):
                with b.lease(pool="llm"):
                    raise OSError("connection refused")
        with self.assertRaises(ValueError):
            b.acquire()
        backends = b.pools()["llm"]["backends"]
        self.assertEqual(sum(x["outcomes"]["error"] for x in backends), 2)
        self.assertEqual(sum(x["outcomes"]["ok"] for x in backends), 1)
        b.close()

    def test_exception_in_block_releases_as_error(self):
        b = Ballast(self.url, token="tok-123")
        with self.assertRaises(KeyError):
            with b.lease("api", input_tokens=10):
                raise KeyError("boom")
        self.assertGreaterEqual(self.budget()["counts"]["releases"]["error"], 1)
        self.assertEqual(self.budget()["in_flight"], 0)

    def test_rate_limited_and_errors_are_exceptions(self):
        b = Ballast(self.url, token="tok-123")
        lease = b.acquire("api", input_tokens=10)
        with self.assertRaises(RateLimited) as ctx:
            b.acquire("api", input_tokens=10)
        self.assertEqual(ctx.exception.reason, "concurrency")
        self.assertGreater(ctx.exception.retry_after_ms, 0)
        lease.release()
        lease.release()  # once only: no second request
        with self.assertRaises(BallastError) as ctx:
            b.acquire("nope")
        self.assertEqual((ctx.exception.status, ctx.exception.code), (404, "unknown_budget"))
        with self.assertRaises(BallastError) as ctx:
            Ballast(self.url, token="wrong").acquire("api", input_tokens=1)
        self.assertEqual(ctx.exception.status, 401)
        with self.assertRaises(ValueError):
            Ballast("https://example.invalid")


if __name__ == "__main__":
    unittest.main()
