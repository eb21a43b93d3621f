"""Starts the real ballast binary on an ephemeral loopback port and talks to it.

Stdlib only. Each test module runs in its own process under CTest's timeout.
"""
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("BALLAST_BIN", os.path.join(os.path.dirname(__file__), "../../build/ballast"))
SOURCE_DIR = os.environ.get("BALLAST_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))

LISTEN_RE = re.compile(r'msg="listening" addr=(\S+)')


def run_cli(*args, timeout=20, input=None):
    """Runs `ballast ARGS` to completion; returns (exit code, stdout, stderr)."""
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, input=input)
    return p.returncode, p.stdout, p.stderr


class Daemon:
    """One `ballast serve` process with its own temporary state_dir."""

    def __init__(self, config=None, args=(), workdir=None, token=None):
        self.tmp = workdir or tempfile.mkdtemp(prefix="ballast-it-")
        self.state_dir = os.path.join(self.tmp, "state")
        self.config_path = None
        if token is not None:
            self.token_path = os.path.join(self.tmp, "token")
            with open(self.token_path, "w") as f:
                f.write(token + "\n")
        if config is not None:
            self.write_config(config)
        self.args = list(args)
        self.proc = None
        self.lines = []
        self.lock = threading.Lock()
        self.addr = None

    def write_config(self, text):
        """(Re)writes the config file; {state_dir} and {token_file} are filled in."""
        self.config_path = os.path.join(self.tmp, "ballast.yaml")
        text = text.replace("{state_dir}", self.state_dir)
        text = text.replace("{token_file}", os.path.join(self.tmp, "token"))
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self, timeout=10):
        cmd = [BIN, "serve", "--listen", "127.0.0.1:0"]
        if self.config_path:
            cmd += ["-c", self.config_path]
        cmd += self.args
        self.lines = []
        self.addr = None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, cwd=self.tmp)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for line in self.lines:
                    m = LISTEN_RE.search(line)
                    if m:
                        self.addr = m.group(1)
            if self.addr:
                host, port = self.addr.rsplit(":", 1)
                self.host, self.port = host, int(port)
                return self
            if self.proc.poll() is not None:
                self.reader.join(2)
                raise RuntimeError("ballast exited with %d:\n%s" % (self.proc.returncode, self.log()))
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("ballast did not start listening:\n" + self.log())

    def _read(self):
        for line in self.proc.stderr:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def log(self):
        with self.lock:
            return "\n".join(self.lines)

    def wait_log(self, pattern, timeout=5):
        """Waits until a log line matches the regex pattern; returns the line."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for line in self.lines:
                    if rx.search(line):
                        return line
            time.sleep(0.02)
        raise AssertionError("no log line matches %r:\n%s" % (pattern, self.log()))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=6):
        """SIGTERM, then waits; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("ballast did not exit within %ss of SIGTERM" % timeout)
        if self.reader:
            self.reader.join(2)
        return self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # ---- HTTP -----------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=5):
        """One request on a fresh connection; returns (status, headers dict, body bytes)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = dict(headers or {}, **{"Content-Type": "application/json"})
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get_json(self, path, expect=200):
        status, _, data = self.request("GET", path)
        if status != expect:
            raise AssertionError("GET %s: %d %s" % (path, status, data))
        return json.loads(data)

    def connect(self, timeout=5):
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        return s


def read_response(sock, timeout=5):
    """Reads one HTTP/1.1 response (Content-Length framed) from a raw socket.
    Returns (status, headers dict, body bytes), or None if the peer closed first."""
    sock.settimeout(timeout)
    buf = getattr(sock, "_pending", b"")
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    sock._pending = rest[n:]
    return status, headers, rest[:n]


class SockWrap:
    """A socket with room for read_response's leftover bytes."""

    def __init__(self, s):
        self.s = s
        self._pending = b""

    def __getattr__(self, name):
        return getattr(self.s, name)


def raw(daemon, timeout=5):
    return SockWrap(daemon.connect(timeout))


def closed_by_peer(sock, timeout=5):
    """True if the peer closes the connection (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
