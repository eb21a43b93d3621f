"""The HTTP surface of the real daemon: endpoints and every hygiene rule."""
import json
import os
import socket
import time
import unittest

from harness import Daemon, closed_by_peer, raw, read_response

BASE = """
listen: 127.0.0.1:7070
state_dir: {state_dir}
log: {level: debug, access: true}
limits: {max_body: 1KiB, max_header: 2KiB, request_timeout: 1s, max_connections: MAXCONN}
snapshot: {interval: 1h}
"""


class Endpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(BASE.replace("MAXCONN", "100")).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0

    def test_healthz_and_readyz(self):
        s, h, b = self.d.request("GET", "/healthz")
        self.assertEqual(s, 200)
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(json.loads(b), {"status": "ok"})
        s, _, b = self.d.request("GET", "/readyz")
        self.assertEqual(s, 200)
        self.assertEqual(json.loads(b)["status"], "ready")

    def test_metrics_exposition(self):
        self.d.request("GET", "/healthz")
        s, h, b = self.d.request("GET", "/metrics")
        self.assertEqual(s, 200)
        self.assertTrue(h["content-type"].startswith("text/plain; version=0.0.4"))
        text = b.decode()
        for family in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                       "process_open_fds", "process_max_fds", "process_start_time_seconds",
                       "ballast_build_info", "ballast_http_connections_open",
                       "ballast_http_requests_total", "ballast_http_request_duration_seconds"):
            self.assertIn("# TYPE %s " % family, text)
        self.assertRegex(text, r'ballast_http_requests_total\{route="/healthz",code="200"\} [1-9]')
        self.assertRegex(text, r'ballast_http_request_duration_seconds_bucket\{route="/healthz",le="\+Inf"\} [1-9]')
        self.assertRegex(text, r'ballast_build_info\{version="[0-9.]+"\} 1')
        # Every sample line is "name{labels} value" with a numeric value.
        for line in text.splitlines():
            if line and not line.startswith("#"):
                float(line.rsplit(" ", 1)[1])

    def test_state_document(self):
        st = self.d.get_json("/v1/state")
        self.assertTrue(st["ballast"]["ready"])
        self.assertEqual(st["ballast"]["listen"], self.d.addr)
        self.assertGreaterEqual(st["http"]["connections_open"], 1)
        self.assertEqual(st["lifetime"]["starts"], 1)
        self.assertTrue(st["snapshot"]["path"].endswith("state.json"))
        for key in ("config", "process", "budgets", "pools", "memory", "autoscaler"):
            self.assertIn(key, st)

    def test_config_document(self):
        cfg = self.d.get_json("/v1/config")
        self.assertEqual(cfg["limits"]["max_body"], "1KiB")
        self.assertEqual(cfg["limits"]["request_timeout"], "1s")

    def test_unknown_route_is_404_json(self):
        s, h, b = self.d.request("GET", "/nope")
        self.assertEqual(s, 404)
        self.assertEqual(json.loads(b)["error"]["code"], "not_found")

    def test_wrong_method_is_405_with_allow(self):
        s, h, b = self.d.request("DELETE", "/healthz")
        self.assertEqual(s, 405)
        self.assertEqual(h["allow"], "GET")
        self.assertEqual(json.loads(b)["error"]["code"], "method_not_allowed")
        s, h, _ = self.d.request("GET", "/v1/reload")
        self.assertEqual((s, h["allow"]), (405, "POST"))

    def test_malformed_json_gives_byte_offset(self):
        s, _, b = self.d.request("POST", "/v1/reload", body='{"dry_run": tru}',
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(s, 400)
        err = json.loads(b)
        self.assertEqual(err["error"]["code"], "malformed_json")
        self.assertIn("byte", err["error"]["message"])
        self.assertEqual(err["offset"], 15)

    def test_json_too_deep(self):
        s, _, b = self.d.request("POST", "/v1/reload", body="[" * 40 + "]" * 40,
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(s, 400)
        self.assertEqual(json.loads(b)["error"]["code"], "too_deep")

    def test_unknown_field_named(self):
        s, _, b = self.d.request("POST", "/v1/reload", body={"dry_rn": True})
        self.assertEqual(s, 400)
        msg = json.loads(b)["error"]["message"]
        self.assertIn("dry_rn", msg)
        self.assertIn("dry_run", msg)

    def test_wrong_field_type(self):
        s, _, b = self.d.request("POST", "/v1/reload", body={"dry_run": "yes"})
        self.assertEqual(s, 400)
        self.assertIn("dry_run", json.loads(b)["error"]["message"])

    def test_body_over_limit_is_413(self):
        s, _, b = self.d.request("POST", "/v1/reload", body="x" * 2000,
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(s, 413)
        self.assertEqual(json.loads(b)["error"]["code"], "body_too_large")

    def test_chunked_body_over_limit_is_413(self):
        sock = raw(self.d)
        chunk = b"x" * 600
        sock.sendall(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"258\r\n" + chunk + b"\r\n" + b"258\r\n" + chunk + b"\r\n0\r\n\r\n")
        status, h, _ = read_response(sock)
        self.assertEqual(status, 413)
        self.assertEqual(h["connection"], "close")
        sock.close()

    def test_headers_over_limit_is_431(self):
        s, _, b = self.d.request("GET", "/healthz", headers={"X-Big": "y" * 3000})
        self.assertEqual(s, 431)
        self.assertEqual(json.loads(b)["error"]["code"], "header_too_large")

    def test_unsupported_http_version_is_505(self):
        sock = raw(self.d)
        sock.sendall(b"GET /healthz HTTP/2.0\r\n\r\n")
        status, h, b = read_response(sock)
        self.assertEqual(status, 505)
        self.assertEqual(h["connection"], "close")
        sock.close()

    def test_malformed_http_is_400_and_closes(self):
        sock = raw(self.d)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n")
        status, h, b = read_response(sock)
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(b)["error"]["code"], "bad_request")
        self.assertTrue(closed_by_peer(sock, 2))
        sock.close()

    def test_keep_alive_serves_many_requests(self):
        sock = raw(self.d)
        for _ in range(20):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, h, _ = read_response(sock)
            self.assertEqual(status, 200)
            self.assertNotIn("connection", h)
        sock.close()

    def test_pipelined_requests_answered_in_order(self):
        sock = raw(self.d)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /v1/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                     b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = [read_response(sock)[0] for _ in range(4)]
        self.assertEqual(got, [200, 404, 200, 200])
        sock.close()

    def test_connection_close_honoured(self):
        sock = raw(self.d)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, h, _ = read_response(sock)
        self.assertEqual((status, h["connection"]), (200, "close"))
        self.assertTrue(closed_by_peer(sock, 2))
        sock.close()

    def test_http10_without_keep_alive_closes(self):
        sock = raw(self.d)
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        status, _, _ = read_response(sock)
        self.assertEqual(status, 200)
        self.assertTrue(closed_by_peer(sock, 2))
        sock.close()

    def test_expect_100_continue(self):
        sock = raw(self.d)
        sock.sendall(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 16\r\nExpect: 100-continue\r\n\r\n")
        status, _, _ = read_response(sock)
        self.assertEqual(status, 100)
        sock.sendall(b'{"dry_run":true}')
        status, _, b = read_response(sock)
        self.assertEqual(status, 200, b)
        sock.close()

    def test_slow_request_times_out_with_408(self):
        sock = raw(self.d)
        t0 = time.time()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes
        status, h, b = read_response(sock, timeout=5)
        self.assertEqual(status, 408)
        self.assertEqual(json.loads(b)["error"]["code"], "request_timeout")
        self.assertLess(time.time() - t0, 4)
        self.assertTrue(closed_by_peer(sock, 2))
        sock.close()

    def test_slowloris_drip_is_dropped(self):
        sock = raw(self.d)
        t0 = time.time()
        dropped = False
        for ch in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100:
            try:
                sock.sendall(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            time.sleep(0.1)
            if time.time() - t0 > 4:
                break
        if not dropped:
            r = read_response(sock, timeout=3)
            dropped = r is None or r[0] == 408
        self.assertTrue(dropped)
        sock.close()

    def test_idle_connection_closed(self):
        sock = raw(self.d)
        self.assertTrue(closed_by_peer(sock, 4))
        sock.close()

    def test_curl_style_form_content_type_still_parses_json(self):
        s, _, b = self.d.request("POST", "/v1/reload", body='{"dry_run":true}',
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(s, 200, b)
        s, _, b = self.d.request("POST", "/v1/reload", body="dry_run=1",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(s, 400)
        self.assertEqual(json.loads(b)["error"]["code"], "malformed_json")


class ConnectionCap(unittest.TestCase):
    def test_over_cap_is_refused_politely(self):
        d = Daemon(BASE.replace("MAXCONN", "4")).start()
        try:
            held = [raw(d) for _ in range(4)]
            # Make sure all four are accepted before the fifth.
            for s in held:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(read_response(s)[0], 200)
            extra = raw(d)
            status, h, b = read_response(extra)
            self.assertEqual(status, 503)
            self.assertEqual(json.loads(b)["error"]["code"], "too_many_connections")
            self.assertEqual(h["retry-after"], "1")
            extra.close()
            held[0].close()
            # The slot frees once the daemon sees the close: poll briefly.
            deadline = time.time() + 3
            status, _, body = d.request("GET", "/v1/state")
            while status != 200 and time.time() < deadline:
                time.sleep(0.05)
                status, _, body = d.request("GET", "/v1/state")
            self.assertEqual(status, 200)
            st = json.loads(body)
            self.assertGreaterEqual(st["http"]["connections_refused"], 1)
            for s in held[1:]:
                s.close()
        finally:
            self.assertEqual(d.stop(), 0)


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(BASE.replace("MAXCONN", "100") + "auth: {token_file: {token_file}}\n", token="s3cret-token").start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0

    def test_mutating_endpoints_need_token(self):
        for path in ("/v1/snapshot", "/v1/reload"):
            s, _, b = self.d.request("POST", path)
            self.assertEqual(s, 401, path)
            self.assertEqual(json.loads(b)["error"]["code"], "unauthorized")
            s, _, _ = self.d.request("POST", path, headers={"Authorization": "Bearer wrong"})
            self.assertEqual(s, 401)
            s, _, _ = self.d.request("POST", path, headers={"Authorization": "Bearer s3cret-tokenX"})
            self.assertEqual(s, 401)
            s, _, _ = self.d.request("POST", path, headers={"Authorization": "Basic s3cret-token"})
            self.assertEqual(s, 401)
            s, _, b = self.d.request("POST", path, headers={"Authorization": "Bearer s3cret-token"})
            self.assertEqual(s, 200, b)

    def test_reads_stay_open(self):
        for path in ("/healthz", "/readyz", "/metrics", "/v1/state", "/v1/config"):
            s, _, _ = self.d.request("GET", path)
            self.assertEqual(s, 200, path)

    def test_token_not_in_config_output(self):
        s, _, b = self.d.request("GET", "/v1/config")
        self.assertNotIn(b"s3cret-token", b)


if __name__ == "__main__":
    unittest.main()
