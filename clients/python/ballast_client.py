"""A small client for the ballast daemon: Python standard library only.

    from ballast_client import Ballast, RateLimited

    b = Ballast("http://127.0.0.1:7070")
    with b.lease("anthropic", input_tokens=1200, output_tokens=800, wait_ms=2000) as lease:
        reply = call_the_provider(...)
        lease.used(input_tokens=reply.usage.input_tokens,
                   output_tokens=reply.usage.output_tokens,
                   provider_headers=dict(reply.headers))

The lease is released when the block ends: outcome "ok", or "error" if the
block raised (`lease.outcome = "rate_limited"` when the provider answered 429).
One Ballast object keeps one keep-alive connection: use one per thread.
"""
import http.client
import json
import os
import time
import urllib.parse

__all__ = ["Ballast", "Lease", "BallastError", "RateLimited"]


class BallastError(Exception):
    """The daemon refused a request: status, code and message say why."""

    def __init__(self, status, code, message, body=None):
        super().__init__("%d %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}


class RateLimited(BallastError):
    """429: the budget cannot admit the call now. retry_after_ms says when."""

    @property
    def retry_after_ms(self):
        return self.body.get("retry_after_ms")

    @property
    def reason(self):
        return self.body.get("reason")


class Lease:
    """A granted lease. Set what the call used with used(); release() or
    leaving the `with` block gives it back."""

    def __init__(self, client, grant):
        self._client = client
        self.id = grant["lease"]
        self.budget = grant.get("budget")
        self.bytes = grant.get("bytes")  # memory reservations
        # With a pool: where to send the call, {"name": ..., "url": ...}.
        self.backend = grant.get("backend")
        self.expires_at_ms = grant.get("expires_at_ms")
        self.waited_ms = grant.get("waited_ms", 0)
        self.outcome = "ok"
        self._used = {}
        self._started = time.monotonic()
        self.released = None

    def used(self, tokens=None, input_tokens=None, output_tokens=None, requests=None,
             provider_headers=None):
        """Records what the call really used, reconciled on release."""
        for key, value in (("tokens_used", tokens), ("input_tokens_used", input_tokens),
                           ("output_tokens_used", output_tokens),
                           ("requests_used", requests)):
            if value is not None:
                self._used[key] = int(value)
        if provider_headers is not None:
            self._used["provider_headers"] = {str(k): str(v) for k, v in provider_headers.items()}

    def extend(self, ttl_ms):
        """Keeps the lease alive for ttl_ms more."""
        return self._client._post("/v1/leases/%s/extend" % self.id, {"ttl_ms": int(ttl_ms)})

    def resize(self, size=None, bytes=None):
        """Grows or shrinks a memory reservation in place (size "3GiB", or
        bytes). A growth that does not fit now raises RateLimited and the
        reservation keeps its size."""
        if (size is None) == (bytes is None):
            raise ValueError("give exactly one of size or bytes")
        body = {"size": size} if size is not None else {"bytes": int(bytes)}
        answer = self._client._post("/v1/leases/%s/resize" % self.id, body)
        self.bytes = answer["bytes"]
        return answer

    def release(self, outcome=None):
        """Gives the lease back (once); returns the daemon's answer."""
        if self.released is not None:
            return self.released
        body = dict(self._used, lease=self.id, outcome=outcome or self.outcome,
                    latency_ms=int((time.monotonic() - self._started) * 1000))
        self.released = self._client._post("/v1/release", body)
        return self.released

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release(outcome=self.outcome if exc_type is None or self.outcome != "ok"
                     else "error")
        return False


class Ballast:
    """A connection to one ballast daemon."""

    def __init__(self, url=None, token=None, timeout=70.0):
        url = url or os.environ.get("BALLAST_URL", "http://127.0.0.1:7070")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("ballast URL must be http://host:port, not %r" % url)
        self._host = parts.hostname
        self._port = parts.port or 80
        self._token = token if token is not None else os.environ.get("BALLAST_TOKEN")
        self._timeout = timeout
        self._conn = None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = "Bearer " + self._token
        payload = json.dumps(body) if body is not None else None
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=self._timeout)
            try:
                self._conn.request(method, path, body=payload, headers=headers)
                resp = self._conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                # A keep-alive connection the daemon closed (idle timeout): once more.
                self.close()
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        doc = json.loads(data) if data else {}
        if resp.status != 200:
            err = doc.get("error", {}) if isinstance(doc, dict) else {}
            cls = RateLimited if resp.status == 429 else BallastError
            raise cls(resp.status, err.get("code", "http_%d" % resp.status),
                      err.get("message", data.decode("utf-8", "replace")), doc)
        return doc

    def _post(self, path, body):
        return self._request("POST", path, body)

    def acquire(self, budget=None, tokens=None, input_tokens=None, output_tokens=None,
                requests=None, tenant=None, priority=None, wait_ms=None, ttl_ms=None,
                pool=None, key=None):
        """Takes a lease from a budget, a pool, or both (lease.backend says
        where to send the call); raises RateLimited (429) or BallastError
        (503 no_backend when every backend's breaker is open)."""
        if budget is None and pool is None:
            raise ValueError("give a budget, a pool, or both")
        body = {}
        for key_, value in (("budget", budget), ("pool", pool), ("key", key)):
            if value is not None:
                body[key_] = value
        for key, value in (("tokens", tokens), ("input_tokens", input_tokens),
                           ("output_tokens", output_tokens), ("requests", requests),
                           ("tenant", tenant), ("priority", priority),
                           ("wait_ms", wait_ms), ("ttl_ms", ttl_ms)):
            if value is not None:
                body[key] = value
        return Lease(self, self._post("/v1/acquire", body))

    def lease(self, budget=None, **kwargs):
        """acquire() for a `with` block: the lease is released when it ends
        (with outcome error if the block raised, which a pool's breaker counts)."""
        return self.acquire(budget, **kwargs)

    def pools(self):
        return self._request("GET", "/v1/pools")["pools"]

    def reserve_memory(self, size=None, bytes=None, priority=None, tenant=None, wait_ms=None,
                       ttl_ms=None):
        """Reserves memory (size "2GiB", or bytes); the Lease releases it. Raises
        RateLimited (429 insufficient_memory or queue_full) or BallastError."""
        if (size is None) == (bytes is None):
            raise ValueError("give exactly one of size or bytes")
        body = {"size": size} if size is not None else {"bytes": int(bytes)}
        for key, value in (("priority", priority), ("tenant", tenant), ("wait_ms", wait_ms),
                           ("ttl_ms", ttl_ms)):
            if value is not None:
                body[key] = value
        return Lease(self, self._post("/v1/memory/reserve", body))

    def memory(self):
        return self._request("GET", "/v1/memory")

    def budgets(self):
        return self._request("GET", "/v1/budgets")["budgets"]

    def state(self):
        return self._request("GET", "/v1/state")
