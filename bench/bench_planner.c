/* bench_planner: time per autoscaler decision (include/ballast/planner.h), in
 * process, one thread. Issue 5 asks for "planner time for 100 and 10 000
 * pods": bl_planner_resource (Kubernetes' GetResourceReplicas over the pod
 * list) and bl_planner_plan (one HPA sync: every metric, burst mode, the
 * budget cap, the behaviors and the reason in words) for both sizes.
 *
 *   bench_planner [--quick] [--ms N]
 *     --quick  5 ms per timed run instead of 100: a smoke run, noisier
 *     --ms N   target length of one timed run, 1..10000 ms
 *
 * The pods, per 100 (from a fixed seed): 88 running, ready for a day, with a
 * usage sample; 4 running and ready but started 2 min ago, their sample
 * taken before a whole window had passed since they became ready (cpu
 * counts them unready); 3 pending, no sample; 3 running and ready without a
 * sample (missing); 1 deleting and 1 failed, each with a sample (ignored);
 * plus one sample per 100 pods for a pod no longer in the list (unmatched).
 * Names like "llm-worker-3f9c01ab-1a2" (random hex first, so neither list is
 * in name order); the samples are shuffled. cpu requests 500 m, usage
 * uniform within +-30 % of the scenario's mean; memory requests 1 GiB.
 * Target 80 % cpu; scale-up: mean usage 150 % of the target (unready and
 * missing pods filled in at 0 %, and it still scales up); scale-down: 50 %
 * of it (missing pods filled in at 100 %). current = the number of pods.
 *
 * The full plan: four metrics (cpu scaling up and memory over the pods,
 * in-flight calls as an average value (4.8 per replica for a target of 4),
 * demand with burst mode); a full history (256
 * recommendations over the last 5 min, 256 scale events over the last 8.5
 * min); Kubernetes' default behaviors, max_replicas 4 x pods; a linked rate
 * budget that is the bottleneck (caps the scale-up); a 1 KiB reason buffer.
 *
 * Baseline: what a user would otherwise write in process, labelled so: the
 * HPA formula ceil(current x (sum usage / sum request) / target) straight
 * over the samples, with no name matching, no readiness rules, no missing
 * pods and no tolerance. Kubernetes' own controller (Go, out of process) is
 * not comparable in process.
 *
 * Method, as bench_alloc: per cell, a calibration run sets the calls per
 * timed run to about --ms of CPU time, then one untimed warm-up run and 5
 * timed runs; CLOCK_MONOTONIC around whole runs; the median, min and max are
 * reported, and the median of the thread's own CPU time per call
 * (CLOCK_THREAD_CPUTIME_ID: without the time it waited for a shared core).
 * The same input is planned again and again, so it is warm in the caches,
 * as it is just after the daemon has decoded it. Output: a markdown table.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ballast/alloc.h"
#include "ballast/error.h"
#include "ballast/planner.h"

#define NAME_BYTES 48
#define GIB (INT64_C(1) << 30)

static int64_t target_ns = 100 * 1000000LL; /* one timed run (harness.h) */
static volatile int64_t sink; /* keeps results alive */

#include "harness.h"

static double uniform(uint64_t *s)
{
	return (double)(splitmix(s) >> 11) * 0x1p-53;
}

struct counting {
	uint64_t allocs;
};

static void *counting_malloc(void *ctx, size_t bytes)
{
	((struct counting *)ctx)->allocs++;
	return malloc(bytes);
}

static void counting_free(void *ctx, void *p, size_t bytes)
{
	free(p);
}

/* ---- the pool ------------------------------------------------------------------ */

struct pool {
	size_t n;                     /* pods */
	struct bl_planner_pod *pods;  /* n pods, cpu requests */
	char (*names)[NAME_BYTES];    /* pods' names, then the unmatched samples' */
	struct bl_planner_usage *cpu; /* samples, shuffled */
	size_t cpu_count;             /* samples (cpu and memory alike) */
	struct bl_planner_usage *mem; /* the same pods' memory samples, same order */
};

/* Builds n pods whose cpu usage averages `mean_pct` % of the request. */
static void pool_make(struct pool *p, size_t n, double mean_pct, uint64_t seed)
{
	uint64_t s = seed;
	size_t extra = n / 100, nu = 0;

	memset(p, 0, sizeof *p);
	p->n = n;
	p->pods = calloc(n, sizeof *p->pods);
	p->names = calloc(n + extra, sizeof *p->names);
	p->cpu = calloc(n + extra, sizeof *p->cpu);
	p->mem = calloc(n + extra, sizeof *p->mem);
	if (!p->pods || !p->names || !p->cpu || !p->mem) {
		fprintf(stderr, "bench_planner: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		struct bl_planner_pod *pod = &p->pods[i];
		unsigned kind = (unsigned)(i % 100);
		bool sample = true;

		snprintf(p->names[i], NAME_BYTES, "llm-worker-%08x-%zx", (unsigned)splitmix(&s), i);
		pod->name = p->names[i];
		pod->phase = BL_PLANNER_POD_RUNNING;
		pod->ready = BL_PLANNER_READY_TRUE;
		pod->has_start_time = true;
		pod->start_time_s = -86400;
		pod->has_ready_transition = true;
		pod->ready_transition_s = -86000;
		pod->has_request = true;
		pod->request = 500;
		if (kind < 88) {
			/* ready for a day, with a sample: the defaults above */
		} else if (kind < 92) { /* started 2 min ago: inside cpu initialization */
			pod->start_time_s = -120;
			pod->ready_transition_s = -20;
		} else if (kind < 95) {
			pod->phase = BL_PLANNER_POD_PENDING;
			pod->ready = BL_PLANNER_READY_FALSE;
			pod->start_time_s = -10;
			pod->ready_transition_s = -10;
			sample = false;
		} else if (kind < 98) {
			sample = false;
		} else if (kind == 98) {
			pod->deleting = true;
		} else {
			pod->phase = BL_PLANNER_POD_FAILED;
			pod->ready = BL_PLANNER_READY_FALSE;
		}
		if (!sample)
			continue;
		double pct = mean_pct * (0.7 + 0.6 * uniform(&s));

		p->cpu[nu] = (struct bl_planner_usage){p->names[i], 0, (int64_t)(5.0 * pct), true, -5, 30};
		p->mem[nu] = (struct bl_planner_usage){p->names[i], 0,
						      (int64_t)((0.45 + 0.3 * uniform(&s)) * (double)GIB),
						      true, -5, 30};
		nu++;
	}
	for (size_t j = 0; j < extra; j++) { /* samples for pods gone from the list */
		snprintf(p->names[n + j], NAME_BYTES, "llm-worker-gone-%zx", j);
		p->cpu[nu] = (struct bl_planner_usage){p->names[n + j], 0, 250, true, -5, 30};
		p->mem[nu] = (struct bl_planner_usage){p->names[n + j], 0, GIB / 2, true, -5, 30};
		nu++;
	}
	p->cpu_count = nu;
	for (size_t i = nu; i > 1; i--) { /* shuffle both sample lists alike */
		size_t j = (size_t)(splitmix(&s) % i);
		struct bl_planner_usage t = p->cpu[i - 1];

		p->cpu[i - 1] = p->cpu[j];
		p->cpu[j] = t;
		t = p->mem[i - 1];
		p->mem[i - 1] = p->mem[j];
		p->mem[j] = t;
	}
}

static void pool_free(struct pool *p)
{
	free(p->pods);
	free(p->names);
	free(p->cpu);
	free(p->mem);
}

static struct bl_planner_metric cpu_metric(const struct pool *p)
{
	struct bl_planner_metric m;

	memset(&m, 0, sizeof m);
	m.kind = BL_PLANNER_METRIC_RESOURCE;
	m.resource.resource = BL_PLANNER_CPU;
	m.resource.target.value = 80;
	m.resource.pods = p->pods;
	m.resource.pod_count = p->n;
	m.resource.usage = p->cpu;
	m.resource.usage_count = p->cpu_count;
	return m;
}

/* ---- the cases --------------------------------------------------------------- */

enum call {
	CALL_RESOURCE,     /* bl_planner_resource, cpu */
	CALL_RESOURCE_MEM, /* bl_planner_resource, memory */
	CALL_PLAN,         /* bl_planner_plan */
	CALL_NAIVE,        /* the baseline formula */
	CALL_WINDOW,       /* bl_planner_window_record + read, one per bucket */
};

struct planner_bench {
	enum call call;                      /* what one call is */
	int32_t current;                     /* replicas running: the pods */
	struct bl_planner_config cfg;        /* defaults, max_replicas 4 x pods */
	struct bl_planner_metric metric;     /* CALL_RESOURCE*, CALL_NAIVE */
	struct bl_planner_input in;          /* CALL_PLAN */
	struct bl_planner_metric metrics[4]; /* in.metrics points here */
	struct bl_planner_history hist;      /* in's history points here */
	struct bl_planner_window window;     /* CALL_WINDOW */
	bl_time_ns now;                      /* the decision's time, ns */
	struct bl_alloc_hook hook;           /* counts, then mallocs */
	struct counting count;               /* the hook's count */
	/* what the last call answered */
	int rc;                              /* its return code */
	int32_t replicas;                    /* CALL_NAIVE's answer */
	struct bl_planner_resource_result rr; /* CALL_RESOURCE*'s answer */
	char err[256];                       /* CALL_RESOURCE*'s message */
	char reason[1024];                   /* CALL_PLAN's reason */
	uint64_t calls;                      /* calls made, for allocs/call */
};

static struct bl_planner_result plan_result; /* a few KB: off the stack */

static int32_t naive(const struct bl_planner_resource_metric *m, int32_t current)
{
	int64_t usage = 0, request = 0;

	for (size_t i = 0; i < m->usage_count; i++)
		usage += m->usage[i].usage;
	for (size_t i = 0; i < m->pod_count; i++)
		request += m->pods[i].request;
	/* per pod: the sum of usage is over the samples, of requests over the
	 * pods; a hand-written version does not notice the difference */
	return (int32_t)ceil((double)current * ((double)usage * 100.0 / (double)request) /
			     m->target.value);
}

static void planner_run(void *ctx, uint64_t calls)
{
	struct planner_bench *x = ctx;

	for (uint64_t i = 0; i < calls; i++) {
		switch (x->call) {
		case CALL_RESOURCE:
		case CALL_RESOURCE_MEM:
			x->rc = bl_planner_resource(x->current, &x->metric.resource, &x->cfg.hpa, &x->hook,
						    &x->rr, x->err, sizeof x->err);
			break;
		case CALL_PLAN:
			x->rc = bl_planner_plan(&x->cfg, &x->in, &x->hook, &plan_result, x->reason,
						sizeof x->reason);
			break;
		case CALL_NAIVE:
			x->replicas = naive(&x->metric.resource, x->current);
			sink += x->replicas;
			break;
		case CALL_WINDOW: {
			struct bl_planner_demand_metric dm;

			x->now += NS_PER_S;
			bl_planner_window_record(&x->window, x->now, 40.0 + (double)(i % 7));
			bl_planner_window_read(&x->window, x->now, &dm);
			sink += (int64_t)dm.panic_average;
			break;
		}
		}
	}
	x->calls += calls;
}

static void history_fill(struct planner_bench *x, int32_t current, uint64_t seed)
{
	uint64_t s = seed;
	size_t i;

	bl_planner_history_init(&x->hist);
	for (i = 0; i < BL_PLANNER_HISTORY_MAX; i++) {
		x->hist.recommendations[i].at_ns = x->now - (int64_t)i * (300 * NS_PER_S) /
							    BL_PLANNER_HISTORY_MAX;
		x->hist.recommendations[i].replicas =
			current - current / 20 + (int32_t)(splitmix(&s) % (uint64_t)(current / 10 + 1));
	}
	x->hist.recommendation_count = i;
	for (i = 0; i < BL_PLANNER_HISTORY_MAX; i++) {
		x->hist.events[i].at_ns = x->now - (int64_t)i * 2 * NS_PER_S;
		x->hist.events[i].change = (int32_t)(splitmix(&s) % 7) - 3;
		if (x->hist.events[i].change == 0)
			x->hist.events[i].change = 1;
	}
	x->hist.event_count = i;
}

struct row {
	char label[128];   /* what was called */
	size_t pods;       /* 0: no pods involved */
	struct figure f;   /* the timing */
	double allocs;     /* hook allocations per call */
	char answer[160];  /* what it answered, for a sanity check */
};

static struct row rows[64];
static size_t nrows;

static void run_case(struct planner_bench *x, const char *label, size_t pods)
{
	struct row *r = &rows[nrows++];

	x->hook = (struct bl_alloc_hook){counting_malloc, counting_free, &x->count};
	r->f = measure(planner_run, x, pods >= 10000 ? 4 : 200);
	snprintf(r->label, sizeof r->label, "%s", label);
	r->pods = pods;
	r->allocs = (double)x->count.allocs / (double)x->calls;
	switch (x->call) {
	case CALL_RESOURCE:
	case CALL_RESOURCE_MEM:
		if (x->rc) {
			fprintf(stderr, "bench_planner: %s: %s\n", label, x->err);
			exit(1);
		}
		snprintf(r->answer, sizeof r->answer,
			 "→ %d (util %d %%, %u ready, %u unready, %u missing, %u ignored, %u unmatched)",
			 (int)x->rr.replicas, (int)x->rr.utilization_percent, x->rr.ready_pods,
			 x->rr.unready_pods, x->rr.missing_pods, x->rr.ignored_pods,
			 x->rr.unmatched_samples);
		break;
	case CALL_PLAN:
		if (x->rc || plan_result.status) {
			fprintf(stderr, "bench_planner: %s: rc %d status %d: %s\n", label, x->rc,
				plan_result.status, x->reason);
			exit(1);
		}
		snprintf(r->answer, sizeof r->answer, "→ %d (reason %zu bytes)", (int)plan_result.desired,
			 strlen(x->reason));
		fprintf(stderr, "bench_planner: %s, %zu pods: %s\n", label, pods, x->reason);
		break;
	case CALL_NAIVE:
		snprintf(r->answer, sizeof r->answer, "→ %d", (int)x->replicas);
		break;
	case CALL_WINDOW:
		snprintf(r->answer, sizeof r->answer, "–");
		break;
	}
	fprintf(stderr, "bench_planner: %s, %zu pods: %.0f ns\n", label, pods, r->f.median_ns);
}

static void bench_size(size_t n)
{
	static struct planner_bench x; /* big (history, window): off the stack */
	struct pool up, down;
	struct bl_planner_pod *mem_pods;
	char label[128];

	pool_make(&up, n, 1.5 * 80, 11);
	pool_make(&down, n, 0.5 * 80, 11);
	/* memory: the same pods with 1 GiB requests */
	mem_pods = malloc(n * sizeof *mem_pods);
	if (!mem_pods) {
		fprintf(stderr, "bench_planner: out of memory\n");
		exit(1);
	}
	memcpy(mem_pods, down.pods, n * sizeof *mem_pods);
	for (size_t i = 0; i < n; i++)
		mem_pods[i].request = GIB;

	memset(&x, 0, sizeof x);
	bl_planner_config_default(&x.cfg);
	x.cfg.max_replicas = (int32_t)(4 * n);
	x.current = (int32_t)n;
	x.now = 100000 * NS_PER_S;

	x.call = CALL_RESOURCE;
	x.metric = cpu_metric(&up);
	run_case(&x, "bl_planner_resource, cpu, scale-up (unready + missing filled at 0 %)", n);
	x.call = CALL_RESOURCE;
	x.metric = cpu_metric(&down);
	x.calls = x.count.allocs = 0;
	run_case(&x, "bl_planner_resource, cpu, scale-down (missing filled at 100 %)", n);
	x.call = CALL_RESOURCE_MEM;
	x.metric = cpu_metric(&down);
	x.metric.resource.resource = BL_PLANNER_MEMORY;
	x.metric.resource.pods = mem_pods;
	x.metric.resource.usage = down.mem;
	x.calls = x.count.allocs = 0;
	run_case(&x, "bl_planner_resource, memory", n);

	/* plan: cpu only, no history */
	x.call = CALL_PLAN;
	x.metrics[0] = cpu_metric(&up);
	memset(&x.in, 0, sizeof x.in);
	x.in.current_replicas = (int32_t)n;
	x.in.now_ns = x.now;
	x.in.metrics = x.metrics;
	x.in.metric_count = 1;
	x.calls = x.count.allocs = 0;
	run_case(&x, "bl_planner_plan: cpu metric only, empty history", n);

	/* the full plan */
	x.metrics[1] = cpu_metric(&down);
	x.metrics[1].resource.resource = BL_PLANNER_MEMORY;
	x.metrics[1].resource.pods = mem_pods;
	x.metrics[1].resource.usage = down.mem;
	memset(&x.metrics[2], 0, sizeof x.metrics[2]);
	x.metrics[2].kind = BL_PLANNER_METRIC_AVERAGE;
	x.metrics[2].name = "inflight";
	x.metrics[2].average.total = 4.8 * (double)n;
	x.metrics[2].average.target.value = 4;
	memset(&x.metrics[3], 0, sizeof x.metrics[3]);
	x.metrics[3].kind = BL_PLANNER_METRIC_DEMAND;
	x.metrics[3].name = "demand";
	x.metrics[3].demand = (struct bl_planner_demand_metric){true, 2.5 * (double)n,
								  3.0 * (double)n, 4};
	history_fill(&x, (int32_t)n, 5);
	bl_planner_history_input(&x.hist, &x.in);
	x.in.metric_count = 4;
	x.in.budget = (struct bl_planner_budget){"anthropic", 12, 0.93, 0.9, 0, 0,
						 (int32_t)(n + n / 10)};
	x.calls = x.count.allocs = 0;
	run_case(&x, "bl_planner_plan: full (cpu + memory + average + demand, 256 + 256 history, "
		     "budget cap, reason)", n);

	/* the same without the pods: the plan's fixed cost */
	x.in.metrics = &x.metrics[2];
	x.in.metric_count = 2;
	x.calls = x.count.allocs = 0;
	run_case(&x, "bl_planner_plan: average + demand only, 256 + 256 history, budget cap", n);

	x.call = CALL_NAIVE;
	x.metric = cpu_metric(&up);
	x.calls = x.count.allocs = 0;
	snprintf(label, sizeof label,
		 "baseline: naive ceil(current × Σusage/Σrequest / target), cpu, scale-up input");
	run_case(&x, label, n);

	pool_free(&up);
	pool_free(&down);
	free(mem_pods);
}

int main(int argc, char **argv)
{
	if (parse_args("bench_planner", argc, argv) != 0)
		return 2;
	bench_size(100);
	bench_size(10000);
	{
		static struct planner_bench x;
		struct bl_planner_panic_config pc;

		memset(&x, 0, sizeof x);
		bl_planner_panic_config_default(&pc);
		if (bl_planner_window_init(&x.window, &pc) != 0) {
			fprintf(stderr, "bench_planner: window init failed\n");
			return 1;
		}
		x.call = CALL_WINDOW;
		x.now = 100000 * NS_PER_S;
		run_case(&x, "demand window: record + read, one sample per 1 s bucket", 0);
	}

	printf("# bench_planner: autoscaler planner, in process, one thread\n\n");
	printf("### Autoscaler planner: time per call (median of %d runs of ~%lld ms)\n\n", RUNS,
	       (long long)(target_ns / NS_PER_MS));
	printf("| call | pods | median µs | min | max | CPU µs | allocs/call | answer |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|---|\n");
	for (size_t i = 0; i < nrows; i++) {
		struct row *r = &rows[i];

		char pods[24];

		if (r->pods)
			snprintf(pods, sizeof pods, "%zu", r->pods);
		else
			snprintf(pods, sizeof pods, "–");
		printf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.0f | %s |\n", r->label, pods,
		       r->f.median_ns / 1000, r->f.min_ns / 1000, r->f.max_ns / 1000,
		       r->f.cpu_median_ns / 1000, r->allocs, r->answer);
	}
	return sink == 42 ? 1 : 0;
}
