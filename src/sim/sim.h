/* The simulator's engine: one scenario under one policy, on a virtual clock.
 *
 * A discrete-event simulation (eventq.h) that runs the very core modules the
 * daemon runs — rate budgets and their waiting queue (budget.h, waitq.h),
 * the autoscaling planner with its behaviors and burst mode (planner.h),
 * memory budgets (membudget.h) — against a simulated provider that enforces
 * its own true limits (provider.h). No sleeping, no wall clock: a run is a
 * function of the scenario, the policy and the seed. docs/simulator.md
 * describes the model and every metric.
 *
 * Tasks arrive (the same arrivals, with the same sizes, under every policy),
 * wait for a free slot on a ready worker, then alternate CPU work and model
 * calls; each call goes through the policy's path to the provider:
 *
 *   ballast        the shared rate budget: acquire (queueing in its waiting
 *                  queue when not admitted, woken at the decision's
 *                  retry_at), call, release with the real usage; 429s
 *                  slow the budget down; memory admission per worker (the
 *                  memory block); the planner with the scenario's
 *                  autoscaler block (bands, burst mode, budget cap)
 *   hpa            no shared budget: call, and on a 429 back off
 *                  exponentially with full jitter; the planner with
 *                  Kubernetes' defaults and one CPU target
 *   uncoordinated  as hpa, but each worker keeps its own rate budget with
 *                  1/N of the quota (N = the initial replicas)
 *   static         as hpa, with the initial replicas throughout
 *
 * Memory for tasks and events comes from pools and arrays that grow by
 * doubling: nothing is allocated per task once the run has warmed up.
 */
#ifndef BALLAST_SIM_SIM_H
#define BALLAST_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "scenario.h"

enum bl_sim_policy {
	BL_SIM_BALLAST = 0,
	BL_SIM_HPA = 1,
	BL_SIM_UNCOORDINATED = 2,
	BL_SIM_STATIC = 3,
	BL_SIM_POLICY_COUNT
};

/* Returns "ballast", "hpa", "uncoordinated", "static", or "unknown". */
const char *bl_sim_policy_name(enum bl_sim_policy p);

/* Parses a policy name (exact). Returns 0 and sets *out, or BL_EINVAL. */
int bl_sim_policy_parse(const char *s, enum bl_sim_policy *out);

/* One row of the timeseries: the fleet at the end of a sample period. */
struct bl_sim_sample {
	bl_time_ns at_ns;         /* end of the period */
	uint32_t replicas;        /* workers asked for (starting + ready) */
	uint32_t ready;           /* workers ready */
	double cpu;               /* fleet CPU utilization over the period, share of requests */
	double memory;            /* highest worker memory use at the end, share of its limit */
	uint64_t work_queue;      /* tasks waiting for a worker */
	uint64_t quota_waiting;   /* calls waiting on quota (budget queue or 429 backoff) */
	uint64_t calls_in_flight; /* calls at the provider */
	double quota_use;         /* the provider's last window, share of its limit */
	uint64_t provider_429s;   /* in the period */
	uint64_t done;            /* tasks done in the period */
	uint64_t failed;          /* tasks failed in the period */
	uint64_t dropped;         /* tasks dropped in the period */
	double latency_p50_ms;    /* of the tasks done in the period; -1 when none */
};

/* What one tenant of the workload got. */
struct bl_sim_tenant_result {
	uint64_t tasks_total;
	uint64_t tasks_done;
	uint64_t tasks_in_slo;
	double latency_p50_ms;      /* of its tasks done; 0 when none */
	double latency_p95_ms;
	double latency_p99_ms;
};

/* What one policy did. */
struct bl_sim_result {
	enum bl_sim_policy policy;
	uint64_t tasks_total;       /* arrived */
	uint64_t tasks_done;
	uint64_t tasks_failed;      /* gave up: 429s or errors past the retries, OOM kills */
	uint64_t tasks_dropped;     /* never started: queue full, waited past max_wait, or
				       still waiting when the drain ran out */
	uint64_t tasks_in_slo;      /* done within their SLO */
	double latency_p50_ms;      /* arrival to done, of the tasks done; 0 when none */
	double latency_p95_ms;
	double latency_p99_ms;
	uint64_t calls;             /* model calls answered (ok or error) */
	uint64_t provider_429s;     /* calls the provider refused with 429 */
	uint64_t provider_errors;   /* calls that failed (5xx) */
	double quota_mean;          /* quota used per saturated window, mean share; -1: none */
	double quota_min;           /* the least-used saturated window; -1: none */
	uint64_t quota_windows;     /* saturated windows measured */
	double cpu_in_band;         /* share of 15 s periods with fleet CPU in the band; -1: none */
	double memory_peak_fraction; /* highest worker memory use, share of its limit */
	double replica_seconds;     /* integral of the workers running (any state) */
	uint64_t scale_events;      /* times the replica count was changed */
	uint64_t flaps;             /* scale events reversing the one before within 5 min */
	uint64_t oom_kills;         /* workers killed for memory */
	uint32_t peak_replicas;     /* most workers asked for at once */
	bl_time_ns end_ns;          /* virtual time the run ended */
	uint64_t events;            /* events processed */
	struct bl_sim_tenant_result tenants[BL_SIM_TENANTS_MAX]; /* per workload tenant */
	size_t n_tenants;
	struct bl_sim_sample *samples; /* the timeseries */
	size_t n_samples;
};

struct bl_sim_options {
	uint64_t seed;            /* names every random stream */
	int64_t duration_ns;      /* arrivals stop then; 0: the scenario's */
	int64_t sample_ns;        /* timeseries period; 0: the scenario's, else from the duration */
	bool progress;            /* a progress line on stderr */
};

/* Runs sc under policy pol. Returns 0 and fills *out (free with
 * bl_sim_result_cleanup); or BL_ENOMEM / BL_EINVAL (a policy block the core
 * refuses) with a message in err. */
int bl_sim_run(const struct bl_scenario *sc, enum bl_sim_policy pol,
	       const struct bl_sim_options *o, struct bl_sim_result *out, char *err, size_t errcap);

/* Frees what a result owns. */
void bl_sim_result_cleanup(struct bl_sim_result *r);

#endif
