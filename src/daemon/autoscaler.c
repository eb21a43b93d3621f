/* The autoscaler's control loop. See autoscaler.h and
 * docs/internals/autoscaler-loop.md. */
#include "autoscaler.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ballast/error.h"
#include "ballast/planner.h"
#include "cfgmap.h"
#include "clock.h"
#include "daemon.h"
#include "exec_actuator.h"
#include "jsonreq.h"
#include "k8s.h"
#include "log.h"
#include "supervisor.h"

#define MAX_WORKERS 4096          /* heartbeat workers tracked */
#define HB_INDEX_SIZE (2 * MAX_WORKERS) /* their index, a power of two */
#define HB_INDEX_MASK (HB_INDEX_SIZE - 1)
_Static_assert((HB_INDEX_SIZE & HB_INDEX_MASK) == 0 && MAX_WORKERS < UINT16_MAX,
	       "heartbeat index geometry");
#define WORKER_ID_MAX 63
#define DECISIONS_KEPT 32         /* recent decisions in GET /v1/autoscale */
#define REASON_MAX 512
#define SAMPLE_NS BL_NS_PER_S     /* demand sampling period (burst mode's buckets) */
#define STALE_INTERVALS 3         /* a heartbeat older than this many intervals is missing */
#define DEFAULT_CPU_REQUEST_M 1000 /* a supervised worker's CPU request: one core */

/* What a worker last reported. */
struct heartbeat {
	char id[WORKER_ID_MAX + 1];
	bool used;
	bl_time_ns first_ns;          /* first heartbeat: its start, as far as we know */
	bl_time_ns ready_since_ns;    /* when it last reported ready after not ready (or first) */
	bl_time_ns at_ns;             /* last heartbeat */
	double cpu_cores;             /* < 0: not reported */
	double cpu_request_cores;     /* < 0: not reported */
	double memory_bytes;          /* < 0: not reported */
	double memory_request_bytes;  /* < 0: not reported */
	double inflight;              /* < 0: not reported */
	double queue;                 /* < 0: not reported */
	bool ready;
};

/* The pods the planner sees: supervised workers and heartbeat workers, one
 * entry per id, with the figures of both. */
struct pod_view {
	char id[WORKER_ID_MAX + 1];
	struct bl_planner_pod pod;
	bool has_cpu, has_mem;
	double cpu_m, cpu_req_m, mem, mem_req;
	double sampled_ago_s;
	uint32_t leases;
};

struct decision {
	int64_t at_ms;                /* wall clock */
	int32_t current;
	int32_t desired;
	bool acted;                   /* the actuator was asked to change the count */
	char reason[REASON_MAX];
	double cpu_percent;           /* -1: not measured */
	double memory_percent;
	double inflight;
	double queue;
};

struct bl_autoscaler {
	uv_loop_t *loop;
	struct bl_budgets *budgets;
	struct bl_planner_config pc;
	struct bl_cfg_autoscaler cfg;     /* scalars only: pointers are not kept */
	char *budget;                     /* linked budget, or NULL */
	enum bl_cfg_actuator actuator;
	struct bl_supervisor *sup;
	struct bl_exec_actuator *exec;
	struct bl_k8s *k8s;
	bool k8s_known;                   /* the object's replicas have been read */
	struct bl_planner_history hist;
	struct bl_planner_panic_state panic;
	struct bl_planner_window window;  /* demand samples for burst mode */
	uv_timer_t tick;
	uv_timer_t sampler;
	int handles;                      /* open timers, for shutdown */
	bool stopping;
	int32_t current;                  /* what the last decision saw */
	int32_t desired;                  /* what it asked for */
	int32_t applied;                  /* exec/none: the count last carried out */
	struct heartbeat *hb;             /* MAX_WORKERS */
	uint16_t hb_index[HB_INDEX_SIZE]; /* 1 + slot of hb, by id hash; 0 empty */
	uint16_t hb_free[MAX_WORKERS];    /* free slots of hb, a stack */
	size_t hb_n_free;
	/* Scratch for one decision, sized at creation (no allocation per tick). */
	size_t cap;                       /* workers one decision can see */
	struct pod_view *views;
	uint32_t *view_index;             /* gather's hash index over views */
	size_t view_index_mask;
	struct bl_planner_pod *cpu_pods, *mem_pods;
	struct bl_planner_usage *cpu_use, *mem_use;
	struct bl_supervisor_worker *ws;
	size_t ws_cap;
	struct bl_supervisor_identity *ids; /* snapshot scratch: the workers' identities */
	size_t ids_cap;
	char boot_id[40];                 /* this boot's, for the snapshot */
	void (*on_workers_changed)(void *); /* a worker process started: its identity is new */
	void *on_workers_changed_ctx;
	struct bl_planner_result *res;
	struct decision decisions[DECISIONS_KEPT];
	size_t n_decisions;               /* total made; the ring holds the last DECISIONS_KEPT */
	uint64_t scale_ups;
	uint64_t scale_downs;
	uint64_t failures;                /* decisions the metrics could not make */
	uint64_t heartbeats;
	uint64_t decide_ns_last;          /* the loop's own cost: the last decision */
	uint64_t decide_ns_max;
	uint64_t decide_ns_sum;
	uint64_t memory_holds;            /* scale-ups held back by memory pressure */
	double last_cpu, last_mem, last_inflight, last_queue, last_budget_util;
	void (*done)(void *);
	void *done_ctx;
};

static int64_t wall_ms(void)
{
	return bl_wall_ns() / BL_NS_PER_MS;
}

/* ---- configuration ---------------------------------------------------------- */

int bl_autoscaler_check(const struct bl_config *cfg, char *err, size_t errcap)
{
	struct bl_planner_config pc;
	char why[256];

	if (!cfg->autoscaler.configured)
		return 0;
	bl_cfg_planner_config(&cfg->autoscaler, &pc);
	if (bl_planner_config_check(&pc, why, sizeof why) != 0) {
		snprintf(err, errcap, "autoscaler: %s", why);
		return BL_EINVAL;
	}
	return 0;
}

/* ---- heartbeats --------------------------------------------------------------- */

static uint64_t id_hash(const char *id)
{
	uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * UINT64_C(1099511628211);
	return h;
}

/* Heartbeat workers are found through an open-addressing index over their
 * ids (1 + slot, 0 empty; never more than half full), so a heartbeat costs
 * O(1) however many workers report; free slots are a stack. Slots are only
 * ever freed by hb_expire, which rebuilds the index. */
static struct heartbeat *hb_find(struct bl_autoscaler *as, const char *id, bool create)
{
	size_t i = (size_t)id_hash(id) & HB_INDEX_MASK;
	struct heartbeat *h;
	uint16_t slot;

	for (; as->hb_index[i]; i = (i + 1) & HB_INDEX_MASK)
		if (strcmp(as->hb[as->hb_index[i] - 1].id, id) == 0)
			return &as->hb[as->hb_index[i] - 1];
	if (!create || as->hb_n_free == 0)
		return NULL;
	slot = as->hb_free[--as->hb_n_free];
	as->hb_index[i] = (uint16_t)(slot + 1);
	h = &as->hb[slot];
	memset(h, 0, sizeof *h);
	snprintf(h->id, sizeof h->id, "%s", id);
	h->used = true;
	return h;
}

static bool hb_fresh(const struct bl_autoscaler *as, const struct heartbeat *h, bl_time_ns now)
{
	return h->used && now - h->at_ns <= STALE_INTERVALS * as->cfg.interval_ns;
}

/* Forgets workers silent for ten intervals: they are gone. */
static void hb_expire(struct bl_autoscaler *as, bl_time_ns now)
{
	bool gone = false;

	for (size_t i = 0; i < MAX_WORKERS; i++)
		if (as->hb[i].used && now - as->hb[i].at_ns > 10 * as->cfg.interval_ns) {
			as->hb[i].used = false;
			as->hb_free[as->hb_n_free++] = (uint16_t)i;
			gone = true;
		}
	if (!gone)
		return;
	memset(as->hb_index, 0, sizeof as->hb_index);
	for (size_t k = 0; k < MAX_WORKERS; k++) {
		size_t i;

		if (!as->hb[k].used)
			continue;
		for (i = (size_t)id_hash(as->hb[k].id) & HB_INDEX_MASK; as->hb_index[i];
		     i = (i + 1) & HB_INDEX_MASK)
			;
		as->hb_index[i] = (uint16_t)(k + 1);
	}
}

/* Every slot free, the index empty. */
static void hb_init(struct bl_autoscaler *as)
{
	memset(as->hb_index, 0, sizeof as->hb_index);
	as->hb_n_free = 0;
	for (size_t i = MAX_WORKERS; i-- > 0;)
		as->hb_free[as->hb_n_free++] = (uint16_t)i;
}

static int get_number(const struct bl_json_fields *f, const char *key, double max, double *out,
		      struct bl_json_error *e)
{
	double v;
	int rc = bl_json_get_double(f, key, 0, max, &v, e);

	if (rc == 0)
		*out = v;
	return rc < 0 ? -1 : 0;
}

void bl_autoscaler_heartbeat(struct bl_autoscaler *as, struct bl_http_req *req, const char *id)
{
	static const char *const allowed[] = {"cpu_cores", "cpu_request_cores", "memory_bytes",
					      "memory_request_bytes", "inflight", "queue", "ready",
					      NULL};
	struct bl_json_error e = {0};
	struct bl_json_fields f;
	struct heartbeat h = {0}, *slot;
	bool ready = true;
	bl_time_ns now = bl_mono_now();

	if (bl_api_body(req, true, allowed, &f) != 0)
		return;
	if (!as) {
		bl_http_respond_error(req, 404, "autoscaler_not_configured",
				      "no autoscaler is configured: add an 'autoscaler:' section "
				      "(docs/configuration.md#autoscaler)");
		goto out;
	}
	if (strlen(id) > WORKER_ID_MAX) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "worker id: at most %d bytes", WORKER_ID_MAX);
		goto out;
	}
	h.cpu_cores = h.cpu_request_cores = h.memory_bytes = h.memory_request_bytes = h.inflight =
		h.queue = -1;
	if (get_number(&f, "cpu_cores", 1e6, &h.cpu_cores, &e) < 0 ||
	    get_number(&f, "cpu_request_cores", 1e6, &h.cpu_request_cores, &e) < 0 ||
	    get_number(&f, "memory_bytes", 1e18, &h.memory_bytes, &e) < 0 ||
	    get_number(&f, "memory_request_bytes", 1e18, &h.memory_request_bytes, &e) < 0 ||
	    get_number(&f, "inflight", 1e9, &h.inflight, &e) < 0 ||
	    get_number(&f, "queue", 1e9, &h.queue, &e) < 0 ||
	    bl_json_get_bool(&f, "ready", &ready, &e) < 0) {
		bl_api_bad_request(req, &e);
		goto out;
	}
	slot = hb_find(as, id, true);
	if (!slot) {
		bl_http_respond_error(req, 503, "overloaded",
				      "%d workers are reporting already; heartbeats of more are refused",
				      MAX_WORKERS);
		goto out;
	}
	if (!slot->first_ns)
		slot->first_ns = slot->ready_since_ns = now;
	else if (ready && !slot->ready)
		slot->ready_since_ns = now;
	h.ready = ready;
	memcpy(h.id, slot->id, sizeof h.id);
	h.used = true;
	h.first_ns = slot->first_ns;
	h.ready_since_ns = slot->ready_since_ns;
	h.at_ns = now;
	*slot = h;
	as->heartbeats++;
	bl_http_respond_json(req, 200,
			     json_pack("{s:s,s:I,s:I}", "worker", slot->id, "desired_replicas",
				       (json_int_t)as->desired, "interval_ms",
				       (json_int_t)(as->cfg.interval_ns / BL_NS_PER_MS)),
			     NULL);
out:
	bl_json_fields_cleanup(&f);
}

/* ---- gathering metrics -------------------------------------------------------- */

struct gather {
	struct pod_view *pods;
	size_t n, cap;
	uint32_t *index;       /* open addressing: 1 + view number, 0 empty */
	size_t index_mask;     /* index size - 1 (a power of two > 2 x cap) */
	double inflight;       /* reported in flight, all workers */
	bool has_inflight;
	double queue;
	bool has_queue;
};

/* The view of worker id (found in the index, O(1)), or a new one; NULL when
 * the decision already sees as many workers as it can hold. */
static struct pod_view *view_find(struct gather *g, const char *id, bool create)
{
	size_t i = (size_t)id_hash(id) & g->index_mask;

	for (; g->index[i]; i = (i + 1) & g->index_mask)
		if (strcmp(g->pods[g->index[i] - 1].id, id) == 0)
			return &g->pods[g->index[i] - 1];
	if (!create || g->n == g->cap)
		return NULL;
	g->index[i] = (uint32_t)g->n + 1;
	memset(&g->pods[g->n], 0, sizeof g->pods[g->n]);
	snprintf(g->pods[g->n].id, sizeof g->pods[g->n].id, "%s", id);
	g->pods[g->n].pod.phase = BL_PLANNER_POD_RUNNING;
	g->pods[g->n].pod.ready = BL_PLANNER_READY_TRUE;
	g->pods[g->n].cpu_req_m = -1;
	g->pods[g->n].mem_req = -1;
	return &g->pods[g->n++];
}

static struct pod_view *view_of(struct gather *g, const char *id)
{
	return view_find(g, id, true);
}

static void count_lease(void *ctx, const char *worker, const char *budget)
{
	struct gather *g = ctx;
	struct pod_view *v = view_find(g, worker, false);

	(void)budget;
	if (v)
		v->leases++;
}

static void gather(struct bl_autoscaler *as, bl_time_ns now, struct gather *g)
{
	if (as->sup) {
		size_t nw = bl_supervisor_workers(as->sup, as->ws, as->ws_cap);

		for (size_t i = 0; i < nw && i < as->ws_cap; i++) {
			struct bl_supervisor_worker *w = &as->ws[i];
			struct pod_view *v;

			if (w->state == BL_WORKER_EXITED || !(v = view_of(g, w->id)))
				continue;
			v->pod.has_start_time = true;
			v->pod.start_time_s = (double)(w->started_ns - now) / 1e9;
			v->pod.has_ready_transition = true;
			v->pod.ready_transition_s = v->pod.start_time_s;
			switch (w->state) {
			case BL_WORKER_STARTING:
				v->pod.ready = BL_PLANNER_READY_FALSE;
				break;
			case BL_WORKER_STOPPING:
				v->pod.deleting = true;
				break;
			case BL_WORKER_BACKOFF:
				v->pod.phase = BL_PLANNER_POD_FAILED;
				break;
			default:
				break;
			}
			v->cpu_req_m = DEFAULT_CPU_REQUEST_M;
			if (w->sampled_ns) {
				v->has_cpu = true;
				v->cpu_m = w->cpu_cores * 1000.0;
				v->mem = (double)w->rss_bytes;
				v->sampled_ago_s = (double)(now - w->sampled_ns) / 1e9;
			}
		}
	}
	for (size_t i = 0; i < MAX_WORKERS; i++) {
		struct heartbeat *h = &as->hb[i];
		struct pod_view *v;

		if (!hb_fresh(as, h, now) || !(v = view_of(g, h->id)))
			continue;
		if (!as->sup) {
			v->pod.has_start_time = true;
			v->pod.start_time_s = (double)(h->first_ns - now) / 1e9;
		}
		v->pod.ready = h->ready ? BL_PLANNER_READY_TRUE : BL_PLANNER_READY_FALSE;
		v->pod.has_ready_transition = true;
		v->pod.ready_transition_s = (double)(h->ready_since_ns - now) / 1e9;
		/* A worker's own figures win over /proc: it knows its request. */
		if (h->cpu_cores >= 0) {
			v->has_cpu = true;
			v->cpu_m = h->cpu_cores * 1000.0;
			v->sampled_ago_s = (double)(now - h->at_ns) / 1e9;
		}
		if (h->cpu_request_cores > 0)
			v->cpu_req_m = h->cpu_request_cores * 1000.0;
		else if (v->cpu_req_m < 0)
			v->cpu_req_m = DEFAULT_CPU_REQUEST_M;
		if (h->memory_bytes >= 0) {
			v->mem = h->memory_bytes;
			v->has_mem = true;
		}
		if (h->memory_request_bytes > 0)
			v->mem_req = h->memory_request_bytes;
		if (h->inflight >= 0) {
			g->inflight += h->inflight;
			g->has_inflight = true;
		}
		if (h->queue >= 0) {
			g->queue += h->queue;
			g->has_queue = true;
		}
	}
	bl_budgets_worker_leases(as->budgets, count_lease, g);
	/* The supervisor stops the least busy workers first, and holds those
	 * with leases until their grace runs out. */
	if (as->sup)
		for (size_t i = 0; i < g->n; i++)
			bl_supervisor_set_busy(as->sup, g->pods[i].id, g->pods[i].leases);
}

/* ---- deciding ----------------------------------------------------------------- */

static void on_k8s(void *ctx, const struct bl_k8s_result *r);

static int32_t current_replicas(struct bl_autoscaler *as, const struct gather *g)
{
	if (as->sup) {
		struct bl_supervisor_stats st;

		bl_supervisor_stats(as->sup, &st);
		return (int32_t)st.current;
	}
	if (as->actuator == BL_ACTUATOR_NONE && g->n)
		return (int32_t)g->n; /* the workers that report */
	if (as->k8s)
		bl_k8s_get(as->k8s, on_k8s, as); /* for the next decision: someone may scale too */
	return as->applied;
}

/* Sets a band target from a config band (fractions) in percent. */
static void band_target(const struct bl_cfg_band *b, struct bl_planner_target *t)
{
	t->band = true;
	t->low = b->low * 100.0;
	t->high = b->high * 100.0;
	t->value = (t->low + t->high) / 2;
}

/* The Kubernetes API's answer: the object's replicas become the current
 * count; failures are logged once per change of message. */
static void on_k8s(void *ctx, const struct bl_k8s_result *r)
{
	struct bl_autoscaler *as = ctx;
	char q[300];

	if (r->rc == 0) {
		as->applied = (int32_t)r->spec_replicas;
		if (!as->k8s_known) {
			/* The Deployment's count is the first recommendation, as
			 * Kubernetes records when it first sees a target. */
			bl_planner_history_record(&as->hist, &as->pc, bl_mono_now(), as->applied);
			as->current = as->desired = as->applied;
			as->k8s_known = true;
		}
		return;
	}
	bl_log(BL_LOG_WARN, "kubernetes actuator failed", "op=%s error=%s",
	       r->op == BL_K8S_OP_GET ? "get" : "scale", bl_log_quote(q, sizeof q, r->error));
}

static void actuate(struct bl_autoscaler *as, int32_t desired)
{
	if (as->k8s) {
		bl_k8s_scale(as->k8s, (uint32_t)desired, on_k8s, as);
		return; /* applied when the API says so */
	}
	if (as->sup) {
		bl_supervisor_scale(as->sup, (uint32_t)desired);
	} else if (as->exec) {
		bl_exec_actuator_request(as->exec, (uint32_t)desired);
	}
	as->applied = desired; /* exec: as asked; its failures are in its stats */
}

static void decide(struct bl_autoscaler *as)
{
	bl_time_ns now = bl_mono_now();
	struct pod_view *views = as->views;
	struct gather g = {views, 0, as->cap, as->view_index, as->view_index_mask, 0, false, 0, false};
	struct bl_planner_pod *cpu_pods = as->cpu_pods, *mem_pods = as->mem_pods;
	struct bl_planner_usage *cpu_use = as->cpu_use, *mem_use = as->mem_use;
	size_t n_cpu_use = 0, n_mem_use = 0, n_mem_pods = 0;
	struct bl_planner_metric m[BL_PLANNER_MAX_METRICS];
	struct bl_planner_input in = {0};
	struct bl_planner_result *res = as->res;
	struct decision *d = &as->decisions[as->n_decisions % DECISIONS_KEPT];
	size_t nm = 0;
	int rc;

	if (as->k8s && !as->k8s_known) {
		/* Nothing to decide before the Deployment's count is known. */
		bl_k8s_get(as->k8s, on_k8s, as);
		return;
	}
	hb_expire(as, now);
	memset(as->view_index, 0, (as->view_index_mask + 1) * sizeof *as->view_index);
	gather(as, now, &g);
	memset(m, 0, sizeof m);
	as->last_cpu = as->last_mem = -1;
	/* cpu: every worker with a CPU figure, Kubernetes-style. */
	for (size_t i = 0; i < g.n; i++) {
		struct pod_view *v = &views[i];

		cpu_pods[i] = v->pod;
		cpu_pods[i].name = v->id;
		cpu_pods[i].has_request = v->cpu_req_m > 0;
		cpu_pods[i].request = (int64_t)(v->cpu_req_m > 0 ? v->cpu_req_m : 0);
		if (v->has_cpu)
			cpu_use[n_cpu_use++] = (struct bl_planner_usage){
				.pod = v->id, .usage = (int64_t)llround(v->cpu_m), .has_timestamp = true,
				.timestamp_s = -v->sampled_ago_s,
				.window_s = (double)as->cfg.interval_ns / 1e9};
		if (v->has_mem && v->mem_req > 0) {
			mem_pods[n_mem_pods] = cpu_pods[i];
			mem_pods[n_mem_pods].has_request = true;
			mem_pods[n_mem_pods].request = (int64_t)v->mem_req;
			n_mem_pods++;
			mem_use[n_mem_use++] = (struct bl_planner_usage){
				.pod = v->id, .usage = (int64_t)llround(v->mem), .has_timestamp = true,
				.timestamp_s = -v->sampled_ago_s,
				.window_s = (double)as->cfg.interval_ns / 1e9};
		}
	}
	/* No worker measures CPU (heartbeats without cpu_cores, no local
	 * actuator): no cpu metric, rather than one that fails forever and so
	 * blocks every scale-down. */
	if (n_cpu_use == 0 && !as->sup)
		goto no_cpu;
	m[nm].kind = BL_PLANNER_METRIC_RESOURCE;
	m[nm].name = "cpu";
	m[nm].resource = (struct bl_planner_resource_metric){.resource = BL_PLANNER_CPU,
							     .pods = cpu_pods, .pod_count = g.n,
							     .usage = cpu_use,
							     .usage_count = n_cpu_use};
	band_target(&as->cfg.cpu, &m[nm].resource.target);
	nm++;
no_cpu:
	if (n_mem_pods) {
		m[nm].kind = BL_PLANNER_METRIC_RESOURCE;
		m[nm].name = "memory";
		m[nm].resource = (struct bl_planner_resource_metric){
			.resource = BL_PLANNER_MEMORY, .pods = mem_pods, .pod_count = n_mem_pods,
			.usage = mem_use, .usage_count = n_mem_use};
		band_target(&as->cfg.memory, &m[nm].resource.target);
		nm++;
	}
	as->last_inflight = g.inflight;
	as->last_queue = g.queue;
	if (as->cfg.inflight_per_replica > 0) {
		/* In-flight work with burst mode: the demand window, sampled each second. */
		m[nm].kind = BL_PLANNER_METRIC_DEMAND;
		m[nm].name = "inflight";
		bl_planner_window_read(&as->window, now, &m[nm].demand);
		m[nm].demand.target_per_replica = as->cfg.inflight_per_replica;
		nm++;
	}
	if (as->cfg.queue_per_replica > 0) {
		struct bl_planner_budget qb = {0};
		double total = g.queue;

		if (as->budget && bl_budgets_planner_budget(as->budgets, as->budget, &qb) == 0)
			total += (double)qb.queue_length;
		m[nm].kind = BL_PLANNER_METRIC_AVERAGE;
		m[nm].name = "queue";
		m[nm].average.total = total;
		m[nm].average.target.value = as->cfg.queue_per_replica;
		as->last_queue = total;
		nm++;
	}
	if (nm == 0) {
		m[nm].kind = BL_PLANNER_METRIC_FAILED;
		m[nm].name = "metrics";
		m[nm].failure = "no worker reports any metric yet (heartbeats, or a local actuator)";
		nm++;
	}
	in.current_replicas = current_replicas(as, &g);
	in.now_ns = now;
	in.metrics = m;
	in.metric_count = nm;
	in.panic = as->panic;
	bl_planner_history_input(&as->hist, &in);
	if (as->budget && bl_budgets_planner_budget(as->budgets, as->budget, &in.budget) == 0) {
		/* Workers the budget keeps busy: those holding its leases. */
		int32_t busy = 0;

		for (size_t i = 0; i < g.n; i++)
			busy += views[i].leases > 0;
		in.budget.busy_workers = busy;
		as->last_budget_util = in.budget.utilization;
	}
	rc = bl_planner_plan(&as->pc, &in, NULL, res, d->reason, sizeof d->reason);
	d->at_ms = wall_ms();
	d->current = in.current_replicas;
	d->cpu_percent = -1;
	d->memory_percent = -1;
	for (size_t i = 0; i < res->metric_count && rc == 0; i++) {
		if (res->metrics[i].status != 0 || m[i].kind != BL_PLANNER_METRIC_RESOURCE)
			continue;
		if (m[i].resource.resource == BL_PLANNER_CPU)
			d->cpu_percent = as->last_cpu = res->metrics[i].resource.utilization_percent;
		else
			d->memory_percent = as->last_mem = res->metrics[i].resource.utilization_percent;
	}
	d->inflight = g.inflight;
	d->queue = as->last_queue;
	if (rc != 0) {
		d->desired = in.current_replicas;
		d->acted = false;
		as->failures++;
		bl_log(BL_LOG_WARN, "autoscaler could not plan", "error=%s", bl_strerror(rc));
		goto out;
	}
	if (res->status != 0)
		as->failures++;
	/* The memory budget above its high watermark: more workers would need
	 * memory the fleet does not have. Hold the count (never a scale-down). */
	{
		double mu = 0;

		if (res->desired > in.current_replicas &&
		    bl_budgets_memory_pressure(as->budgets, &mu) == 2) {
			size_t len = strlen(d->reason);

			snprintf(d->reason + len, sizeof d->reason - len,
				 "; held at %d: memory pressure critical (%.0f %% of usable reserved)",
				 in.current_replicas, mu * 100);
			res->desired = in.current_replicas;
			as->memory_holds++;
		}
	}
	if (res->record)
		bl_planner_history_record(&as->hist, &as->pc, now, res->recommendation);
	as->panic = res->panic;
	d->desired = res->desired;
	d->acted = res->desired != in.current_replicas && !res->scaling_disabled;
	as->current = in.current_replicas;
	as->desired = res->desired;
	if (d->acted) {
		char q[REASON_MAX + 64];

		actuate(as, res->desired);
		/* Recommend-only: nothing was resized here, so no scale event; the
		 * next plan starts from the workers that really report. */
		if (as->actuator != BL_ACTUATOR_NONE)
			bl_planner_history_scaled(&as->hist, &as->pc, now, in.current_replicas,
						  res->desired);
		if (res->desired > in.current_replicas)
			as->scale_ups++;
		else
			as->scale_downs++;
		bl_log(BL_LOG_INFO, "autoscaler scales", "from=%d to=%d reason=%s",
		       in.current_replicas, res->desired, bl_log_quote(q, sizeof q, d->reason));
	} else if (as->sup || as->exec) {
		/* Keep the actuator at the count even when nothing changes (a
		 * crashed local worker is restarted by the supervisor itself). */
		if (as->applied != res->desired)
			actuate(as, res->desired);
	}
out:
	as->n_decisions++;
	{
		uint64_t took = (uint64_t)(bl_mono_now() - now);

		as->decide_ns_last = took;
		as->decide_ns_sum += took;
		if (took > as->decide_ns_max)
			as->decide_ns_max = took;
	}
}

static void on_tick(uv_timer_t *t)
{
	decide(t->data);
}

static void on_sample(uv_timer_t *t)
{
	struct bl_autoscaler *as = t->data;
	bl_time_ns now = bl_mono_now();
	double total = 0;

	/* Demand = in-flight work reported by fresh heartbeats plus leases
	 * that name a worker (whichever is larger: they count the same calls). */
	for (size_t i = 0; i < MAX_WORKERS; i++)
		if (hb_fresh(as, &as->hb[i], now) && as->hb[i].inflight > 0)
			total += as->hb[i].inflight;
	bl_planner_window_record(&as->window, now, total);
}

/* ---- lifetime ----------------------------------------------------------------- */

/* A power of two above twice n: the view index stays under half full. */
static size_t index_size(size_t n)
{
	size_t size = 16;

	while (size < 2 * n + 1)
		size <<= 1;
	return size;
}

static void copy_cfg(struct bl_autoscaler *as, const struct bl_cfg_autoscaler *a)
{
	as->cfg = *a;
	as->cfg.command = NULL;
	as->cfg.env = NULL;
	as->cfg.cwd = NULL;
	as->cfg.budget = NULL;
	as->cfg.k8s_namespace = NULL;
	as->cfg.k8s_deployment = NULL;
	bl_cfg_planner_config(a, &as->pc);
}

/* ---- snapshot -------------------------------------------------------------- */

/* What a restart keeps: the history the stabilization windows and the scale
 * policies read, the burst (panic) state, and the count last carried out.
 * Without it a restarted daemon would start from min_replicas and with an
 * empty window, free to scale down at once. */
struct saved {
	struct bl_planner_history hist;
	struct bl_planner_panic_state panic;
	int32_t applied;
	/* The local actuator's workers, so that a daemon restarted after being
	 * killed stops those it left behind (same boot only: start times count
	 * from boot) and numbers new ones after them. */
	uint64_t next_worker;        /* 0: not saved */
	char boot_id[40];
	struct bl_supervisor_identity workers[BL_SUPERVISOR_MAX_REPLICAS];
	size_t n_workers;
};

/* This boot's id (/proc/sys/kernel/random/boot_id), "" when unreadable. */
static void read_boot_id(char *out, size_t cap)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	size_t n = 0;

	out[0] = '\0';
	if (!f)
		return;
	if (fgets(out, (int)cap, f))
		n = strcspn(out, "\n");
	out[n] = '\0';
	fclose(f);
}

#define SAVED_REPLICAS_MAX 1000000

/* Snapshot times are wall-clock ms; the loop's are monotonic ns. offset is
 * wall - mono at one moment. A time in the future (the wall clock went back)
 * becomes now. */
static bl_time_ns saved_time(json_int_t wall_ms, int64_t offset, bl_time_ns now)
{
	bl_time_ns t = (bl_time_ns)(wall_ms * BL_NS_PER_MS - offset);

	return t > now ? now : t;
}

static int parse_pairs(json_t *arr, const char *what, bool events, struct saved *s, int64_t offset,
		       bl_time_ns now, char *err, size_t errcap)
{
	size_t i, n = json_array_size(arr);
	json_t *v;

	if (!json_is_array(arr) || n > BL_PLANNER_HISTORY_MAX) {
		snprintf(err, errcap, "%s: expected an array of at most %d [at_ms, n] pairs", what,
			 BL_PLANNER_HISTORY_MAX);
		return BL_ECORRUPT;
	}
	json_array_foreach(arr, i, v) {
		json_int_t at, k;

		if (json_unpack(v, "[II!]", &at, &k) != 0 || at < 0 || at > INT64_MAX / BL_NS_PER_MS ||
		    (events ? k == 0 || k < -SAVED_REPLICAS_MAX || k > SAVED_REPLICAS_MAX
			    : k < 0 || k > SAVED_REPLICAS_MAX)) {
			snprintf(err, errcap, "%s[%zu]: expected [at_ms, %s]", what, i,
				 events ? "a non-zero change" : "replicas >= 0");
			return BL_ECORRUPT;
		}
		if (events)
			s->hist.events[i] = (struct bl_planner_event){saved_time(at, offset, now),
								      (int32_t)k};
		else
			s->hist.recommendations[i] = (struct bl_planner_recommendation){
				saved_time(at, offset, now), (int32_t)k};
	}
	if (events)
		s->hist.event_count = n;
	else
		s->hist.recommendation_count = n;
	return 0;
}

static int parse_workers(json_t *arr, struct saved *s, char *err, size_t errcap)
{
	size_t i;
	json_t *v;

	if (!json_is_array(arr) || json_array_size(arr) > BL_SUPERVISOR_MAX_REPLICAS) {
		snprintf(err, errcap, "workers: expected an array of at most %d [pid, start_ticks] "
			 "pairs", BL_SUPERVISOR_MAX_REPLICAS);
		return BL_ECORRUPT;
	}
	json_array_foreach(arr, i, v) {
		json_int_t pid, start;

		if (json_unpack(v, "[II!]", &pid, &start) != 0 || pid < 2 || pid > INT32_MAX ||
		    start <= 0) {
			snprintf(err, errcap, "workers[%zu]: expected [pid > 1, start_ticks > 0]", i);
			return BL_ECORRUPT;
		}
		s->workers[i] = (struct bl_supervisor_identity){(int)pid, (uint64_t)start};
	}
	s->n_workers = json_array_size(arr);
	return 0;
}

/* Reads a saved state into *s. Returns 0 or BL_ECORRUPT with a reason. */
static int parse_saved(json_t *st, struct saved *s, char *err, size_t errcap)
{
	bl_time_ns now = bl_mono_now();
	int64_t offset = bl_wall_ns() - now;
	json_t *recs, *evs;
	json_int_t applied, since, max_panic;
	int active;
	int rc;

	json_t *workers = NULL;
	json_int_t next_worker = 0;
	const char *boot = "";

	memset(s, 0, sizeof *s);
	if (json_unpack(st, "{s:I,s:o,s:o,s:{s:b,s:I,s:I!},s?o,s?I,s?s!}", "applied", &applied,
			"recommendations", &recs, "events", &evs, "panic", "active", &active,
			"since_ms", &since, "max_replicas", &max_panic, "workers", &workers,
			"next_worker", &next_worker, "boot_id", &boot) != 0 ||
	    next_worker < 0 || strlen(boot) >= sizeof s->boot_id ||
	    applied < 0 || applied > SAVED_REPLICAS_MAX || since < 0 ||
	    since > INT64_MAX / BL_NS_PER_MS || max_panic < 0 || max_panic > SAVED_REPLICAS_MAX) {
		snprintf(err, errcap,
			 "expected {\"applied\":N,\"recommendations\":[...],\"events\":[...],"
			 "\"panic\":{\"active\":BOOL,\"since_ms\":N,\"max_replicas\":N}}");
		return BL_ECORRUPT;
	}
	rc = parse_pairs(recs, "recommendations", false, s, offset, now, err, errcap);
	if (rc == 0)
		rc = parse_pairs(evs, "events", true, s, offset, now, err, errcap);
	if (rc == 0 && workers)
		rc = parse_workers(workers, s, err, errcap);
	if (rc != 0)
		return rc;
	s->next_worker = (uint64_t)next_worker;
	snprintf(s->boot_id, sizeof s->boot_id, "%s", boot);
	s->panic.panicking = active;
	s->panic.panic_time_ns = since ? saved_time(since, offset, now) : 0;
	s->panic.max_panic_pods = (int32_t)max_panic;
	s->applied = (int32_t)applied;
	return 0;
}

int bl_autoscaler_check_saved(json_t *state, char *err, size_t errcap)
{
	struct saved *s = malloc(sizeof *s);
	int rc;

	if (!s) {
		snprintf(err, errcap, "out of memory");
		return BL_ENOMEM;
	}
	rc = parse_saved(state, s, err, errcap);
	free(s);
	return rc;
}

static json_int_t wall_ms_of(bl_time_ns t, int64_t offset)
{
	return (json_int_t)((t + offset) / BL_NS_PER_MS);
}

json_t *bl_autoscaler_save(struct bl_autoscaler *as)
{
	int64_t offset = bl_wall_ns() - bl_mono_now();
	json_t *recs, *evs, *doc;

	if (!as || (as->k8s && !as->k8s_known))
		return NULL; /* nothing known yet: keep what the file has */
	recs = json_array();
	evs = json_array();
	for (size_t i = 0; i < as->hist.recommendation_count; i++)
		json_array_append_new(recs, json_pack("[I,i]",
						      wall_ms_of(as->hist.recommendations[i].at_ns, offset),
						      as->hist.recommendations[i].replicas));
	for (size_t i = 0; i < as->hist.event_count; i++)
		json_array_append_new(evs, json_pack("[I,i]", wall_ms_of(as->hist.events[i].at_ns, offset),
						     as->hist.events[i].change));
	doc = json_pack("{s:i,s:o,s:o,s:{s:b,s:I,s:i}}", "applied", as->applied, "recommendations",
			recs, "events", evs, "panic", "active", as->panic.panicking, "since_ms",
			as->panic.panic_time_ns ? wall_ms_of(as->panic.panic_time_ns, offset)
						: (json_int_t)0,
			"max_replicas", as->panic.max_panic_pods);
	if (doc && as->sup) {
		size_t n = bl_supervisor_identities(as->sup, as->ids, as->ids_cap);
		json_t *ws = json_array();

		for (size_t i = 0; i < n && i < as->ids_cap; i++)
			json_array_append_new(ws, json_pack("[i,I]", as->ids[i].pid,
							     (json_int_t)as->ids[i].start_ticks));
		json_object_set_new(doc, "workers", ws);
		json_object_set_new(doc, "next_worker",
				    json_integer((json_int_t)bl_supervisor_next_seq(as->sup)));
		json_object_set_new(doc, "boot_id", json_string(as->boot_id));
	}
	return doc;
}

/* Reads the state the snapshot kept (bl_autoscaler_check_saved accepted it
 * at restore, so only memory can fail here). NULL: start clean. */
static struct saved *load_saved(json_t *state)
{
	struct saved *s;
	char err[256], q[300];

	if (!state)
		return NULL;
	s = malloc(sizeof *s);
	if (!s || parse_saved(state, s, err, sizeof err) != 0) {
		bl_log(BL_LOG_WARN, "autoscaler state not restored", "error=%s",
		       bl_log_quote(q, sizeof q, s ? err : "out of memory"));
		free(s);
		return NULL;
	}
	return s;
}

/* Takes a saved state over at start. The count is kept within the config's
 * bounds (they may have changed); with the kubernetes actuator the object's
 * own count wins, only the history is taken. */
static void restore_saved(struct bl_autoscaler *as, const struct saved *s)
{
	as->hist = s->hist;
	as->panic = s->panic;
	if (!as->k8s) {
		int32_t n = s->applied;

		if (n < (int32_t)as->cfg.min_replicas)
			n = (int32_t)as->cfg.min_replicas;
		if (n > (int32_t)as->cfg.max_replicas)
			n = (int32_t)as->cfg.max_replicas;
		as->applied = as->current = as->desired = n;
	}
	bl_log(BL_LOG_INFO, "autoscaler state restored",
	       "replicas=%d saved_replicas=%d recommendations=%zu events=%zu panic=%s",
	       as->applied, s->applied, s->hist.recommendation_count, s->hist.event_count,
	       s->panic.panicking ? "true" : "false");
}

/* A worker process started (a new one, or a restart): the snapshot should
 * know its identity soon, so that a daemon killed now can stop it later. */
static void on_supervisor_event(void *ctx, const struct bl_supervisor_event *ev)
{
	struct bl_autoscaler *as = ctx;

	if (ev->kind == BL_SUPERVISOR_EV_STARTED && as->on_workers_changed)
		as->on_workers_changed(as->on_workers_changed_ctx);
}

void bl_autoscaler_on_workers_changed(struct bl_autoscaler *as, void (*fn)(void *ctx), void *ctx)
{
	if (!as)
		return;
	as->on_workers_changed = fn;
	as->on_workers_changed_ctx = ctx;
}

int bl_autoscaler_create(uv_loop_t *loop, const struct bl_config *cfg, const char *ballast_url,
			 struct bl_budgets *budgets, json_t *saved, struct bl_autoscaler **out,
			 char *err, size_t errcap)
{
	const struct bl_cfg_autoscaler *a = &cfg->autoscaler;
	struct bl_autoscaler *as;
	struct saved *sv;
	int rc;

	*out = NULL;
	if (!a->configured)
		return 0;
	rc = bl_autoscaler_check(cfg, err, errcap);
	if (rc != 0)
		return rc;
	as = calloc(1, sizeof *as);
	if (!as) {
		snprintf(err, errcap, "out of memory creating the autoscaler");
		return BL_ENOMEM;
	}
	as->cap = MAX_WORKERS + 2 * (size_t)a->max_replicas;
	as->view_index_mask = index_size(as->cap) - 1;
	as->ws_cap = 2 * (size_t)a->max_replicas + BL_SUPERVISOR_HISTORY_MAX;
	as->ids_cap = 2 * (size_t)a->max_replicas; /* live workers, stopping ones included */
	if (!(as->hb = calloc(MAX_WORKERS, sizeof *as->hb)) ||
	    !(as->views = calloc(as->cap, sizeof *as->views)) ||
	    !(as->view_index = calloc(index_size(as->cap), sizeof *as->view_index)) ||
	    !(as->cpu_pods = calloc(as->cap, sizeof *as->cpu_pods)) ||
	    !(as->mem_pods = calloc(as->cap, sizeof *as->mem_pods)) ||
	    !(as->cpu_use = calloc(as->cap, sizeof *as->cpu_use)) ||
	    !(as->mem_use = calloc(as->cap, sizeof *as->mem_use)) ||
	    !(as->ws = calloc(as->ws_cap, sizeof *as->ws)) ||
	    !(as->ids = calloc(as->ids_cap, sizeof *as->ids)) ||
	    !(as->res = calloc(1, sizeof *as->res)) ||
	    (a->budget && !(as->budget = strdup(a->budget)))) {
		bl_autoscaler_destroy(as);
		snprintf(err, errcap, "out of memory creating the autoscaler");
		return BL_ENOMEM;
	}
	as->loop = loop;
	as->budgets = budgets;
	as->actuator = a->actuator;
	hb_init(as);
	read_boot_id(as->boot_id, sizeof as->boot_id);
	sv = load_saved(saved);
	copy_cfg(as, a);
	bl_planner_history_init(&as->hist);
	bl_planner_window_init(&as->window, &as->pc.panic);
	as->applied = (int32_t)a->min_replicas;
	as->current = as->desired = (int32_t)a->min_replicas;
	if (a->actuator == BL_ACTUATOR_LOCAL) {
		struct bl_supervisor_config sc;

		bl_supervisor_config_defaults(&sc);
		sc.argv = (const char *const *)a->command;
		sc.env = (const char *const *)a->env;
		sc.cwd = a->cwd;
		sc.ballast_url = ballast_url;
		sc.min_replicas = a->min_replicas;
		sc.max_replicas = a->max_replicas;
		sc.grace_ns = a->grace_ns;
		sc.on_event = on_supervisor_event;
		sc.ctx = as;
		if (sv) {
			sc.first_seq = sv->next_worker;
			/* Start times count from boot: another boot's are meaningless. */
			if (as->boot_id[0] && strcmp(sv->boot_id, as->boot_id) == 0) {
				sc.orphans = sv->workers;
				sc.n_orphans = sv->n_workers;
			}
		}
		rc = bl_supervisor_create(loop, &sc, &as->sup, err, errcap);
	} else if (a->actuator == BL_ACTUATOR_KUBERNETES) {
		struct bl_k8s_config kc;

		bl_k8s_config_defaults(&kc);
		kc.kind = a->k8s_statefulset ? BL_K8S_STATEFULSET : BL_K8S_DEPLOYMENT;
		kc.namespace = a->k8s_namespace;
		kc.name = a->k8s_deployment;
		kc.api_url = a->k8s_api_url;
		kc.token_file = a->k8s_token_file;
		kc.ca_file = a->k8s_ca_file;
		rc = bl_k8s_create(loop, &kc, &as->k8s, err, errcap);
	} else if (a->actuator == BL_ACTUATOR_EXEC) {
		struct bl_exec_actuator_config ec;

		bl_exec_actuator_config_defaults(&ec);
		ec.argv = (const char *const *)a->command;
		ec.env = (const char *const *)a->env;
		ec.cwd = a->cwd;
		rc = bl_exec_actuator_create(loop, &ec, &as->exec, err, errcap);
	}
	if (rc != 0) {
		free(sv);
		bl_autoscaler_destroy(as);
		return rc;
	}
	if (sv)
		restore_saved(as, sv);
	free(sv);
	/* As Kubernetes does when it first sees a pool: the count it starts at
	 * is the first recommendation, so nothing scales down on the first pass. */
	if (as->k8s) {
		bl_k8s_get(as->k8s, on_k8s, as); /* the Deployment's count is the start */
	} else {
		bl_planner_history_record(&as->hist, &as->pc, bl_mono_now(), as->applied);
		actuate(as, as->applied);
	}
	uv_timer_init(loop, &as->tick);
	uv_timer_init(loop, &as->sampler);
	as->tick.data = as->sampler.data = as;
	as->handles = 2;
	uv_timer_start(&as->tick, on_tick, (uint64_t)(a->interval_ns / BL_NS_PER_MS),
		       (uint64_t)(a->interval_ns / BL_NS_PER_MS));
	uv_timer_start(&as->sampler, on_sample, SAMPLE_NS / BL_NS_PER_MS, SAMPLE_NS / BL_NS_PER_MS);
	bl_log(BL_LOG_INFO, "autoscaler started", "actuator=%s min=%u max=%u interval_ms=%lld",
	       bl_cfg_actuator_name(a->actuator), a->min_replicas, a->max_replicas,
	       (long long)(a->interval_ns / BL_NS_PER_MS));
	*out = as;
	return 0;
}

void bl_autoscaler_apply(struct bl_autoscaler *as, const struct bl_config *cfg, json_t *warnings)
{
	const struct bl_cfg_autoscaler *a = &cfg->autoscaler;

	if (!as) {
		if (a->configured) {
			bl_log(BL_LOG_WARN, "autoscaler added in the config; restart to start it", NULL);
			if (warnings)
				json_array_append_new(warnings,
						      json_string("autoscaler added: restart to start it"));
		}
		return;
	}
	if (!a->configured || a->actuator != as->actuator) {
		bl_log(BL_LOG_WARN, "autoscaler removed or its actuator changed; restart to apply",
		       NULL);
		if (warnings)
			json_array_append_new(warnings,
					      json_string("autoscaler actuator changed: restart to apply"));
		if (!a->configured)
			return;
	}
	copy_cfg(as, a);
	free(as->budget);
	as->budget = a->budget ? strdup(a->budget) : NULL;
	uv_timer_set_repeat(&as->tick, (uint64_t)(a->interval_ns / BL_NS_PER_MS));
}

static void on_timer_closed(uv_handle_t *h)
{
	struct bl_autoscaler *as = h->data;

	if (--as->handles == 0 && !as->sup && as->done)
		as->done(as->done_ctx);
}

/* The supervisor's workers are gone (it is freed in destroy). */
static void on_workers_gone(void *ctx)
{
	struct bl_autoscaler *as = ctx;

	if (as->done)
		as->done(as->done_ctx);
}

/* The exec or kubernetes actuator has stopped: nothing to wait for. */
static void on_actuator_gone(void *ctx)
{
	(void)ctx;
}

void bl_autoscaler_shutdown(struct bl_autoscaler *as, int64_t grace_cap_ns, void (*done)(void *),
			    void *ctx)
{
	if (!as) {
		if (done)
			done(ctx);
		return;
	}
	as->stopping = true;
	as->done = done;
	as->done_ctx = ctx;
	uv_timer_stop(&as->tick);
	uv_timer_stop(&as->sampler);
	if (as->exec)
		bl_exec_actuator_shutdown(as->exec, on_actuator_gone, as);
	if (as->k8s)
		bl_k8s_shutdown(as->k8s, on_actuator_gone, as);
	if (as->sup) {
		int64_t grace = as->cfg.grace_ns < grace_cap_ns ? as->cfg.grace_ns : grace_cap_ns;

		bl_supervisor_shutdown(as->sup, grace, on_workers_gone, as);
	}
	uv_close((uv_handle_t *)&as->tick, on_timer_closed);
	uv_close((uv_handle_t *)&as->sampler, on_timer_closed);
}

void bl_autoscaler_destroy(struct bl_autoscaler *as)
{
	if (!as)
		return;
	bl_supervisor_destroy(as->sup);
	bl_exec_actuator_destroy(as->exec);
	bl_k8s_destroy(as->k8s);
	free(as->budget);
	free(as->hb);
	free(as->views);
	free(as->view_index);
	free(as->cpu_pods);
	free(as->mem_pods);
	free(as->cpu_use);
	free(as->mem_use);
	free(as->ws);
	free(as->ids);
	free(as->res);
	free(as);
}

/* ---- views -------------------------------------------------------------------- */

static json_t *num_or_null(double v)
{
	return v >= 0 ? json_real(v) : json_null();
}

json_t *bl_autoscaler_json(struct bl_autoscaler *as)
{
	json_t *decisions, *workers, *o;
	bl_time_ns now = bl_mono_now();
	size_t first, n;

	if (!as)
		return json_null();
	decisions = json_array();
	n = as->n_decisions < DECISIONS_KEPT ? as->n_decisions : DECISIONS_KEPT;
	first = as->n_decisions - n;
	for (size_t i = as->n_decisions; i-- > first;) {
		const struct decision *d = &as->decisions[i % DECISIONS_KEPT];

		json_array_append_new(decisions,
				      json_pack("{s:I,s:i,s:i,s:b,s:s,s:o,s:o,s:f,s:f}", "at_ms",
						(json_int_t)d->at_ms, "current", d->current, "desired",
						d->desired, "scaled", d->acted, "reason", d->reason,
						"cpu_percent", num_or_null(d->cpu_percent),
						"memory_percent", num_or_null(d->memory_percent),
						"inflight", d->inflight, "queue", d->queue));
	}
	workers = json_array();
	if (as->sup) {
		struct bl_supervisor_worker *ws = as->ws;
		size_t nw = bl_supervisor_workers(as->sup, ws, as->ws_cap);

		for (size_t i = 0; i < nw && i < as->ws_cap; i++)
			json_array_append_new(
				workers,
				json_pack("{s:s,s:s,s:i,s:i,s:f,s:I,s:i}", "id", ws[i].id, "state",
					  bl_supervisor_state_name(ws[i].state), "pid", ws[i].pid,
					  "restarts", (int)ws[i].restarts, "cpu_cores", ws[i].cpu_cores,
					  "rss_bytes", (json_int_t)ws[i].rss_bytes, "leases",
					  (int)ws[i].leases));
	}
	for (size_t i = 0; i < MAX_WORKERS; i++) {
		const struct heartbeat *h = &as->hb[i];

		if (!h->used)
			continue;
		json_array_append_new(
			workers,
			json_pack("{s:s,s:s,s:b,s:I,s:o,s:o,s:o}", "id", h->id, "source", "heartbeat",
				  "ready", h->ready, "last_heartbeat_ms_ago",
				  (json_int_t)((now - h->at_ns) / BL_NS_PER_MS), "stale",
				  json_boolean(!hb_fresh(as, h, now)), "cpu_cores",
				  num_or_null(h->cpu_cores), "inflight", num_or_null(h->inflight)));
	}
	o = json_pack("{s:s,s:i,s:i,s:i,s:i,s:I,s:{s:o,s:o,s:f,s:f,s:o},s:{s:b,s:i},s:I,s:I,s:I,"
		      "s:o,s:o}",
		      "actuator", bl_cfg_actuator_name(as->actuator), "current_replicas",
		      as->current, "desired_replicas", as->desired, "min_replicas",
		      as->pc.min_replicas, "max_replicas", as->pc.max_replicas, "interval_ms",
		      (json_int_t)(as->cfg.interval_ns / BL_NS_PER_MS), "metrics", "cpu_percent",
		      num_or_null(as->last_cpu), "memory_percent", num_or_null(as->last_mem),
		      "inflight", as->last_inflight, "queue", as->last_queue,
		      "budget_utilization", as->budget ? json_real(as->last_budget_util) : json_null(),
		      "panic", "active", as->panic.panicking, "max_panic_replicas",
		      as->panic.max_panic_pods, "scale_ups", (json_int_t)as->scale_ups, "scale_downs",
		      (json_int_t)as->scale_downs, "failed_decisions", (json_int_t)as->failures,
		      "decisions", decisions, "workers", workers);
	if (o)
		json_object_set_new(
			o, "loop",
			json_pack("{s:I,s:f,s:f,s:f,s:I}", "decisions", (json_int_t)as->n_decisions,
				  "last_us", (double)as->decide_ns_last / 1e3, "max_us",
				  (double)as->decide_ns_max / 1e3, "mean_us",
				  as->n_decisions ? (double)as->decide_ns_sum / 1e3 / (double)as->n_decisions
						  : 0.0,
				  "memory_holds", (json_int_t)as->memory_holds));
	if (o && as->sup) {
		struct bl_supervisor_stats ss;

		bl_supervisor_stats(as->sup, &ss);
		json_object_set_new(
			o, "supervisor",
			json_pack("{s:I,s:I,s:I,s:I,s:i,s:I}", "spawns", (json_int_t)ss.spawns,
				  "spawn_failures", (json_int_t)ss.spawn_failures, "crashes",
				  (json_int_t)ss.crashes, "kills", (json_int_t)ss.kills,
				  "orphans_stopped", (int)ss.orphans_stopped, "next_worker",
				  (json_int_t)bl_supervisor_next_seq(as->sup)));
	}
	if (o && as->k8s) {
		struct bl_k8s_stats ks;

		bl_k8s_stats(as->k8s, &ks);
		json_object_set_new(
			o, "kubernetes",
			json_pack("{s:s,s:o,s:o,s:I,s:I,s:I,s:o}", "url", bl_k8s_url(as->k8s),
				  "spec_replicas", ks.has_scale ? json_integer(ks.spec_replicas) : json_null(),
				  "status_replicas",
				  ks.has_scale ? json_integer(ks.status_replicas) : json_null(), "patches",
				  (json_int_t)ks.patches, "conflicts", (json_int_t)ks.conflicts,
				  "failures", (json_int_t)ks.failures, "last_error",
				  ks.last_error[0] ? json_string(ks.last_error) : json_null()));
	}
	return o;
}

void bl_autoscaler_get(struct bl_autoscaler *as, struct bl_http_req *req)
{
	if (!as) {
		bl_http_respond_error(req, 404, "autoscaler_not_configured",
				      "no autoscaler is configured: add an 'autoscaler:' section "
				      "(docs/configuration.md#autoscaler)");
		return;
	}
	bl_http_respond_json(req, 200, bl_autoscaler_json(as), NULL);
}

void bl_autoscaler_write_metrics(struct bl_autoscaler *as, struct bl_text *t)
{
	if (!as)
		return;
	bl_text_printf(t,
		       "# HELP ballast_autoscaler_desired_replicas Workers the last plan asked for.\n"
		       "# TYPE ballast_autoscaler_desired_replicas gauge\n"
		       "ballast_autoscaler_desired_replicas %d\n"
		       "# HELP ballast_autoscaler_current_replicas Workers the last plan saw.\n"
		       "# TYPE ballast_autoscaler_current_replicas gauge\n"
		       "ballast_autoscaler_current_replicas %d\n"
		       "# HELP ballast_autoscaler_panic 1 while burst (panic) mode holds.\n"
		       "# TYPE ballast_autoscaler_panic gauge\nballast_autoscaler_panic %d\n"
		       "# HELP ballast_autoscaler_scale_events_total Scale changes, by direction.\n"
		       "# TYPE ballast_autoscaler_scale_events_total counter\n"
		       "ballast_autoscaler_scale_events_total{direction=\"up\"} %llu\n"
		       "ballast_autoscaler_scale_events_total{direction=\"down\"} %llu\n"
		       "# HELP ballast_autoscaler_decision_seconds The loop's own time per decision "
		       "(gather, plan, act).\n# TYPE ballast_autoscaler_decision_seconds gauge\n"
		       "ballast_autoscaler_decision_seconds %.9f\n"
		       "# HELP ballast_autoscaler_metric Utilization (percent) or total per metric "
		       "the last plan read.\n# TYPE ballast_autoscaler_metric gauge\n",
		       as->desired, as->current, as->panic.panicking ? 1 : 0,
		       (unsigned long long)as->scale_ups, (unsigned long long)as->scale_downs,
		       (double)as->decide_ns_last / 1e9);
	if (as->last_cpu >= 0)
		bl_text_printf(t, "ballast_autoscaler_metric{metric=\"cpu_percent\"} %.2f\n",
			       as->last_cpu);
	if (as->last_mem >= 0)
		bl_text_printf(t, "ballast_autoscaler_metric{metric=\"memory_percent\"} %.2f\n",
			       as->last_mem);
	bl_text_printf(t,
		       "ballast_autoscaler_metric{metric=\"inflight\"} %.2f\n"
		       "ballast_autoscaler_metric{metric=\"queue\"} %.2f\n",
		       as->last_inflight, as->last_queue);
}
