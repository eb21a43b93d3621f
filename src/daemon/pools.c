/* Backend pools in the daemon. See pools.h and docs/internals/pools-daemon.md. */
#include "pools.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ballast/balancer.h"
#include "ballast/error.h"
#include "cfgmap.h"
#include "clock.h"
#include "daemon.h"
#include "jsonreq.h"
#include "log.h"
#include "scrape.h"

/* Latency histogram buckets, seconds: model calls take 50 ms to minutes. */
static const double latency_buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
#define N_BUCKETS (sizeof latency_buckets / sizeof latency_buckets[0])

static const char *const outcome_names[5] = {"ok", "error", "timeout", "rate_limited",
					     "cancelled"};

/* Queue-depth metrics of the inference servers ballast knows, first found
 * wins: vLLM, SGLang, Hugging Face TGI. */
static const char *const queue_metrics[] = {"vllm:num_requests_waiting", "sglang:num_queue_reqs",
					    "tgi_queue_size"};
#define N_QUEUE_METRICS (sizeof queue_metrics / sizeof queue_metrics[0])
#define SCRAPE_TIMEOUT_MAX_NS (INT64_C(2) * BL_NS_PER_S)

struct bl_pool_backend {
	char *name;
	char *url;
	char *budget;                /* linked budget name, or NULL */
	char *metrics_url;           /* or NULL */
	uint32_t weight;
	struct bl_pool *pool;
	struct bl_breaker *breaker;
	size_t idx;                  /* balancer slot */
	uint32_t refs;               /* calls in flight (leases) */
	bool removed;                /* by a reload: freed with its last call */
	uint64_t outcomes[5];
	uint64_t hist[N_BUCKETS + 1];
	double latency_sum_s;
	uint64_t latency_count;
	struct bl_scraper *scraper;    /* metrics_url, or NULL */
	bool load_fresh;               /* the last scrape gave a queue depth */
	double load;                   /* ... this one */
	double gpu_cache_usage;        /* vllm:gpu_cache_usage_perc when reported, else -1 */
	char load_error[192];          /* why the load is unknown, "" when fresh */
	struct bl_pool_backend *next;  /* the pool's list, removed ones included */
};

struct bl_pool {
	char *name;
	struct bl_pools *ps;
	struct bl_balancer *bal;
	enum bl_balance_strategy strategy;
	struct bl_breaker_config bcfg;
	double max_ejected;
	int64_t metrics_interval_ns;
	struct bl_pool_backend *backends; /* config order, then removed ones */
	struct bl_pool_backend *by_idx[BL_POOL_BACKENDS_MAX];
	uint32_t refs;               /* calls in flight on any backend */
	bool retired;
	uint64_t picks;
	uint64_t no_backend;         /* picks that found nothing */
	uint64_t panic_picks;        /* picks made in panic (breakers bypassed) */
	uint64_t key_counter;        /* keys for consistent_hash without one */
	struct bl_pool *next;
};

struct bl_pools {
	uv_loop_t *loop;
	struct bl_dmem *dmem;
	struct bl_pool *list;
	uint64_t seed;
};

/* ---- configuration ---------------------------------------------------------- */

static void balancer_config_of(const struct bl_cfg_pool *cp, uint64_t seed, struct bl_dmem *dmem,
			       struct bl_balancer_config *bc)
{
	bl_balancer_config_default(bc);
	bc->strategy = bl_cfg_balance_strategy(cp->strategy);
	bc->seed = seed;
	bc->max_backends = BL_POOL_BACKENDS_MAX;
	bc->slow_start_ns = cp->slow_start_ns;
	bc->ewma_decay_ns = cp->ewma_decay_ns;
	bc->hook = dmem ? &dmem->hook : NULL;
}

static int check_pool(const struct bl_cfg_pool *cp, char *err, size_t errcap)
{
	struct bl_breaker_config bc;
	struct bl_balancer_config lc;
	char why[256];

	if (cp->n_backends > BL_POOL_BACKENDS_MAX) {
		snprintf(err, errcap, "pools.%s.backends: %zu backends; at most %d are accepted",
			 cp->name, cp->n_backends, BL_POOL_BACKENDS_MAX);
		return BL_EINVAL;
	}
	bl_cfg_breaker_config(&cp->breaker, &bc);
	if (bl_breaker_config_check(&bc, why, sizeof why) != 0) {
		snprintf(err, errcap, "pools.%s.breaker: %s", cp->name, why);
		return BL_EINVAL;
	}
	balancer_config_of(cp, 1, NULL, &lc);
	if (bl_balancer_config_check(&lc, why, sizeof why) != 0) {
		snprintf(err, errcap, "pools.%s: %s", cp->name, why);
		return BL_EINVAL;
	}
	for (size_t i = 0; i < cp->n_backends; i++) {
		if (cp->backends[i].metrics_url &&
		    bl_scrape_url_check(cp->backends[i].metrics_url, why, sizeof why) != 0) {
			snprintf(err, errcap, "pools.%s.backends[%zu].metrics_url: %s", cp->name, i,
				 why);
			return BL_EINVAL;
		}
		if (strlen(cp->backends[i].name) > BL_BALANCER_NAME_MAX) {
			snprintf(err, errcap, "pools.%s.backends[%zu].name: longer than %d bytes",
				 cp->name, i, BL_BALANCER_NAME_MAX);
			return BL_EINVAL;
		}
	}
	return 0;
}

int bl_pools_check(const struct bl_config *cfg, char *err, size_t errcap)
{
	for (size_t i = 0; i < cfg->n_pools; i++) {
		int rc = check_pool(&cfg->pools[i], err, errcap);

		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- lifetime --------------------------------------------------------------- */

static void backend_free(struct bl_pools *ps, struct bl_pool_backend *be)
{
	(void)ps;
	if (!be)
		return;
	bl_scraper_destroy(be->scraper);
	bl_breaker_destroy(be->breaker);
	free(be->name);
	free(be->url);
	free(be->budget);
	free(be->metrics_url);
	free(be);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Sets the backend's copy of its config; false on out of memory (unchanged). */
static bool backend_set_config(struct bl_pool_backend *be, const struct bl_cfg_backend *cb)
{
	char *url = strdup(cb->url), *budget = dup_or_null(cb->budget),
	     *murl = dup_or_null(cb->metrics_url);

	if (!url || (cb->budget && !budget) || (cb->metrics_url && !murl)) {
		free(url);
		free(budget);
		free(murl);
		return false;
	}
	free(be->url);
	free(be->budget);
	free(be->metrics_url);
	be->url = url;
	be->budget = budget;
	be->metrics_url = murl;
	be->weight = cb->weight;
	return true;
}

/* A backend's own load, from its metrics_url: a queue depth for the
 * balancer, or unknown ("stale": never zero) when the scrape or the
 * metric is missing. */
static void on_scrape(void *ctx, const struct bl_scrape_result *r)
{
	struct bl_pool_backend *be = ctx;
	double v = 0, gpu;
	size_t n = 0;
	char err[160] = "";
	bool found = false;

	if (r->ok) {
		for (size_t i = 0; i < N_QUEUE_METRICS && !found; i++)
			found = bl_scrape_sum(r, queue_metrics[i], NULL, 0, &v, &n, err,
					      sizeof err) == 0 &&
				n > 0;
		if (!found)
			snprintf(err, sizeof err,
				 "no queue metric (vllm:num_requests_waiting, sglang:num_queue_reqs, "
				 "tgi_queue_size) in the answer");
		if (bl_scrape_sum(r, "vllm:gpu_cache_usage_perc", NULL, 0, &gpu, &n, NULL, 0) == 0 &&
		    n > 0)
			be->gpu_cache_usage = gpu / (double)n;
	} else {
		snprintf(err, sizeof err, "%s", r->error);
	}
	if (found && v >= 0 && v <= BL_BALANCER_LOAD_MAX) {
		be->load = v;
		be->load_fresh = true;
		be->load_error[0] = '\0';
	} else {
		if (be->load_fresh || strcmp(be->load_error, err) != 0)
			bl_log(BL_LOG_WARN, "backend load unknown", "pool=%s backend=%s error=\"%s\"",
			       be->pool->name, be->name, err);
		be->load_fresh = false;
		snprintf(be->load_error, sizeof be->load_error, "%s", err[0] ? err : "unusable value");
	}
	if (!be->removed)
		bl_balancer_set_load(be->pool->bal, be->idx, be->load_fresh ? be->load : 0,
				     !be->load_fresh);
}

/* (Re)starts the scraper of a backend with a metrics_url. */
static int backend_scrape(struct bl_pools *ps, struct bl_pool_backend *be)
{
	int64_t interval = be->pool->metrics_interval_ns;
	int64_t timeout = interval < SCRAPE_TIMEOUT_MAX_NS ? interval : SCRAPE_TIMEOUT_MAX_NS;

	bl_scraper_destroy(be->scraper);
	be->scraper = NULL;
	be->load_fresh = false;
	be->gpu_cache_usage = -1;
	snprintf(be->load_error, sizeof be->load_error, "not scraped yet");
	if (!be->metrics_url)
		return 0;
	if (bl_scraper_create(ps->loop, be->metrics_url, interval, timeout, on_scrape, be,
			      &be->scraper) != 0)
		return -1;
	/* The answer's body counts against limits.daemon_memory. */
	bl_scraper_set_memory(be->scraper, ps->dmem ? &ps->dmem->hook : NULL);
	return 0;
}

static struct bl_pool_backend *backend_new(struct bl_pools *ps, struct bl_pool *p,
					   const struct bl_cfg_backend *cb)
{
	struct bl_pool_backend *be = calloc(1, sizeof *be);

	if (!be || !(be->name = strdup(cb->name)) || !backend_set_config(be, cb) ||
	    bl_breaker_create(&p->bcfg, &ps->dmem->hook, &be->breaker) != 0) {
		backend_free(ps, be);
		return NULL;
	}
	be->pool = p;
	return be;
}

static void pool_free(struct bl_pools *ps, struct bl_pool *p)
{
	struct bl_pool_backend *be, *next;

	if (!p)
		return;
	for (be = p->backends; be; be = next) {
		next = be->next;
		backend_free(ps, be);
	}
	bl_balancer_destroy(p->bal);
	free(p->name);
	free(p);
}

/* Joins be to p's balancer and list (at the tail). */
static int backend_join(struct bl_pool *p, struct bl_pool_backend *be, bl_time_ns joined)
{
	struct bl_pool_backend **tail;
	int rc = bl_balancer_add(p->bal, be->name, be->weight, joined, &be->idx);

	if (rc != 0)
		return rc;
	p->by_idx[be->idx] = be;
	for (tail = &p->backends; *tail; tail = &(*tail)->next)
		;
	*tail = be;
	return 0;
}

static struct bl_pool *pool_new(struct bl_pools *ps, const struct bl_cfg_pool *cp, char *err,
				size_t errcap)
{
	struct bl_pool *p = calloc(1, sizeof *p);
	struct bl_balancer_config lc;

	if (check_pool(cp, err, errcap) != 0) {
		free(p);
		return NULL;
	}
	if (!p || !(p->name = strdup(cp->name)))
		goto oom;
	p->ps = ps;
	bl_cfg_breaker_config(&cp->breaker, &p->bcfg);
	p->max_ejected = cp->max_ejected;
	p->metrics_interval_ns = cp->metrics_interval_ns;
	balancer_config_of(cp, ps->seed ^ (uintptr_t)p, ps->dmem, &lc);
	p->strategy = lc.strategy;
	if (bl_balancer_create(&lc, &p->bal) != 0)
		goto oom;
	for (size_t i = 0; i < cp->n_backends; i++) {
		struct bl_pool_backend *be = backend_new(ps, p, &cp->backends[i]);

		/* A backend there from the start takes its full share at once. */
		if (!be || backend_join(p, be, BL_BALANCER_JOINED_LONG_AGO) != 0 ||
		    backend_scrape(ps, be) != 0) {
			backend_free(ps, be);
			goto oom;
		}
	}
	return p;
oom:
	pool_free(ps, p);
	snprintf(err, errcap, "out of memory creating pool '%s'", cp->name);
	return NULL;
}

int bl_pools_create(uv_loop_t *loop, const struct bl_config *cfg, struct bl_dmem *dmem,
		    struct bl_pools **out, char *err, size_t errcap)
{
	struct bl_pools *ps = calloc(1, sizeof *ps);
	struct bl_pool **tail;

	if (!ps) {
		snprintf(err, errcap, "out of memory");
		return BL_ENOMEM;
	}
	ps->loop = loop;
	ps->dmem = dmem;
	if (getrandom(&ps->seed, sizeof ps->seed, 0) != sizeof ps->seed)
		ps->seed = (uint64_t)bl_wall_ns();
	tail = &ps->list;
	for (size_t i = 0; i < cfg->n_pools; i++) {
		struct bl_pool *p = pool_new(ps, &cfg->pools[i], err, errcap);

		if (!p) {
			bl_pools_destroy(ps);
			return BL_EINVAL;
		}
		*tail = p;
		tail = &p->next;
	}
	*out = ps;
	return 0;
}

struct bl_pool *bl_pools_find(struct bl_pools *ps, const char *name, bool any)
{
	for (struct bl_pool *p = ps->list; p; p = p->next)
		if (strcmp(p->name, name) == 0 && (any || !p->retired))
			return p;
	return NULL;
}

struct bl_pool_backend *bl_pool_backend_find(struct bl_pool *p, const char *name)
{
	for (struct bl_pool_backend *be = p->backends; be; be = be->next)
		if (strcmp(be->name, name) == 0)
			return be;
	return NULL;
}

static struct bl_pool_backend *live_backend(struct bl_pool *p, const char *name)
{
	struct bl_pool_backend *be = bl_pool_backend_find(p, name);

	return be && !be->removed ? be : NULL;
}

const char *bl_pool_name(const struct bl_pool *p)
{
	return p->name;
}

const char *bl_pool_backend_name(const struct bl_pool_backend *be)
{
	return be->name;
}

const char *bl_pool_backend_url(const struct bl_pool_backend *be)
{
	return be->url;
}

const char *bl_pool_backend_budget(const struct bl_pool_backend *be)
{
	return be->budget;
}

struct bl_pool *bl_pool_backend_pool(struct bl_pool_backend *be)
{
	return be->pool;
}

/* Unlinks and frees a removed backend with no call left. */
static void backend_maybe_free(struct bl_pool_backend *be)
{
	struct bl_pool *p = be->pool;
	struct bl_pool_backend **pp;

	if (!be->removed || be->refs)
		return;
	for (pp = &p->backends; *pp && *pp != be; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = be->next;
	backend_free(p->ps, be);
}

/* Frees a retired pool with no call left. */
static void pool_maybe_free(struct bl_pool *p)
{
	struct bl_pools *ps = p->ps;
	struct bl_pool **pp;

	if (!p->retired || p->refs)
		return;
	for (pp = &ps->list; *pp && *pp != p; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = p->next;
	pool_free(ps, p);
}

/* Carries a breaker's state over to a new configuration. */
static int breaker_reconfigure(struct bl_pools *ps, struct bl_pool_backend *be,
			       const struct bl_breaker_config *bc, bl_time_ns now)
{
	struct bl_breaker *nb;
	struct bl_breaker_snapshot st;

	if (bl_breaker_create(bc, &ps->dmem->hook, &nb) != 0)
		return BL_ENOMEM;
	bl_breaker_state_get(be->breaker, &st);
	bl_breaker_state_set(nb, &st, now);
	bl_breaker_destroy(be->breaker);
	be->breaker = nb;
	return 0;
}

int bl_pools_apply(struct bl_pools *ps, const struct bl_config *cfg, char *err, size_t errcap)
{
	struct bl_pool *fresh = NULL, **ftail = &fresh, *p, *next;
	bl_time_ns now = bl_mono_now();

	/* What can fail first: new pools. */
	for (size_t i = 0; i < cfg->n_pools; i++) {
		if (bl_pools_find(ps, cfg->pools[i].name, true))
			continue;
		p = pool_new(ps, &cfg->pools[i], err, errcap);
		if (!p) {
			for (p = fresh; p; p = next) {
				next = p->next;
				pool_free(ps, p);
			}
			return BL_EINVAL;
		}
		*ftail = p;
		ftail = &p->next;
	}
	/* Kept pools: reconfigure in place. An allocation failing here leaves
	 * that backend as it was and says so: the reload itself has passed. */
	for (p = ps->list; p; p = p->next) {
		const struct bl_cfg_pool *cp = bl_config_pool(cfg, p->name);
		struct bl_balancer_config lc;
		struct bl_breaker_config bc;
		struct bl_pool_backend *be, *bnext;
		bool breaker_changed, interval_changed;

		if (!cp) {
			p->retired = true;
			continue;
		}
		p->retired = false;
		bl_cfg_breaker_config(&cp->breaker, &bc);
		breaker_changed = memcmp(&bc, &p->bcfg, sizeof bc) != 0;
		p->bcfg = bc;
		p->max_ejected = cp->max_ejected;
		interval_changed = p->metrics_interval_ns != cp->metrics_interval_ns;
		p->metrics_interval_ns = cp->metrics_interval_ns;
		balancer_config_of(cp, ps->seed, ps->dmem, &lc);
		if (bl_balancer_reconfigure(p->bal, &lc) == 0)
			p->strategy = lc.strategy;
		for (be = p->backends; be; be = be->next) {
			bool keep = false;

			for (size_t i = 0; i < cp->n_backends && !keep; i++)
				keep = !be->removed && strcmp(be->name, cp->backends[i].name) == 0;
			if (!keep && !be->removed) {
				bl_balancer_remove(p->bal, be->idx);
				p->by_idx[be->idx] = NULL;
				be->removed = true;
				bl_scraper_destroy(be->scraper);
				be->scraper = NULL;
			}
		}
		for (size_t i = 0; i < cp->n_backends; i++) {
			const struct bl_cfg_backend *cb = &cp->backends[i];

			be = live_backend(p, cb->name);
			if (be) {
				bool scrape_changed =
					interval_changed ||
					(cb->metrics_url == NULL) != (be->metrics_url == NULL) ||
					(cb->metrics_url && strcmp(cb->metrics_url, be->metrics_url) != 0);

				if (!backend_set_config(be, cb) ||
				    (scrape_changed && backend_scrape(ps, be) != 0) ||
				    (breaker_changed && breaker_reconfigure(ps, be, &bc, now) != 0) ||
				    bl_balancer_set_weight(p->bal, be->idx, cb->weight) != 0)
					bl_log(BL_LOG_WARN, "backend not reconfigured: out of memory",
					       "pool=%s backend=%s", p->name, be->name);
				continue;
			}
			be = backend_new(ps, p, cb);
			if (!be || backend_join(p, be, now) != 0 || backend_scrape(ps, be) != 0) {
				backend_free(ps, be);
				bl_log(BL_LOG_WARN, "backend not added: out of memory", "pool=%s backend=%s",
				       p->name, cb->name);
			}
		}
		/* Removed backends with nothing in flight go now. */
		for (be = p->backends; be; be = bnext) {
			bnext = be->next;
			backend_maybe_free(be);
		}
	}
	if (fresh) {
		struct bl_pool **tail = &ps->list;
		while (*tail)
			tail = &(*tail)->next;
		*tail = fresh;
	}
	return 0;
}

void bl_pools_collect(struct bl_pools *ps)
{
	struct bl_pool *p, *next;

	for (p = ps->list; p; p = next) {
		next = p->next;
		pool_maybe_free(p);
	}
}

bool bl_pool_retired(const struct bl_pool *p)
{
	return p->retired;
}

void bl_pools_shutdown(struct bl_pools *ps)
{
	/* The scrapers' timers and sockets are the only handles: close them so
	 * the loop can end. */
	for (struct bl_pool *p = ps ? ps->list : NULL; p; p = p->next)
		for (struct bl_pool_backend *be = p->backends; be; be = be->next) {
			bl_scraper_destroy(be->scraper);
			be->scraper = NULL;
		}
}

void bl_pools_destroy(struct bl_pools *ps)
{
	struct bl_pool *p, *next;

	if (!ps)
		return;
	for (p = ps->list; p; p = next) {
		next = p->next;
		pool_free(ps, p);
	}
	free(ps);
}

/* ---- picking ----------------------------------------------------------------- */

struct pick_ctx {
	struct bl_pool *p;
	bl_time_ns now;
	bool panic;
	uint64_t excluded[BL_POOL_BACKENDS_MAX / 64];
};

static bool eligible(void *ctx, size_t idx)
{
	struct pick_ctx *pc = ctx;
	struct bl_pool_backend *be = idx < BL_POOL_BACKENDS_MAX ? pc->p->by_idx[idx] : NULL;

	if (!be || (pc->excluded[idx / 64] >> (idx % 64) & 1))
		return false;
	if (pc->panic)
		return bl_breaker_state(be->breaker, pc->now) != BL_BREAKER_FORCED_OPEN;
	return bl_breaker_would_allow(be->breaker, pc->now);
}

/* Panic: more of the pool's backends are open (tripped) than max_ejected
 * allows. Operator-forced ones are left out of the count and never routed to. */
static bool in_panic(struct bl_pool *p, bl_time_ns now)
{
	size_t n = 0, open = 0;

	for (struct bl_pool_backend *be = p->backends; be; be = be->next) {
		enum bl_breaker_state s;

		if (be->removed)
			continue;
		s = bl_breaker_state(be->breaker, now);
		if (s == BL_BREAKER_FORCED_OPEN)
			continue;
		n++;
		open += s == BL_BREAKER_OPEN;
	}
	return bl_breaker_panic(n, open, p->max_ejected);
}

int bl_pool_pick(struct bl_pool *p, const char *key, size_t key_len, bl_time_ns now,
		 bl_pool_admit_fn admit, void *admit_ctx, struct bl_pool_choice *out,
		 struct bl_pool_refusal *why)
{
	struct pick_ctx pc = {.p = p, .now = now};
	uint64_t hkey;

	*why = (struct bl_pool_refusal){0, 0, -1};
	if (p->retired)
		return BL_ENOENT;
	hkey = key ? bl_balancer_hash(key, key_len)
		   : bl_balancer_hash(&(uint64_t){p->key_counter++}, sizeof(uint64_t));
	pc.panic = in_panic(p, now);
	for (size_t tries = 0; tries <= BL_POOL_BACKENDS_MAX; tries++) {
		struct bl_pool_backend *be;
		size_t idx;

		if (bl_balancer_pick(p->bal, hkey, now, eligible, &pc, &idx) != 0)
			break;
		be = p->by_idx[idx];
		if (admit && !admit(admit_ctx, be)) {
			why->admit_refused++;
			pc.excluded[idx / 64] |= UINT64_C(1) << (idx % 64);
			continue;
		}
		out->backend = be;
		out->permit = (struct bl_breaker_permit){0, false};
		/* In panic a call may go to a backend whose breaker refuses: it
		 * carries an empty permit, so its outcome cannot count as a probe. */
		if (bl_breaker_would_allow(be->breaker, now))
			bl_breaker_allow(be->breaker, now, &out->permit);
		else
			p->panic_picks++;
		bl_balancer_on_start(p->bal, idx);
		be->refs++;
		p->refs++;
		p->picks++;
		return 0;
	}
	p->no_backend++;
	for (struct bl_pool_backend *be = p->backends; be; be = be->next) {
		int64_t r;

		if (be->removed || bl_breaker_would_allow(be->breaker, now))
			continue;
		why->breaker_refused++;
		r = bl_breaker_retry_after_ns(be->breaker, now);
		if (r > 0 && (why->retry_after_ns < 0 || r < why->retry_after_ns))
			why->retry_after_ns = r;
	}
	return BL_EAGAIN;
}

void bl_pool_finish(const struct bl_pool_choice *c, enum bl_pool_outcome outcome,
		    int64_t latency_ns, bl_time_ns now)
{
	struct bl_pool_backend *be = c->backend;
	struct bl_pool *p = be->pool;
	enum bl_breaker_state before = bl_breaker_state(be->breaker, now);
	bool failed = outcome == BL_POOL_ERROR || outcome == BL_POOL_TIMEOUT;

	if (latency_ns < 0)
		latency_ns = 0;
	bl_breaker_record(be->breaker, &c->permit, (enum bl_breaker_outcome)outcome, latency_ns,
			  now);
	if (outcome == BL_POOL_CANCELLED) {
		bl_balancer_on_cancel(p->bal, be->idx);
	} else {
		double s = (double)latency_ns / 1e9;
		size_t b = 0;

		bl_balancer_on_finish(p->bal, be->idx, latency_ns, failed, now);
		while (b < N_BUCKETS && s > latency_buckets[b])
			b++;
		be->hist[b]++;
		be->latency_sum_s += s;
		be->latency_count++;
	}
	be->outcomes[outcome]++;
	/* Back from half_open: the balancer ramps it up again (slow start). */
	if (!be->removed && before == BL_BREAKER_HALF_OPEN &&
	    bl_breaker_state(be->breaker, now) == BL_BREAKER_CLOSED) {
		bl_balancer_rejoin(p->bal, be->idx, now);
		bl_log(BL_LOG_INFO, "backend recovered", "pool=%s backend=%s", p->name, be->name);
	} else if (before != BL_BREAKER_OPEN &&
		   bl_breaker_state(be->breaker, now) == BL_BREAKER_OPEN) {
		struct bl_breaker_stats st;

		bl_breaker_stats(be->breaker, now, &st);
		bl_log(BL_LOG_WARN, "backend ejected", "pool=%s backend=%s reason=%s open_ms=%lld",
		       p->name, be->name, bl_breaker_trip_name(st.last_trip),
		       (long long)(st.open_period_ns / BL_NS_PER_MS));
	}
	be->refs--;
	p->refs--;
	backend_maybe_free(be);
	pool_maybe_free(p);
}

void bl_pool_restore_call(struct bl_pool_choice *c)
{
	struct bl_pool_backend *be = c->backend;

	bl_balancer_on_start(be->pool->bal, be->idx);
	be->refs++;
	be->pool->refs++;
}

/* ---- views -------------------------------------------------------------------- */

static json_t *backend_json(struct bl_pool_backend *be, bl_time_ns now)
{
	struct bl_breaker_stats bs;
	struct bl_balancer_backend_stats ls;
	json_t *outcomes = json_object();
	bool have_ls = !be->removed &&
		       bl_balancer_backend_stats(be->pool->bal, be->idx, now, &ls) == 0;
	json_t *j;

	bl_breaker_stats(be->breaker, now, &bs);
	for (int k = 0; k < 5; k++)
		json_object_set_new(outcomes, outcome_names[k], json_integer((json_int_t)be->outcomes[k]));
	j = json_pack(
		"{s:s,s:s,s:o,s:I,s:f,s:s,s:s,s:I,s:o,s:f,s:o,s:o,s:I,s:{s:I,s:I,s:I,s:f,s:f,s:i},"
		"s:o,s:b}",
		"name", be->name, "url", be->url, "budget",
		be->budget ? json_string(be->budget) : json_null(), "weight", (json_int_t)be->weight,
		"effective_weight", have_ls ? ls.effective_weight : 0.0, "state",
		bl_breaker_state_name(bs.state), "last_trip", bl_breaker_trip_name(bs.last_trip),
		"in_flight", (json_int_t)be->refs, "latency_ewma_ms",
		have_ls && ls.latency_sampled ? json_real(ls.latency_now_ns / 1e6) : json_null(),
		"error_rate", have_ls ? ls.error_rate : 0.0, "external_load",
		have_ls && ls.external_load_fresh ? json_real(ls.external_load) : json_null(),
		"retry_after_ms",
		bs.retry_after_ns > 0 ? json_integer((json_int_t)((bs.retry_after_ns + 999999) /
								   1000000))
				      : json_null(),
		"trips", (json_int_t)bs.trips, "window", "calls", (json_int_t)bs.window_calls,
		"failures", (json_int_t)bs.window_failures, "slow", (json_int_t)bs.window_slow,
		"failure_rate", bs.failure_rate, "slow_rate", bs.slow_rate, "consecutive_failures",
		(int)bs.consecutive_failures, "outcomes", outcomes, "removed", be->removed);
	if (j && be->metrics_url) {
		struct bl_scraper_stats ss = {0};

		if (be->scraper)
			bl_scraper_stats(be->scraper, &ss);
		json_object_set_new(
			j, "scrape",
			json_pack("{s:s,s:b,s:o,s:o,s:I,s:I}", "url", be->metrics_url, "fresh",
				  be->load_fresh,
				  "error", be->load_error[0] ? json_string(be->load_error) : json_null(),
				  "gpu_cache_usage",
				  be->gpu_cache_usage >= 0 ? json_real(be->gpu_cache_usage) : json_null(),
				  "successes", (json_int_t)ss.successes, "failures",
				  (json_int_t)ss.failures));
	}
	return j;
}

static json_t *pool_json(struct bl_pool *p, bl_time_ns now)
{
	json_t *backends = json_array();
	size_t open = 0, n = 0;

	for (struct bl_pool_backend *be = p->backends; be; be = be->next) {
		json_array_append_new(backends, backend_json(be, now));
		if (!be->removed) {
			n++;
			open += bl_breaker_is_ejected(be->breaker, now);
		}
	}
	return json_pack("{s:s,s:s,s:f,s:b,s:I,s:I,s:I,s:I,s:I,s:b,s:o}", "name", p->name,
			 "strategy", bl_balance_strategy_name(p->strategy), "max_ejected",
			 p->max_ejected, "panic", in_panic(p, now), "backends_total", (json_int_t)n,
			 "ejected", (json_int_t)open, "picks", (json_int_t)p->picks, "no_backend",
			 (json_int_t)p->no_backend, "panic_picks", (json_int_t)p->panic_picks,
			 "retired", p->retired, "backends", backends);
}

json_t *bl_pools_json(struct bl_pools *ps)
{
	json_t *o = json_object();
	bl_time_ns now = bl_mono_now();

	for (struct bl_pool *p = ps->list; p; p = p->next)
		json_object_set_new(o, p->name, pool_json(p, now));
	return o;
}

void bl_pools_list(struct bl_pools *ps, struct bl_http_req *req)
{
	bl_http_respond_json(req, 200, json_pack("{s:o}", "pools", bl_pools_json(ps)), NULL);
}

static void respond_unknown_pool(struct bl_http_req *req, const char *name)
{
	bl_http_respond_error(req, 404, "unknown_pool",
			      "no pool '%.128s' is configured (GET /v1/pools lists them)", name);
}

void bl_pools_get(struct bl_pools *ps, struct bl_http_req *req, const char *name)
{
	struct bl_pool *p = bl_pools_find(ps, name, true);

	if (!p) {
		respond_unknown_pool(req, name);
		return;
	}
	bl_http_respond_json(req, 200, pool_json(p, bl_mono_now()), NULL);
}

void bl_pools_set_backend(struct bl_pools *ps, struct bl_http_req *req, const char *pool,
			  const char *backend)
{
	static const char *const allowed[] = {"state", NULL};
	struct bl_json_error e = {0};
	struct bl_json_fields fields;
	const char *state = NULL;
	struct bl_pool *p = bl_pools_find(ps, pool, false);
	struct bl_pool_backend *be;
	enum bl_breaker_state s, before;
	bl_time_ns now = bl_mono_now();

	if (bl_api_body(req, false, allowed, &fields) != 0)
		return;
	if (bl_json_get_string(&fields, "state", 16, &state, &e) != 0) {
		if (!state)
			bl_http_respond_error(req, 400, "invalid_field",
					      "field 'state' is required: forced_open, disabled or "
					      "closed");
		else
			bl_api_bad_request(req, &e);
		goto out;
	}
	if (bl_breaker_state_parse(state, strlen(state), &s) != 0 ||
	    (s != BL_BREAKER_FORCED_OPEN && s != BL_BREAKER_DISABLED && s != BL_BREAKER_CLOSED)) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "field 'state': '%.16s' is not one of forced_open (send "
				      "nothing), disabled (send regardless of failures), closed "
				      "(back to normal, window reset)",
				      state);
		goto out;
	}
	if (!p) {
		respond_unknown_pool(req, pool);
		goto out;
	}
	be = live_backend(p, backend);
	if (!be) {
		bl_http_respond_error(req, 404, "unknown_backend",
				      "pool '%s' has no backend '%.128s' (GET /v1/pools/%s lists them)",
				      p->name, backend, p->name);
		goto out;
	}
	before = bl_breaker_state(be->breaker, now);
	bl_breaker_force(be->breaker, s);
	if (s == BL_BREAKER_CLOSED && before != BL_BREAKER_CLOSED)
		bl_balancer_rejoin(p->bal, be->idx, now);
	bl_log(BL_LOG_WARN, "backend state set by an operator", "pool=%s backend=%s from=%s to=%s",
	       p->name, be->name, bl_breaker_state_name(before), bl_breaker_state_name(s));
	bl_http_respond_json(req, 200, backend_json(be, now), NULL);
out:
	bl_json_fields_cleanup(&fields);
}

/* ---- metrics ------------------------------------------------------------------ */

void bl_pools_write_metrics(struct bl_pools *ps, struct bl_text *t)
{
	bl_time_ns now = bl_mono_now();
	struct bl_pool *p;
	struct bl_pool_backend *be;

	if (!ps->list)
		return;
#define FAMILY(name, type, help) bl_text_printf(t, "# HELP " name " " help "\n# TYPE " name " " type "\n")
#define EACH for (p = ps->list; p; p = p->next) for (be = p->backends; be; be = be->next) if (!be->removed)
	FAMILY("ballast_backend_state", "gauge",
	       "Breaker state: 0 closed, 1 open, 2 half_open, 3 forced_open, 4 disabled.");
	EACH bl_text_printf(t, "ballast_backend_state{pool=\"%s\",backend=\"%s\"} %d\n", p->name,
			    be->name, (int)bl_breaker_state(be->breaker, now));
	FAMILY("ballast_backend_trips_total", "counter", "Times the breaker opened.");
	EACH {
		struct bl_breaker_stats st;

		bl_breaker_stats(be->breaker, now, &st);
		bl_text_printf(t, "ballast_backend_trips_total{pool=\"%s\",backend=\"%s\"} %llu\n",
			       p->name, be->name, (unsigned long long)st.trips);
	}
	FAMILY("ballast_backend_in_flight", "gauge", "Calls sent and not yet released.");
	EACH bl_text_printf(t, "ballast_backend_in_flight{pool=\"%s\",backend=\"%s\"} %u\n", p->name,
			    be->name, be->refs);
	FAMILY("ballast_backend_calls_total", "counter", "Released calls, by outcome.");
	EACH for (int k = 0; k < 5; k++)
		bl_text_printf(t,
			       "ballast_backend_calls_total{pool=\"%s\",backend=\"%s\",outcome=\"%s\"} "
			       "%llu\n",
			       p->name, be->name, outcome_names[k],
			       (unsigned long long)be->outcomes[k]);
	FAMILY("ballast_backend_latency_ewma_seconds", "gauge",
	       "Peak EWMA of call latency, decayed to now.");
	EACH {
		struct bl_balancer_backend_stats ls;

		if (bl_balancer_backend_stats(p->bal, be->idx, now, &ls) == 0 && ls.latency_sampled)
			bl_text_printf(t,
				       "ballast_backend_latency_ewma_seconds{pool=\"%s\",backend=\"%s\"} "
				       "%.6f\n",
				       p->name, be->name, ls.latency_now_ns / 1e9);
	}
	FAMILY("ballast_backend_latency_seconds", "histogram",
	       "Call latency from acquire to release (or as reported).");
	EACH {
		uint64_t cum = 0;

		for (size_t b = 0; b < N_BUCKETS; b++) {
			cum += be->hist[b];
			bl_text_printf(t,
				       "ballast_backend_latency_seconds_bucket{pool=\"%s\",backend=\"%s\","
				       "le=\"%g\"} %llu\n",
				       p->name, be->name, latency_buckets[b], (unsigned long long)cum);
		}
		cum += be->hist[N_BUCKETS];
		bl_text_printf(t,
			       "ballast_backend_latency_seconds_bucket{pool=\"%s\",backend=\"%s\","
			       "le=\"+Inf\"} %llu\n"
			       "ballast_backend_latency_seconds_sum{pool=\"%s\",backend=\"%s\"} %.6f\n"
			       "ballast_backend_latency_seconds_count{pool=\"%s\",backend=\"%s\"} %llu\n",
			       p->name, be->name, (unsigned long long)cum, p->name, be->name,
			       be->latency_sum_s, p->name, be->name,
			       (unsigned long long)be->latency_count);
	}
	FAMILY("ballast_backend_external_load", "gauge",
	       "Queue depth the backend reports at its metrics_url (absent while unknown).");
	EACH if (be->metrics_url && be->load_fresh)
		bl_text_printf(t, "ballast_backend_external_load{pool=\"%s\",backend=\"%s\"} %g\n",
			       p->name, be->name, be->load);
	FAMILY("ballast_backend_scrape_failures_total", "counter",
	       "Scrapes of metrics_url that failed.");
	EACH if (be->scraper) {
		struct bl_scraper_stats ss;

		bl_scraper_stats(be->scraper, &ss);
		bl_text_printf(t,
			       "ballast_backend_scrape_failures_total{pool=\"%s\",backend=\"%s\"} "
			       "%llu\n",
			       p->name, be->name, (unsigned long long)ss.failures);
	}
	FAMILY("ballast_pool_no_backend_total", "counter", "Acquires that found no backend.");
	for (p = ps->list; p; p = p->next)
		bl_text_printf(t, "ballast_pool_no_backend_total{pool=\"%s\"} %llu\n", p->name,
			       (unsigned long long)p->no_backend);
	FAMILY("ballast_pool_panic", "gauge",
	       "1 while more backends are ejected than max_ejected allows (routing to all).");
	for (p = ps->list; p; p = p->next)
		bl_text_printf(t, "ballast_pool_panic{pool=\"%s\"} %d\n", p->name,
			       in_panic(p, now) ? 1 : 0);
#undef EACH
#undef FAMILY
}

/* ---- snapshot ----------------------------------------------------------------- */

json_t *bl_pools_save(void *ctx)
{
	struct bl_pools *ps = ctx;
	bl_time_ns now = bl_mono_now();
	int64_t offset = bl_wall_ns() - now;
	json_t *pools = json_object();

	for (struct bl_pool *p = ps->list; p; p = p->next) {
		json_t *bes = json_object();

		for (struct bl_pool_backend *be = p->backends; be; be = be->next) {
			struct bl_breaker_snapshot st;

			if (be->removed)
				continue;
			bl_breaker_state_get(be->breaker, &st);
			json_object_set_new(
				bes, be->name,
				json_pack("{s:s,s:s,s:I,s:i,s:I,s:[I,I,I,I,I,I],s:[I,I,I,I,I]}", "state",
					  bl_breaker_state_name(st.state), "last_trip",
					  bl_breaker_trip_name(st.last_trip), "open_until_wall_ns",
					  (json_int_t)(st.open_until_ns ? st.open_until_ns + offset : 0),
					  "backoff_level", (int)st.backoff_level, "generation",
					  (json_int_t)st.generation, "counters", (json_int_t)st.trips,
					  (json_int_t)st.calls, (json_int_t)st.failures,
					  (json_int_t)st.slow, (json_int_t)st.rejected,
					  (json_int_t)st.ignored, "outcomes",
					  (json_int_t)be->outcomes[0], (json_int_t)be->outcomes[1],
					  (json_int_t)be->outcomes[2], (json_int_t)be->outcomes[3],
					  (json_int_t)be->outcomes[4]));
		}
		json_object_set_new(pools, p->name, bes);
	}
	return json_pack("{s:o}", "pools", pools);
}

static int breaker_state_from_json(json_t *j, int64_t offset, struct bl_breaker_snapshot *st,
				   uint64_t outcomes[5])
{
	const char *state, *trip;
	json_int_t until, level, gen, c[6], o[5];

	memset(st, 0, sizeof *st);
	if (json_unpack(j, "{s:s,s:s,s:I,s:I,s:I,s:[IIIIII],s:[IIIII]}", "state", &state,
			"last_trip", &trip, "open_until_wall_ns", &until, "backoff_level", &level,
			"generation", &gen, "counters", &c[0], &c[1], &c[2], &c[3], &c[4], &c[5],
			"outcomes", &o[0], &o[1], &o[2], &o[3], &o[4]) != 0 ||
	    bl_breaker_state_parse(state, strlen(state), &st->state) != 0 || level < 0 ||
	    level > BL_BREAKER_BACKOFF_LEVEL_MAX || gen < 0)
		return -1;
	st->last_trip = BL_BREAKER_TRIP_NONE;
	for (int t = 0; t < BL_BREAKER_TRIP_COUNT; t++)
		if (strcmp(trip, bl_breaker_trip_name((enum bl_breaker_trip)t)) == 0)
			st->last_trip = (enum bl_breaker_trip)t;
	st->open_until_ns = until ? (until - offset > 0 ? until - offset : 1) : 0;
	st->backoff_level = (uint32_t)level;
	st->generation = (uint64_t)gen;
	for (int k = 0; k < 6; k++)
		if (c[k] < 0)
			return -1;
	st->trips = (uint64_t)c[0];
	st->calls = (uint64_t)c[1];
	st->failures = (uint64_t)c[2];
	st->slow = (uint64_t)c[3];
	st->rejected = (uint64_t)c[4];
	st->ignored = (uint64_t)c[5];
	for (int k = 0; k < 5; k++)
		outcomes[k] = o[k] > 0 ? (uint64_t)o[k] : 0;
	return 0;
}

int bl_pools_restore(void *ctx, json_t *state, char *err, size_t errcap)
{
	struct bl_pools *ps = ctx;
	bl_time_ns now = bl_mono_now();
	int64_t offset = bl_wall_ns() - now;
	json_t *pools = json_object_get(state, "pools"), *bes, *bj;
	const char *pname, *bname;

	if (!json_is_object(pools)) {
		snprintf(err, errcap, "expected {pools:{}}");
		return BL_ECORRUPT;
	}
	json_object_foreach(pools, pname, bes) {
		if (!json_is_object(bes)) {
			snprintf(err, errcap, "pool '%.64s': malformed", pname);
			return BL_ECORRUPT;
		}
		json_object_foreach(bes, bname, bj) {
			struct bl_breaker_snapshot st;
			uint64_t o[5];

			if (breaker_state_from_json(bj, offset, &st, o) != 0) {
				snprintf(err, errcap, "pool '%.64s' backend '%.64s': malformed breaker",
					 pname, bname);
				return BL_ECORRUPT;
			}
		}
	}
	json_object_foreach(pools, pname, bes) {
		struct bl_pool *p = bl_pools_find(ps, pname, false);

		if (!p)
			continue;
		json_object_foreach(bes, bname, bj) {
			struct bl_pool_backend *be = live_backend(p, bname);
			struct bl_breaker_snapshot st;
			uint64_t o[5];

			if (!be)
				continue;
			breaker_state_from_json(bj, offset, &st, o);
			if (bl_breaker_state_set(be->breaker, &st, now) != 0) {
				bl_log(BL_LOG_WARN, "snapshot breaker state refused", "pool=%s backend=%s",
				       pname, bname);
				continue;
			}
			memcpy(be->outcomes, o, sizeof o);
		}
	}
	return 0;
}
