"""What-if plans: POST /v1/autoscale/plan against the real daemon, and
`ballast plan FILE|-`, which computes the same answer locally."""
import json
import os
import tempfile
import unittest

from harness import Daemon, run_cli

CONFIG = """
state_dir: {state_dir}
log: {level: info}
"""

PLAN = "/v1/autoscale/plan"


def pod(name, request=2000, **kw):
    """A running pod, ready for long enough that cpu counts it."""
    p = {"name": name, "phase": "Running", "ready": True, "deleting": False,
         "start_time_s": -600, "ready_transition_time_s": -590, "request": request}
    p.update(kw)
    return p


def sample(name, usage, **kw):
    s = {"pod": name, "usage": usage, "timestamp_s": -15, "window_s": 60}
    s.update(kw)
    return s


def cpu_request(usages, target=30, request=2000, current=None, **extra):
    """The single-target form over len(usages) pods."""
    names = ["p%d" % i for i in range(len(usages))]
    req = {"current_replicas": len(usages) if current is None else current,
           "target": {"resource": "cpu", "utilization_percent": target},
           "pods": [pod(n, request) for n in names],
           "metrics": [sample(n, u) for n, u in zip(names, usages)]}
    req.update(extra)
    return req


# The issue's example: 3 pods at 1000m of 2000m, target 30 %.
ISSUE = cpu_request([1000, 1000, 1000])


class Endpoint(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(CONFIG).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0

    def plan(self, body, expect=200):
        s, h, b = self.d.request("POST", PLAN, body=body)
        doc = json.loads(b)
        if s != expect:
            raise AssertionError("plan %s: %d %s" % (json.dumps(body)[:300], s, b))
        self.assertEqual(h["content-type"], "application/json")
        return doc

    def bad(self, body, path, status=400):
        doc = self.plan(body, expect=status)
        self.assertEqual(doc["error"]["code"], "invalid_field", doc)
        self.assertEqual(doc.get("path"), path, doc)
        return doc["error"]["message"]

    # ---- the basic form: Kubernetes' replica calculation ------------------

    def test_issue_example(self):
        doc = self.plan(ISSUE)
        self.assertEqual(doc["desired_replicas"], 5)
        self.assertEqual(doc["utilization_percent"], 50)
        self.assertEqual(doc["raw_usage"], 1000)
        self.assertEqual(doc["current_replicas"], 3)
        self.assertEqual(doc["reason"], "cpu 50 % > 30 % over 3 ready pods → 5")
        # A plain plan is the replica calculation: no floor of 5, no
        # ceiling of 100, no behaviors.
        self.assertEqual(doc["min_replicas"], 1)
        self.assertEqual(doc["max_replicas"], 2 ** 31 - 1)
        self.assertFalse(doc["behaviors"])
        self.assertIsNone(doc["limit"])
        t = doc["targets"][0]
        self.assertEqual((t["type"], t["name"], t["status"], t["replicas"], t["outcome"]),
                         ("resource", "cpu", "ok", 5, "scale"))
        self.assertEqual((t["ready_pods"], t["missing_pods"], t["unready_pods"]), (3, 0, 0))

    def test_issue_literal_body(self):
        # The body exactly as the issue gives it: one pod at 600m of 2000m
        # is 30 %, on target: keep 3.
        body = {"current_replicas": 3, "target": {"resource": "cpu", "utilization_percent": 30},
                "tolerance": 0.1, "cpu_initialization_period_s": 300,
                "initial_readiness_delay_s": 30,
                "pods": [{"name": "p0", "phase": "Running", "ready": True, "deleting": False,
                          "start_time_s": -600, "ready_transition_time_s": -590, "request": 2000}],
                "metrics": [{"pod": "p0", "usage": 600, "timestamp_s": -15, "window_s": 60}]}
        doc = self.plan(body)
        self.assertEqual((doc["desired_replicas"], doc["utilization_percent"], doc["raw_usage"]),
                         (3, 30, 600))
        self.assertEqual(doc["targets"][0]["outcome"], "within")

    def test_raw_usage_is_the_average_over_pods_with_metrics(self):
        # 600 + 1000 + 1400 over 3 pods; p3 has no sample (missing): on a
        # scale-up it is filled in at 0 %, 3000 / 8000 = 37 % > 30 % * 1.1,
        # ceil(37 / 30 * 4) = 5.
        req = cpu_request([600, 1000, 1400])
        req["pods"].append(pod("p3"))
        req["current_replicas"] = 4
        doc = self.plan(req)
        self.assertEqual(doc["raw_usage"], 1000)
        self.assertEqual(doc["utilization_percent"], 50)
        self.assertEqual(doc["desired_replicas"], 5)
        t = doc["targets"][0]
        self.assertEqual((t["missing_pods"], t["missing_fill_percent"], t["new_utilization_percent"]),
                         (1, 0, 37))

    def test_metrics_for_unknown_pods_are_ignored(self):
        req = json.loads(json.dumps(ISSUE))
        req["metrics"].append(sample("ghost", 10 ** 9))
        doc = self.plan(req)
        self.assertEqual((doc["desired_replicas"], doc["raw_usage"]), (5, 1000))
        self.assertEqual(doc["targets"][0]["unmatched_samples"], 1)

    def test_no_default_min_or_max_of_the_daemon(self):
        # 10 % of a 50 % target over 3 pods: ceil(0.2 * 3) = 1, not 5.
        doc = self.plan(cpu_request([200, 200, 200], target=50))
        self.assertEqual(doc["desired_replicas"], 1)
        # 40 pods at 100 % of a 30 % target: ceil(100/30 * 40) = 134, not 100.
        doc = self.plan(cpu_request([2000] * 40))
        self.assertEqual(doc["desired_replicas"], 134)

    def test_min_and_max_when_given(self):
        doc = self.plan(cpu_request([200, 200, 200], target=50, min_replicas=5, current=6))
        self.assertEqual(doc["desired_replicas"], 5)
        self.assertEqual(doc["limit"]["kind"], "min_replicas")
        doc = self.plan(cpu_request([2000] * 40, max_replicas=100))
        self.assertEqual(doc["desired_replicas"], 100)
        self.assertEqual(doc["limit"], {"kind": "max_replicas", "replicas": 100, "policy": None})

    def test_tolerance_number_and_object(self):
        # 660m of 2000m is 33 %: 33 / 30 = 1.1, on the default tolerance's bound.
        doc = self.plan(cpu_request([660] * 3))
        self.assertEqual(doc["desired_replicas"], 3)
        doc = self.plan(cpu_request([660] * 3, tolerance=0.05))
        self.assertEqual(doc["desired_replicas"], 4)  # ceil(1.1 * 3)
        doc = self.plan(cpu_request([660] * 3, tolerance={"scale_up": 0.05}))
        self.assertEqual(doc["desired_replicas"], 4)
        # 27 % of 30 % is 0.9: within the default 0.1 down, not within 0.05.
        doc = self.plan(cpu_request([540] * 10, tolerance={"scale_up": 0.5, "scale_down": 0.1}))
        self.assertEqual(doc["desired_replicas"], 10)
        doc = self.plan(cpu_request([540] * 10, tolerance={"scale_up": 0.5, "scale_down": 0.05}))
        self.assertEqual(doc["desired_replicas"], 9)

    def test_memory_and_per_resource_requests(self):
        gib = 1 << 30
        body = {"current_replicas": 2,
                "target": {"resource": "memory", "utilization_percent": 50},
                "pods": [{"name": "a", "request": {"cpu": 1000, "memory": gib}},
                         {"name": "b", "request": {"cpu": 1000, "memory": gib}}],
                "metrics": [{"pod": "a", "usage": gib}, {"pod": "b", "usage": gib}]}
        doc = self.plan(body)
        self.assertEqual((doc["desired_replicas"], doc["utilization_percent"], doc["raw_usage"]),
                         (4, 100, gib))

    def test_unready_cpu_pods(self):
        # p2 started 60 s ago and is not ready: unready, left out on a
        # scale-up at 0 %: (2000 + 2000) / 6000 = 66 % > 30 %, ceil(66/30*3) = 7.
        req = cpu_request([2000, 2000, 2000])
        req["pods"][2].update(ready=False, start_time_s=-60, ready_transition_time_s=-60)
        doc = self.plan(req)
        t = doc["targets"][0]
        self.assertEqual((t["ready_pods"], t["unready_pods"], t["unready_filled"]), (2, 1, True))
        self.assertEqual(doc["utilization_percent"], 100)
        self.assertEqual(doc["desired_replicas"], 7)
        # A Ready condition of status Unknown counts like True.
        req["pods"][2].update(ready="Unknown", start_time_s=-600, ready_transition_time_s=-590)
        self.assertEqual(self.plan(req)["targets"][0]["ready_pods"], 3)

    # ---- 422: nothing can be computed ----------------------------------------

    def test_pod_without_request_is_422(self):
        req = cpu_request([1000, 1000])
        req["pods"][1]["request"] = None
        doc = self.plan(req, expect=422)
        self.assertEqual(doc["error"]["code"], "cannot_plan")
        self.assertIn("missing request for p1", doc["error"]["message"])
        self.assertEqual(doc["targets"][0]["status"], "failed")
        self.assertIn("missing request for p1", doc["reason"])

    def test_no_matching_metrics_is_422(self):
        req = cpu_request([1000, 1000])
        req["metrics"] = [sample("nobody", 5)]
        doc = self.plan(req, expect=422)
        self.assertEqual(doc["error"]["code"], "cannot_plan")
        self.assertIn("did not receive metrics for targeted pods", doc["error"]["message"])
        req["metrics"] = []
        self.assertEqual(self.plan(req, expect=422)["error"]["code"], "cannot_plan")

    def test_no_pods_is_422(self):
        req = cpu_request([])
        req["current_replicas"] = 2
        doc = self.plan(req, expect=422)
        self.assertIn("no pods", doc["error"]["message"])

    # ---- 400: the request is wrong, and the message says where ----------------

    def test_bad_fields_name_the_path(self):
        req = cpu_request([1000, 1000, 1000])
        req["pods"][2]["request"] = -5
        msg = self.bad(req, "pods[2].request")
        self.assertTrue(msg.startswith("pods[2].request: must be an integer ≥ 0 or null"), msg)
        req["pods"][2]["request"] = "2000m"
        self.assertIn('not the string "2000m"', self.bad(req, "pods[2].request"))

        cases = [
            ({"current_replicas": "3"}, "current_replicas"),
            ({"current_replicas": -1}, "current_replicas"),
            ({"current_replicas": None}, "current_replicas"),
            ({"tolerance": 2}, "tolerance"),
            ({"tolerance": {"scale_up": 0.1, "scale_down": 1.5}}, "tolerance.scale_down"),
            ({"min_replicas": 5, "max_replicas": 4}, "max_replicas"),
            ({"cpu_initialization_period_s": -1}, "cpu_initialization_period_s"),
            ({"target": {"resource": "gpu", "utilization_percent": 30}}, "target.resource"),
            ({"target": {"resource": "cpu", "utilization_percent": 0}}, "target.utilization_percent"),
            ({"target": {"resource": "cpu", "band": {"low": 85, "high": 70}}}, "target.band"),
            ({"target": {"resource": "cpu"}}, "target"),
            ({"pods": {}}, "pods"),
            ({"metrics": [{"pod": "p0", "usage": 1.5}]}, "metrics[0].usage"),
            ({"metrics": [{"pod": "p0", "usage": 1, "window_s": -1}]}, "metrics[0].window_s"),
            ({"history": {"events": [{"t_s": -1, "change": 0}]}}, "history.events[0].change"),
            ({"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1,
                                                       "periodSeconds": 0}]}}},
             "behavior.scaleDown.policies[0].periodSeconds"),
            ({"panic": {"threshold": 1}}, "panic.threshold"),
            ({"budget": {"queue_length": 1}}, "budget.utilization"),
        ]
        for patch, path in cases:
            with self.subTest(path=path):
                body = dict(cpu_request([1000, 1000, 1000]), **patch)
                msg = self.bad(body, path)
                self.assertTrue(msg.startswith(path + ":") or path == "target", msg)

    def test_bad_pod_fields(self):
        for patch, path in [({"phase": "running"}, "pods[1].phase"),
                            ({"ready": "yes"}, "pods[1].ready"),
                            ({"deleting": 0}, "pods[1].deleting"),
                            ({"start_time_s": "then"}, "pods[1].start_time_s"),
                            ({"name": ""}, "pods[1].name"),
                            ({"request": {"gpu": 1}}, "pods[1].request.gpu")]:
            with self.subTest(path=path):
                req = cpu_request([1000, 1000])
                req["pods"][1].update(patch)
                self.bad(req, path)

    def test_unknown_fields_are_named_with_what_is_accepted(self):
        msg = self.bad(dict(ISSUE, colour="red"), "colour")
        self.assertIn("unknown field 'colour'", msg)
        self.assertIn("current_replicas", msg)
        self.assertIn("targets", msg)
        req = cpu_request([1000])
        req["pods"][0]["cpu"] = 1
        msg = self.bad(req, "pods[0].cpu")
        self.assertTrue(msg.startswith("pods[0]: unknown field 'cpu'; accepted: name, phase"), msg)
        msg = self.bad(dict(ISSUE, behavior={"scale_up": {}}), "behavior.scale_up")
        self.assertIn("scaleUp, scaleDown", msg)

    def test_duplicates_are_400(self):
        req = cpu_request([1000, 1000])
        req["pods"][1]["name"] = "p0"
        self.assertIn("given twice", self.bad(req, "pods[1]"))
        req = cpu_request([1000, 1000])
        req["metrics"][1]["pod"] = "p0"
        self.assertIn("one sample per pod", self.bad(req, "metrics[1]"))

    def test_malformed_bodies(self):
        s, _, b = self.d.request("POST", PLAN, body='{"current_replicas": 3,')
        doc = json.loads(b)
        self.assertEqual((s, doc["error"]["code"]), (400, "malformed_json"))
        self.assertIn("offset", doc)
        s, _, b = self.d.request("POST", PLAN, body="[1]")
        self.assertEqual((s, json.loads(b)["error"]["code"]), (400, "not_an_object"))
        s, _, b = self.d.request("POST", PLAN, body="")
        self.assertEqual(s, 400)
        s, _, b = self.d.request("POST", PLAN, body=json.dumps({"current_replicas": 3}))
        self.assertEqual(json.loads(b)["path"], "target")
        s, h, _ = self.d.request("GET", PLAN)
        self.assertEqual((s, h["allow"]), (405, "POST"))

    # ---- bands ----------------------------------------------------------------

    def test_bands(self):
        band = {"resource": "cpu", "band": {"low": 70, "high": 85}}
        # Inside the band: nothing happens.
        doc = self.plan(dict(cpu_request([1600] * 4), target=band))
        self.assertEqual((doc["desired_replicas"], doc["targets"][0]["outcome"]), (4, "within"))
        # 60 % below 70–85 %: aim at 77.5 %, ceil(60 / 77.5 * 4) = 4 (not 3).
        doc = self.plan(dict(cpu_request([1200] * 4), target=band))
        self.assertEqual(doc["desired_replicas"], 4)
        self.assertIn("below band 70–85 %", doc["reason"])
        # 95 % above it: ceil(95 / 77.5 * 4) = 5.
        doc = self.plan(dict(cpu_request([1900] * 4), target=band))
        self.assertEqual(doc["desired_replicas"], 5)
        # 30 % far below: ceil(30 / 77.5 * 4) = 2.
        doc = self.plan(dict(cpu_request([600] * 4), target=band))
        self.assertEqual(doc["desired_replicas"], 2)

    def test_average_band(self):
        body = {"current_replicas": 5,
                "targets": [{"type": "average", "name": "inflight", "total": 18,
                             "band": {"low": 3, "high": 5}}]}
        self.assertEqual(self.plan(body)["desired_replicas"], 5)  # 3.6 per replica: inside
        body["targets"][0]["total"] = 40                           # 8 > 5: ceil(40 / 4)
        self.assertEqual(self.plan(body)["desired_replicas"], 10)

    # ---- several metrics ----------------------------------------------------------

    def several(self, cpu_usages, current, failing=True, inflight=None):
        names = ["p%d" % i for i in range(len(cpu_usages))]
        targets = [{"type": "resource", "resource": "cpu", "utilization_percent": 50,
                    "metrics": [sample(n, u) for n, u in zip(names, cpu_usages)]}]
        if failing:
            targets.append({"type": "failed", "name": "memory", "error": "metrics-server timed out"})
        if inflight is not None:
            targets.append({"type": "average", "name": "inflight", "total": inflight, "target": 4})
        return {"current_replicas": current, "pods": [pod(n, 1000) for n in names],
                "targets": targets}

    def test_a_failing_metric_blocks_a_scale_down(self):
        doc = self.plan(self.several([300, 300], current=6))
        self.assertEqual(doc["desired_replicas"], 6)
        self.assertTrue(doc["blocked_by_failure"])
        self.assertIn("a failing metric blocks a scale-down → keep 6", doc["reason"])
        self.assertEqual([t["status"] for t in doc["targets"]], ["ok", "failed"])
        self.assertEqual(doc["targets"][0]["replicas"], 2)
        self.assertEqual(doc["targets"][1]["error"], "metrics-server timed out")
        # Without the failing metric the same pool scales down.
        doc = self.plan(self.several([300, 300], current=6, failing=False))
        self.assertEqual(doc["desired_replicas"], 2)

    def test_a_failing_metric_does_not_block_a_scale_up(self):
        doc = self.plan(self.several([1000, 1000], current=2))
        self.assertEqual(doc["desired_replicas"], 4)  # 100 % of 50 %: ceil(2 * 2)
        self.assertFalse(doc["blocked_by_failure"])

    def test_largest_proposal_wins(self):
        # cpu proposes 2, inflight ceil(40 / 4) = 10.
        doc = self.plan(self.several([300, 300], current=6, failing=False, inflight=40))
        self.assertEqual((doc["desired_replicas"], doc["winner"]), (10, 1))
        self.assertEqual([t["replicas"] for t in doc["targets"]], [2, 10])
        self.assertEqual(doc["utilization_percent"], 30)  # from the resource target

    def test_all_failing_is_422(self):
        body = {"current_replicas": 3,
                "targets": [{"type": "failed", "name": "memory", "error": "timed out"},
                            {"type": "failed"}]}
        doc = self.plan(body, expect=422)
        self.assertIn("memory: timed out", doc["error"]["message"])
        self.assertEqual(len(doc["targets"]), 2)

    def test_targets_and_target_are_exclusive(self):
        body = dict(self.several([300], current=1), target={"resource": "cpu",
                                                          "utilization_percent": 50})
        self.assertIn("not both", self.plan(body, expect=400)["error"]["message"])
        body = dict(self.several([300], current=1), metrics=[])
        self.bad(body, "metrics")

    # ---- behaviors ------------------------------------------------------------------

    def test_no_stabilization_without_behavior_or_history(self):
        # 200m of 2000m is 10 %, of a 50 % target over 10 pods: ceil(0.2 * 10) = 2, at once.
        doc = self.plan(cpu_request([200] * 10, target=50))
        self.assertEqual(doc["desired_replicas"], 2)
        self.assertFalse(doc["behaviors"])

    def test_scale_down_stabilization_from_history(self):
        hist = {"recommendations": [{"t_s": -120, "replicas": 9}, {"t_s": -400, "replicas": 12}],
                "events": []}
        doc = self.plan(cpu_request([200] * 10, target=50, history=hist))
        # The highest recommendation of the last 300 s is 9 (12 is too old).
        self.assertEqual(doc["desired_replicas"], 9)
        self.assertTrue(doc["behaviors"])
        self.assertEqual(doc["stabilization"], {"up_bound": 2, "down_bound": 9, "stabilized": 9})
        self.assertIn("scale-down stabilization", doc["reason"])
        # A shorter window, given as a Kubernetes behavior, lets it go.
        doc = self.plan(cpu_request([200] * 10, target=50, history=hist,
                                    behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}))
        self.assertEqual(doc["desired_replicas"], 2)

    def test_scale_up_policy_with_events(self):
        req = cpu_request([2000] * 4, target=50, current=4,
                          behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 2,
                                                              "periodSeconds": 60}]}},
                          history={"events": [{"t_s": -30, "change": 1}]})
        doc = self.plan(req)
        # ceil(2 * 4) = 8, but the period started at 3 replicas: 3 + 2 = 5.
        self.assertEqual(doc["desired_replicas"], 5)
        self.assertEqual(doc["limit"], {"kind": "scale_up_policy", "replicas": 5, "policy": 0})
        self.assertIn("capped by scale-up policy 2 pods/60 s → 5", doc["reason"])
        # Once the event is older than the period, 4 + 2 = 6.
        req["history"]["events"][0]["t_s"] = -61
        self.assertEqual(self.plan(req)["desired_replicas"], 6)

    def test_kubernetes_default_behaviors_with_history(self):
        # 4 pods at 100 % of 10 %: ceil(10 * 4) = 40; the default scale-up
        # policies allow max(100 % → 8, 4 pods → 8) per 15 s.
        req = cpu_request([1000] * 4, target=10, current=4, history={})
        doc = self.plan(req)
        self.assertEqual(doc["desired_replicas"], 8)
        self.assertEqual(doc["limit"]["kind"], "scale_up_policy")

    def test_scale_down_disabled(self):
        req = cpu_request([200] * 10, target=50,
                          behavior={"scaleDown": {"selectPolicy": "Disabled"}})
        doc = self.plan(req)
        self.assertEqual(doc["desired_replicas"], 10)
        self.assertIn("scale-down is disabled", doc["reason"])

    # ---- burst mode and the budget --------------------------------------------------

    def test_panic_mode(self):
        samples = [{"t_s": t, "value": 20} for t in (-50, -40, -30, -20)]
        samples += [{"t_s": t, "value": 40} for t in (-5, -4, -3, -2, -1)]
        body = {"current_replicas": 5,
                "targets": [{"type": "demand", "name": "inflight", "target_per_replica": 4,
                             "samples": samples}]}
        doc = self.plan(body)
        # The panic window averages 40 over its 5 buckets with data:
        # ceil(40 / 4) = 10, 2× the 5 replicas: panic mode.
        t = doc["targets"][0]
        self.assertEqual((t["panic_move"], t["desired_panic"]), ("enter", 10))
        self.assertEqual(doc["desired_replicas"], 10)
        self.assertEqual(doc["panic"], {"panicking": True, "panic_time_s": 0.0,
                                        "max_panic_pods": 10})
        # While panicking nothing scales down, even with a quiet window.
        body["targets"][0]["samples"] = [{"t_s": -1, "value": 4}]
        body["panic"] = {"panicking": True, "panic_time_s": -10, "max_panic_pods": 10}
        doc = self.plan(body)
        self.assertEqual(doc["desired_replicas"], 10)
        self.assertTrue(doc["panic"]["panicking"])

    def test_panic_hold_on_a_resource_target(self):
        doc = self.plan(cpu_request([200] * 10, target=50,
                                    panic={"panicking": True, "panic_time_s": -5}))
        self.assertEqual(doc["desired_replicas"], 10)
        self.assertTrue(doc["panic_hold"])

    def test_budget_cap(self):
        body = {"current_replicas": 6,
                "targets": [{"type": "average", "name": "queue", "total": 120, "target": 10}],
                "budget": {"name": "anthropic", "queue_length": 37, "utilization": 0.91,
                           "target_utilization": 0.9, "admitted_per_s": 100,
                           "per_worker_per_s": 12.5}}
        doc = self.plan(body)
        self.assertEqual(doc["desired_replicas"], 8)  # ceil(100 / 12.5), not 12
        self.assertEqual(doc["budget"], {"name": "anthropic", "bottleneck": True, "workers": 8,
                                         "capped": True})
        self.assertIn("capped by budget anthropic", doc["reason"])
        # Not the bottleneck (nothing waits): no cap.
        body["budget"]["queue_length"] = 0
        doc = self.plan(body)
        self.assertEqual(doc["desired_replicas"], 12)
        self.assertFalse(doc["budget"]["capped"])

    def test_zero_replicas(self):
        # As Kubernetes: a pool scaled to 0 stays there unless min_replicas is 0.
        body = {"current_replicas": 0,
                "targets": [{"type": "average", "name": "queue", "total": 7, "target": 2}]}
        doc = self.plan(body)
        self.assertEqual(doc["desired_replicas"], 0)
        self.assertTrue(doc["scaling_disabled"])
        doc = self.plan(dict(body, min_replicas=0))
        self.assertEqual(doc["desired_replicas"], 4)

    # ---- pure: nothing changes, no token needed -------------------------------------

    def test_pure(self):
        before = self.d.get_json("/v1/state")["autoscaler"]
        first = self.plan(ISSUE)
        hist = dict(ISSUE, history={"recommendations": [{"t_s": -10, "replicas": 9}]})
        for _ in range(3):
            self.assertEqual(self.plan(ISSUE), first)
            self.assertEqual(self.plan(hist)["desired_replicas"], 5)
        self.assertEqual(self.d.get_json("/v1/state")["autoscaler"], before)


class NoToken(unittest.TestCase):
    def test_plan_needs_no_token(self):
        d = Daemon(CONFIG + "auth: {token_file: {token_file}}\n", token="s3cret-token").start()
        try:
            s, _, b = d.request("POST", PLAN, body=ISSUE)
            self.assertEqual((s, json.loads(b)["desired_replicas"]), (200, 5))
            s, _, _ = d.request("POST", "/v1/snapshot", body={})
            self.assertEqual(s, 401)  # a mutating endpoint still needs it
        finally:
            self.assertEqual(d.stop(), 0)


class Cli(unittest.TestCase):
    """`ballast plan` computes locally: the same JSON as the endpoint."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(CONFIG).start()
        cls.tmp = tempfile.mkdtemp(prefix="ballast-plan-")

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0

    def write(self, name, body):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(body if isinstance(body, str) else json.dumps(body))
        return path

    def endpoint(self, body):
        s, _, b = self.d.request("POST", PLAN, body=body)
        return s, json.loads(b)

    def test_file_and_stdin_match_the_endpoint(self):
        bodies = [ISSUE,
                  dict(cpu_request([1200] * 4),
                       target={"resource": "cpu", "band": {"low": 70, "high": 85}}),
                  {"current_replicas": 6,
                   "pods": [pod("a", 1000), pod("b", 1000)],
                   "targets": [{"type": "resource", "resource": "cpu", "utilization_percent": 50,
                                "metrics": [sample("a", 300), sample("b", 300)]},
                               {"type": "failed", "name": "memory"},
                               {"type": "average", "name": "inflight", "total": 20, "target": 4}],
                   "history": {"recommendations": [{"t_s": -100, "replicas": 7}]}}]
        for i, body in enumerate(bodies):
            with self.subTest(i=i):
                s, want = self.endpoint(body)
                self.assertEqual(s, 200)
                path = self.write("plan%d.json" % i, body)
                rc, out, err = run_cli("plan", "--json", path)
                self.assertEqual((rc, err), (0, ""))
                self.assertEqual(json.loads(out), want)
                rc, out2, err = run_cli("plan", "--json", "-", input=json.dumps(body))
                self.assertEqual((rc, out2), (0, out))
                # Without --json: the same JSON, then one line for a person.
                rc, out3, _ = run_cli("plan", path)
                self.assertEqual(rc, 0)
                doc, end = json.JSONDecoder().raw_decode(out3)
                self.assertEqual(doc, want)
                self.assertEqual(out3[end:].strip(),
                                 "desired %d replicas (current %d): %s"
                                 % (want["desired_replicas"], want["current_replicas"],
                                    want["reason"]))

    def test_issue_example_on_the_command_line(self):
        rc, out, _ = run_cli("plan", "-", input=json.dumps(ISSUE))
        self.assertEqual(rc, 0)
        self.assertTrue(out.rstrip().endswith(
            "desired 5 replicas (current 3): cpu 50 % > 30 % over 3 ready pods → 5"), out)

    def test_errors_exit_1_with_the_message(self):
        req = cpu_request([1000, 1000, 1000])
        req["pods"][2]["request"] = -5
        s, want = self.endpoint(req)
        self.assertEqual(s, 400)
        path = self.write("bad.json", req)
        rc, out, err = run_cli("plan", path)
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err.strip(), "ballast plan: %s: %s" % (path, want["error"]["message"]))
        # 422 too.
        req["pods"][2]["request"] = None
        rc, out, err = run_cli("plan", "-", input=json.dumps(req))
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("missing request for p2", err)
        # Not JSON.
        rc, _, err = run_cli("plan", "-", input="{nope")
        self.assertEqual(rc, 1)
        self.assertIn("malformed JSON at byte 5", err)
        # A file that is not there.
        rc, _, err = run_cli("plan", os.path.join(self.tmp, "absent.json"))
        self.assertEqual(rc, 1)
        self.assertIn("cannot open", err)

    def test_usage_errors_exit_2(self):
        for args in (("plan",), ("plan", "a.json", "b.json"), ("plan", "--frobnicate", "a.json")):
            with self.subTest(args=args):
                rc, _, err = run_cli(*args)
                self.assertEqual(rc, 2)
                self.assertIn("usage:", err)
        rc, out, _ = run_cli("help")
        self.assertIn("plan FILE|-", out)


if __name__ == "__main__":
    unittest.main()
