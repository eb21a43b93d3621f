/* The simulator's engine. See sim.h and docs/simulator.md. */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ballast/balancer.h"
#include "ballast/breaker.h"
#include "ballast/budget.h"
#include "ballast/error.h"
#include "ballast/membudget.h"
#include "ballast/planner.h"
#include "ballast/waitq.h"
#include "cfgmap.h"
#include "eventq.h"
#include "rng.h"

#define NONE UINT32_MAX
#define S_NS(x) ((int64_t)(x) * BL_NS_PER_S)
#define TICK_NS BL_NS_PER_S          /* bookkeeping period: saturation, demand, samples */
#define BAND_NS S_NS(15)             /* cpu_in_band is judged per 15 s */
#define FLAP_NS S_NS(300)            /* a reversal within 5 minutes is a flap */
#define HPA_INTERVAL_NS S_NS(15)     /* the HPA controller's sync period */
#define CHUNK_SHIFT 12               /* tasks are allocated 4096 at a time */
#define CHUNK (1u << CHUNK_SHIFT)
#define RING_MAX 3600                /* per-second slots of a quota meter */
#define REASON_MAX 512
#define TARGETS_MAX 64               /* backends of the pool agents call through */

/* Random streams: (seed, stream, a, b) names each. */
enum { ST_ARRIVALS = 1, ST_TASK = 2, ST_CALL = 3, ST_ATTEMPT = 4, ST_WORKER = 5 };

enum ev_kind {
	EV_ARRIVAL,    /* the next task arrives */
	EV_THINK_DONE, /* a task's CPU step ended (a = task, b = gen) */
	EV_CALL_DONE,  /* a model call answered (a = task, b = gen) */
	EV_RETRY,      /* a backoff ended (a = task, b = gen) */
	EV_WAKE,       /* a limiter's head may conform now (a = limiter, b = wake gen) */
	EV_READY,      /* a worker finished starting (a = worker, b = gen) */
	EV_SCALE,      /* the autoscaler decides */
	EV_TICK,       /* bookkeeping, every second */
};

enum task_state {
	T_FREE,
	T_QUEUED,   /* waiting for a worker */
	T_THINK,    /* CPU step on its worker */
	T_ACQUIRE,  /* waiting in a limiter's queue */
	T_BACKOFF,  /* sleeping after a 429 (quota) */
	T_ERRWAIT,  /* sleeping after an error */
	T_CALL,     /* at the provider */
	T_BETWEEN,  /* between two of the above, for a moment */
};

struct task {
	struct bl_waitq_node node;   /* queued in a limiter */
	uint64_t no;                 /* arrival number: names its random streams */
	uint32_t id;                 /* its own index */
	bl_time_ns arrived_ns;
	uint64_t memory;             /* bytes held on its worker */
	int64_t cpu_step_ns;         /* CPU per step */
	uint64_t task_input;         /* trace: tokens over the task (0: drawn per call) */
	uint64_t task_output;
	uint64_t input, output;      /* the current call: input tokens, output produced */
	struct bl_amounts want;      /* the current call's estimate, as acquired */
	uint64_t ticket;             /* lease of the shared budget while has_lease */
	uint64_t be_ticket;          /* lease of the backend's budget while has_be_lease */
	struct bl_sim_admission adm; /* at the provider while T_CALL */
	struct bl_breaker_permit permit; /* the backend's breaker, while picked */
	bl_time_ns acquired_ns;
	bl_time_ns call_ns;          /* when the call went out */
	uint32_t worker;             /* NONE when not on a worker */
	uint32_t wnext, wprev;       /* the worker's task list */
	uint32_t limiter;            /* the shared limiter it waits in or holds a lease of */
	uint32_t be_li;              /* the backend budget's limiter while has_be_lease */
	uint16_t target;             /* the backend called (index into targets) */
	uint32_t gen;                /* bumped to make pending events stale */
	uint32_t attempts;           /* attempts so far, all calls (names the streams) */
	uint16_t calls, call;        /* calls in the task, index of the current one */
	uint16_t n429, nerr;         /* retries spent on the current call */
	int16_t tenant;              /* index into the workload's tenants, -1 */
	uint8_t state;               /* enum task_state */
	bool has_lease;
	bool has_be_lease;
	bool picked;                 /* counted in flight by the pool's balancer */
	bool has_local;              /* uncoordinated: admitted by its worker's own limiter */
	bool call_failed;            /* the call in flight will answer an error */
	struct bl_sim_admission local; /* that admission */
};

struct limiter {
	const char *name;                 /* the budget's */
	struct bl_budget b;
	struct bl_waitq q;
	struct bl_waitq_tenants *tenants; /* shared limiter: the budget's tenants; else NULL */
	struct bl_waitq_tenant own;       /* the one tenant of a local limiter */
	bl_time_ns wake_at;               /* pending wake, 0 = none */
	uint64_t wake_gen;
	bl_time_ns last_decrease_ns;      /* last 429 that slowed it down */
	bool adaptive;                    /* reacts to 429s (the ballast budget) */
	bool pumping;
};

enum worker_state { W_FREE, W_STARTING, W_READY, W_DRAINING };

struct worker {
	uint8_t state;
	uint32_t gen;
	bl_time_ns created_ns, ready_ns;
	uint32_t running;        /* tasks on it */
	uint32_t busy;           /* tasks in a CPU step */
	uint32_t leases;         /* tasks holding a lease */
	uint32_t parked;         /* free slots set aside: memory admission refused */
	uint64_t mem_used;       /* bytes, the base included */
	double cpu_area;         /* busy x ns since the autoscaler last read it */
	bl_time_ns cpu_at;       /* when cpu_area was brought up to date */
	uint32_t first;          /* its tasks */
	struct bl_membudget mb;  /* memory admission (ballast with a memory block) */
	char name[24];
};

/* The provider's use, measured per aligned window, and per second for the
 * rolling view in the timeseries. */
struct meter {
	int64_t window_ns;       /* the longest window among the limited dimensions */
	double limit[BL_DIM_COUNT]; /* per window_ns; 0 = not limited */
	int64_t cur;             /* number of the window being counted */
	double used[BL_DIM_COUNT];
	bool saturated;          /* every tick of the window saw calls waiting on quota */
	double sum, min;         /* over finished saturated windows */
	uint64_t n;
	size_t slots;            /* per-second slots in window_ns (<= RING_MAX) */
	double *ring;            /* slots x BL_DIM_COUNT */
	int64_t ring_sec;        /* newest second written */
};

/* Where a call can go: one backend of the pool (or the one provider), with
 * its own quota (a provider instance: one API key) and how it behaves. */
struct target {
	struct bl_sim_provider prov;          /* its quota, enforced as the provider does */
	const struct bl_sim_provider_spec *ps;
	struct bl_sim_backend_spec bs;        /* latency factor, errors, outages on top */
	struct meter meter;
	int li;                               /* ballast: its own budget's limiter, -1 */
	bool has_local;                       /* uncoordinated: workers limit calls to it */
	struct bl_sim_provider_config local_cfg; /* one worker's share of its budget */
	struct bl_breaker br;                 /* ballast with a pool */
	void *br_window;
	size_t idx;                           /* its index in the balancer */
	char name[64];
};

struct sim {
	const struct bl_scenario *sc;
	enum bl_sim_policy pol;
	uint64_t seed;
	int64_t duration_ns, sample_ns;
	bool progress;
	struct bl_sim_eventq q;
	bl_time_ns now;
	struct bl_sim_result *res;

	/* tasks */
	struct task **chunks;
	size_t n_chunks;
	uint32_t free_task;          /* free list through wnext */
	uint64_t live;               /* tasks not yet ended */
	uint64_t arrivals;           /* tasks arrived */
	bool arrivals_over;
	struct bl_sim_rng arr_rng;
	bl_time_ns next_arrival_ns;
	size_t trace_at;

	/* the work queue: task ids, a FIFO ring per priority class */
	struct fifo {
		uint32_t *a;
		size_t cap, head, len;
	} wqs[BL_WAITQ_CLASSES];
	size_t wq_len;                    /* tasks in all of them */

	/* free worker slots: (worker, gen) FIFO ring */
	uint64_t *slots;
	size_t sl_cap, sl_head, sl_len;

	/* workers */
	struct worker *workers;
	uint32_t n_workers;          /* allocated records */
	uint32_t created;            /* workers ever created: names their streams */
	uint32_t asked;              /* starting + ready: the replica count */
	uint32_t ready;
	uint32_t alive;              /* not free: starting, ready or draining */
	bool mem_admission;
	struct bl_membudget_config mbc;

	/* where calls go */
	struct target *tg;
	uint32_t n_tg;
	bool pooled;                      /* through a pool: a choice of targets */
	struct bl_balancer *bal;          /* ballast with a pool */
	double max_ejected;
	uint64_t rr;                      /* baselines: round robin over the targets */

	/* budgets (ballast): the shared one agents acquire, and the backends' */
	struct limiter *lim;
	uint32_t n_lim;
	int shared_li;                    /* the workload's budget, -1 */
	/* uncoordinated: each worker's own token bucket per target, 1/N of its budget */
	struct bl_sim_provider *local;    /* n_workers x n_tg */

	/* autoscaler */
	bool autoscale;
	int64_t scale_interval_ns;
	struct bl_planner_config pc;
	const struct bl_cfg_autoscaler *acfg;
	double band_low, band_high;       /* the cpu band every policy is judged by */
	struct bl_planner_history hist;
	struct bl_planner_panic_state panic;
	struct bl_planner_window *demand;
	struct bl_planner_pod *pods, *mem_pods;
	struct bl_planner_usage *cpu_use, *mem_use;
	struct bl_planner_result *plan;
	double cpu_target_pct;            /* hpa: the one target */
	int last_dir;                     /* last scale direction, +1 / -1, 0 none */
	bl_time_ns last_scale_ns;

	/* fleet-wide integrals */
	double g_cpu_area;                /* busy tasks x ns */
	double g_ready_area;              /* ready workers x ns */
	double g_alive_area;              /* workers alive x ns: replica-seconds */
	bl_time_ns g_at;
	uint32_t g_busy;
	double band_cpu0, band_ready0;    /* at the start of the 15 s period */
	uint64_t band_in, band_n;
	double smp_cpu0, smp_ready0;      /* at the start of the sample period */

	/* counters */
	uint64_t quota_waiting;           /* tasks in T_ACQUIRE or T_BACKOFF */
	uint64_t in_call;
	uint64_t s_429, s_done, s_failed, s_dropped; /* in the sample period */
	int64_t *lat;                     /* latencies of tasks done, ns */
	int16_t *lat_tenant;              /* their tenants (-1: none) */
	size_t n_lat, cap_lat;
	size_t smp_lat0;                  /* first latency of the sample period */
	size_t cap_samples;
	int progress_pct;
	bool dispatching;                 /* dispatch is on the stack, or the run is over */
	int err;
};

const char *bl_sim_policy_name(enum bl_sim_policy p)
{
	static const char *const names[] = {"ballast", "hpa", "uncoordinated", "static"};

	return (unsigned)p < BL_SIM_POLICY_COUNT ? names[p] : "unknown";
}

int bl_sim_policy_parse(const char *s, enum bl_sim_policy *out)
{
	for (int p = 0; p < BL_SIM_POLICY_COUNT; p++) {
		if (strcmp(s, bl_sim_policy_name((enum bl_sim_policy)p)) == 0) {
			*out = (enum bl_sim_policy)p;
			return 0;
		}
	}
	return BL_EINVAL;
}

static void push_ev(struct sim *s, bl_time_ns at, enum ev_kind k, uint32_t a, uint64_t b)
{
	if (bl_sim_eventq_push(&s->q, at, (uint32_t)k, a, b))
		s->err = BL_ENOMEM;
}

/* ---- tasks ----------------------------------------------------------------- */

static struct task *task_at(struct sim *s, uint32_t id)
{
	return &s->chunks[id >> CHUNK_SHIFT][id & (CHUNK - 1)];
}

static uint32_t task_new(struct sim *s)
{
	uint32_t id;
	struct task *t;

	if (s->free_task == NONE) {
		struct task **ch, *c;
		size_t base = s->n_chunks * CHUNK;

		if (base + CHUNK >= NONE)
			return NONE;
		ch = realloc(s->chunks, (s->n_chunks + 1) * sizeof *ch);
		if (!ch)
			return NONE;
		s->chunks = ch;
		c = calloc(CHUNK, sizeof *c);
		if (!c)
			return NONE;
		s->chunks[s->n_chunks++] = c;
		/* Thread the new ones in order, lowest id first. */
		for (uint32_t i = CHUNK; i-- > 0;) {
			c[i].wnext = s->free_task;
			s->free_task = (uint32_t)base + i;
		}
	}
	id = s->free_task;
	t = task_at(s, id);
	s->free_task = t->wnext;
	uint32_t gen = t->gen + 1;
	memset(t, 0, sizeof *t);
	t->gen = gen;
	t->id = id;
	t->worker = t->wnext = t->wprev = t->limiter = NONE;
	bl_waitq_node_init(&t->node);
	return id;
}

static void task_free(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);

	t->state = T_FREE;
	t->gen++;
	t->wnext = s->free_task;
	s->free_task = id;
}

static void set_state(struct sim *s, struct task *t, enum task_state st)
{
	if (t->state == T_ACQUIRE || t->state == T_BACKOFF)
		s->quota_waiting--;
	if (t->state == T_CALL)
		s->in_call--;
	t->state = (uint8_t)st;
	if (st == T_ACQUIRE || st == T_BACKOFF)
		s->quota_waiting++;
	if (st == T_CALL)
		s->in_call++;
}

/* ---- integrals --------------------------------------------------------------- */

static void integrate(struct sim *s)
{
	double dt = (double)(s->now - s->g_at);

	if (dt > 0) {
		s->g_cpu_area += s->g_busy * dt;
		s->g_ready_area += s->ready * dt;
		s->g_alive_area += s->alive * dt;
		s->g_at = s->now;
	}
}

static void worker_cpu(struct sim *s, struct worker *w, int delta)
{
	integrate(s);
	w->cpu_area += (double)w->busy * (double)(s->now - w->cpu_at);
	w->cpu_at = s->now;
	w->busy = (uint32_t)((int)w->busy + delta);
	s->g_busy = (uint32_t)((int)s->g_busy + delta);
}

/* ---- the quota meter ---------------------------------------------------------- */

static int meter_init(struct meter *m, const struct bl_sim_provider_config *c)
{
	memset(m, 0, sizeof *m);
	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (c->rate[d].limit && c->rate[d].per_ns > m->window_ns)
			m->window_ns = c->rate[d].per_ns;
	if (!m->window_ns)
		return 0;
	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (c->rate[d].limit)
			m->limit[d] = (double)c->rate[d].limit * (double)m->window_ns /
				      (double)c->rate[d].per_ns;
	m->saturated = true;
	m->min = -1;
	m->slots = (size_t)((m->window_ns + BL_NS_PER_S - 1) / BL_NS_PER_S);
	if (m->slots > RING_MAX)
		m->slots = RING_MAX;
	if (m->slots < 1)
		m->slots = 1;
	m->ring = calloc(m->slots * BL_DIM_COUNT, sizeof *m->ring);
	return m->ring ? 0 : BL_ENOMEM;
}

static double meter_share(const struct meter *m, const double *used)
{
	double share = 0;

	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (m->limit[d] > 0 && used[d] / m->limit[d] > share)
			share = used[d] / m->limit[d];
	return share;
}

/* Closes the windows that ended by now; only those wholly inside the
 * arrivals' span count. */
static void meter_advance(struct sim *s, struct meter *m)
{
	while (m->window_ns && s->now >= (m->cur + 1) * m->window_ns) {
		if (m->saturated && (m->cur + 1) * m->window_ns <= s->duration_ns) {
			double share = meter_share(m, m->used);

			m->sum += share;
			if (m->min < 0 || share < m->min)
				m->min = share;
			m->n++;
		}
		memset(m->used, 0, sizeof m->used);
		m->saturated = true;
		m->cur++;
	}
}

static void meter_ring_to(struct meter *m, int64_t sec)
{
	if (sec <= m->ring_sec)
		return;
	for (int64_t q = m->ring_sec + 1; q <= sec && q <= m->ring_sec + (int64_t)m->slots; q++)
		memset(&m->ring[(size_t)(q % (int64_t)m->slots) * BL_DIM_COUNT], 0,
		       BL_DIM_COUNT * sizeof *m->ring);
	m->ring_sec = sec;
}

static void meter_add(struct sim *s, struct meter *m, const uint64_t *units)
{
	int64_t sec = s->now / BL_NS_PER_S;
	double *slot;

	if (!m->window_ns)
		return;
	meter_advance(s, m);
	meter_ring_to(m, sec);
	slot = &m->ring[(size_t)(sec % (int64_t)m->slots) * BL_DIM_COUNT];
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		m->used[d] += (double)units[d];
		slot[d] += (double)units[d];
	}
}

/* The share of the limits used over the last window, per second slots,
 * averaged over the targets that have limits. */
static double meter_rolling(struct sim *s)
{
	double sum = 0;
	uint32_t n = 0;

	for (uint32_t k = 0; k < s->n_tg; k++) {
		struct meter *m = &s->tg[k].meter;
		double used[BL_DIM_COUNT] = {0};

		if (!m->window_ns)
			continue;
		meter_ring_to(m, s->now / BL_NS_PER_S);
		for (size_t i = 0; i < m->slots; i++)
			for (int d = 0; d < BL_DIM_COUNT; d++)
				used[d] += m->ring[i * BL_DIM_COUNT + d];
		sum += meter_share(m, used);
		n++;
	}
	return n ? sum / n : 0;
}

/* ---- workers --------------------------------------------------------------------- */

static void slot_push(struct sim *s, uint32_t w)
{
	if (s->sl_len == s->sl_cap) {
		size_t cap = s->sl_cap ? s->sl_cap * 2 : 1024;
		uint64_t *r = malloc(cap * sizeof *r);

		if (!r) {
			s->err = BL_ENOMEM;
			return;
		}
		for (size_t i = 0; i < s->sl_len; i++)
			r[i] = s->slots[(s->sl_head + i) % s->sl_cap];
		free(s->slots);
		s->slots = r;
		s->sl_cap = cap;
		s->sl_head = 0;
	}
	s->slots[(s->sl_head + s->sl_len++) % s->sl_cap] = (uint64_t)w << 32 | s->workers[w].gen;
}

static void worker_offer(struct sim *s, uint32_t w, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		slot_push(s, w);
}

static uint32_t worker_new(struct sim *s)
{
	struct bl_sim_rng r;
	struct worker *w = NULL;
	uint32_t id;
	double startup;

	for (id = 0; id < s->n_workers; id++)
		if (s->workers[id].state == W_FREE) {
			w = &s->workers[id];
			break;
		}
	if (!w)
		return NONE; /* every record busy (draining workers): no more now */
	integrate(s);
	w->state = W_STARTING;
	w->gen++;
	w->created_ns = s->now;
	w->ready_ns = 0;
	w->running = w->busy = w->leases = w->parked = 0;
	w->mem_used = s->sc->base_memory;
	w->cpu_area = 0;
	w->cpu_at = s->now;
	w->first = NONE;
	snprintf(w->name, sizeof w->name, "w%u", s->created);
	if (s->mem_admission)
		bl_membudget_init(&w->mb, &s->mbc);
	for (uint32_t k = 0; s->local && k < s->n_tg; k++) {
		/* A fresh agent, fresh limiters (full, as a new bucket is). */
		struct bl_sim_provider *lp = &s->local[(size_t)id * s->n_tg + k];

		bl_sim_provider_cleanup(lp);
		if (s->tg[k].has_local)
			bl_sim_provider_init(lp, &s->tg[k].local_cfg);
	}
	bl_sim_rng_seed(&r, s->seed, ST_WORKER, s->created, 0);
	s->created++;
	startup = bl_sim_dist_sample(&s->sc->startup_ns, &r);
	push_ev(s, s->now + (bl_time_ns)startup, EV_READY, id, w->gen);
	s->asked++;
	s->alive++;
	if (s->asked > s->res->peak_replicas)
		s->res->peak_replicas = s->asked;
	return id;
}

static void worker_remove(struct sim *s, uint32_t id)
{
	struct worker *w = &s->workers[id];

	integrate(s);
	if (w->state == W_READY)
		s->ready--;
	if (w->state != W_DRAINING)
		s->asked--;
	s->alive--;
	w->state = W_FREE;
	w->gen++;
}

/* The work queue's most urgent non-empty class (call with wq_len > 0). */
static struct fifo *wq_first(struct sim *s)
{
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		if (s->wqs[c].len)
			return &s->wqs[c];
	return &s->wqs[0];
}

static void wq_pop(struct sim *s, struct fifo *q)
{
	q->head = (q->head + 1) % q->cap;
	q->len--;
	s->wq_len--;
}

static void dispatch(struct sim *s);
static void step(struct sim *s, uint32_t id);
static void task_end(struct sim *s, uint32_t id, bool done);

/* ---- limiters ----------------------------------------------------------------- */

static void limiter_wake(struct sim *s, uint32_t li, bl_time_ns at)
{
	struct limiter *L = &s->lim[li];

	if (at <= s->now)
		at = s->now + BL_NS_PER_US; /* never loop at one instant */
	if (L->wake_at == at)
		return;
	L->wake_at = at;
	push_ev(s, at, EV_WAKE, li, ++L->wake_gen);
}

static void route(struct sim *s, uint32_t id);

/* Admits waiters from the head of L's queue while the budget admits them
 * (the daemon's pump). */
static void pump(struct sim *s, uint32_t li)
{
	struct limiter *L = &s->lim[li];
	struct bl_waitq_node *n;

	if (L->pumping)
		return;
	L->pumping = true;
	while (!s->err && (n = bl_waitq_peek(&L->q))) {
		struct task *t = BL_WAITQ_ENTRY(n, struct task, node);
		uint32_t id = t->id;
		struct bl_budget_decision dec;
		int rc = bl_budget_acquire(&L->b, &t->want, s->now, &dec);

		if (rc == BL_EAGAIN) {
			if (dec.retry_at_ns)
				limiter_wake(s, li, dec.retry_at_ns);
			break;
		}
		bl_waitq_pop(&L->q);
		set_state(s, t, T_BETWEEN);
		if (rc == 0) {
			t->ticket = dec.ticket;
			t->has_lease = true;
			t->acquired_ns = s->now;
			s->workers[t->worker].leases++;
			route(s, id);
		} else {
			task_end(s, id, false); /* larger than the budget ever admits */
		}
	}
	L->pumping = false;
}

/* What a call asks a budget for: one request, its input, max_tokens out. */
static void set_want(struct sim *s, struct task *t)
{
	t->want = (struct bl_amounts){0};
	t->want.n[BL_DIM_REQUESTS] = 1;
	t->want.n[BL_DIM_INPUT_TOKENS] = t->input;
	t->want.n[BL_DIM_OUTPUT_TOKENS] = s->sc->max_tokens;
}

static void limiter_enqueue(struct sim *s, uint32_t id, uint32_t li)
{
	struct task *t = task_at(s, id);
	struct limiter *L = &s->lim[li];
	struct bl_waitq_tenant *slot = &L->own;
	enum bl_waitq_class cls = BL_WAITQ_NORMAL;
	double share = 0;
	uint64_t cost;
	struct bl_amounts norm;

	set_want(s, t);
	norm = t->want;
	bl_amounts_normalize(&norm);
	/* Cost for fairness, as the daemon: the most constraining share. */
	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (L->b.limits.rate[d].limit && norm.n[d])
			share = fmax(share, (double)norm.n[d] / (double)L->b.limits.rate[d].limit);
	cost = (uint64_t)(share * 1e6) + 1;
	if (L->tenants) {
		const char *name = t->tenant >= 0 ? s->sc->tenants[t->tenant].name : "default";

		if (t->tenant >= 0)
			cls = s->sc->tenants[t->tenant].cls;
		if (bl_waitq_tenants_get(L->tenants, name, strlen(name), &slot))
			slot = &L->own;
	}
	t->limiter = li;
	set_state(s, t, T_ACQUIRE);
	if (bl_waitq_push(&L->q, &t->node, cls, slot, cost)) {
		/* The queue is full (max_queue): the call cannot wait. */
		task_end(s, id, false);
		return;
	}
	pump(s, li);
}

/* Releases the task's leases with `used` (NULL: the estimates stay spent). */
static void leases_release(struct sim *s, struct task *t, const struct bl_amounts *used)
{
	if (t->has_lease) {
		bl_budget_release(&s->lim[t->limiter].b, &t->want, used, t->ticket, s->now, NULL);
		t->has_lease = false;
		s->workers[t->worker].leases--;
	}
	if (t->has_be_lease) {
		bl_budget_release(&s->lim[t->be_li].b, &t->want, used, t->be_ticket, s->now, NULL);
		t->has_be_lease = false;
	}
}

/* Tells the key's budget (the backend's own, else the shared one) that the
 * provider said 429, as the daemon's release does. */
static void leases_rate_limited(struct sim *s, struct task *t, int64_t retry_after_ns)
{
	struct limiter *L = t->has_be_lease ? &s->lim[t->be_li]
			    : t->has_lease  ? &s->lim[t->limiter]
					    : NULL;

	if (!L || !L->adaptive)
		return;
	if (L->last_decrease_ns && t->acquired_ns < L->last_decrease_ns) {
		bl_budget_on_rate_limited_stale(&L->b, s->now, retry_after_ns);
	} else {
		bl_budget_on_rate_limited(&L->b, s->now, retry_after_ns);
		L->last_decrease_ns = s->now;
	}
}

/* ---- the pool (ballast): the daemon's pick over the core breaker and balancer -- */

struct pick_ctx {
	struct sim *s;
	bool panic;
	uint64_t excluded;   /* targets skipped for this pick */
};

static bool eligible(void *ctx, size_t idx)
{
	struct pick_ctx *pc = ctx;

	if (idx >= pc->s->n_tg || (pc->excluded >> idx & 1))
		return false;
	if (pc->panic)
		return bl_breaker_state(&pc->s->tg[idx].br, pc->s->now) != BL_BREAKER_FORCED_OPEN;
	return bl_breaker_would_allow(&pc->s->tg[idx].br, pc->s->now);
}

static bool in_panic(struct sim *s)
{
	size_t open = 0;

	for (uint32_t k = 0; k < s->n_tg; k++)
		open += bl_breaker_state(&s->tg[k].br, s->now) == BL_BREAKER_OPEN;
	return bl_breaker_panic(s->n_tg, open, s->max_ejected);
}

/* Picks a backend whose breaker admits (all in panic) and whose own budget
 * admits the call now. Returns 0 (t->target, permit, backend lease set), or
 * BL_EAGAIN with *retry_at (0: unknown), or BL_ETOOBIG when every backend's
 * budget is too small for the call. */
static int pick_backend(struct sim *s, struct task *t, bl_time_ns *retry_at)
{
	struct pick_ctx pc = {s, in_panic(s), 0};
	uint32_t too_large = 0;

	*retry_at = 0;
	set_want(s, t);
	for (uint32_t tries = 0; tries <= s->n_tg; tries++) {
		size_t idx;
		struct target *g;

		if (bl_balancer_pick(s->bal, t->no, s->now, eligible, &pc, &idx) != 0)
			break;
		g = &s->tg[idx];
		if (g->li >= 0) {
			struct limiter *L = &s->lim[g->li];
			struct bl_budget_decision dec;
			int rc = bl_budget_acquire(&L->b, &t->want, s->now, &dec);

			if (rc != 0) {
				if (rc == BL_ETOOBIG)
					too_large++;
				else if (dec.retry_at_ns && (!*retry_at || dec.retry_at_ns < *retry_at))
					*retry_at = dec.retry_at_ns;
				pc.excluded |= UINT64_C(1) << idx;
				continue;
			}
			t->has_be_lease = true;
			t->be_ticket = dec.ticket;
			t->be_li = (uint32_t)g->li;
			if (!t->has_lease)
				t->acquired_ns = s->now;
		}
		t->target = (uint16_t)idx;
		t->permit = (struct bl_breaker_permit){0, false};
		if (bl_breaker_would_allow(&g->br, s->now))
			bl_breaker_allow(&g->br, s->now, &t->permit);
		bl_balancer_on_start(s->bal, g->idx);
		t->picked = true;
		return 0;
	}
	if (too_large == s->n_tg)
		return BL_ETOOBIG;
	for (uint32_t k = 0; k < s->n_tg; k++) {
		int64_t r = bl_breaker_retry_after_ns(&s->tg[k].br, s->now);

		if (r > 0 && (!*retry_at || s->now + r < *retry_at))
			*retry_at = s->now + r;
	}
	return BL_EAGAIN;
}

/* Reports the end of a picked call to its breaker and the balancer. */
static void pool_finish(struct sim *s, struct task *t, enum bl_breaker_outcome outcome,
			int64_t latency_ns)
{
	struct target *g = &s->tg[t->target];
	enum bl_breaker_state before;

	if (!t->picked)
		return;
	t->picked = false;
	before = bl_breaker_state(&g->br, s->now);
	bl_breaker_record(&g->br, &t->permit, outcome, latency_ns, s->now);
	if (outcome == BL_BREAKER_CANCELLED)
		bl_balancer_on_cancel(s->bal, g->idx);
	else
		bl_balancer_on_finish(s->bal, g->idx, latency_ns,
				      outcome == BL_BREAKER_ERROR || outcome == BL_BREAKER_TIMEOUT,
				      s->now);
	/* Back from half_open: the balancer ramps it up again (slow start). */
	if (before == BL_BREAKER_HALF_OPEN && bl_breaker_state(&g->br, s->now) == BL_BREAKER_CLOSED)
		bl_balancer_rejoin(s->bal, g->idx, s->now);
}

/* ---- the call -------------------------------------------------------------------- */

static void attempt_rng(struct sim *s, struct task *t, struct bl_sim_rng *r)
{
	bl_sim_rng_seed(r, s->seed, ST_ATTEMPT, t->no, (uint64_t)t->call << 32 | t->attempts);
	t->attempts++;
}

static int64_t backoff_ns(struct sim *s, struct bl_sim_rng *r, uint32_t n, int64_t retry_after)
{
	double cap = (double)s->sc->retry_base_ns * ldexp(1.0, n > 40 ? 40 : (int)n - 1);
	double d;

	if (cap > (double)s->sc->retry_max_ns)
		cap = (double)s->sc->retry_max_ns;
	d = cap * bl_sim_rng_uniform(r); /* full jitter */
	if (s->sc->honor_retry_after && retry_after > d)
		d = (double)retry_after;
	return (int64_t)d + 1;
}

static struct bl_sim_provider *local_of(struct sim *s, struct task *t)
{
	return &s->local[(size_t)t->worker * s->n_tg + t->target];
}

/* Gives the worker's own limiter its slot back (uncoordinated). The naive
 * limiter keeps what it charged, but for unused output. */
static void local_release(struct sim *s, struct task *t, uint64_t output)
{
	struct bl_sim_call call = {t->input, s->sc->max_tokens};

	if (!t->has_local)
		return;
	bl_sim_provider_finish(local_of(s, t), &call, &t->local, output, s->now);
	t->has_local = false;
}

static void call_provider(struct sim *s, uint32_t id);

/* Waits, then starts the call over (begin_call) at `at`. */
static void wait_then_retry(struct sim *s, struct task *t, enum task_state st, bl_time_ns at)
{
	set_state(s, t, st);
	push_ev(s, at > s->now ? at : s->now + 1, EV_RETRY, t->id, t->gen);
}

/* The call has what the policy asks of it before it goes out (the shared
 * budget's lease, under ballast): choose where it goes. */
static void route(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);

	if (s->pol == BL_SIM_BALLAST && s->bal) {
		bl_time_ns at;
		int rc = pick_backend(s, t, &at);

		if (rc == BL_ETOOBIG) {
			task_end(s, id, false);
			return;
		}
		if (rc == BL_EAGAIN) {
			/* No backend now: give the shared lease back and try again
			 * when a backend budget or a breaker may admit. */
			leases_release(s, t, &(struct bl_amounts){{0}});
			wait_then_retry(s, t, T_ACQUIRE, at ? at : s->now + BL_NS_PER_S);
			return;
		}
	} else {
		t->target = (uint16_t)(s->pooled ? s->rr++ % s->n_tg : 0);
	}
	if (s->local && s->tg[t->target].has_local) {
		struct bl_sim_call call = {t->input, s->sc->max_tokens};
		int rc = bl_sim_provider_admit(local_of(s, t), &call, s->now, &t->local);

		if (rc == BL_EAGAIN) {
			/* Wait for the own bucket: sleep until it would conform. */
			bl_time_ns at = t->local.concurrency && t->local.conform_at_ns <= s->now
						? s->now + t->local.retry_after_ns
						: t->local.conform_at_ns;

			wait_then_retry(s, t, T_ACQUIRE, at);
			return;
		}
		if (rc) {
			task_end(s, id, false); /* larger than the share ever admits */
			return;
		}
		t->has_local = true;
	}
	call_provider(s, id);
}

static void begin_call(struct sim *s, uint32_t id)
{
	if (s->pol == BL_SIM_BALLAST && s->shared_li >= 0)
		limiter_enqueue(s, id, (uint32_t)s->shared_li);
	else
		route(s, id);
}

static void call_provider(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);
	struct target *g = &s->tg[t->target];
	struct bl_sim_call call = {t->input, s->sc->max_tokens};
	struct bl_sim_admission adm;
	struct bl_sim_rng r;
	int rc = bl_sim_provider_admit(&g->prov, &call, s->now, &adm);

	attempt_rng(s, t, &r);
	if (rc == 0) {
		double perr, pf, berr = g->bs.error_rate, bf = g->bs.latency_factor, lat;
		uint64_t units[BL_DIM_COUNT] = {1, t->input + t->output, t->input, t->output};

		bl_sim_provider_conditions(&g->prov, s->now, &perr, &pf);
		for (size_t i = 0; i < g->bs.n_outages; i++) {
			const struct bl_sim_outage *o = &g->bs.outages[i];

			if (s->now >= o->at_ns && s->now - o->at_ns < o->for_ns) {
				berr = o->error_rate;
				bf *= o->latency_factor;
				break;
			}
		}
		t->adm = adm;
		t->call_ns = s->now;
		t->call_failed = bl_sim_rng_uniform(&r) < 1 - (1 - perr) * (1 - berr);
		lat = bl_sim_dist_sample(&g->ps->latency_ns, &r) * pf * bf;
		if (!t->call_failed)
			lat += g->ps->per_output_token_ns * (double)t->output * pf * bf;
		set_state(s, t, T_CALL);
		meter_add(s, &g->meter, units);
		push_ev(s, s->now + (bl_time_ns)lat + 1, EV_CALL_DONE, id, t->gen);
		return;
	}
	if (rc == BL_EAGAIN) {
		/* A call a budget admitted goes back to it (the budget's pause
		 * paces it); any other call backs off. */
		bool paced = t->has_lease || t->has_be_lease;

		s->res->provider_429s++;
		s->s_429++;
		t->n429++;
		local_release(s, t, 0);
		leases_release(s, t, &(struct bl_amounts){{0}}); /* the provider counted nothing */
		leases_rate_limited(s, t, adm.retry_after_ns);
		pool_finish(s, t, BL_BREAKER_RATE_LIMITED, 0);
		if (t->n429 > s->sc->retry_attempts) {
			task_end(s, id, false);
			return;
		}
		if (s->pol == BL_SIM_BALLAST && paced) {
			/* Back to the budget: its pause holds the call until retry-after. */
			set_state(s, t, T_BETWEEN);
			begin_call(s, id);
			return;
		}
		wait_then_retry(s, t, T_BACKOFF,
				s->now + backoff_ns(s, &r, t->n429, adm.retry_after_ns));
		return;
	}
	/* Too large for the provider, or out of memory. */
	if (rc == BL_ENOMEM)
		s->err = BL_ENOMEM;
	leases_release(s, t, &(struct bl_amounts){{0}});
	pool_finish(s, t, BL_BREAKER_CANCELLED, 0);
	local_release(s, t, 0);
	task_end(s, id, false);
}

static void call_done(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);
	struct target *g = &s->tg[t->target];
	struct bl_sim_call call = {t->input, s->sc->max_tokens};
	struct bl_amounts used = {0};
	uint32_t li = t->limiter;
	bool had = t->has_lease;
	int64_t latency = s->now - t->call_ns;

	s->res->calls++;
	bl_sim_provider_finish(&g->prov, &call, &t->adm, t->call_failed ? 0 : t->output, s->now);
	used.n[BL_DIM_REQUESTS] = 1;
	used.n[BL_DIM_INPUT_TOKENS] = t->input;
	used.n[BL_DIM_OUTPUT_TOKENS] = t->call_failed ? 0 : t->output;
	leases_release(s, t, &used);
	pool_finish(s, t, t->call_failed ? BL_BREAKER_ERROR : BL_BREAKER_OK, latency);
	local_release(s, t, t->call_failed ? 0 : t->output);
	if (t->call_failed) {
		struct bl_sim_rng r;

		s->res->provider_errors++;
		if (++t->nerr > s->sc->error_attempts) {
			task_end(s, id, false);
		} else {
			attempt_rng(s, t, &r);
			wait_then_retry(s, t, T_ERRWAIT, s->now + backoff_ns(s, &r, t->nerr, 0));
		}
	} else {
		t->call++;
		step(s, id);
	}
	if (had)
		pump(s, li);
}

/* Draws the tokens of the task's current call. */
static void draw_call(struct sim *s, struct task *t)
{
	struct bl_sim_rng r;
	double out;

	bl_sim_rng_seed(&r, s->seed, ST_CALL, t->no, t->call);
	if (t->task_input || t->task_output) {
		t->input = t->task_input / t->calls + (t->call < t->task_input % t->calls);
		out = (double)(t->task_output / t->calls + (t->call < t->task_output % t->calls));
	} else {
		t->input = (uint64_t)llround(bl_sim_dist_sample(&s->sc->input_tokens, &r));
		out = bl_sim_dist_sample(&s->sc->output_tokens, &r);
	}
	t->output = (uint64_t)llround(out);
	if (t->output > s->sc->max_tokens)
		t->output = s->sc->max_tokens; /* the provider stops at max_tokens */
	t->n429 = t->nerr = 0;
}

/* The task's next step: CPU work before its next call, or done. */
static void step(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);

	if (t->call >= t->calls) {
		task_end(s, id, true);
		return;
	}
	draw_call(s, t);
	set_state(s, t, T_THINK);
	worker_cpu(s, &s->workers[t->worker], +1);
	push_ev(s, s->now + t->cpu_step_ns, EV_THINK_DONE, id, t->gen);
}

/* ---- task life ----------------------------------------------------------------- */

static void worker_detach(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);
	struct worker *w = &s->workers[t->worker];
	uint32_t wid = t->worker;

	if (t->state == T_THINK)
		worker_cpu(s, w, -1);
	if (t->wprev != NONE)
		task_at(s, t->wprev)->wnext = t->wnext;
	else
		w->first = t->wnext;
	if (t->wnext != NONE)
		task_at(s, t->wnext)->wprev = t->wprev;
	w->running--;
	w->mem_used -= t->memory;
	if (s->mem_admission && t->memory)
		bl_membudget_release(&w->mb, t->memory, BL_MEM_NORMAL);
	t->worker = NONE;
	if (w->state == W_READY) {
		worker_offer(s, wid, 1 + w->parked);
		w->parked = 0;
	} else if (w->state == W_DRAINING && w->running == 0) {
		worker_remove(s, wid);
	}
}

/* Ends a task: done, or failed (dropped when it never reached a worker). */
static void task_end(struct sim *s, uint32_t id, bool done)
{
	struct task *t = task_at(s, id);

	if (bl_waitq_node_is_queued(&t->node))
		bl_waitq_remove(&s->lim[t->limiter].q, &t->node);
	if (t->state == T_CALL) {
		struct bl_sim_call call = {t->input, s->sc->max_tokens};

		bl_sim_provider_finish(&s->tg[t->target].prov, &call, &t->adm, t->output, s->now);
	}
	leases_release(s, t, NULL); /* ended mid-call: the estimates stay spent */
	pool_finish(s, t, BL_BREAKER_CANCELLED, 0);
	local_release(s, t, t->output);
	if (done) {
		int64_t lat = s->now - t->arrived_ns;

		s->res->tasks_done++;
		s->s_done++;
		if (lat <= s->sc->slo_ns)
			s->res->tasks_in_slo++;
		if (t->tenant >= 0) {
			s->res->tenants[t->tenant].tasks_done++;
			s->res->tenants[t->tenant].tasks_in_slo += lat <= s->sc->slo_ns;
		}
		if (s->n_lat == s->cap_lat) {
			size_t cap = s->cap_lat ? s->cap_lat * 2 : 65536;
			int64_t *l = realloc(s->lat, cap * sizeof *l);
			int16_t *lt = l ? realloc(s->lat_tenant, cap * sizeof *lt) : NULL;

			if (l)
				s->lat = l;
			if (!l || !lt) {
				s->err = BL_ENOMEM;
			} else {
				s->lat_tenant = lt;
				s->cap_lat = cap;
			}
		}
		if (s->n_lat < s->cap_lat) {
			s->lat_tenant[s->n_lat] = t->tenant;
			s->lat[s->n_lat++] = lat;
		}
	} else if (t->worker == NONE) {
		s->res->tasks_dropped++;
		s->s_dropped++;
	} else {
		s->res->tasks_failed++;
		s->s_failed++;
	}
	if (t->worker != NONE)
		worker_detach(s, id);
	set_state(s, t, T_FREE);
	task_free(s, id);
	s->live--;
	dispatch(s);
}

/* Starts queued tasks on free slots of ready workers. */
static void dispatch(struct sim *s)
{
	if (s->dispatching)
		return; /* task_end inside: the outer loop carries on */
	s->dispatching = true;
	while (!s->err && s->wq_len && s->sl_len) {
		struct fifo *q = wq_first(s);
		uint32_t id = q->a[q->head];
		struct task *t = task_at(s, id);
		uint64_t slot = s->slots[s->sl_head];
		uint32_t wid = (uint32_t)(slot >> 32);
		struct worker *w = &s->workers[wid];

		if (t->state != T_QUEUED || s->now - t->arrived_ns > s->sc->max_wait_ns) {
			wq_pop(s, q);
			if (t->state == T_QUEUED)
				task_end(s, id, false); /* dropped: waited too long */
			continue;
		}
		s->sl_head = (s->sl_head + 1) % s->sl_cap;
		s->sl_len--;
		if (w->gen != (uint32_t)slot || w->state != W_READY)
			continue; /* stale slot */
		if (s->mem_admission) {
			int mrc = bl_membudget_reserve(&w->mb, t->memory ? t->memory : 1,
						       BL_MEM_NORMAL, NULL);

			if (mrc == BL_ETOOBIG) {
				/* No worker ever admits it: refused (dropped), as the
				 * daemon answers too_large; the slot stays free. */
				s->sl_head = (s->sl_head + s->sl_cap - 1) % s->sl_cap;
				s->sl_len++;
				wq_pop(s, q);
				task_end(s, id, false);
				continue;
			}
			if (mrc) {
				w->parked++;
				continue;
			}
		}
		wq_pop(s, q);
		t->worker = wid;
		t->wprev = NONE;
		t->wnext = w->first;
		if (w->first != NONE)
			task_at(s, w->first)->wprev = id;
		w->first = id;
		w->running++;
		w->mem_used += t->memory;
		if (s->mem_admission && !t->memory)
			t->memory = 1; /* what was reserved */
		{
			double frac = (double)w->mem_used / (double)s->sc->worker_memory;

			if (frac > s->res->memory_peak_fraction)
				s->res->memory_peak_fraction = frac;
		}
		if (w->mem_used > s->sc->worker_memory) {
			/* OOM: the worker dies with every task on it, and restarts. */
			struct bl_sim_rng r;

			s->res->oom_kills++;
			integrate(s);
			s->ready--;
			w->state = W_STARTING; /* no slot offers while its tasks end */
			while (w->first != NONE)
				task_end(s, w->first, false);
			w->gen++;
			w->mem_used = s->sc->base_memory;
			w->parked = 0;
			if (s->mem_admission)
				bl_membudget_init(&w->mb, &s->mbc);
			bl_sim_rng_seed(&r, s->seed, ST_WORKER, s->created++, 1);
			push_ev(s, s->now + (bl_time_ns)bl_sim_dist_sample(&s->sc->startup_ns, &r),
				EV_READY, wid, w->gen);
			continue;
		}
		t->call = 0;
		step(s, id);
	}
	s->dispatching = false;
}

static void enqueue_task(struct sim *s, uint32_t id)
{
	if (s->wq_len >= s->sc->max_queue) {
		task_end(s, id, false);
		return;
	}
	{
		struct task *t = task_at(s, id);
		struct fifo *q = &s->wqs[t->tenant >= 0 ? s->sc->tenants[t->tenant].cls
							 : BL_WAITQ_NORMAL];

		if (q->len == q->cap) {
			size_t cap = q->cap ? q->cap * 2 : 4096;
			uint32_t *a = malloc(cap * sizeof *a);

			if (!a) {
				s->err = BL_ENOMEM;
				return;
			}
			for (size_t i = 0; i < q->len; i++)
				a[i] = q->a[(q->head + i) % q->cap];
			free(q->a);
			q->a = a;
			q->cap = cap;
			q->head = 0;
		}
		q->a[(q->head + q->len++) % q->cap] = id;
		s->wq_len++;
	}
	task_at(s, id)->state = T_QUEUED;
	dispatch(s);
}

/* ---- arrivals --------------------------------------------------------------------- */

/* The time of the next arrival after the one at `from`, or -1 when none. */
static bl_time_ns next_arrival(struct sim *s, bl_time_ns from)
{
	const struct bl_scenario *sc = s->sc;
	double fmax = bl_scenario_rate_factor_max(sc);
	double t = (double)from;

	switch (sc->arrivals) {
	case BL_SIM_ARRIVALS_TRACE:
		return s->trace_at < sc->n_trace ? sc->trace[s->trace_at].at_ns : -1;
	case BL_SIM_ARRIVALS_CONSTANT:
		return from + (bl_time_ns)ceil(1e9 / (sc->rate_per_s *
						      bl_scenario_rate_factor(sc, from)));
	case BL_SIM_ARRIVALS_POISSON:
	case BL_SIM_ARRIVALS_DIURNAL:
	default:
		/* Thinning: candidates at the highest rate, kept at rate(t) / highest. */
		for (;;) {
			t += bl_sim_rng_exponential(&s->arr_rng, 1e9 / (sc->rate_per_s * fmax));
			if (t > (double)s->duration_ns)
				return -1;
			if (bl_sim_rng_uniform(&s->arr_rng) * fmax <=
			    bl_scenario_rate_factor(sc, (bl_time_ns)t))
				return (bl_time_ns)t;
		}
	}
}

static void arrive(struct sim *s)
{
	const struct bl_scenario *sc = s->sc;
	uint32_t id = task_new(s);
	struct task *t;
	struct bl_sim_rng r;
	double calls;
	bl_time_ns next;

	if (id == NONE) {
		s->err = BL_ENOMEM;
		return;
	}
	t = task_at(s, id);
	t->no = s->arrivals++;
	t->arrived_ns = s->now;
	t->tenant = -1;
	bl_sim_rng_seed(&r, s->seed, ST_TASK, t->no, 0);
	calls = round(bl_sim_dist_sample(&sc->calls, &r));
	t->calls = (uint16_t)(calls < 1 ? 1 : calls > 1000 ? 1000 : calls);
	t->cpu_step_ns = (int64_t)(bl_sim_dist_sample(&sc->task_cpu_ns, &r) / t->calls);
	t->memory = (uint64_t)bl_sim_dist_sample(&sc->task_memory, &r);
	if (sc->n_tenants) {
		double total = 0, u, acc = 0;

		for (size_t i = 0; i < sc->n_tenants; i++)
			total += sc->tenants[i].share;
		u = bl_sim_rng_uniform(&r) * total;
		for (size_t i = 0; i < sc->n_tenants; i++) {
			acc += sc->tenants[i].share;
			if (u < acc || i + 1 == sc->n_tenants) {
				t->tenant = (int16_t)i;
				break;
			}
		}
	}
	if (sc->arrivals == BL_SIM_ARRIVALS_TRACE) {
		const struct bl_sim_trace_row *row = &sc->trace[s->trace_at++];

		t->task_input = row->input_tokens;
		t->task_output = row->output_tokens;
		if (!t->task_input && !t->task_output)
			t->task_input = 1; /* an empty row still asks for something */
		t->tenant = (int16_t)row->tenant; /* the trace says, or no tenant */
	}
	s->res->tasks_total++;
	if (t->tenant >= 0)
		s->res->tenants[t->tenant].tasks_total++;
	s->live++;
	next = next_arrival(s, s->now);
	if (next >= 0 && next < s->duration_ns)
		push_ev(s, next, EV_ARRIVAL, 0, 0);
	else
		s->arrivals_over = true;
	enqueue_task(s, id);
}

/* ---- the autoscaler ---------------------------------------------------------------- */

static void scale_to(struct sim *s, int32_t desired)
{
	int dir = desired > (int32_t)s->asked ? 1 : -1;

	s->res->scale_events++;
	if (s->last_dir && dir != s->last_dir && s->now - s->last_scale_ns < FLAP_NS)
		s->res->flaps++;
	s->last_dir = dir;
	s->last_scale_ns = s->now;
	while ((int32_t)s->asked < desired)
		if (worker_new(s) == NONE)
			break;
	while ((int32_t)s->asked > desired) {
		/* Starting workers go first (newest first), then the least busy. */
		uint32_t best = NONE;

		for (uint32_t i = 0; i < s->n_workers; i++) {
			struct worker *w = &s->workers[i];

			if (w->state != W_STARTING && w->state != W_READY)
				continue;
			if (best == NONE) {
				best = i;
				continue;
			}
			struct worker *b = &s->workers[best];
			bool better = (w->state == W_STARTING) != (b->state == W_STARTING)
					      ? w->state == W_STARTING
				      : w->running != b->running ? w->running < b->running
								 : w->created_ns > b->created_ns;

			if (better)
				best = i;
		}
		if (best == NONE)
			break;
		if (s->workers[best].state == W_STARTING || s->workers[best].running == 0) {
			worker_remove(s, best);
		} else {
			struct worker *w = &s->workers[best];

			integrate(s);
			s->ready--;
			s->asked--;
			w->state = W_DRAINING;
			w->gen++; /* its free slots go stale */
		}
	}
}

static void band_target(double low, double high, struct bl_planner_target *t)
{
	t->band = true;
	t->low = low * 100.0;
	t->high = high * 100.0;
	t->value = (t->low + t->high) / 2;
}

static void autoscale(struct sim *s)
{
	struct bl_planner_metric m[BL_PLANNER_MAX_METRICS];
	struct bl_planner_input in = {0};
	struct bl_planner_result *res = s->plan;
	char reason[REASON_MAX];
	size_t n = 0, nm = 0, n_mem = 0;
	double window_s = (double)s->scale_interval_ns / 1e9;
	struct limiter *linked = NULL;
	int rc;

	/* The budget the autoscaler is linked to, when the simulation runs it. */
	for (uint32_t i = 0; s->pol == BL_SIM_BALLAST && s->acfg->budget && i < s->n_lim; i++)
		if (strcmp(s->lim[i].name, s->acfg->budget) == 0)
			linked = &s->lim[i];

	integrate(s);
	memset(m, 0, sizeof m);
	for (uint32_t i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];
		struct bl_planner_pod *p = &s->pods[n];
		double cpu_m;

		if (w->state != W_STARTING && w->state != W_READY)
			continue;
		*p = (struct bl_planner_pod){
			.name = w->name,
			.phase = w->state == W_READY ? BL_PLANNER_POD_RUNNING : BL_PLANNER_POD_PENDING,
			.ready = w->state == W_READY ? BL_PLANNER_READY_TRUE : BL_PLANNER_READY_FALSE,
			.has_start_time = true,
			.start_time_s = (double)(w->created_ns - s->now) / 1e9,
			.has_ready_transition = true,
			.ready_transition_s =
				(double)((w->state == W_READY ? w->ready_ns : w->created_ns) - s->now) / 1e9,
			.has_request = true,
			.request = (int64_t)llround(s->sc->cpu_cores * 1000.0)};
		if (w->state == W_READY) {
			double span = (double)(s->now - (w->ready_ns > s->now - s->scale_interval_ns
								 ? w->ready_ns
								 : s->now - s->scale_interval_ns));

			w->cpu_area += (double)w->busy * (double)(s->now - w->cpu_at);
			w->cpu_at = s->now;
			cpu_m = span > 0 ? w->cpu_area / span * 1000.0 : 0;
			w->cpu_area = 0;
			s->cpu_use[n] = (struct bl_planner_usage){.pod = w->name,
								  .usage = (int64_t)llround(cpu_m),
								  .has_timestamp = true,
								  .timestamp_s = 0,
								  .window_s = window_s};
			if (s->pol == BL_SIM_BALLAST) {
				s->mem_pods[n_mem] = *p;
				s->mem_pods[n_mem].request = (int64_t)s->sc->worker_memory;
				s->mem_use[n_mem] = (struct bl_planner_usage){
					.pod = w->name, .usage = (int64_t)w->mem_used,
					.has_timestamp = true, .window_s = window_s};
				n_mem++;
			}
		}
		n++;
	}
	/* The samples: one per ready pod, in pod order. */
	{
		size_t k = 0;

		for (size_t i = 0; i < n; i++)
			if (s->pods[i].phase == BL_PLANNER_POD_RUNNING)
				s->cpu_use[k++] = s->cpu_use[i];
		m[nm].kind = BL_PLANNER_METRIC_RESOURCE;
		m[nm].name = "cpu";
		m[nm].resource = (struct bl_planner_resource_metric){
			.resource = BL_PLANNER_CPU, .pods = s->pods, .pod_count = n,
			.usage = s->cpu_use, .usage_count = k};
		if (s->pol == BL_SIM_BALLAST)
			band_target(s->band_low, s->band_high, &m[nm].resource.target);
		else
			m[nm].resource.target.value = s->cpu_target_pct;
		nm++;
	}
	if (s->pol == BL_SIM_BALLAST && n_mem) {
		m[nm].kind = BL_PLANNER_METRIC_RESOURCE;
		m[nm].name = "memory";
		m[nm].resource = (struct bl_planner_resource_metric){
			.resource = BL_PLANNER_MEMORY, .pods = s->mem_pods, .pod_count = n_mem,
			.usage = s->mem_use, .usage_count = n_mem};
		band_target(s->acfg->memory.low, s->acfg->memory.high, &m[nm].resource.target);
		nm++;
	}
	if (s->pol == BL_SIM_BALLAST && s->acfg->inflight_per_replica > 0) {
		m[nm].kind = BL_PLANNER_METRIC_DEMAND;
		m[nm].name = "inflight";
		bl_planner_window_read(s->demand, s->now, &m[nm].demand);
		m[nm].demand.target_per_replica = s->acfg->inflight_per_replica;
		nm++;
	}
	if (s->pol == BL_SIM_BALLAST && s->acfg->queue_per_replica > 0) {
		m[nm].kind = BL_PLANNER_METRIC_AVERAGE;
		m[nm].name = "queue";
		m[nm].average.total = (double)s->wq_len +
				      (linked ? (double)bl_waitq_length(&linked->q) : 0);
		m[nm].average.target.value = s->acfg->queue_per_replica;
		nm++;
	}
	in.current_replicas = (int32_t)s->asked;
	in.now_ns = s->now;
	in.metrics = m;
	in.metric_count = nm;
	in.panic = s->panic;
	bl_planner_history_input(&s->hist, &in);
	if (linked) {
		struct limiter *L = linked;
		struct bl_budget_stats st;
		int worst = -1;
		int32_t busy = 0;

		bl_budget_stats(&L->b, s->now, &st);
		for (int d = 0; d < BL_DIM_COUNT; d++)
			if (st.dim[d].limit &&
			    (worst < 0 || st.dim[d].utilization > st.dim[worst].utilization))
				worst = d;
		in.budget.name = L->name;
		in.budget.queue_length = bl_waitq_length(&L->q);
		in.budget.target_utilization = L->b.limits.target_utilization;
		in.budget.utilization = worst >= 0 ? st.dim[worst].utilization : 0;
		in.budget.admitted_per_s = worst >= 0 ? st.dim[worst].rate_per_s : 0;
		if (worst < 0 && L->b.limits.concurrent) {
			in.budget.utilization = (double)st.in_flight / L->b.limits.concurrent;
			in.budget.target_utilization = 1.0;
		}
		for (uint32_t i = 0; i < s->n_workers; i++)
			busy += s->workers[i].state != W_FREE && s->workers[i].leases > 0;
		in.budget.busy_workers = busy;
	}
	rc = bl_planner_plan(&s->pc, &in, NULL, res, reason, sizeof reason);
	if (rc != 0) {
		if (rc == BL_ENOMEM)
			s->err = BL_ENOMEM;
		return;
	}
	if (res->record)
		bl_planner_history_record(&s->hist, &s->pc, s->now, res->recommendation);
	s->panic = res->panic;
	if (res->desired != in.current_replicas && !res->scaling_disabled) {
		bl_planner_history_scaled(&s->hist, &s->pc, s->now, in.current_replicas, res->desired);
		scale_to(s, res->desired);
	}
}

/* ---- bookkeeping --------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n), in ms. */
static double pct_ms(const int64_t *v, size_t n, double q)
{
	size_t k;

	if (!n)
		return 0;
	k = (size_t)ceil(q * (double)n);
	if (k < 1)
		k = 1;
	return (double)v[k - 1] / 1e6;
}

static void sample(struct sim *s)
{
	struct bl_sim_result *r = s->res;
	struct bl_sim_sample *x;
	double dcpu, dready, mem = 0;
	size_t n = s->n_lat - s->smp_lat0;

	if (r->n_samples == s->cap_samples) {
		size_t cap = s->cap_samples ? s->cap_samples * 2 : 1024;
		struct bl_sim_sample *a = realloc(r->samples, cap * sizeof *a);

		if (!a) {
			s->err = BL_ENOMEM;
			return;
		}
		r->samples = a;
		s->cap_samples = cap;
	}
	integrate(s);
	dcpu = s->g_cpu_area - s->smp_cpu0;
	dready = s->g_ready_area - s->smp_ready0;
	for (uint32_t i = 0; i < s->n_workers; i++) {
		const struct worker *w = &s->workers[i];

		if (w->state != W_FREE && (double)w->mem_used / (double)s->sc->worker_memory > mem)
			mem = (double)w->mem_used / (double)s->sc->worker_memory;
	}
	x = &r->samples[r->n_samples++];
	*x = (struct bl_sim_sample){
		.at_ns = s->now,
		.replicas = s->asked,
		.ready = s->ready,
		.cpu = dready > 0 ? dcpu / (dready * s->sc->cpu_cores) : 0,
		.memory = mem,
		.work_queue = s->wq_len,
		.quota_waiting = s->quota_waiting,
		.calls_in_flight = s->in_call,
		.quota_use = meter_rolling(s),
		.provider_429s = s->s_429,
		.done = s->s_done,
		.failed = s->s_failed,
		.dropped = s->s_dropped,
		.latency_p50_ms = -1};
	if (n) {
		/* The median of the period, from a sorted copy of its tail. */
		int64_t *tmp = malloc(n * sizeof *tmp);

		if (tmp) {
			memcpy(tmp, s->lat + s->smp_lat0, n * sizeof *tmp);
			qsort(tmp, n, sizeof *tmp, cmp_i64);
			x->latency_p50_ms = pct_ms(tmp, n, 0.5);
			free(tmp);
		}
	}
	s->smp_lat0 = s->n_lat;
	s->smp_cpu0 = s->g_cpu_area;
	s->smp_ready0 = s->g_ready_area;
	s->s_429 = s->s_done = s->s_failed = s->s_dropped = 0;
}

static void tick(struct sim *s)
{
	integrate(s);
	for (int c = 0; c < BL_WAITQ_CLASSES; c++) {
		struct fifo *q = &s->wqs[c];

		while (q->len) {
			uint32_t id = q->a[q->head];
			struct task *t = task_at(s, id);

			if (t->state == T_QUEUED && s->now - t->arrived_ns <= s->sc->max_wait_ns)
				break;
			wq_pop(s, q);
			if (t->state == T_QUEUED)
				task_end(s, id, false); /* dropped: waited too long */
		}
	}
	for (uint32_t k = 0; k < s->n_tg; k++) {
		meter_advance(s, &s->tg[k].meter);
		if (s->quota_waiting == 0)
			s->tg[k].meter.saturated = false;
	}
	if (s->demand)
		bl_planner_window_record(s->demand, s->now, (double)(s->live));
	if (s->now % BAND_NS == 0) {
		double dready = s->g_ready_area - s->band_ready0;

		if (dready > 0 && s->now <= s->duration_ns) {
			double u = (s->g_cpu_area - s->band_cpu0) / (dready * s->sc->cpu_cores);

			s->band_n++;
			s->band_in += u >= s->band_low && u <= s->band_high;
		}
		s->band_cpu0 = s->g_cpu_area;
		s->band_ready0 = s->g_ready_area;
	}
	if (s->now % s->sample_ns == 0)
		sample(s);
	if (s->progress) {
		int pct = (int)(100 * s->now / (s->duration_ns + 1));

		if (pct > s->progress_pct && pct <= 100) {
			s->progress_pct = pct;
			fprintf(stderr, "\rballast sim: %-13s %3d%%", bl_sim_policy_name(s->pol), pct);
			fflush(stderr);
		}
	}
}

/* ---- setup and the loop ----------------------------------------------------------------- */

static int limiter_init(struct limiter *L, const struct bl_budget_limits *l, uint32_t max_queue)
{
	int rc;

	memset(L, 0, sizeof *L);
	if ((rc = bl_budget_init(&L->b, l)) != 0)
		return rc;
	if ((rc = bl_waitq_init(&L->q, max_queue ? max_queue : 1, 0)) != 0)
		return rc;
	return bl_waitq_tenant_init(&L->own, 1);
}

/* The limiter of budget cb (ballast), made on first use. Returns its index,
 * or a negative BL_E* code with err set. */
static int limiter_of(struct sim *s, const struct bl_cfg_budget *cb, char *err, size_t errcap)
{
	struct bl_budget_limits l;
	struct bl_waitq_tenant_config tc[64];
	size_t nt = cb->n_tenants < 64 ? cb->n_tenants : 64;
	struct limiter *L;
	char why[256];
	int rc;

	for (uint32_t i = 0; i < s->n_lim; i++)
		if (strcmp(s->lim[i].name, cb->name) == 0)
			return (int)i;
	bl_cfg_budget_limits(cb, &l);
	if (bl_budget_limits_check(&l, why, sizeof why))
		return bl_errorf(err, errcap, BL_EINVAL, "budgets.%s: %s", cb->name, why);
	L = &s->lim[s->n_lim];
	if ((rc = limiter_init(L, &l, cb->max_queue)) != 0)
		return bl_errorf(err, errcap, rc, "budget '%s' is not valid", cb->name);
	s->n_lim++;
	L->name = cb->name;
	L->adaptive = true;
	if (bl_waitq_tenants_create((uint32_t)(nt + BL_SIM_TENANTS_MAX + 8), &L->tenants))
		return BL_ENOMEM;
	for (size_t i = 0; i < nt; i++)
		tc[i] = (struct bl_waitq_tenant_config){cb->tenants[i].name, strlen(cb->tenants[i].name),
							cb->tenants[i].weight};
	if (bl_waitq_tenants_configure(L->tenants, tc, nt))
		return bl_errorf(err, errcap, BL_EINVAL, "budget '%s': bad tenants", cb->name);
	return (int)(s->n_lim - 1);
}

/* Where calls go: the pool's backends (each its own quota), or the one
 * provider; their budgets, breakers and balancer under ballast; the
 * workers' own buckets under uncoordinated. */
static int setup_targets(struct sim *s, char *err, size_t errcap)
{
	const struct bl_scenario *sc = s->sc;
	const struct bl_config *pol = sc->policy;
	const struct bl_cfg_pool *cp = sc->pool ? bl_config_pool(pol, sc->pool) : NULL;
	const struct bl_cfg_budget *shared = sc->budget ? bl_config_budget(pol, sc->budget) : NULL;
	int rc;

	s->n_tg = cp ? (uint32_t)cp->n_backends : 1;
	if (s->n_tg == 0 || s->n_tg > TARGETS_MAX)
		return bl_errorf(err, errcap, BL_EINVAL, "pool '%s': 1..%d backends are simulated",
				 sc->pool, TARGETS_MAX);
	if (!cp && sc->provider < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "the scenario names no provider to call");
	s->pooled = cp != NULL;
	s->tg = calloc(s->n_tg, sizeof *s->tg);
	s->lim = calloc(s->n_tg + 1, sizeof *s->lim);
	if (!s->tg || !s->lim)
		return BL_ENOMEM;
	for (uint32_t k = 0; k < s->n_tg; k++) {
		struct target *g = &s->tg[k];
		const char *name = cp ? cp->backends[k].name : sc->providers[sc->provider].name;

		g->li = -1;
		snprintf(g->name, sizeof g->name, "%s", name);
		if (cp) {
			if (bl_scenario_backend(sc, name, &g->bs))
				return bl_errorf(err, errcap, BL_EINVAL, "backend '%s' fronts no provider",
						 name);
		} else {
			g->bs = (struct bl_sim_backend_spec){.provider = sc->provider, .latency_factor = 1};
		}
		g->ps = &sc->providers[g->bs.provider];
		if ((rc = bl_sim_provider_init(&g->prov, &g->ps->config)) != 0)
			return bl_errorf(err, errcap, rc, "provider '%s' is not valid", g->ps->name);
		if ((rc = meter_init(&g->meter, &g->ps->config)) != 0)
			return rc;
	}
	if (s->pol == BL_SIM_BALLAST) {
		if (shared && (s->shared_li = limiter_of(s, shared, err, errcap)) < 0)
			return s->shared_li;
		for (uint32_t k = 0; cp && k < s->n_tg; k++) {
			const struct bl_cfg_budget *bb = cp->backends[k].budget
								 ? bl_config_budget(pol, cp->backends[k].budget)
								 : NULL;

			if (bb && (s->tg[k].li = limiter_of(s, bb, err, errcap)) < 0)
				return s->tg[k].li;
		}
	}
	if (s->pol == BL_SIM_BALLAST && cp) {
		struct bl_balancer_config lc;
		struct bl_breaker_config bc;
		char why[256];

		bl_cfg_breaker_config(&cp->breaker, &bc);
		if (bl_breaker_config_check(&bc, why, sizeof why))
			return bl_errorf(err, errcap, BL_EINVAL, "pools.%s.breaker: %s", cp->name, why);
		bl_balancer_config_default(&lc);
		lc.strategy = bl_cfg_balance_strategy(cp->strategy);
		lc.seed = s->seed ^ UINT64_C(0x62616c6c617374); /* the run's seed: reproducible */
		lc.max_backends = s->n_tg;
		lc.slow_start_ns = cp->slow_start_ns;
		lc.ewma_decay_ns = cp->ewma_decay_ns;
		s->max_ejected = cp->max_ejected;
		if ((rc = bl_balancer_create(&lc, &s->bal)) != 0)
			return bl_errorf(err, errcap, rc, "pool '%s': the balancer refused its "
							  "configuration", cp->name);
		for (uint32_t k = 0; k < s->n_tg; k++) {
			struct target *g = &s->tg[k];
			size_t bytes = bl_breaker_window_bytes(&bc);

			if (!(g->br_window = calloc(1, bytes)))
				return BL_ENOMEM;
			if (bl_breaker_init(&g->br, &bc, g->br_window, bytes))
				return bl_errorf(err, errcap, BL_EINVAL, "pool '%s': bad breaker", cp->name);
			if ((rc = bl_balancer_add(s->bal, g->name, cp->backends[k].weight,
						  BL_BALANCER_JOINED_LONG_AGO, &g->idx)) != 0)
				return bl_errorf(err, errcap, rc, "pool '%s': backend '%s' refused",
						 cp->name, g->name);
		}
	}
	if (s->pol == BL_SIM_UNCOORDINATED) {
		/* Each worker a plain token bucket per target with 1/N of its
		 * budget (N = the initial replicas), as an agent that limits itself. */
		uint32_t n = sc->replicas;
		bool any = false;

		for (uint32_t k = 0; k < s->n_tg; k++) {
			struct target *g = &s->tg[k];
			const struct bl_cfg_budget *cb = cp && cp->backends[k].budget
								 ? bl_config_budget(pol, cp->backends[k].budget)
								 : shared;
			static const enum bl_dim map[BL_CFG_DIM_COUNT] = {
				BL_DIM_REQUESTS, BL_DIM_TOKENS, BL_DIM_INPUT_TOKENS, BL_DIM_OUTPUT_TOKENS};

			if (!cb)
				continue;
			bl_sim_provider_config_default(&g->local_cfg);
			g->local_cfg.retry_after_round_ns = 0;
			for (int d = 0; d < BL_CFG_DIM_COUNT; d++) {
				if (!cb->limits[d].set)
					continue;
				g->local_cfg.rate[map[d]].limit =
					cb->limits[d].limit / n ? cb->limits[d].limit / n : 1;
				g->local_cfg.rate[map[d]].per_ns = cb->limits[d].per_ns;
			}
			if (cb->concurrent)
				g->local_cfg.concurrent = cb->concurrent / n ? cb->concurrent / n : 1;
			if (bl_sim_provider_config_check(&g->local_cfg, NULL, 0))
				return bl_errorf(err, errcap, BL_EINVAL, "budget '%s' split %u ways is "
									 "not valid", cb->name, n);
			g->has_local = any = true;
		}
		if (any && !(s->local = calloc((size_t)s->n_workers * s->n_tg, sizeof *s->local)))
			return BL_ENOMEM;
	}
	return 0;
}

static int setup(struct sim *s, char *err, size_t errcap)
{
	const struct bl_scenario *sc = s->sc;
	const struct bl_config *pol = sc->policy;
	uint32_t max_rep;
	char why[256];
	int rc;

	s->free_task = NONE;
	s->shared_li = -1;
	s->acfg = &pol->autoscaler;
	s->band_low = pol->autoscaler.cpu.low;
	s->band_high = pol->autoscaler.cpu.high;
	bl_sim_rng_seed(&s->arr_rng, s->seed, ST_ARRIVALS, 0, 0);

	/* Replicas: static keeps the initial count; the others scale. */
	s->autoscale = s->pol != BL_SIM_STATIC && (s->pol != BL_SIM_BALLAST || s->acfg->configured);
	bl_cfg_planner_config(s->acfg, &s->pc);
	s->scale_interval_ns = s->acfg->interval_ns;
	if (s->pol != BL_SIM_BALLAST) {
		/* Kubernetes' defaults, one CPU target. */
		int32_t lo = s->pc.min_replicas, hi = s->pc.max_replicas;

		bl_planner_config_default(&s->pc);
		s->pc.min_replicas = lo;
		s->pc.max_replicas = hi;
		s->scale_interval_ns = HPA_INTERVAL_NS;
		s->cpu_target_pct = 100.0 * (sc->hpa_cpu_target > 0 ? sc->hpa_cpu_target
								     : (s->band_low + s->band_high) / 2);
	}
	if (s->autoscale && bl_planner_config_check(&s->pc, why, sizeof why))
		return bl_errorf(err, errcap, BL_EINVAL, "autoscaler: %s", why);
	max_rep = sc->replicas;
	if (s->autoscale && (uint32_t)s->pc.max_replicas > max_rep)
		max_rep = (uint32_t)s->pc.max_replicas;
	s->n_workers = 2 * max_rep + 16;
	s->workers = calloc(s->n_workers, sizeof *s->workers);
	s->pods = calloc(s->n_workers, sizeof *s->pods);
	s->mem_pods = calloc(s->n_workers, sizeof *s->mem_pods);
	s->cpu_use = calloc(s->n_workers, sizeof *s->cpu_use);
	s->mem_use = calloc(s->n_workers, sizeof *s->mem_use);
	s->plan = calloc(1, sizeof *s->plan);
	if (!s->workers || !s->pods || !s->mem_pods || !s->cpu_use || !s->mem_use || !s->plan)
		return BL_ENOMEM;
	bl_planner_history_init(&s->hist);
	bl_planner_history_record(&s->hist, &s->pc, 0, (int32_t)sc->replicas);
	if (s->pol == BL_SIM_BALLAST && s->acfg->inflight_per_replica > 0) {
		if (!(s->demand = calloc(1, sizeof *s->demand)))
			return BL_ENOMEM;
		if (bl_planner_window_init(s->demand, &s->pc.panic))
			return bl_errorf(err, errcap, BL_EINVAL, "autoscaler: the burst windows "
								 "are not valid");
	}

	/* Memory admission: the memory block, per worker. */
	if (s->pol == BL_SIM_BALLAST && pol->memory.configured) {
		bl_membudget_config_default(&s->mbc);
		s->mbc.capacity_bytes = pol->memory.capacity_auto ? sc->worker_memory - sc->base_memory
								  : pol->memory.capacity;
		s->mbc.safety_buffer = pol->memory.safety_buffer;
		s->mbc.low = pol->memory.low;
		s->mbc.high = pol->memory.high;
		if (bl_membudget_config_check(&s->mbc, why, sizeof why))
			return bl_errorf(err, errcap, BL_EINVAL, "memory: %s", why);
		s->mem_admission = true;
	}

	if ((rc = setup_targets(s, err, errcap)) != 0)
		return rc;
	s->sample_ns = s->sample_ns ? s->sample_ns : sc->sample_ns;
	if (!s->sample_ns) {
		/* About 500 rows, in whole seconds. */
		s->sample_ns = (s->duration_ns / 500 + BL_NS_PER_S - 1) / BL_NS_PER_S * BL_NS_PER_S;
		if (s->sample_ns < S_NS(10))
			s->sample_ns = S_NS(10);
	}
	return 0;
}

static void teardown(struct sim *s)
{
	for (size_t i = 0; i < s->n_chunks; i++)
		free(s->chunks[i]);
	free(s->chunks);
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		free(s->wqs[c].a);
	free(s->slots);
	for (uint32_t i = 0; s->lim && i < s->n_lim; i++) {
		bl_waitq_cleanup(&s->lim[i].q);
		bl_waitq_tenants_destroy(s->lim[i].tenants);
	}
	free(s->lim);
	for (size_t i = 0; s->local && i < (size_t)s->n_workers * s->n_tg; i++)
		bl_sim_provider_cleanup(&s->local[i]);
	free(s->local);
	for (uint32_t k = 0; s->tg && k < s->n_tg; k++) {
		bl_sim_provider_cleanup(&s->tg[k].prov);
		free(s->tg[k].meter.ring);
		free(s->tg[k].br_window);
	}
	free(s->tg);
	bl_balancer_destroy(s->bal);
	free(s->workers);
	free(s->pods);
	free(s->mem_pods);
	free(s->cpu_use);
	free(s->mem_use);
	free(s->plan);
	free(s->demand);
	free(s->lat);
	free(s->lat_tenant);
	bl_sim_eventq_cleanup(&s->q);
}

/* Ends what is left when the drain runs out: waiting tasks are dropped,
 * the others failed. */
static void finish_leftovers(struct sim *s)
{
	s->dispatching = true; /* nothing starts any more */
	for (size_t c = 0; c < s->n_chunks; c++)
		for (uint32_t i = 0; i < CHUNK; i++) {
			uint32_t id = (uint32_t)(c * CHUNK + i);

			if (task_at(s, id)->state != T_FREE)
				task_end(s, id, false);
		}
	s->wq_len = 0;
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		s->wqs[c].len = 0;
}

static void handle(struct sim *s, const struct bl_sim_event *e)
{
	switch ((enum ev_kind)e->kind) {
	case EV_ARRIVAL:
		arrive(s);
		break;
	case EV_THINK_DONE: {
		struct task *t = task_at(s, e->a);

		if (t->gen != (uint32_t)e->b || t->state != T_THINK)
			break;
		worker_cpu(s, &s->workers[t->worker], -1);
		t->state = T_BETWEEN;
		begin_call(s, e->a);
		break;
	}
	case EV_CALL_DONE: {
		struct task *t = task_at(s, e->a);

		if (t->gen == (uint32_t)e->b && t->state == T_CALL)
			call_done(s, e->a);
		break;
	}
	case EV_RETRY: {
		struct task *t = task_at(s, e->a);

		if (t->gen != (uint32_t)e->b ||
		    (t->state != T_BACKOFF && t->state != T_ERRWAIT && t->state != T_ACQUIRE))
			break;
		set_state(s, t, T_BETWEEN);
		begin_call(s, e->a);
		break;
	}
	case EV_WAKE:
		if (e->a < s->n_lim && s->lim[e->a].wake_gen == e->b) {
			s->lim[e->a].wake_at = 0;
			pump(s, e->a);
		}
		break;
	case EV_READY: {
		struct worker *w = &s->workers[e->a];

		if (w->gen != (uint32_t)e->b || w->state != W_STARTING)
			break;
		integrate(s);
		w->state = W_READY;
		w->ready_ns = s->now;
		w->cpu_at = s->now;
		w->cpu_area = 0;
		s->ready++;
		worker_offer(s, e->a, s->sc->tasks_per_worker);
		dispatch(s);
		break;
	}
	case EV_SCALE:
		autoscale(s);
		push_ev(s, s->now + s->scale_interval_ns, EV_SCALE, 0, 0);
		break;
	case EV_TICK:
		tick(s);
		push_ev(s, s->now + TICK_NS, EV_TICK, 0, 0);
		break;
	}
}

int bl_sim_run(const struct bl_scenario *sc, enum bl_sim_policy pol,
	       const struct bl_sim_options *o, struct bl_sim_result *out, char *err, size_t errcap)
{
	struct sim *s = calloc(1, sizeof *s);
	struct bl_sim_event e;
	bl_time_ns end;
	int rc;

	memset(out, 0, sizeof *out);
	out->policy = pol;
	out->quota_mean = out->quota_min = out->cpu_in_band = -1;
	if (!s)
		return BL_ENOMEM;
	s->sc = sc;
	s->pol = pol;
	s->seed = o->seed;
	s->duration_ns = o->duration_ns ? o->duration_ns : sc->duration_ns;
	s->sample_ns = o->sample_ns;
	s->progress = o->progress;
	s->res = out;
	bl_sim_eventq_init(&s->q);
	rc = setup(s, err, errcap);
	if (rc)
		goto out;
	/* The initial fleet, ready at once (it was running before the scenario). */
	for (uint32_t i = 0; i < sc->replicas; i++) {
		uint32_t id = worker_new(s);

		if (id == NONE)
			break;
		s->workers[id].gen++;
		s->workers[id].state = W_READY;
		s->workers[id].ready_ns = 0;
		s->ready++;
		worker_offer(s, id, sc->tasks_per_worker);
	}
	{
		bl_time_ns first = next_arrival(s, 0);

		if (sc->arrivals == BL_SIM_ARRIVALS_CONSTANT)
			first = 0;
		if (first >= 0 && first < s->duration_ns)
			push_ev(s, first, EV_ARRIVAL, 0, 0);
		else
			s->arrivals_over = true;
	}
	push_ev(s, TICK_NS, EV_TICK, 0, 0);
	if (s->autoscale)
		push_ev(s, s->scale_interval_ns, EV_SCALE, 0, 0);
	end = s->duration_ns + sc->drain_ns;
	while (!s->err && bl_sim_eventq_pop(&s->q, &e)) {
		if (e.at_ns > end)
			break;
		if (s->arrivals_over && s->live == 0 && s->now >= s->duration_ns)
			break;
		s->now = e.at_ns;
		out->events++;
		handle(s, &e);
	}
	if (s->err) {
		rc = s->err;
		goto out;
	}
	if (s->now < s->duration_ns)
		s->now = s->duration_ns;
	finish_leftovers(s);
	integrate(s);
	out->end_ns = s->now;
	out->replica_seconds = s->g_alive_area / 1e9;
	{
		double sum = 0, min = -1;
		uint64_t n = 0;

		for (uint32_t k = 0; k < s->n_tg; k++) {
			struct meter *m = &s->tg[k].meter;

			meter_advance(s, m);
			sum += m->sum;
			n += m->n;
			if (m->n && (min < 0 || m->min < min))
				min = m->min;
		}
		if (n) {
			out->quota_mean = sum / (double)n;
			out->quota_min = min;
			out->quota_windows = n;
		}
	}
	if (s->band_n)
		out->cpu_in_band = (double)s->band_in / (double)s->band_n;
	/* Per tenant first: the arrays are still in completion order. */
	out->n_tenants = sc->n_tenants;
	for (size_t k = 0; k < sc->n_tenants && s->n_lat; k++) {
		struct bl_sim_tenant_result *tr = &out->tenants[k];
		int64_t *v = malloc(s->n_lat * sizeof *v);
		size_t m = 0;

		if (!v) {
			rc = BL_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < s->n_lat; i++)
			if (s->lat_tenant[i] == (int16_t)k)
				v[m++] = s->lat[i];
		if (m)
			qsort(v, m, sizeof *v, cmp_i64);
		tr->latency_p50_ms = pct_ms(v, m, 0.50);
		tr->latency_p95_ms = pct_ms(v, m, 0.95);
		tr->latency_p99_ms = pct_ms(v, m, 0.99);
		free(v);
	}
	if (s->n_lat)
		qsort(s->lat, s->n_lat, sizeof *s->lat, cmp_i64);
	out->latency_p50_ms = pct_ms(s->lat, s->n_lat, 0.50);
	out->latency_p95_ms = pct_ms(s->lat, s->n_lat, 0.95);
	out->latency_p99_ms = pct_ms(s->lat, s->n_lat, 0.99);
	if (s->progress)
		fprintf(stderr, "\rballast sim: %-13s done      \n", bl_sim_policy_name(pol));
	rc = s->err;
out:
	if (rc == BL_ENOMEM)
		bl_errorf(err, errcap, rc, "out of memory");
	teardown(s);
	free(s);
	if (rc)
		bl_sim_result_cleanup(out);
	return rc;
}

void bl_sim_result_cleanup(struct bl_sim_result *r)
{
	free(r->samples);
	r->samples = NULL;
	r->n_samples = 0;
}
