"""Signals, reloads and state snapshots of the real daemon."""
import json
import os
import signal
import socket
import time
import unittest

from harness import Daemon, raw, read_response

GOOD = """
state_dir: {state_dir}
log: {level: debug}
limits: {max_body: 4KiB}
snapshot: {interval: 200ms}
"""


class Reload(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(GOOD).start()

    def tearDown(self):
        self.assertEqual(self.d.stop(), 0)

    def test_sighup_with_bad_config_keeps_the_old_one(self):
        self.d.write_config(GOOD.replace("max_body: 4KiB", "max_body: 8KiB") +
                            "budgets:\n  a:\n    limits: {requests: {limit: 5, per: 1m}}\n"
                            "    target_utilization: 1.2\n")
        self.d.signal(signal.SIGHUP)
        line = self.d.wait_log(r'config reload refused.*target_utilization')
        self.assertIn("line=9 column=25", line)
        cfg = self.d.get_json("/v1/config")
        self.assertEqual(cfg["limits"]["max_body"], "4KiB")
        st = self.d.get_json("/v1/state")
        self.assertEqual(st["config"]["reload_failures"], 1)
        self.assertEqual(st["config"]["reloads"], 0)
        self.assertRegex(st["config"]["last_reload_error"], r"ballast\.yaml:\d+:\d+: ")
        # Still serving, still enforcing the old limit.
        s, _, _ = self.d.request("POST", "/v1/reload", body="x" * 5000,
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(s, 413)

    def test_sighup_with_good_config_applies(self):
        self.d.write_config(GOOD.replace("max_body: 4KiB", "max_body: 8KiB"))
        self.d.signal(signal.SIGHUP)
        self.d.wait_log(r'msg="config reloaded"')
        self.assertEqual(self.d.get_json("/v1/config")["limits"]["max_body"], "8KiB")
        self.assertEqual(self.d.get_json("/v1/state")["config"]["reloads"], 1)

    def test_reload_endpoint_reports_problems(self):
        self.d.write_config(GOOD + "limts: {}\n")
        s, _, b = self.d.request("POST", "/v1/reload")
        self.assertEqual(s, 422)
        err = json.loads(b)
        self.assertEqual(err["error"]["code"], "invalid_config")
        p = err["problems"][0]
        self.assertEqual(p["path"], "limts")
        self.assertIn("limits", p["message"])  # did you mean
        self.assertGreater(p["line"], 0)
        self.assertGreater(p["column"], 0)

    def test_reload_dry_run_changes_nothing(self):
        self.d.write_config(GOOD.replace("max_body: 4KiB", "max_body: 8KiB"))
        s, _, b = self.d.request("POST", "/v1/reload", body={"dry_run": True})
        self.assertEqual(s, 200, b)
        self.assertFalse(json.loads(b)["reloaded"])
        self.assertEqual(self.d.get_json("/v1/config")["limits"]["max_body"], "4KiB")
        s, _, b = self.d.request("POST", "/v1/reload", body={})
        self.assertEqual(s, 200, b)
        self.assertTrue(json.loads(b)["reloaded"])
        self.assertEqual(self.d.get_json("/v1/config")["limits"]["max_body"], "8KiB")

    def test_state_dir_change_needs_restart_and_listen_flag_wins(self):
        self.d.write_config(GOOD.replace("{state_dir}", os.path.join(self.d.tmp, "elsewhere"))
                            + "listen: 127.0.0.1:1\n")
        s, _, b = self.d.request("POST", "/v1/reload")
        self.assertEqual(s, 200, b)
        # --listen on the command line wins over the file: no listen change.
        self.assertEqual(json.loads(b)["warnings"], ["state_dir changed: restart to apply"])
        self.assertEqual(self.d.get_json("/v1/config")["state_dir"], self.d.state_dir)
        s, _, _ = self.d.request("GET", "/healthz")
        self.assertEqual(s, 200)


class Shutdown(unittest.TestCase):
    def test_sigterm_drains_in_flight_request_and_snapshots(self):
        d = Daemon(GOOD.replace("200ms", "1h")).start()
        idle = raw(d)
        busy = raw(d)
        busy.sendall(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 16\r\n\r\n{\"dry_run\"")
        time.sleep(0.2)
        t0 = time.time()
        d.signal(signal.SIGTERM)
        d.wait_log(r'msg="draining"')
        # Idle connections are closed at once; new ones are refused.
        idle.settimeout(2)
        self.assertEqual(idle.recv(10), b"")
        with self.assertRaises(OSError):
            socket.create_connection((d.host, d.port), timeout=1).sendall(b"GET / HTTP/1.1\r\n\r\n")
            raise OSError("connected")  # pragma: no cover
        # The request in progress still gets its answer, with Connection: close.
        busy.sendall(b":true}")
        status, h, b = read_response(busy)
        self.assertEqual(status, 200, b)
        self.assertEqual(h["connection"], "close")
        d.proc.wait(5)
        self.assertEqual(d.proc.returncode, 0)
        self.assertLess(time.time() - t0, 5)
        with open(os.path.join(d.state_dir, "state.json")) as f:
            snap = json.load(f)
        self.assertEqual(snap["version"], 1)
        self.assertEqual(snap["components"]["daemon"]["starts"], 1)
        d.stop()

    def test_sigterm_with_stuck_client_exits_within_5s(self):
        d = Daemon(GOOD.replace("200ms", "1h").replace("max_body: 4KiB", "max_body: 4KiB, request_timeout: 30s")).start()
        stuck = raw(d)
        stuck.sendall(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.2)
        t0 = time.time()
        d.signal(signal.SIGTERM)
        d.proc.wait(6)
        self.assertEqual(d.proc.returncode, 0)
        self.assertLess(time.time() - t0, 5.5)
        self.assertTrue(os.path.exists(os.path.join(d.state_dir, "state.json")))
        d.stop()
        stuck.close()

    def test_sigint_also_drains(self):
        d = Daemon(GOOD).start()
        d.signal(signal.SIGINT)
        d.proc.wait(5)
        self.assertEqual(d.proc.returncode, 0)
        d.stop()


class Snapshots(unittest.TestCase):
    def test_state_survives_restart(self):
        d = Daemon(GOOD).start()
        self.assertEqual(d.get_json("/v1/state")["lifetime"]["starts"], 1)
        first = d.get_json("/v1/state")["lifetime"]["first_start_ms"]
        self.assertEqual(d.stop(), 0)
        d.start()
        st = d.get_json("/v1/state")
        self.assertEqual(st["lifetime"]["starts"], 2)
        self.assertEqual(st["lifetime"]["first_start_ms"], first)
        self.assertTrue(st["snapshot"]["restored"]["found"])
        self.assertEqual(d.stop(), 0)

    def test_periodic_snapshots_are_written(self):
        d = Daemon(GOOD).start()
        deadline = time.time() + 5
        while time.time() < deadline and d.get_json("/v1/state")["snapshot"]["writes"] < 2:
            time.sleep(0.1)
        self.assertGreaterEqual(d.get_json("/v1/state")["snapshot"]["writes"], 2)
        self.assertEqual(d.stop(), 0)

    def test_snapshot_endpoint_writes_now(self):
        d = Daemon(GOOD.replace("200ms", "1h")).start()
        s, _, b = d.request("POST", "/v1/snapshot")
        self.assertEqual(s, 200, b)
        r = json.loads(b)
        self.assertGreater(r["bytes"], 0)
        self.assertTrue(os.path.exists(r["path"]))
        self.assertEqual(d.stop(), 0)

    def test_corrupt_snapshot_is_moved_aside(self):
        d = Daemon(GOOD)
        os.makedirs(d.state_dir)
        with open(os.path.join(d.state_dir, "state.json"), "w") as f:
            f.write('{"format":"ballast-snapshot","version":1,"compo')
        d.start()
        d.wait_log(r"moved")
        st = d.get_json("/v1/state")
        self.assertIsNotNone(st["snapshot"]["restored"]["moved_aside"])
        self.assertTrue(os.path.exists(st["snapshot"]["restored"]["moved_aside"]))
        self.assertEqual(st["lifetime"]["starts"], 1)
        self.assertEqual(d.stop(), 0)

    def test_newer_snapshot_is_moved_aside(self):
        d = Daemon(GOOD)
        os.makedirs(d.state_dir)
        with open(os.path.join(d.state_dir, "state.json"), "w") as f:
            json.dump({"format": "ballast-snapshot", "version": 99, "components": {}}, f)
        d.start()
        st = d.get_json("/v1/state")
        self.assertIn("newer", st["snapshot"]["restored"]["moved_aside"])
        self.assertEqual(d.stop(), 0)

    def test_unusable_state_dir_refuses_to_start(self):
        d = Daemon(GOOD)
        with open(os.path.join(d.tmp, "file"), "w") as f:
            f.write("x")
        d.write_config(GOOD.replace("{state_dir}", os.path.join(d.tmp, "file", "sub")))
        with self.assertRaises(RuntimeError) as ctx:
            d.start()
        self.assertIn("Not a directory", str(ctx.exception))
        self.assertEqual(d.proc.returncode, 1)

    def test_failing_snapshot_write_is_reported(self):
        d = Daemon(GOOD.replace("200ms", "1h")).start()
        # Take the state directory away under the running daemon.
        os.makedirs(d.state_dir, exist_ok=True)
        os.rmdir(d.state_dir)
        with open(d.state_dir, "w") as f:
            f.write("x")
        s, _, b = d.request("POST", "/v1/snapshot")
        self.assertEqual(s, 500)
        self.assertEqual(json.loads(b)["error"]["code"], "snapshot_failed")
        st = d.get_json("/v1/state")
        self.assertEqual(st["snapshot"]["failures"], 1)
        self.assertIsNotNone(st["snapshot"]["last_error"])
        # The final snapshot cannot be written either: a non-zero exit says so.
        self.assertEqual(d.stop(), 1)


if __name__ == "__main__":
    unittest.main()
