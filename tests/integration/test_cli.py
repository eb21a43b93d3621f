"""The `ballast` command: subcommands, exit codes, check and status."""
import json
import os
import tempfile
import unittest

from harness import SOURCE_DIR, Daemon, run_cli


class Cli(unittest.TestCase):
    def test_version_and_help(self):
        code, out, _ = run_cli("version")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^ballast \d+\.\d+\.\d+\n$")
        code, out, _ = run_cli("help")
        self.assertEqual(code, 0)
        for cmd in ("serve", "check", "status", "version", "help"):
            self.assertIn(cmd, out)

    def test_usage_errors_exit_2_with_usage(self):
        for args in ([], ["frobnicate"], ["check"], ["check", "a", "b"], ["serve", "--bogus"],
                     ["serve", "--listen", "nonsense"], ["status", "--nope"]):
            code, _, err = run_cli(*args)
            self.assertEqual(code, 2, args)
            self.assertIn("usage: ballast", err)

    def test_check_good_file(self):
        code, out, _ = run_cli("check", os.path.join(SOURCE_DIR, "examples", "ballast.yaml"))
        self.assertEqual(code, 0)
        self.assertIn("ok", out)

    def test_check_points_at_line_and_column(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("listen: 127.0.0.1:7070\nbudgets:\n  anthropic:\n"
                    "    limits: {requests: {limit: 10, per: 1m}}\n"
                    "    target_utilization: 1.2\n")
        code, _, err = run_cli("check", f.name)
        self.assertEqual(code, 1)
        self.assertIn(f.name + ":5:25: budgets.anthropic.target_utilization: ", err)
        self.assertIn("0.85..0.95", err)
        os.unlink(f.name)

    def test_check_missing_file(self):
        code, _, err = run_cli("check", "/nonexistent/ballast.yaml")
        self.assertEqual(code, 1)
        self.assertIn("/nonexistent/ballast.yaml", err)

    def test_serve_refuses_bad_config(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("limits: {max_body: lots}\n")
        code, _, err = run_cli("serve", "-c", f.name, "--listen", "127.0.0.1:0")
        self.assertEqual(code, 1)
        self.assertIn(f.name + ":1:", err)
        self.assertIn("limits.max_body", err)
        os.unlink(f.name)

    def test_status_against_running_daemon(self):
        d = Daemon("state_dir: {state_dir}\n").start()
        try:
            url = "http://%s" % d.addr
            code, out, err = run_cli("status", "--url", url)
            self.assertEqual(code, 0, err)
            self.assertIn("ready", out)
            self.assertIn(d.addr, out)
            code, out, _ = run_cli("status", "--url", url, "--json")
            self.assertEqual(code, 0)
            self.assertTrue(json.loads(out)["ballast"]["ready"])
        finally:
            self.assertEqual(d.stop(), 0)

    def test_pools_and_pool_acquire(self):
        d = Daemon("state_dir: {state_dir}\npools:\n  llm:\n    backends:\n"
                   "      - {name: a, url: \"http://10.0.0.1:8000\"}\n").start()
        try:
            url = "http://%s" % d.addr
            code, out, err = run_cli("acquire", "--pool", "llm", "--key", "s1", "--url", url)
            self.assertEqual(code, 0, err)
            g = json.loads(out)
            self.assertEqual(g["backend"], {"name": "a", "url": "http://10.0.0.1:8000"})
            code, out, err = run_cli("pools", "--url", url)
            self.assertEqual(code, 0, err)
            self.assertIn("llm", out)
            self.assertRegex(out, r"a\s+closed\s+in flight 1")
            code, out, _ = run_cli("status", "--url", url)
            self.assertIn("peak_ewma", out)
            code, _, err = run_cli("acquire", "--url", url)
            self.assertEqual(code, 2)
            self.assertIn("--pool", err)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_status_shows_memory(self):
        d = Daemon("state_dir: {state_dir}\nmemory: {capacity: 10GiB}\n").start()
        try:
            s, _, b = d.request("POST", "/v1/memory/reserve", body={"size": "2GiB"})
            self.assertEqual(s, 200, b)
            code, out, err = run_cli("status", "--url", "http://%s" % d.addr)
            self.assertEqual(code, 0, err)
            self.assertIn("memory      2.00 of 8.00 GiB usable reserved (25 %, ok)", out)
            self.assertIn("capacity 10.00 GiB (config)", out)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_reserve_resize_release(self):
        d = Daemon("state_dir: {state_dir}\nmemory: {capacity: 10GiB}\n").start()
        url = ("--url", "http://%s" % d.addr)
        try:
            code, out, err = run_cli("reserve", "2GiB", "--tenant", "etl", "--priority",
                                     "critical", "--ttl", "10m", "-q", *url)
            self.assertEqual(code, 0, err)
            lease = out.strip()
            self.assertRegex(lease, r"^[0-9a-f]{16}$")
            code, out, err = run_cli("resize", lease, "3GiB", *url)
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out)["previous_bytes"], 2 << 30)
            m = d.get_json("/v1/memory")
            self.assertEqual(m["reserved_bytes"], 3 << 30)
            self.assertEqual(m["by_tenant"]["etl"]["bytes"], 3 << 30)
            self.assertEqual(m["by_priority"]["critical"]["reservations"], 1)
            # Too big for the capacity: the daemon's 400, exit 1.
            code, _, err = run_cli("resize", lease, "20GiB", *url)
            self.assertEqual(code, 1)
            self.assertIn("can never be admitted", err)
            code, out, err = run_cli("release", lease, *url)
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out)["memory_bytes"], 3 << 30)
            # Usage errors say what is wrong, and reach no daemon.
            for args, text in ((["reserve"], "missing SIZE"), (["reserve", "lots"], "not a size"),
                               (["reserve", "1GiB", "--wait", "soon"], "takes a duration"),
                               (["acquire", "x", "--ttl", "later"], "takes a duration"),
                               (["resize", lease], "expects LEASE SIZE"),
                               (["resize", "xyz!", "1GiB"], "not a lease id")):
                code, _, err = run_cli(*(args + list(url)))
                self.assertEqual(code, 2, args)
                self.assertIn(text, err, args)
            self.assertEqual(d.get_json("/v1/memory")["reserved_bytes"], 0)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_check_runs_the_daemons_own_checks(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("pools:\n  p:\n    backends:\n      - {name: a, url: \"http://h:1\", "
                    "metrics_url: \"https://h:1/metrics\"}\n")
        code, _, err = run_cli("check", f.name)
        self.assertEqual(code, 1)
        self.assertIn("pools.p.backends[0].metrics_url: https:// is not supported", err)
        os.unlink(f.name)

    def test_status_unreachable(self):
        code, _, err = run_cli("status", "--url", "http://127.0.0.1:1")
        self.assertEqual(code, 1)
        self.assertIn("cannot reach", err)

    def test_default_config_serves(self):
        tmp = tempfile.mkdtemp()
        d = Daemon(workdir=tmp).start()
        try:
            self.assertEqual(d.request("GET", "/healthz")[0], 200)
            self.assertEqual(d.get_json("/v1/state")["config"]["source"], "<default>")
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
