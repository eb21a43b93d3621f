/* The simulator's engine. See sim.h and docs/simulator.md. */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ballast/budget.h"
#include "ballast/error.h"
#include "ballast/membudget.h"
#include "ballast/planner.h"
#include "ballast/waitq.h"
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
	uint64_t ticket;             /* lease while has_lease */
	struct bl_sim_admission adm; /* at the provider while T_CALL */
	bl_time_ns acquired_ns;
	uint32_t worker;             /* NONE when not on a worker */
	uint32_t wnext, wprev;       /* the worker's task list */
	uint32_t limiter;            /* the limiter it waits in or holds a lease of */
	uint32_t gen;                /* bumped to make pending events stale */
	uint32_t attempts;           /* attempts so far, all calls (names the streams) */
	uint16_t calls, call;        /* calls in the task, index of the current one */
	uint16_t n429, nerr;         /* retries spent on the current call */
	int16_t tenant;              /* index into the workload's tenants, -1 */
	uint8_t state;               /* enum task_state */
	bool has_lease;
	bool has_local;              /* uncoordinated: admitted by its worker's own limiter */
	bool call_failed;            /* the call in flight will answer an error */
	struct bl_sim_admission local; /* that admission */
};

struct limiter {
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

	/* the work queue: task ids, FIFO ring */
	uint32_t *wq;
	size_t wq_cap, wq_head, wq_len;

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

	/* provider */
	struct bl_sim_provider prov;
	const struct bl_sim_provider_spec *pspec;
	struct meter meter;

	/* the shared budget (ballast) */
	struct limiter *lim;
	uint32_t n_lim;
	bool use_limiter;
	struct bl_budget_limits limits;   /* the shared budget's */
	/* uncoordinated: each worker's own token bucket, 1/N of the quota */
	struct bl_sim_provider *local;
	struct bl_sim_provider_config local_cfg;

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

static void meter_add(struct sim *s, const uint64_t *units)
{
	struct meter *m = &s->meter;
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

/* The share of the limit used over the last window, per second slots. */
static double meter_rolling(struct sim *s)
{
	struct meter *m = &s->meter;
	double used[BL_DIM_COUNT] = {0};

	if (!m->window_ns)
		return 0;
	meter_ring_to(m, s->now / BL_NS_PER_S);
	for (size_t i = 0; i < m->slots; i++)
		for (int d = 0; d < BL_DIM_COUNT; d++)
			used[d] += m->ring[i * BL_DIM_COUNT + d];
	return meter_share(m, used);
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
	if (s->local) {
		/* A fresh agent, a fresh limiter (full, as a new bucket is). */
		bl_sim_provider_cleanup(&s->local[id]);
		bl_sim_provider_init(&s->local[id], &s->local_cfg);
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

static void call_provider(struct sim *s, uint32_t id);

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
			call_provider(s, id);
		} else {
			task_end(s, id, false); /* larger than the budget ever admits */
		}
	}
	L->pumping = false;
}

static void limiter_enqueue(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);
	uint32_t li = 0;
	struct limiter *L = &s->lim[li];
	struct bl_waitq_tenant *slot = &L->own;
	enum bl_waitq_class cls = BL_WAITQ_NORMAL;
	double share = 0;
	uint64_t cost;
	struct bl_amounts norm;

	t->want = (struct bl_amounts){0};
	t->want.n[BL_DIM_REQUESTS] = 1;
	t->want.n[BL_DIM_INPUT_TOKENS] = t->input;
	t->want.n[BL_DIM_OUTPUT_TOKENS] = s->sc->max_tokens;
	norm = t->want;
	bl_amounts_normalize(&norm);
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

static void lease_release(struct sim *s, struct task *t, const struct bl_amounts *used)
{
	struct limiter *L = &s->lim[t->limiter];

	if (!t->has_lease)
		return;
	bl_budget_release(&L->b, &t->want, used, t->ticket, s->now, NULL);
	t->has_lease = false;
	s->workers[t->worker].leases--;
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

/* Gives the worker's own limiter its slot back (uncoordinated). The naive
 * limiter keeps what it charged, but for unused output. */
static void local_release(struct sim *s, struct task *t, uint64_t output)
{
	struct bl_sim_call call = {t->input, s->sc->max_tokens};

	if (!t->has_local)
		return;
	bl_sim_provider_finish(&s->local[t->worker], &call, &t->local, output, s->now);
	t->has_local = false;
}

static void begin_call(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);

	if (s->use_limiter) {
		limiter_enqueue(s, id);
		return;
	}
	if (s->local) {
		struct bl_sim_call call = {t->input, s->sc->max_tokens};
		int rc = bl_sim_provider_admit(&s->local[t->worker], &call, s->now, &t->local);

		if (rc == BL_EAGAIN) {
			/* Wait for the own bucket: sleep until it would conform. */
			bl_time_ns at = t->local.concurrency && t->local.conform_at_ns <= s->now
						? s->now + t->local.retry_after_ns
						: t->local.conform_at_ns;

			set_state(s, t, T_ACQUIRE);
			push_ev(s, at > s->now ? at : s->now + 1, EV_RETRY, id, t->gen);
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

static void call_provider(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);
	const struct bl_sim_provider_spec *ps = s->pspec;
	struct bl_sim_call call = {t->input, s->sc->max_tokens};
	struct bl_sim_admission adm;
	struct bl_sim_rng r;
	int rc = bl_sim_provider_admit(&s->prov, &call, s->now, &adm);

	attempt_rng(s, t, &r);
	if (rc == 0) {
		double err_rate, factor, lat;
		uint64_t units[BL_DIM_COUNT] = {1, t->input + t->output, t->input, t->output};

		bl_sim_provider_conditions(&s->prov, s->now, &err_rate, &factor);
		t->adm = adm;
		t->call_failed = bl_sim_rng_uniform(&r) < err_rate;
		lat = bl_sim_dist_sample(&ps->latency_ns, &r) * factor;
		if (!t->call_failed)
			lat += ps->per_output_token_ns * (double)t->output;
		set_state(s, t, T_CALL);
		meter_add(s, units);
		push_ev(s, s->now + (bl_time_ns)lat + 1, EV_CALL_DONE, id, t->gen);
		return;
	}
	if (rc == BL_EAGAIN) {
		struct bl_amounts none = {0};

		local_release(s, t, 0);
		s->res->provider_429s++;
		s->s_429++;
		t->n429++;
		if (t->has_lease) {
			struct limiter *L = &s->lim[t->limiter];
			bl_time_ns acquired = t->acquired_ns;

			lease_release(s, t, &none); /* the provider counted nothing */
			if (L->adaptive) {
				if (L->last_decrease_ns && acquired < L->last_decrease_ns) {
					bl_budget_on_rate_limited_stale(&L->b, s->now, adm.retry_after_ns);
				} else {
					bl_budget_on_rate_limited(&L->b, s->now, adm.retry_after_ns);
					L->last_decrease_ns = s->now;
				}
			}
		}
		if (t->n429 > s->sc->retry_attempts) {
			task_end(s, id, false);
			return;
		}
		if (s->pol == BL_SIM_BALLAST) {
			/* Back in the budget's queue: the pause holds it until retry-after. */
			limiter_enqueue(s, id);
			return;
		}
		set_state(s, t, T_BACKOFF);
		push_ev(s, s->now + backoff_ns(s, &r, t->n429, adm.retry_after_ns), EV_RETRY, id,
			t->gen);
		return;
	}
	/* Too large for the provider, or out of memory. */
	if (rc == BL_ENOMEM)
		s->err = BL_ENOMEM;
	if (t->has_lease) {
		struct bl_amounts none = {0};

		lease_release(s, t, &none);
	}
	local_release(s, t, 0);
	task_end(s, id, false);
}

static void call_done(struct sim *s, uint32_t id)
{
	struct task *t = task_at(s, id);
	struct bl_sim_call call = {t->input, s->sc->max_tokens};
	struct bl_amounts used = {0};
	uint32_t li = t->limiter;
	bool had = t->has_lease;

	s->res->calls++;
	bl_sim_provider_finish(&s->prov, &call, &t->adm, t->call_failed ? 0 : t->output, s->now);
	used.n[BL_DIM_REQUESTS] = 1;
	used.n[BL_DIM_INPUT_TOKENS] = t->input;
	used.n[BL_DIM_OUTPUT_TOKENS] = t->call_failed ? 0 : t->output;
	lease_release(s, t, &used);
	local_release(s, t, t->call_failed ? 0 : t->output);
	if (t->call_failed) {
		struct bl_sim_rng r;

		s->res->provider_errors++;
		if (++t->nerr > s->sc->error_attempts) {
			task_end(s, id, false);
		} else {
			attempt_rng(s, t, &r);
			set_state(s, t, T_ERRWAIT);
			push_ev(s, s->now + backoff_ns(s, &r, t->nerr, 0), EV_RETRY, id, t->gen);
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

	if (t->state == T_ACQUIRE)
		bl_waitq_remove(&s->lim[t->limiter].q, &t->node);
	if (t->state == T_CALL) {
		struct bl_sim_call call = {t->input, s->sc->max_tokens};

		bl_sim_provider_finish(&s->prov, &call, &t->adm, t->output, s->now);
	}
	if (t->has_lease)
		lease_release(s, t, NULL); /* ended mid-call: the estimate stays spent */
	local_release(s, t, t->output);
	if (done) {
		int64_t lat = s->now - t->arrived_ns;

		s->res->tasks_done++;
		s->s_done++;
		if (lat <= s->sc->slo_ns)
			s->res->tasks_in_slo++;
		if (s->n_lat == s->cap_lat) {
			size_t cap = s->cap_lat ? s->cap_lat * 2 : 65536;
			int64_t *l = realloc(s->lat, cap * sizeof *l);

			if (!l) {
				s->err = BL_ENOMEM;
			} else {
				s->lat = l;
				s->cap_lat = cap;
			}
		}
		if (s->n_lat < s->cap_lat)
			s->lat[s->n_lat++] = lat;
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
		uint32_t id = s->wq[s->wq_head];
		struct task *t = task_at(s, id);
		uint64_t slot = s->slots[s->sl_head];
		uint32_t wid = (uint32_t)(slot >> 32);
		struct worker *w = &s->workers[wid];

		if (t->state != T_QUEUED || s->now - t->arrived_ns > s->sc->max_wait_ns) {
			s->wq_head = (s->wq_head + 1) % s->wq_cap;
			s->wq_len--;
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
				s->wq_head = (s->wq_head + 1) % s->wq_cap;
				s->wq_len--;
				task_end(s, id, false);
				continue;
			}
			if (mrc) {
				w->parked++;
				continue;
			}
		}
		s->wq_head = (s->wq_head + 1) % s->wq_cap;
		s->wq_len--;
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
	if (s->wq_len == s->wq_cap) {
		size_t cap = s->wq_cap ? s->wq_cap * 2 : 4096;
		uint32_t *q = malloc(cap * sizeof *q);

		if (!q) {
			s->err = BL_ENOMEM;
			return;
		}
		for (size_t i = 0; i < s->wq_len; i++)
			q[i] = s->wq[(s->wq_head + i) % s->wq_cap];
		free(s->wq);
		s->wq = q;
		s->wq_cap = cap;
		s->wq_head = 0;
	}
	s->wq[(s->wq_head + s->wq_len++) % s->wq_cap] = id;
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
		if (row->tenant >= 0)
			t->tenant = (int16_t)row->tenant;
	}
	s->res->tasks_total++;
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
	int rc;

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
				      (s->use_limiter ? (double)bl_waitq_length(&s->lim[0].q) : 0);
		m[nm].average.target.value = s->acfg->queue_per_replica;
		nm++;
	}
	in.current_replicas = (int32_t)s->asked;
	in.now_ns = s->now;
	in.metrics = m;
	in.metric_count = nm;
	in.panic = s->panic;
	bl_planner_history_input(&s->hist, &in);
	if (s->pol == BL_SIM_BALLAST && s->use_limiter && s->acfg->budget &&
	    strcmp(s->acfg->budget, s->sc->budget) == 0) {
		struct limiter *L = &s->lim[0];
		struct bl_budget_stats st;
		int worst = -1;
		int32_t busy = 0;

		bl_budget_stats(&L->b, s->now, &st);
		for (int d = 0; d < BL_DIM_COUNT; d++)
			if (st.dim[d].limit &&
			    (worst < 0 || st.dim[d].utilization > st.dim[worst].utilization))
				worst = d;
		in.budget.name = s->sc->budget;
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
	while (s->wq_len) {
		uint32_t id = s->wq[s->wq_head];
		struct task *t = task_at(s, id);

		if (t->state == T_QUEUED && s->now - t->arrived_ns <= s->sc->max_wait_ns)
			break;
		s->wq_head = (s->wq_head + 1) % s->wq_cap;
		s->wq_len--;
		if (t->state == T_QUEUED)
			task_end(s, id, false); /* dropped: waited too long */
	}
	meter_advance(s, &s->meter);
	if (s->quota_waiting == 0)
		s->meter.saturated = false;
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

static void limits_from_config(const struct bl_cfg_budget *cb, struct bl_budget_limits *l)
{
	static const enum bl_dim map[BL_CFG_DIM_COUNT] = {
		[BL_CFG_DIM_REQUESTS] = BL_DIM_REQUESTS,
		[BL_CFG_DIM_TOKENS] = BL_DIM_TOKENS,
		[BL_CFG_DIM_INPUT_TOKENS] = BL_DIM_INPUT_TOKENS,
		[BL_CFG_DIM_OUTPUT_TOKENS] = BL_DIM_OUTPUT_TOKENS,
	};

	bl_budget_limits_default(l);
	for (int i = 0; i < BL_CFG_DIM_COUNT; i++) {
		if (!cb->limits[i].set)
			continue;
		l->rate[map[i]].limit = cb->limits[i].limit;
		l->rate[map[i]].per_ns = cb->limits[i].per_ns;
	}
	l->concurrent = cb->concurrent;
	l->target_utilization = cb->target_utilization;
	l->burst = cb->burst;
	l->adaptive_decrease = cb->adaptive_decrease;
	l->adaptive_increase = cb->adaptive_increase;
	l->adaptive_period_ns = cb->adaptive_period_ns;
}

/* The daemon's mapping of the autoscaler block (src/daemon/autoscaler.c). */
static void planner_config_of(const struct bl_cfg_autoscaler *a, struct bl_planner_config *pc)
{
	bl_planner_config_default(pc);
	pc->min_replicas = (int32_t)a->min_replicas;
	pc->max_replicas = (int32_t)a->max_replicas;
	pc->scale_up.stabilization_s = (int32_t)(a->scale_up_stabilization_ns / BL_NS_PER_S);
	pc->scale_down.stabilization_s = (int32_t)(a->scale_down_stabilization_ns / BL_NS_PER_S);
	pc->panic.stable_window_ns = a->stable_window_ns;
	pc->panic.panic_window_ns = a->panic_window_ns;
	pc->panic.threshold = a->panic_threshold < 1.1 ? 1.1 : a->panic_threshold;
	pc->panic.granularity_ns = BL_NS_PER_S;
	while (pc->panic.stable_window_ns / pc->panic.granularity_ns > BL_PLANNER_WINDOW_BUCKETS)
		pc->panic.granularity_ns *= 2;
}

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

static int setup(struct sim *s, char *err, size_t errcap)
{
	const struct bl_scenario *sc = s->sc;
	const struct bl_config *pol = sc->policy;
	const struct bl_cfg_budget *cb = sc->budget ? bl_config_budget(pol, sc->budget) : NULL;
	uint32_t max_rep;
	char why[256];
	int rc;

	s->free_task = NONE;
	s->acfg = &pol->autoscaler;
	s->band_low = pol->autoscaler.cpu.low;
	s->band_high = pol->autoscaler.cpu.high;
	if (sc->provider < 0)
		return bl_errorf(err, errcap, BL_EINVAL, "the scenario names no provider to call");
	s->pspec = &sc->providers[sc->provider];
	if ((rc = bl_sim_provider_init(&s->prov, &s->pspec->config)) != 0)
		return bl_errorf(err, errcap, rc, "provider '%s' is not valid", s->pspec->name);
	if ((rc = meter_init(&s->meter, &s->pspec->config)) != 0)
		return rc;
	bl_sim_rng_seed(&s->arr_rng, s->seed, ST_ARRIVALS, 0, 0);

	/* Replicas: static keeps the initial count; the others scale. */
	s->autoscale = s->pol != BL_SIM_STATIC && (s->pol != BL_SIM_BALLAST || s->acfg->configured);
	planner_config_of(s->acfg, &s->pc);
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

	/* Rate limiters. */
	if (cb && s->pol == BL_SIM_BALLAST) {
		struct bl_waitq_tenant_config tc[64];
		size_t nt = cb->n_tenants < 64 ? cb->n_tenants : 64;

		limits_from_config(cb, &s->limits);
		if (bl_budget_limits_check(&s->limits, why, sizeof why))
			return bl_errorf(err, errcap, BL_EINVAL, "budgets.%s: %s", cb->name, why);
		s->use_limiter = true;
		s->n_lim = 1;
		if (!(s->lim = calloc(1, sizeof *s->lim)))
			return BL_ENOMEM;
		if ((rc = limiter_init(&s->lim[0], &s->limits, cb->max_queue)) != 0)
			return bl_errorf(err, errcap, rc, "budget '%s' is not valid", cb->name);
		s->lim[0].adaptive = true;
		if (bl_waitq_tenants_create((uint32_t)(nt + BL_SIM_TENANTS_MAX + 8),
					    &s->lim[0].tenants))
			return BL_ENOMEM;
		for (size_t i = 0; i < nt; i++)
			tc[i] = (struct bl_waitq_tenant_config){cb->tenants[i].name,
								strlen(cb->tenants[i].name),
								cb->tenants[i].weight};
		if (bl_waitq_tenants_configure(s->lim[0].tenants, tc, nt))
			return bl_errorf(err, errcap, BL_EINVAL, "budget '%s': bad tenants", cb->name);
	} else if (cb && s->pol == BL_SIM_UNCOORDINATED) {
		/* Each worker a plain token bucket with 1/N of the budget's limits
		 * (N = the initial replicas), as an agent that limits itself. */
		uint32_t n = sc->replicas;

		bl_sim_provider_config_default(&s->local_cfg);
		s->local_cfg.retry_after_round_ns = 0;
		for (int d = 0; d < BL_CFG_DIM_COUNT; d++) {
			static const enum bl_dim map[BL_CFG_DIM_COUNT] = {
				BL_DIM_REQUESTS, BL_DIM_TOKENS, BL_DIM_INPUT_TOKENS,
				BL_DIM_OUTPUT_TOKENS};

			if (!cb->limits[d].set)
				continue;
			s->local_cfg.rate[map[d]].limit = cb->limits[d].limit / n ? cb->limits[d].limit / n : 1;
			s->local_cfg.rate[map[d]].per_ns = cb->limits[d].per_ns;
		}
		if (cb->concurrent)
			s->local_cfg.concurrent = cb->concurrent / n ? cb->concurrent / n : 1;
		if (!(s->local = calloc(s->n_workers, sizeof *s->local)))
			return BL_ENOMEM;
		for (uint32_t i = 0; i < s->n_workers; i++)
			if (bl_sim_provider_init(&s->local[i], &s->local_cfg))
				return bl_errorf(err, errcap, BL_EINVAL, "budget '%s' split %u ways "
									 "is not valid", cb->name, n);
	}
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
	free(s->wq);
	free(s->slots);
	for (uint32_t i = 0; s->lim && i < s->n_lim; i++) {
		bl_waitq_cleanup(&s->lim[i].q);
		bl_waitq_tenants_destroy(s->lim[i].tenants);
	}
	free(s->lim);
	for (uint32_t i = 0; s->local && i < s->n_workers; i++)
		bl_sim_provider_cleanup(&s->local[i]);
	free(s->local);
	free(s->workers);
	free(s->pods);
	free(s->mem_pods);
	free(s->cpu_use);
	free(s->mem_use);
	free(s->plan);
	free(s->demand);
	free(s->lat);
	free(s->meter.ring);
	bl_sim_provider_cleanup(&s->prov);
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
	meter_advance(s, &s->meter);
	out->end_ns = s->now;
	out->replica_seconds = s->g_alive_area / 1e9;
	if (s->meter.n) {
		out->quota_mean = s->meter.sum / (double)s->meter.n;
		out->quota_min = s->meter.min;
		out->quota_windows = s->meter.n;
	}
	if (s->band_n)
		out->cpu_in_band = (double)s->band_in / (double)s->band_n;
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
