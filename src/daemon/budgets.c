/* Rate budgets and memory reservations in the daemon. See budgets.h,
 * docs/internals/budgets-daemon.md and docs/internals/memory-budgets.md.
 *
 * Every acquire goes through the budget's waiting queue, even one that will
 * not wait: it is pushed, the queue is pumped (admitting from its head while
 * the core budget admits), and if it is still queued it either waits for its
 * wait_ms or is taken out again and answered 429. One path for everyone keeps
 * arrivals from jumping ahead of waiters and keeps priorities and tenant
 * fairness exact.
 */
#include "budgets.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ballast/budget.h"
#include "ballast/error.h"
#include "ballast/lease.h"
#include "ballast/membudget.h"
#include "ballast/planner.h"
#include "ballast/ratelimit_headers.h"
#include "ballast/slab.h"
#include "ballast/units.h"
#include "ballast/waitq.h"
#include "cfgmap.h"
#include "clock.h"
#include "daemon.h"
#include "dmem.h"
#include "jsonreq.h"
#include "log.h"
#include "pools.h"

#define MAX_LEASES 1000000       /* live leases across all budgets */
#define MAX_WAIT_MS 60000        /* longest wait_ms accepted */
#define MAX_TTL_MS (INT64_C(24) * 3600 * 1000)
#define MAX_UNITS (UINT64_C(1) << 40) /* most units one request may name */
#define TENANT_SLOTS 4096        /* distinct tenants waiting at once, per budget */
#define DEFAULT_TENANT "default"
#define MAX_PROVIDER_HEADERS 64
#define CONCURRENCY_RETRY_MS 100 /* retry hint when only a release can help */
#define KEY_MAX 256              /* bytes of a consistent_hash key */
#define WORKER_ID_MAX 63         /* bytes of a worker id on acquire */
#define DEFAULT_POOL_TTL_MS 120000 /* lease TTL of a pool acquire without a budget */

struct budget_rt;

enum waiter_kind {
	W_RATE,   /* in budget->q; picks a backend of `pool` (if any) when admitted */
	W_MEMORY, /* in bs->mem->q */
	W_POOL,   /* pool only, no shared budget: retries on its timer until wait_ms */
};

/* A request in a budget's waiting queue or the memory budget's (one
 * mechanism for both), or a pool acquire retrying. */
struct waiter {
	struct bl_waitq_node node;   /* in budget->q, or bs->mem->q */
	struct bl_budgets *bs;       /* owner of the slab it came from */
	enum waiter_kind kind;
	struct budget_rt *budget;    /* W_RATE: the shared budget */
	struct bl_pool *pool;        /* the pool to pick a backend from, or NULL */
	char key[KEY_MAX + 1];       /* consistent_hash key (has_key) */
	size_t key_len;
	bool has_key;
	bool named[BL_DIM_COUNT];    /* dimensions the request named */
	char worker[WORKER_ID_MAX + 1]; /* the worker that asked ("worker"), or "" */
	struct waiter *pool_prev;    /* W_POOL with a timer: in bs->pool_waiters */
	struct waiter *pool_next;
	bool pool_linked;
	uint64_t mem_bytes;          /* memory: bytes asked for */
	enum bl_mem_priority mem_prio; /* memory: its priority */
	struct bl_http_req *req;     /* answered when admitted, timed out or cancelled */
	struct bl_amounts want;      /* what it asks for */
	uint64_t start_ns;           /* monotonic, when it arrived */
	int64_t wait_ms;             /* how long it may wait */
	uv_timer_t deadline;         /* running when it waits */
	bool has_timer;              /* deadline was initialised (free on its close) */
	bool answered;               /* pump() answered it (200, or 400/503) */
	int64_t ttl_ms;              /* lease TTL */
	char tenant[BL_WAITQ_TENANT_NAME_MAX + 1];
};

/* A granted lease: units of a rate budget and/or a call to a pool's
 * backend (charged to the backend's own budget if it has one), or bytes of
 * the memory budget. Every kind shares the table, ids, release and TTL
 * reclaim. */
struct lease_rt {
	struct bl_lease_node node;   /* id and expiry */
	bool memory;                 /* a memory reservation: mem_bytes, mem_prio */
	struct budget_rt *budget;    /* the shared budget acquire named, or NULL */
	struct budget_rt *be_budget; /* the backend's own budget, or NULL */
	uint64_t be_ticket;
	bool has_backend;            /* choice is a call to a pool backend */
	struct bl_pool_choice choice;
	char worker[WORKER_ID_MAX + 1]; /* the worker holding it ("worker" on acquire), or "" */
	uint64_t mem_bytes;          /* memory: bytes reserved */
	enum bl_mem_priority mem_prio; /* memory: its priority */
	uint64_t ticket;             /* from the core, for release */
	struct bl_amounts reserved;  /* what acquire took (normalized) */
	bl_time_ns acquired_ns;      /* monotonic */
	char tenant[BL_WAITQ_TENANT_NAME_MAX + 1];
};

struct budget_rt {
	char *name;
	struct bl_budgets *bs;
	struct bl_budget b;          /* the core policy */
	struct bl_budget_limits limits;
	struct bl_waitq q;
	struct bl_waitq_tenants *tenants;
	uv_timer_t wake;             /* fires when the queue's head may conform */
	bl_time_ns wake_at_ns;       /* armed for this time; 0 = not armed */
	int64_t lease_ttl_ns;
	uint32_t max_queue;          /* waiters allowed; the queue holds one more: the arrival being tried */
	uint32_t leases;             /* live leases of this budget */
	uint64_t capacity[BL_DIM_COUNT]; /* most units one request may take, per dimension */
	struct bl_budget_decision head;  /* why the queue's head waits (valid if head_ns) */
	bl_time_ns head_ns;              /* when head was decided; 0 = queue not blocked */
	bool retired;                /* removed from the config: admits nothing */
	bool closing;                /* wake timer closing: freed in its callback */
	uint64_t granted;            /* acquires answered 200 */
	uint64_t granted_after_wait; /* ... of which had to wait */
	uint64_t denied;             /* acquires answered 429 rate_limited */
	uint64_t queue_full;         /* acquires answered 429 queue_full */
	uint64_t wait_timeouts;      /* waiters whose wait_ms ran out */
	uint64_t cancelled;          /* waiters whose client went away */
	uint64_t headers_malformed;  /* provider header values ignored */
	bl_time_ns last_decrease_ns; /* when a provider 429 last slowed the budget; 0 = never */
	uint64_t outcomes[5];        /* releases by outcome */
	struct budget_rt *next;
};

/* The memory budget: reservations and their waiting queue. */
struct mem_rt {
	struct bl_membudget b;       /* the core policy */
	struct bl_waitq q;           /* waiting reservations */
	struct bl_waitq_tenants *tenants;
	const char *capacity_source; /* "config", "cgroup memory.max", "MemTotal" */
	int64_t lease_ttl_ns;
	uint32_t max_queue;
	uint32_t leases;             /* live reservation leases */
	bool retired;                /* the section was removed: admits nothing */
	uint64_t granted;
	uint64_t granted_after_wait;
	uint64_t denied;             /* answered 429 insufficient_memory */
	uint64_t resized;            /* reservations grown or shrunk in place */
	uint64_t queue_full;
	uint64_t wait_timeouts;
	uint64_t cancelled;
	uint64_t released;
	uint64_t expired;            /* reclaimed on TTL */
};

struct bl_budgets {
	uv_loop_t *loop;
	struct bl_dmem *dmem;        /* ballast's own memory account */
	struct bl_pools *pools;      /* backend pools (pools.c) */
	struct waiter *pool_waiters; /* pool acquires waiting on their retry timer, oldest first */
	struct waiter *pool_waiters_tail;
	void *snap_spare;            /* lease records of the last snapshot, for reuse */
	size_t snap_spare_cap;       /* ... how many it holds */
	struct mem_rt *mem;          /* NULL when memory: was never configured */
	struct budget_rt *list;      /* in config order; retired ones at the end */
	struct bl_lease_table *leases;
	struct bl_slab *lease_pool;  /* struct lease_rt objects: no malloc per grant */
	struct bl_slab *waiter_pool; /* struct waiter objects: no malloc per acquire */
	uv_timer_t expiry;           /* fires at the first lease expiry */
	bl_time_ns expiry_at_ns;
	uint64_t rng;                /* lease id generator state */
	bool shutting_down;
	bool clean;                  /* the next snapshot is the clean-stop one */
	uint64_t leases_restored;
	uint64_t leases_dropped;     /* restored leases whose budget is gone */
};

static const char *const outcome_names[5] = {"ok", "error", "timeout", "rate_limited", "cancelled"};
enum { OUT_OK, OUT_ERROR, OUT_TIMEOUT, OUT_RATE_LIMITED, OUT_CANCELLED };

static void pump(struct budget_rt *br);
static void mem_pump(struct bl_budgets *bs);
static void mem_on_deadline(struct waiter *w);
static void mem_on_abort(struct waiter *w);
static void pool_retry(struct waiter *w);
static void on_deadline(uv_timer_t *t);
static void on_waiter_abort(struct bl_http_req *req);
static void respond_overloaded(struct bl_budgets *bs, struct bl_http_req *req);
static void waiter_free(struct waiter *w);
static int lease_insert(struct bl_budgets *bs, struct lease_rt *l);
static void lease_free(struct bl_budgets *bs, struct lease_rt *l);
static void arm_expiry(struct bl_budgets *bs);

/* ---- time ---------------------------------------------------------------- */

/* Monotonic to wall clock and back, for snapshots: 0 stays 0 ("never"). */
static int64_t to_wall(bl_time_ns t, int64_t offset)
{
	return t ? t + offset : 0;
}

static bl_time_ns from_wall(int64_t w, int64_t offset)
{
	bl_time_ns t;

	if (!w)
		return 0;
	t = w - offset;
	return t > 0 ? t : 1;
}

static int64_t mono_to_wall_ms(bl_time_ns t)
{
	return (t - bl_mono_now() + bl_wall_ns()) / BL_NS_PER_MS;
}

static int64_t ceil_ms(int64_t ns)
{
	return ns <= 0 ? 0 : (ns + BL_NS_PER_MS - 1) / BL_NS_PER_MS;
}

/* ---- ids ------------------------------------------------------------------- */

static uint64_t next_id(struct bl_budgets *bs)
{
	/* xorshift64*, seeded from getrandom: ids are unique and hard to guess. */
	uint64_t x = bs->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	bs->rng = x;
	return x * UINT64_C(2685821657736338717);
}

static void format_id(uint64_t id, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, id);
}

static bool parse_id(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (strlen(s) != 16)
		return false;
	for (int i = 0; i < 16; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return v != 0;
}

/* ---- config -------------------------------------------------------------- */

static int tenants_from_config(struct bl_waitq_tenants *tbl, const struct bl_cfg_budget *cb)
{
	struct bl_waitq_tenant_config tc[256];
	size_t n = cb->n_tenants < 256 ? cb->n_tenants : 256;

	for (size_t i = 0; i < n; i++)
		tc[i] = (struct bl_waitq_tenant_config){cb->tenants[i].name,
							strlen(cb->tenants[i].name),
							cb->tenants[i].weight};
	return bl_waitq_tenants_configure(tbl, tc, n);
}

/* ---- memory budget: configuration ------------------------------------------ */

/* Reads the first line of path into buf; false if it cannot. */
static bool read_line(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "re");
	bool ok;

	if (!f)
		return false;
	ok = fgets(buf, (int)cap, f) != NULL;
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = '\0';
	return ok;
}

/* The tightest cgroup v2 memory.max from this process's cgroup up to the
 * root (a limit on any ancestor applies too), or 0 when none is set. */
static uint64_t cgroup_memory_max(void)
{
	char line[4096], path[4096 + 64], val[64];
	uint64_t best = 0;
	char *cg;

	if (!read_line("/proc/self/cgroup", line, sizeof line) || strncmp(line, "0::", 3) != 0)
		return 0; /* not cgroup v2 (or a hybrid whose first line is v1) */
	cg = line + 3;
	for (;;) {
		size_t n = strlen(cg);

		while (n > 1 && cg[n - 1] == '/')
			cg[--n] = '\0';
		snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max",
			 strcmp(cg, "/") == 0 ? "" : cg);
		if (read_line(path, val, sizeof val) && strcmp(val, "max") != 0) {
			char *end;
			unsigned long long v;

			errno = 0;
			v = strtoull(val, &end, 10);
			if (errno == 0 && end != val && *end == '\0' && v > 0 && (best == 0 || v < best))
				best = v;
		}
		if (n <= 1)
			break;
		char *slash = strrchr(cg, '/');
		if (!slash)
			break;
		if (slash == cg)
			cg[1] = '\0';
		else
			*slash = '\0';
	}
	return best;
}

/* MemTotal from /proc/meminfo in bytes, or 0. */
static uint64_t mem_total(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	uint64_t kib = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long v;

		if (sscanf(line, "MemTotal: %llu kB", &v) == 1) {
			kib = v;
			break;
		}
	}
	fclose(f);
	return kib * 1024;
}

/* memory.capacity in bytes: as configured, or for auto the cgroup's
 * memory.max when one is set, else MemTotal. */
static int resolve_capacity(const struct bl_cfg_memory *cm, uint64_t *bytes, const char **source,
			    char *err, size_t errcap)
{
	if (!cm->capacity_auto) {
		*bytes = cm->capacity;
		*source = "config";
		return 0;
	}
	if ((*bytes = cgroup_memory_max()) != 0) {
		uint64_t total = mem_total();

		/* A cgroup limit above the machine's memory does not add memory. */
		if (total && total < *bytes) {
			*bytes = total;
			*source = "MemTotal";
		} else {
			*source = "cgroup memory.max";
		}
		return 0;
	}
	if ((*bytes = mem_total()) != 0) {
		*source = "MemTotal";
		return 0;
	}
	snprintf(err, errcap,
		 "memory.capacity: auto found neither a cgroup v2 memory.max nor MemTotal in "
		 "/proc/meminfo; give a size such as 16GiB");
	return BL_EINVAL;
}

/* The core configuration of memory:, with its capacity resolved. */
static int mem_config(const struct bl_cfg_memory *cm, struct bl_membudget_config *mc,
		      const char **source, char *err, size_t errcap)
{
	char why[256];
	int rc;

	bl_membudget_config_default(mc);
	rc = resolve_capacity(cm, &mc->capacity_bytes, source, err, errcap);
	if (rc != 0)
		return rc;
	mc->safety_buffer = cm->safety_buffer;
	mc->low = cm->low;
	mc->high = cm->high;
	if (bl_membudget_config_check(mc, why, sizeof why) != 0) {
		snprintf(err, errcap, "memory: %s", why);
		return BL_EINVAL;
	}
	return 0;
}

static struct mem_rt *mem_new(const struct bl_cfg_memory *cm, char *err, size_t errcap)
{
	struct mem_rt *m = calloc(1, sizeof *m);
	struct bl_membudget_config mc;

	if (!m) {
		snprintf(err, errcap, "out of memory creating the memory budget");
		return NULL;
	}
	if (mem_config(cm, &mc, &m->capacity_source, err, errcap) != 0) {
		free(m);
		return NULL;
	}
	bl_membudget_init(&m->b, &mc);
	if (bl_waitq_init(&m->q, cm->max_queue + 1, 0) != 0 ||
	    bl_waitq_tenants_create(TENANT_SLOTS, &m->tenants) != 0) {
		bl_waitq_cleanup(&m->q);
		free(m);
		snprintf(err, errcap, "out of memory creating the memory budget");
		return NULL;
	}
	m->lease_ttl_ns = cm->lease_ttl_ns;
	m->max_queue = cm->max_queue;
	return m;
}

static void mem_free(struct mem_rt *m)
{
	if (!m)
		return;
	bl_waitq_cleanup(&m->q);
	bl_waitq_tenants_destroy(m->tenants);
	free(m);
}

int bl_budgets_check(const struct bl_config *cfg, char *err, size_t errcap)
{
	if (cfg->memory.configured) {
		struct bl_membudget_config mc;
		const char *src;
		int rc = mem_config(&cfg->memory, &mc, &src, err, errcap);

		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < cfg->n_budgets; i++) {
		struct bl_budget_limits l;
		char why[256];

		bl_cfg_budget_limits(&cfg->budgets[i], &l);
		if (bl_budget_limits_check(&l, why, sizeof why) != 0) {
			snprintf(err, errcap, "budgets.%s: %s", cfg->budgets[i].name, why);
			return BL_EINVAL;
		}
		if (cfg->budgets[i].n_tenants > 256) {
			snprintf(err, errcap, "budgets.%s.tenants: at most 256 are accepted",
				 cfg->budgets[i].name);
			return BL_EINVAL;
		}
	}
	return 0;
}

static struct budget_rt *find_budget(struct bl_budgets *bs, const char *name, bool any)
{
	for (struct budget_rt *br = bs->list; br; br = br->next)
		if (strcmp(br->name, name) == 0 && (any || !br->retired))
			return br;
	return NULL;
}

/* Caches each dimension's burst capacity: checked on every acquire. */
static void refresh_capacity(struct budget_rt *br)
{
	struct bl_budget_stats st;

	bl_budget_stats(&br->b, bl_mono_now(), &st);
	for (int d = 0; d < BL_DIM_COUNT; d++)
		br->capacity[d] = st.dim[d].limit ? st.dim[d].capacity : UINT64_MAX;
}

static void on_wake_closed(uv_handle_t *h)
{
	struct budget_rt *br = h->data;

	bl_waitq_cleanup(&br->q);
	bl_waitq_tenants_destroy(br->tenants);
	free(br->name);
	free(br);
}

static void on_wake(uv_timer_t *t)
{
	struct budget_rt *br = t->data;

	br->wake_at_ns = 0;
	pump(br);
}

static struct budget_rt *budget_new(struct bl_budgets *bs, const struct bl_cfg_budget *cb,
				    char *err, size_t errcap)
{
	struct budget_rt *br = calloc(1, sizeof *br);
	int rc;

	if (!br || !(br->name = strdup(cb->name)))
		goto oom;
	br->bs = bs;
	bl_cfg_budget_limits(cb, &br->limits);
	rc = bl_budget_init(&br->b, &br->limits);
	if (rc != 0) {
		char why[256];
		bl_budget_limits_check(&br->limits, why, sizeof why);
		snprintf(err, errcap, "budgets.%s: %s", cb->name, why);
		free(br->name);
		free(br);
		return NULL;
	}
	if (bl_waitq_init(&br->q, cb->max_queue + 1, 0) != 0 ||
	    bl_waitq_tenants_create(TENANT_SLOTS, &br->tenants) != 0 ||
	    tenants_from_config(br->tenants, cb) != 0)
		goto oom;
	br->lease_ttl_ns = cb->lease_ttl_ns;
	br->max_queue = cb->max_queue;
	refresh_capacity(br);
	uv_timer_init(bs->loop, &br->wake);
	br->wake.data = br;
	return br;
oom:
	if (br) {
		bl_waitq_tenants_destroy(br->tenants);
		free(br->name);
		free(br);
	}
	snprintf(err, errcap, "out of memory creating budget '%s'", cb->name);
	return NULL;
}

/* Frees a retired budget once nothing refers to it. */
static void budget_maybe_free(struct bl_budgets *bs, struct budget_rt *br)
{
	struct budget_rt **pp;

	if (!br->retired || br->leases || bl_waitq_length(&br->q) || br->closing)
		return;
	for (pp = &bs->list; *pp && *pp != br; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = br->next;
	br->closing = true;
	uv_close((uv_handle_t *)&br->wake, on_wake_closed);
}

static void on_expiry(uv_timer_t *t);

int bl_budgets_create(uv_loop_t *loop, const struct bl_config *cfg, struct bl_dmem *dmem,
		      struct bl_pools *pools, struct bl_budgets **out, char *err, size_t errcap)
{
	struct bl_budgets *bs = calloc(1, sizeof *bs);
	struct budget_rt **tail;

	if (!bs) {
		snprintf(err, errcap, "out of memory");
		return BL_ENOMEM;
	}
	bs->loop = loop;
	bs->dmem = dmem;
	bs->pools = pools;
	if (getrandom(&bs->rng, sizeof bs->rng, 0) != sizeof bs->rng || bs->rng == 0)
		bs->rng = (uint64_t)bl_wall_ns() ^ UINT64_C(0x9e3779b97f4a7c15);
	if (bl_lease_table_create(MAX_LEASES, &bs->leases) != 0 ||
	    bl_slab_create(&(struct bl_slab_config){.object_size = sizeof(struct lease_rt),
						    .objects_per_slab = 1024,
						    .max_objects = MAX_LEASES, .zero = true,
						    .hook = &dmem->hook},
			   &bs->lease_pool) != 0 ||
	    bl_slab_create(&(struct bl_slab_config){.object_size = sizeof(struct waiter),
						    .objects_per_slab = 256, .zero = true,
						    .hook = &dmem->hook},
			   &bs->waiter_pool) != 0) {
		bl_lease_table_destroy(bs->leases);
		bl_slab_destroy(bs->lease_pool);
		free(bs);
		snprintf(err, errcap, "out of memory for the lease table");
		return BL_ENOMEM;
	}
	uv_timer_init(loop, &bs->expiry);
	bs->expiry.data = bs;
	if (cfg->memory.configured && !(bs->mem = mem_new(&cfg->memory, err, errcap))) {
		bl_budgets_shutdown(bs);
		uv_run(loop, UV_RUN_NOWAIT);
		bl_budgets_destroy(bs);
		return BL_EINVAL;
	}
	tail = &bs->list;
	for (size_t i = 0; i < cfg->n_budgets; i++) {
		struct budget_rt *br = budget_new(bs, &cfg->budgets[i], err, errcap);

		if (!br) {
			bl_budgets_shutdown(bs);
			uv_run(loop, UV_RUN_NOWAIT); /* let the timers close */
			bl_budgets_destroy(bs);
			return BL_EINVAL;
		}
		*tail = br;
		tail = &br->next;
	}
	*out = bs;
	return 0;
}

int bl_budgets_apply(struct bl_budgets *bs, const struct bl_config *cfg, char *err, size_t errcap)
{
	struct budget_rt *fresh = NULL, **ftail = &fresh, *br, *next;
	struct mem_rt *fresh_mem = NULL;
	struct bl_membudget_config mc;
	const char *mem_source = NULL;
	bl_time_ns now = bl_mono_now();

	/* First everything that can fail: the memory budget and the new budgets. */
	if (cfg->memory.configured) {
		if (bs->mem) {
			if (mem_config(&cfg->memory, &mc, &mem_source, err, errcap) != 0)
				return BL_EINVAL;
		} else if (!(fresh_mem = mem_new(&cfg->memory, err, errcap))) {
			return BL_EINVAL;
		}
	}
	for (size_t i = 0; i < cfg->n_budgets; i++) {
		if (find_budget(bs, cfg->budgets[i].name, true))
			continue;
		br = budget_new(bs, &cfg->budgets[i], err, errcap);
		if (!br) {
			mem_free(fresh_mem);
			for (br = fresh; br; br = next) {
				next = br->next;
				br->closing = true;
				uv_close((uv_handle_t *)&br->wake, on_wake_closed);
			}
			return BL_EINVAL;
		}
		*ftail = br;
		ftail = &br->next;
	}
	/* Then what cannot: reconfigure the kept ones, retire the dropped ones. */
	if (fresh_mem) {
		bs->mem = fresh_mem;
	} else if (bs->mem && cfg->memory.configured) {
		bl_membudget_reconfigure(&bs->mem->b, &mc);
		bs->mem->capacity_source = mem_source;
		bs->mem->lease_ttl_ns = cfg->memory.lease_ttl_ns;
		bs->mem->max_queue = cfg->memory.max_queue;
		bl_waitq_set_max(&bs->mem->q, cfg->memory.max_queue + 1);
		bs->mem->retired = false;
		mem_pump(bs);
	} else if (bs->mem) {
		struct bl_waitq_node *n;

		/* Removed: nothing new is admitted; held reservations still release. */
		bs->mem->retired = true;
		while ((n = bl_waitq_pop(&bs->mem->q))) {
			struct waiter *w = BL_WAITQ_ENTRY(n, struct waiter, node);

			w->req->on_abort = NULL;
			bl_http_respond_error(w->req, 404, "memory_not_configured",
					      "the memory section was removed by a config reload");
			waiter_free(w);
		}
	}
	for (br = bs->list; br; br = br->next) {
		const struct bl_cfg_budget *cb = bl_config_budget(cfg, br->name);
		struct bl_budget_limits l;

		if (!cb) {
			br->retired = true;
			continue;
		}
		bl_cfg_budget_limits(cb, &l);
		if (bl_budget_reconfigure(&br->b, &l, now) == 0)
			br->limits = l;
		refresh_capacity(br);
		br->retired = false;
		br->lease_ttl_ns = cb->lease_ttl_ns;
		br->max_queue = cb->max_queue;
		bl_waitq_set_max(&br->q, cb->max_queue + 1);
		if (tenants_from_config(br->tenants, cb) != 0)
			bl_log(BL_LOG_WARN, "tenant weights not applied", "budget=%s", br->name);
	}
	*ftail = NULL;
	if (fresh) {
		struct budget_rt **tail = &bs->list;
		while (*tail)
			tail = &(*tail)->next;
		*tail = fresh;
	}
	for (br = bs->list; br; br = next) {
		next = br->next;
		if (br->retired) {
			/* Waiters of a removed budget are told, leases may still come back. */
			struct bl_waitq_node *n;
			while ((n = bl_waitq_pop(&br->q))) {
				struct waiter *w = BL_WAITQ_ENTRY(n, struct waiter, node);

				w->req->on_abort = NULL;
				bl_http_respond_error(w->req, 404, "unknown_budget",
						      "budget '%s' was removed by a config reload",
						      br->name);
				waiter_free(w);
			}
			uv_timer_stop(&br->wake);
			budget_maybe_free(bs, br);
		} else {
			pump(br);
		}
	}
	return 0;
}

/* ---- answering waiters ----------------------------------------------------- */

static void on_waiter_closed(uv_handle_t *h)
{
	struct waiter *w = h->data;

	bl_slab_free(w->bs->waiter_pool, w);
}

static void waiter_free(struct waiter *w)
{
	if (w->pool_linked) {
		if (w->pool_prev)
			w->pool_prev->pool_next = w->pool_next;
		else
			w->bs->pool_waiters = w->pool_next;
		if (w->pool_next)
			w->pool_next->pool_prev = w->pool_prev;
		else
			w->bs->pool_waiters_tail = w->pool_prev;
		w->pool_linked = false;
	}
	if (w->has_timer) {
		uv_timer_stop(&w->deadline);
		uv_close((uv_handle_t *)&w->deadline, on_waiter_closed);
	} else {
		bl_slab_free(w->bs->waiter_pool, w);
	}
}

/* Makes w wait: its timer fires after ms (its deadline, or a pool acquire's
 * next try) unless an answer comes first; a client that goes away aborts it. */
static void waiter_arm(struct bl_budgets *bs, struct waiter *w, uint64_t ms)
{
	if (!w->has_timer) {
		uv_timer_init(bs->loop, &w->deadline);
		w->deadline.data = w;
		w->has_timer = true;
		w->req->handler_data = w;
		w->req->on_abort = on_waiter_abort;
		if (w->kind == W_POOL) {
			/* In no budget's queue: listed in arrival order, so that a
			 * release wakes them oldest first and a shutdown answers
			 * them. */
			w->pool_next = NULL;
			w->pool_prev = bs->pool_waiters_tail;
			if (bs->pool_waiters_tail)
				bs->pool_waiters_tail->pool_next = w;
			else
				bs->pool_waiters = w;
			bs->pool_waiters_tail = w;
			w->pool_linked = true;
		}
	}
	bl_timer_start(&w->deadline, on_deadline, ms, 0);
}

static void respond_rate_limited(struct bl_http_req *req, struct budget_rt *br, const char *code,
				 int64_t retry_ms, const char *reason, int64_t waited_ms,
				 const char *fmt_detail)
{
	char hdr[64];

	if (retry_ms < 1)
		retry_ms = 1;
	snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", (long long)((retry_ms + 999) / 1000));
	bl_http_respond_error_ex(req, 429, code,
				 json_pack("{s:I,s:s,s:s,s:I}", "retry_after_ms", (json_int_t)retry_ms,
					   "budget", br->name, "reason", reason, "waited_ms",
					   (json_int_t)waited_ms),
				 hdr, "budget '%s' %s; retry in %lld ms", br->name, fmt_detail,
				 (long long)retry_ms);
}

/* When the head of the queue can next be admitted, and why it waits. */
struct hold {
	int64_t retry_ms;
	const char *reason;
	char detail[160];
};

static void describe_hold(struct budget_rt *br, const struct bl_budget_decision *dec,
			  bl_time_ns now, struct hold *h)
{
	if (dec->wait & BL_BUDGET_WAIT_PAUSE) {
		h->reason = "paused";
		snprintf(h->detail, sizeof h->detail,
			 "is paused after a provider 429 (honouring its retry-after)");
	} else if (dec->wait & BL_BUDGET_WAIT_RATE) {
		h->reason = "rate";
		snprintf(h->detail, sizeof h->detail, "is at its %s rate", bl_dim_name(dec->dim));
	} else {
		h->reason = "concurrency";
		snprintf(h->detail, sizeof h->detail, "has all %u concurrent slots in use",
			 br->limits.concurrent);
	}
	h->retry_ms = dec->retry_at_ns ? ceil_ms(dec->retry_at_ns - now) : CONCURRENCY_RETRY_MS;
}

/* ---- backends --------------------------------------------------------------- */

/* What bl_pool_pick's admit callback needs, and what it found. */
struct admit_ctx {
	struct bl_budgets *bs;
	struct bl_amounts want;      /* the request, as given */
	bool named[BL_DIM_COUNT];
	bl_time_ns now;
	struct budget_rt *charged;   /* the backend budget that admitted, or NULL */
	uint64_t ticket;
	int64_t retry_ms;            /* soonest a refusing backend budget may admit; -1 none */
	const char *missing_budget;  /* a backend budget limits a dimension not named */
	enum bl_dim missing_dim;
	const char *too_large_budget; /* a backend budget can never admit this much */
};

/* Charges the chosen backend's own budget, if it has one. It goes through
 * that budget's waiting queue only when the queue is empty: a pool call
 * never jumps ahead of acquires already waiting on the key's budget. */
static bool admit_backend(void *ctx, struct bl_pool_backend *be)
{
	struct admit_ctx *a = ctx;
	const char *name = bl_pool_backend_budget(be);
	struct budget_rt *br;
	struct bl_budget_decision dec;
	int rc;

	a->charged = NULL;
	if (!name)
		return true;
	br = find_budget(a->bs, name, false);
	if (!br)
		return false;
	for (int d = BL_DIM_TOKENS; d < BL_DIM_COUNT; d++) {
		bool via_parts = d == BL_DIM_TOKENS &&
				 (a->named[BL_DIM_INPUT_TOKENS] || a->named[BL_DIM_OUTPUT_TOKENS]);
		if (br->limits.rate[d].limit && !a->named[d] && !via_parts) {
			a->missing_budget = br->name;
			a->missing_dim = (enum bl_dim)d;
			return false;
		}
	}
	if (bl_waitq_length(&br->q) == 0) {
		rc = bl_budget_acquire(&br->b, &a->want, a->now, &dec);
		if (rc == 0) {
			a->charged = br;
			a->ticket = dec.ticket;
			return true;
		}
		if (rc != BL_EAGAIN) {
			a->too_large_budget = br->name;
			return false;
		}
	} else {
		dec = br->head_ns ? br->head : (struct bl_budget_decision){0};
	}
	{
		int64_t ms = dec.retry_at_ns ? ceil_ms(dec.retry_at_ns - a->now) : CONCURRENCY_RETRY_MS;

		if (ms < 1)
			ms = 1;
		if (a->retry_ms < 0 || ms < a->retry_ms)
			a->retry_ms = ms;
	}
	return false;
}

/* Picks a backend of w->pool for w, charging the backend's budget. Returns
 * 0 and fills the lease's backend fields, or BL_EAGAIN with *a and *why
 * saying why not. */
static int pick_backend(struct bl_budgets *bs, struct waiter *w, bl_time_ns now,
			struct lease_rt *l, struct admit_ctx *a, struct bl_pool_refusal *why)
{
	int rc;

	*a = (struct admit_ctx){.bs = bs, .want = w->want, .now = now, .retry_ms = -1};
	memcpy(a->named, w->named, sizeof a->named);
	rc = bl_pool_pick(w->pool, w->has_key ? w->key : NULL, w->key_len, now, admit_backend, a,
			  &l->choice, why);
	if (rc != 0)
		return BL_EAGAIN;
	l->has_backend = true;
	l->be_budget = a->charged;
	l->be_ticket = a->ticket;
	if (a->charged) {
		a->charged->leases++;
		a->charged->granted++;
	}
	return 0;
}

/* Answers a pool acquire that found no backend: the most useful reason. */
static void respond_no_backend(struct bl_http_req *req, struct bl_pool *p,
			       const struct admit_ctx *a, const struct bl_pool_refusal *why,
			       int64_t waited_ms)
{
	char hdr[64];
	int64_t retry;

	if (a->missing_budget) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "a backend of pool '%s' is charged to budget '%s', which limits "
				      "%s: give '%s' (an estimate; release reconciles it)",
				      bl_pool_name(p), a->missing_budget, bl_dim_name(a->missing_dim),
				      bl_dim_name(a->missing_dim));
		return;
	}
	if (why->admit_refused && a->retry_ms >= 0) {
		/* Backends are up but their budgets are spent: a rate limit. */
		retry = a->retry_ms;
		snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", (long long)((retry + 999) / 1000));
		bl_http_respond_error_ex(
			req, 429, "rate_limited",
			json_pack("{s:I,s:s,s:s,s:I}", "retry_after_ms", (json_int_t)retry, "pool",
				  bl_pool_name(p), "reason", "backend_budgets", "waited_ms",
				  (json_int_t)waited_ms),
			hdr,
			"every available backend of pool '%s' is at its budget; retry in %lld ms",
			bl_pool_name(p), (long long)retry);
		return;
	}
	if (a->too_large_budget && !why->breaker_refused) {
		bl_http_respond_error(req, 400, "too_large",
				      "the request is more than budget '%s' (of a backend of pool "
				      "'%s') can ever admit at once",
				      a->too_large_budget, bl_pool_name(p));
		return;
	}
	retry = why->retry_after_ns > 0 ? ceil_ms(why->retry_after_ns) : 1000;
	snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", (long long)((retry + 999) / 1000));
	bl_http_respond_error_ex(req, 503, "no_backend",
				 json_pack("{s:I,s:s,s:i,s:I}", "retry_after_ms", (json_int_t)retry,
					   "pool", bl_pool_name(p), "breakers_open",
					   (int)why->breaker_refused, "waited_ms",
					   (json_int_t)waited_ms),
				 hdr,
				 "no backend of pool '%s' is available: %u refused by their circuit "
				 "breaker; the first may be tried again in %lld ms",
				 bl_pool_name(p), why->breaker_refused, (long long)retry);
}

/* Appends ,"backend":{...} for a lease with a backend; returns the length. */
static size_t write_backend(char *out, size_t cap, const struct lease_rt *l)
{
	const struct bl_pool_backend *be = l->choice.backend;
	char url[1024];
	size_t o = 0;
	const char *u = bl_pool_backend_url(be);

	/* JSON-escape the URL (names are config names: nothing to escape). */
	for (; *u && o + 7 < sizeof url; u++) {
		unsigned char ch = (unsigned char)*u;

		if (ch == '"' || ch == '\\') {
			url[o++] = '\\';
			url[o++] = (char)ch;
		} else if (ch < 0x20) {
			o += (size_t)snprintf(url + o, sizeof url - o, "\\u%04x", ch);
		} else {
			url[o++] = (char)ch;
		}
	}
	url[o] = '\0';
	o = (size_t)snprintf(out, cap, ",\"pool\":\"%s\",\"backend\":{\"name\":\"%s\",\"url\":\"%s\"",
			     bl_pool_name(bl_pool_backend_pool(l->choice.backend)),
			     bl_pool_backend_name(be), url);
	if (o < cap && l->be_budget)
		o += (size_t)snprintf(out + o, cap - o, ",\"budget\":\"%s\"", l->be_budget->name);
	if (o < cap)
		o += (size_t)snprintf(out + o, cap - o, "}");
	return o < cap ? o : cap - 1;
}

/* Gives a lease's backend part back unused: the call never went out. */
static void unpick(struct bl_budgets *bs, struct lease_rt *l, bl_time_ns now)
{
	struct bl_budget_reconcile rec;

	(void)bs;
	if (!l->has_backend)
		return;
	if (l->be_budget) {
		bl_budget_release(&l->be_budget->b, &l->reserved, &(struct bl_amounts){{0}},
				  l->be_ticket, now, &rec);
		l->be_budget->leases--;
		l->be_budget = NULL;
	}
	bl_pool_finish(&l->choice, BL_POOL_CANCELLED, 0, now);
	l->has_backend = false;
}

/* Stores l and answers the acquire that made it (w). Returns 0, or an error
 * (answered 503) after which the caller gives l's units back. */
static int finish_grant(struct bl_budgets *bs, struct waiter *w, struct lease_rt *l,
			bl_time_ns now)
{
	int64_t waited_ms = (int64_t)((uint64_t)now - w->start_ns) / BL_NS_PER_MS;
	char id[17], out[1536];
	size_t n;
	int rc;

	l->reserved = w->want;
	bl_amounts_normalize(&l->reserved);
	l->acquired_ns = now;
	l->node.expires_ns = now + w->ttl_ms * BL_NS_PER_MS;
	snprintf(l->tenant, sizeof l->tenant, "%s", w->tenant);
	snprintf(l->worker, sizeof l->worker, "%s", w->worker);
	rc = lease_insert(bs, l);
	if (rc != 0) {
		bl_http_respond_error(w->req, 503, "overloaded",
				      rc == BL_EFULL ? "the lease table is full (%d live leases)"
						     : "out of memory for a lease",
				      MAX_LEASES);
		return rc;
	}
	format_id(l->node.id, id);
	/* The hot path's answer, written directly: budget, pool and backend
	 * names are config names ([A-Za-z0-9_.-]): nothing to escape. */
	n = (size_t)snprintf(out, sizeof out, "{\"lease\":\"%s\"", id);
	if (l->budget)
		n += (size_t)snprintf(out + n, sizeof out - n, ",\"budget\":\"%s\"", l->budget->name);
	if (l->has_backend)
		n += write_backend(out + n, sizeof out - n, l);
	n += (size_t)snprintf(out + n, sizeof out - n,
			      ",\"expires_at_ms\":%lld,\"ttl_ms\":%lld,\"waited_ms\":%lld}\n",
			      (long long)mono_to_wall_ms(l->node.expires_ns), (long long)w->ttl_ms,
			      (long long)waited_ms);
	bl_http_respond(w->req, 200, "application/json", out, n < sizeof out ? n : sizeof out - 1,
			NULL);
	arm_expiry(bs);
	return 0;
}

static void grant(struct budget_rt *br, struct waiter *w, uint64_t ticket, bl_time_ns now)
{
	struct bl_budgets *bs = br->bs;
	struct lease_rt *l = bl_slab_alloc(bs->lease_pool);
	struct bl_budget_reconcile rec;

	w->answered = true;
	w->req->on_abort = NULL;
	if (!l) {
		bl_budget_release(&br->b, &w->want, &(struct bl_amounts){{0}}, ticket, now, &rec);
		bl_http_respond_error(w->req, 503, "overloaded", "out of memory for a lease");
		return;
	}
	l->budget = br;
	l->ticket = ticket;
	if (w->pool) {
		struct admit_ctx a;
		struct bl_pool_refusal why;

		if (pick_backend(bs, w, now, l, &a, &why) != 0) {
			/* The shared units go back: no call will be made. */
			bl_budget_release(&br->b, &w->want, &(struct bl_amounts){{0}}, ticket, now,
					  &rec);
			bl_slab_free(bs->lease_pool, l);
			respond_no_backend(w->req, w->pool, &a, &why,
					   (int64_t)((uint64_t)now - w->start_ns) / BL_NS_PER_MS);
			return;
		}
	}
	if (finish_grant(bs, w, l, now) != 0) {
		/* Give the units back: no lease will ever release them. */
		unpick(bs, l, now);
		bl_budget_release(&br->b, &w->want, &(struct bl_amounts){{0}}, ticket, now, &rec);
		bl_slab_free(bs->lease_pool, l);
		return;
	}
	br->leases++;
	br->granted++;
	if (w->has_timer)
		br->granted_after_wait++;
}

/* A pool acquire without a shared budget: pick now, or answer, or (with
 * wait_ms) try again when the soonest refusal may lift. Returns true when
 * w was answered. */
static bool pool_try(struct waiter *w)
{
	struct bl_budgets *bs = w->bs;
	bl_time_ns now = bl_mono_now();
	int64_t waited_ms = (int64_t)((uint64_t)now - w->start_ns) / BL_NS_PER_MS;
	struct lease_rt *l;
	struct admit_ctx a;
	struct bl_pool_refusal why;
	int64_t next_ms;

	if (bs->shutting_down) {
		w->req->on_abort = NULL;
		bl_http_respond_error(w->req, 503, "draining", "the daemon is shutting down");
		return true;
	}
	l = bl_slab_alloc(bs->lease_pool);
	if (!l) {
		w->req->on_abort = NULL;
		respond_overloaded(bs, w->req);
		return true;
	}
	if (pick_backend(bs, w, now, l, &a, &why) == 0) {
		w->req->on_abort = NULL;
		if (finish_grant(bs, w, l, now) != 0) {
			unpick(bs, l, now);
			bl_slab_free(bs->lease_pool, l);
		}
		return true;
	}
	bl_slab_free(bs->lease_pool, l);
	/* Retry when a backend budget or a breaker may admit, within wait_ms. */
	next_ms = a.retry_ms >= 0 ? a.retry_ms : -1;
	if (why.retry_after_ns > 0 && (next_ms < 0 || ceil_ms(why.retry_after_ns) < next_ms))
		next_ms = ceil_ms(why.retry_after_ns);
	if (a.missing_budget || next_ms < 0 || waited_ms + next_ms > w->wait_ms) {
		w->req->on_abort = NULL;
		respond_no_backend(w->req, w->pool, &a, &why, waited_ms);
		return true;
	}
	waiter_arm(bs, w, (uint64_t)next_ms);
	return false;
}

static void pool_retry(struct waiter *w)
{
	if (pool_try(w))
		waiter_free(w);
}

/* A call of pool has ended: a backend (or its key's budget) may have room
 * now. The pool's waiters try again at once, oldest first, until one still
 * finds none — rather than on their retry timers, up to
 * CONCURRENCY_RETRY_MS later, while the slot sits idle or goes to whoever
 * comes next. pool is only compared, never read: the call's backend, or its
 * pool, may have gone with it. */
static void pool_wake(struct bl_budgets *bs, const struct bl_pool *pool)
{
	struct waiter *w = bs->pool_waiters, *next;

	for (; w && !bs->shutting_down; w = next) {
		next = w->pool_next;
		if (w->pool != pool)
			continue;
		if (!pool_try(w))
			return;
		waiter_free(w);
	}
}

static void respond_pool_removed(struct waiter *w)
{
	w->answered = true;
	w->req->on_abort = NULL;
	bl_http_respond_error(w->req, 404, "unknown_pool",
			      "pool '%s' was removed by a config reload while this acquire waited",
			      bl_pool_name(w->pool));
}

void bl_budgets_drop_retired_pools(struct bl_budgets *bs)
{
	struct waiter *w, *next;

	for (w = bs->pool_waiters; w; w = next) {
		next = w->pool_next;
		if (!bl_pool_retired(w->pool))
			continue;
		respond_pool_removed(w);
		waiter_free(w);
	}
	for (struct budget_rt *br = bs->list; br; br = br->next) {
		struct bl_waitq_node *n, *nn;
		bool removed = false;

		for (n = bl_waitq_first(&br->q); n; n = nn) {
			nn = bl_waitq_next(&br->q, n);
			w = BL_WAITQ_ENTRY(n, struct waiter, node);
			if (!w->pool || !bl_pool_retired(w->pool))
				continue;
			bl_waitq_remove(&br->q, n);
			respond_pool_removed(w);
			waiter_free(w);
			removed = true;
		}
		if (removed)
			pump(br); /* the head may have changed */
	}
}

/* Admits from the head of br's queue while the core budget admits; then
 * remembers why the head waits and arms the wake timer for when it may
 * conform. A concurrency wait has no time: a release pumps again. */
static void pump(struct budget_rt *br)
{
	struct bl_waitq_node *n;

	br->head_ns = 0;
	while (!br->retired && !br->bs->shutting_down && (n = bl_waitq_peek(&br->q))) {
		struct waiter *w = BL_WAITQ_ENTRY(n, struct waiter, node);
		struct bl_budget_decision dec;
		bl_time_ns now = bl_mono_now();
		int rc = bl_budget_acquire(&br->b, &w->want, now, &dec);

		if (rc == BL_EAGAIN) {
			br->head = dec;
			br->head_ns = now;
			if (dec.retry_at_ns && dec.retry_at_ns != br->wake_at_ns) {
				br->wake_at_ns = dec.retry_at_ns;
				bl_timer_start(&br->wake, on_wake,
					       (uint64_t)ceil_ms(dec.retry_at_ns - now), 0);
			}
			return;
		}
		bl_waitq_pop(&br->q);
		if (rc == 0) {
			grant(br, w, dec.ticket, now);
		} else {
			/* Checked on arrival; a reload may have shrunk the budget since. */
			w->answered = true;
			w->req->on_abort = NULL;
			bl_http_respond_error(w->req, 400, "too_large",
					      "%s: the request no longer fits budget '%s' (at most "
					      "%llu at once)",
					      bl_dim_name(dec.dim), br->name, (unsigned long long)dec.max);
		}
		if (w->has_timer)
			waiter_free(w); /* the handler frees the others */
	}
}

/* Answers a waiter that leaves the queue unadmitted with 429 and a hint:
 * it is behind the queue's head, so it conforms no sooner than the head. */
static void deny(struct budget_rt *br, struct waiter *w, bl_time_ns now)
{
	struct hold h = {CONCURRENCY_RETRY_MS, "concurrency", ""};

	br->denied++;
	if (br->head_ns)
		describe_hold(br, &br->head, br->head_ns, &h);
	else
		snprintf(h.detail, sizeof h.detail, "is busy");
	w->req->on_abort = NULL;
	respond_rate_limited(w->req, br, "rate_limited", h.retry_ms, h.reason,
			     (int64_t)((uint64_t)now - w->start_ns) / BL_NS_PER_MS, h.detail);
}

static void mem_on_deadline(struct waiter *w);
static void mem_on_abort(struct waiter *w);

static void on_deadline(uv_timer_t *t)
{
	struct waiter *w = t->data;
	struct budget_rt *br = w->budget;

	if (w->kind == W_MEMORY) {
		mem_on_deadline(w);
		return;
	}
	if (w->kind == W_POOL) {
		pool_retry(w);
		return;
	}
	bl_waitq_remove(&br->q, &w->node);
	br->wait_timeouts++;
	deny(br, w, bl_mono_now());
	waiter_free(w);
	pump(br); /* the head may have changed */
	budget_maybe_free(br->bs, br);
}

static void on_waiter_abort(struct bl_http_req *req)
{
	struct waiter *w = req->handler_data;
	struct budget_rt *br = w->budget;

	if (w->kind == W_MEMORY) {
		mem_on_abort(w);
		return;
	}
	if (w->kind == W_POOL) {
		req->on_abort = NULL;
		bl_http_respond(req, 499, "text/plain", "", 0, NULL);
		waiter_free(w);
		return;
	}
	bl_waitq_remove(&br->q, &w->node);
	br->cancelled++;
	req->on_abort = NULL;
	bl_http_respond(req, 499, "text/plain", "", 0, NULL);
	waiter_free(w);
	pump(br);
	budget_maybe_free(br->bs, br);
}

/* ---- acquire ---------------------------------------------------------------- */

/* The gate of new work (an acquire, a reservation): answers 503 draining
 * while the daemon stops, 503 overloaded past its memory's soft level, and
 * returns true then. */
static bool refuse_new_work(struct bl_budgets *bs, struct bl_http_req *req)
{
	if (bs->shutting_down) {
		bl_http_respond_error(req, 503, "draining", "the daemon is shutting down");
		return true;
	}
	if (bl_dmem_refuse_new_work(bs->dmem)) {
		respond_overloaded(bs, req);
		return true;
	}
	return false;
}

/* New work refused at the daemon's own memory cap (limits.daemon_memory). */
static void respond_overloaded(struct bl_budgets *bs, struct bl_http_req *req)
{
	bl_http_respond_error_ex(req, 503, "overloaded",
				 json_pack("{s:I}", "retry_after_ms", (json_int_t)1000),
				 "Retry-After: 1\r\n",
				 "ballast holds %llu of its %llu bytes (limits.daemon_memory): new "
				 "work is refused until releases bring it under %llu",
				 (unsigned long long)bs->dmem->held, (unsigned long long)bs->dmem->cap,
				 (unsigned long long)bs->dmem->soft);
}

static int get_units(const struct bl_json_fields *body, const char *key, uint64_t *out,
		     bool *given, struct bl_json_error *e)
{
	int64_t v;
	int rc = bl_json_get_int(body, key, 0, (int64_t)MAX_UNITS, &v, e);

	if (rc < 0)
		return -1;
	if (rc == 0) {
		*out = (uint64_t)v;
		if (given)
			*given = true;
	}
	return 0;
}

void bl_budgets_acquire(struct bl_budgets *bs, struct bl_http_req *req)
{
	static const char *const allowed[] = {"budget", "requests", "tokens", "input_tokens",
					      "output_tokens", "tenant", "priority", "wait_ms",
					      "ttl_ms", "pool", "key", "worker", NULL};
	struct bl_json_error e = {0};
	struct bl_json_fields fields, *body = &fields;
	const char *name = NULL, *tenant = DEFAULT_TENANT, *prio = "normal", *pool_name = NULL,
		   *key = NULL, *worker = "";
	struct budget_rt *br = NULL;
	struct bl_pool *pool = NULL;
	struct waiter *w = NULL;
	struct bl_waitq_tenant *slot;
	enum bl_waitq_class cls;
	int64_t wait_ms = 0, ttl_ms = -1;
	bool named[BL_DIM_COUNT] = {false};
	uint64_t cost;
	int rc;

	if (bl_api_body(req, false, allowed, body) != 0)
		return;
	if (bl_json_get_string(body, "budget", 128, &name, &e) < 0 ||
	    bl_json_get_string(body, "pool", 128, &pool_name, &e) < 0 ||
	    bl_json_get_string(body, "key", KEY_MAX, &key, &e) < 0 ||
	    bl_json_get_string(body, "worker", WORKER_ID_MAX, &worker, &e) < 0)
		goto bad;
	if (!name && !pool_name) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "give 'budget' (a configured budget), 'pool' (a configured "
				      "backend pool), or both");
		goto out;
	}
	if (key && !pool_name) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "field 'key' picks a backend of a pool: give 'pool' with it");
		goto out;
	}
	if (bl_json_get_string(body, "tenant", BL_WAITQ_TENANT_NAME_MAX, &tenant, &e) < 0 ||
	    bl_json_get_string(body, "priority", 16, &prio, &e) < 0 ||
	    bl_json_get_int(body, "wait_ms", 0, MAX_WAIT_MS, &wait_ms, &e) < 0 ||
	    bl_json_get_int(body, "ttl_ms", 1000, MAX_TTL_MS, &ttl_ms, &e) < 0)
		goto bad;
	if (bl_waitq_class_parse(prio, strlen(prio), &cls) != 0) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "field 'priority': '%.16s' is not one of critical, high, normal, low",
				      prio);
		goto out;
	}
	if (name && !(br = find_budget(bs, name, false))) {
		bl_http_respond_error(req, 404, "unknown_budget",
				      "no budget '%.128s' is configured (GET /v1/budgets lists them)", name);
		goto out;
	}
	if (pool_name && !(pool = bl_pools_find(bs->pools, pool_name, false))) {
		bl_http_respond_error(req, 404, "unknown_pool",
				      "no pool '%.128s' is configured (GET /v1/pools lists them)",
				      pool_name);
		goto out;
	}
	if (refuse_new_work(bs, req))
		goto out;
	w = bl_slab_alloc(bs->waiter_pool);
	if (!w) {
		respond_overloaded(bs, req);
		goto out;
	}
	w->want.n[BL_DIM_REQUESTS] = 1;
	if (get_units(body, "requests", &w->want.n[BL_DIM_REQUESTS], NULL, &e) < 0 ||
	    get_units(body, "tokens", &w->want.n[BL_DIM_TOKENS], &named[BL_DIM_TOKENS], &e) < 0 ||
	    get_units(body, "input_tokens", &w->want.n[BL_DIM_INPUT_TOKENS],
		      &named[BL_DIM_INPUT_TOKENS], &e) < 0 ||
	    get_units(body, "output_tokens", &w->want.n[BL_DIM_OUTPUT_TOKENS],
		      &named[BL_DIM_OUTPUT_TOKENS], &e) < 0)
		goto bad;
	w->bs = bs;
	w->pool = pool;
	w->req = req;
	w->start_ns = (uint64_t)bl_mono_now(); /* waited_ms counts from here */
	w->wait_ms = wait_ms;
	snprintf(w->tenant, sizeof w->tenant, "%s", tenant);
	snprintf(w->worker, sizeof w->worker, "%s", worker);
	memcpy(w->named, named, sizeof named);
	if (key) {
		w->key_len = strlen(key);
		memcpy(w->key, key, w->key_len + 1);
		w->has_key = true;
	}
	if (!br) {
		/* A pool without a shared budget: pick now, or wait on a timer. */
		w->kind = W_POOL;
		w->ttl_ms = ttl_ms > 0 ? ttl_ms : DEFAULT_POOL_TTL_MS;
		if (pool_try(w)) {
			if (w->has_timer)
				waiter_free(w);
			else
				bl_slab_free(bs->waiter_pool, w);
		}
		w = NULL;
		goto out;
	}
	/* A limited token dimension must be named, or the limit would not hold. */
	for (int d = BL_DIM_TOKENS; d < BL_DIM_COUNT; d++) {
		bool via_parts = d == BL_DIM_TOKENS &&
				 (named[BL_DIM_INPUT_TOKENS] || named[BL_DIM_OUTPUT_TOKENS]);
		if (br->limits.rate[d].limit && !named[d] && !via_parts) {
			bl_http_respond_error(req, 400, "invalid_field",
					      "budget '%s' limits %s: give '%s' (an estimate; release "
					      "reconciles it with what was used)",
					      br->name, bl_dim_name((enum bl_dim)d),
					      bl_dim_name((enum bl_dim)d));
			goto out;
		}
	}
	w->kind = W_RATE;
	w->budget = br;
	w->ttl_ms = ttl_ms > 0 ? ttl_ms : br->lease_ttl_ns / BL_NS_PER_MS;
	bl_waitq_node_init(&w->node);

	/* Cost for fairness: the most constraining share of any limited dimension. */
	{
		struct bl_amounts norm = w->want;
		double share = 0;

		bl_amounts_normalize(&norm);
		for (int d = 0; d < BL_DIM_COUNT; d++)
			if (br->limits.rate[d].limit && norm.n[d])
				share = fmax(share, (double)norm.n[d] / (double)br->limits.rate[d].limit);
		cost = (uint64_t)(share * 1e6) + 1;
	}
	/* Too large to ever fit: say so instead of waiting forever. */
	{
		struct bl_amounts norm = w->want;

		bl_amounts_normalize(&norm);
		for (int d = 0; d < BL_DIM_COUNT; d++) {
			if (norm.n[d] <= br->capacity[d])
				continue;
			bl_http_respond_error_ex(
				req, 400, "too_large",
				json_pack("{s:s,s:I}", "dimension", bl_dim_name((enum bl_dim)d), "max",
					  (json_int_t)br->capacity[d]),
				NULL,
				"%s: %llu is more than budget '%s' can ever admit at once (at most "
				"%llu: its burst capacity, a share of its %llu limit; raise 'burst' "
				"or split the request)",
				bl_dim_name((enum bl_dim)d), (unsigned long long)norm.n[d], br->name,
				(unsigned long long)br->capacity[d],
				(unsigned long long)br->limits.rate[d].limit);
			goto out;
		}
	}
	if (bl_waitq_tenants_get(br->tenants, w->tenant, strlen(w->tenant), &slot) != 0)
		goto bad;
	rc = bl_waitq_push(&br->q, &w->node, cls, slot, cost);
	if (rc == BL_EFULL) {
		br->queue_full++;
		respond_rate_limited(req, br, "queue_full", CONCURRENCY_RETRY_MS, "queue_full", 0,
				     "has a full waiting queue (max_queue)");
		goto out;
	}
	if (rc != 0) {
		bl_http_respond_error(req, 400, "invalid_field", "the request cannot be queued: %s",
				      bl_strerror(rc));
		goto out;
	}
	pump(br);
	if (w->answered)
		goto out; /* 200, or 503 if no lease could be stored */
	if (wait_ms == 0) {
		/* Not admitted now and may not wait: out of the queue, 429. */
		bl_waitq_remove(&br->q, &w->node);
		deny(br, w, bl_mono_now());
		goto out;
	}
	if (bl_waitq_length(&br->q) > br->max_queue) {
		bl_waitq_remove(&br->q, &w->node);
		br->queue_full++;
		respond_rate_limited(req, br, "queue_full", CONCURRENCY_RETRY_MS, "queue_full", 0,
				     "has a full waiting queue (max_queue)");
		goto out;
	}
	/* Wait: the deadline timer or a grant answers. */
	waiter_arm(bs, w, (uint64_t)wait_ms);
	bl_json_fields_cleanup(body);
	return;
bad:
	bl_api_bad_request(req, &e);
out:
	if (w && !w->has_timer)
		bl_slab_free(bs->waiter_pool, w);
	bl_json_fields_cleanup(body);
}

/* ---- memory reservations ----------------------------------------------------- */

#define MEM_RETRY_MS 1000     /* retry hint: no clock says when memory frees */
#define MAX_RESERVE_BYTES (UINT64_C(1) << 62)

/* Stores l under a fresh id. Returns 0, BL_EFULL (the table is full) or
 * another code from bl_lease_insert. */
static int lease_insert(struct bl_budgets *bs, struct lease_rt *l)
{
	int rc = BL_EEXIST;

	for (int tries = 0; tries < 8 && rc == BL_EEXIST; tries++) {
		l->node.id = next_id(bs);
		rc = bl_lease_insert(bs->leases, &l->node);
	}
	return rc;
}

static void mem_grant(struct bl_budgets *bs, struct waiter *w, bl_time_ns now)
{
	struct mem_rt *m = bs->mem;
	struct lease_rt *l = bl_slab_alloc(bs->lease_pool);
	int64_t waited_ms = (int64_t)((uint64_t)now - w->start_ns) / BL_NS_PER_MS;
	int rc = BL_ENOMEM;
	char id[17], out[384];
	int n;

	w->answered = true;
	w->req->on_abort = NULL;
	if (l) {
		l->memory = true;
		l->mem_bytes = w->mem_bytes;
		l->mem_prio = w->mem_prio;
		l->acquired_ns = now;
		l->node.expires_ns = now + w->ttl_ms * BL_NS_PER_MS;
		snprintf(l->tenant, sizeof l->tenant, "%s", w->tenant);
		rc = lease_insert(bs, l);
	}
	if (rc == 0 && bl_membudget_reserve(&m->b, w->mem_bytes, w->mem_prio, NULL) != 0) {
		/* would_admit said yes just before: cannot happen, but never lie. */
		bl_lease_remove(bs->leases, &l->node);
		rc = BL_EAGAIN;
	}
	if (rc != 0) {
		if (l)
			bl_slab_free(bs->lease_pool, l);
		bl_http_respond_error(w->req, 503, "overloaded",
				      rc == BL_EFULL ? "the lease table is full (%d live leases)"
						     : "no room for a lease (limit %d)",
				      MAX_LEASES);
		return;
	}
	m->leases++;
	m->granted++;
	if (w->has_timer)
		m->granted_after_wait++;
	format_id(l->node.id, id);
	n = snprintf(out, sizeof out,
		     "{\"lease\":\"%s\",\"bytes\":%llu,\"priority\":\"%s\",\"expires_at_ms\":%lld,"
		     "\"ttl_ms\":%lld,\"waited_ms\":%lld,\"pressure\":\"%s\"}\n",
		     id, (unsigned long long)l->mem_bytes, bl_mem_priority_name(l->mem_prio),
		     (long long)mono_to_wall_ms(l->node.expires_ns), (long long)w->ttl_ms,
		     (long long)waited_ms, bl_mem_pressure_name(bl_membudget_pressure(&m->b)));
	bl_http_respond(w->req, 200, "application/json", out, (size_t)n, NULL);
	arm_expiry(bs);
}

static void respond_too_large_mem(struct bl_http_req *req, struct mem_rt *m, uint64_t bytes,
				  enum bl_mem_priority p)
{
	uint64_t limit = bl_membudget_limit(&m->b, p);

	bl_http_respond_error_ex(req, 400, "too_large",
				 json_pack("{s:I,s:s}", "max_bytes", (json_int_t)limit, "priority",
					   bl_mem_priority_name(p)),
				 NULL,
				 "%llu bytes at priority %s can never be admitted: that priority may "
				 "fill reserved memory up to %llu bytes (%s); ask for less, or a "
				 "higher priority",
				 (unsigned long long)bytes, bl_mem_priority_name(p),
				 (unsigned long long)limit,
				 p == BL_MEM_LOW	 ? "the low watermark"
				 : p == BL_MEM_NORMAL ? "the high watermark"
						      : "the capacity");
}

/* Admits waiting reservations from the head of the queue while they fit. */
static void mem_pump(struct bl_budgets *bs)
{
	struct mem_rt *m = bs->mem;
	struct bl_waitq_node *n;

	while (m && !m->retired && !bs->shutting_down && (n = bl_waitq_peek(&m->q))) {
		struct waiter *w = BL_WAITQ_ENTRY(n, struct waiter, node);

		if (!bl_membudget_would_admit(&m->b, w->mem_bytes, w->mem_prio)) {
			if (w->mem_bytes <= bl_membudget_limit(&m->b, w->mem_prio))
				return; /* waits for releases */
			/* A reload shrank the limits below it: it would wait forever. */
			bl_waitq_pop(&m->q);
			w->answered = true;
			w->req->on_abort = NULL;
			respond_too_large_mem(w->req, m, w->mem_bytes, w->mem_prio);
		} else {
			bl_waitq_pop(&m->q);
			mem_grant(bs, w, bl_mono_now());
		}
		if (w->has_timer)
			waiter_free(w); /* the handler frees the others */
	}
}

/* Answers a reservation that leaves the queue unadmitted. */
static void mem_deny(struct mem_rt *m, struct waiter *w, bl_time_ns now, const char *code)
{
	struct bl_membudget_stats st;

	bl_membudget_stats(&m->b, &st);
	w->req->on_abort = NULL;
	bl_http_respond_error_ex(
		w->req, 429, code,
		json_pack("{s:I,s:I,s:I,s:s,s:s,s:I}", "retry_after_ms", (json_int_t)MEM_RETRY_MS,
			  "bytes", (json_int_t)w->mem_bytes, "available_bytes",
			  (json_int_t)st.available_bytes[w->mem_prio], "priority",
			  bl_mem_priority_name(w->mem_prio), "pressure",
			  bl_mem_pressure_name(st.pressure), "waited_ms",
			  (json_int_t)(((uint64_t)now - w->start_ns) / BL_NS_PER_MS)),
		"Retry-After: 1\r\n",
		strcmp(code, "queue_full") == 0
			? "the memory budget's waiting queue is full (memory.max_queue); retry later"
			: "%llu bytes at priority %s do not fit now: %llu of %llu usable bytes are "
			  "reserved and this priority may reserve %llu more; retry after releases",
		(unsigned long long)w->mem_bytes, bl_mem_priority_name(w->mem_prio),
		(unsigned long long)st.reserved_bytes, (unsigned long long)st.usable_bytes,
		(unsigned long long)st.available_bytes[w->mem_prio]);
}

static void mem_on_deadline(struct waiter *w)
{
	struct bl_budgets *bs = w->bs;
	struct mem_rt *m = bs->mem;

	bl_waitq_remove(&m->q, &w->node);
	m->wait_timeouts++;
	m->denied++;
	mem_deny(m, w, bl_mono_now(), "insufficient_memory");
	waiter_free(w);
	mem_pump(bs);
}

static void mem_on_abort(struct waiter *w)
{
	struct bl_budgets *bs = w->bs;
	struct mem_rt *m = bs->mem;
	struct bl_http_req *req = w->req;

	bl_waitq_remove(&m->q, &w->node);
	m->cancelled++;
	req->on_abort = NULL;
	bl_http_respond(req, 499, "text/plain", "", 0, NULL);
	waiter_free(w);
	mem_pump(bs);
}

/* Reads a request's amount of memory: exactly one of "bytes" (an integer)
 * and "size" (a string such as "2GiB"), at least 1 byte. Returns 0, or
 * answers 400 and returns -1. */
static int body_bytes(struct bl_http_req *req, const struct bl_json_fields *body, uint64_t *bytes)
{
	struct bl_json_error e = {0};
	const char *size = NULL;
	int64_t ibytes = 0;
	int rb, rs;

	rb = bl_json_get_int(body, "bytes", 1, (int64_t)MAX_RESERVE_BYTES, &ibytes, &e);
	rs = rb < 0 ? 0 : bl_json_get_string(body, "size", 32, &size, &e);
	if (rb < 0 || rs < 0) {
		bl_api_bad_request(req, &e);
		return -1;
	}
	if ((rb == 0) == (rs == 0)) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "give exactly one of 'bytes' (an integer, e.g. 2147483648) or "
				      "'size' (a string, e.g. \"2GiB\")");
		return -1;
	}
	if (rb == 0) {
		*bytes = (uint64_t)ibytes;
	} else if (bl_parse_size(size, strlen(size), bytes) != 0 || *bytes == 0 ||
		   *bytes > MAX_RESERVE_BYTES) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "field 'size': '%.32s' is not a size of at least 1 byte, such "
				      "as \"512MiB\" or \"2GiB\" (units B, KiB, MiB, GiB, TiB, KB, MB, "
				      "GB, TB)",
				      size);
		return -1;
	}
	return 0;
}

void bl_budgets_memory_reserve(struct bl_budgets *bs, struct bl_http_req *req)
{
	static const char *const allowed[] = {"bytes", "size", "tenant", "priority", "wait_ms",
					      "ttl_ms", NULL};
	struct bl_json_error e = {0};
	struct bl_json_fields fields, *body = &fields;
	const char *tenant = DEFAULT_TENANT, *prio_name = "normal";
	struct mem_rt *m = bs->mem;
	struct waiter *w = NULL;
	struct bl_waitq_tenant *slot;
	enum bl_mem_priority prio;
	int64_t wait_ms = 0, ttl_ms = -1;
	uint64_t bytes = 0, cost;
	int rc;

	if (bl_api_body(req, false, allowed, body) != 0)
		return;
	if (body_bytes(req, body, &bytes) != 0)
		goto out;
	if (bl_json_get_string(body, "tenant", BL_WAITQ_TENANT_NAME_MAX, &tenant, &e) < 0 ||
	    bl_json_get_string(body, "priority", 16, &prio_name, &e) < 0 ||
	    bl_json_get_int(body, "wait_ms", 0, MAX_WAIT_MS, &wait_ms, &e) < 0 ||
	    bl_json_get_int(body, "ttl_ms", 1000, MAX_TTL_MS, &ttl_ms, &e) < 0)
		goto bad;
	if (bl_mem_priority_parse(prio_name, strlen(prio_name), &prio) != 0) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "field 'priority': '%.16s' is not one of low, normal, critical",
				      prio_name);
		goto out;
	}
	if (!m || m->retired) {
		bl_http_respond_error(req, 404, "memory_not_configured",
				      "no memory budget is configured: add a 'memory:' section to the "
				      "config (docs/configuration.md#memory)");
		goto out;
	}
	if (refuse_new_work(bs, req))
		goto out;
	if (bytes > bl_membudget_limit(&m->b, prio)) {
		respond_too_large_mem(req, m, bytes, prio);
		goto out;
	}
	w = bl_slab_alloc(bs->waiter_pool);
	if (!w) {
		respond_overloaded(bs, req);
		goto out;
	}
	w->bs = bs;
	w->kind = W_MEMORY;
	w->mem_bytes = bytes;
	w->mem_prio = prio;
	w->req = req;
	w->start_ns = (uint64_t)bl_mono_now();
	w->wait_ms = wait_ms;
	w->ttl_ms = ttl_ms > 0 ? ttl_ms : m->lease_ttl_ns / BL_NS_PER_MS;
	snprintf(w->tenant, sizeof w->tenant, "%s", tenant);
	bl_waitq_node_init(&w->node);
	/* Fairness across tenants by bytes: one unit per millionth of usable. */
	{
		struct bl_membudget_stats st;

		bl_membudget_stats(&m->b, &st);
		cost = (uint64_t)((double)bytes / (double)(st.usable_bytes ? st.usable_bytes : 1) *
				  1e6) + 1;
	}
	if (bl_waitq_tenants_get(m->tenants, w->tenant, strlen(w->tenant), &slot) != 0)
		goto bad;
	rc = bl_waitq_push(&m->q, &w->node, bl_mem_priority_waitq_class(prio), slot, cost);
	if (rc != 0) {
		m->queue_full++;
		mem_deny(m, w, bl_mono_now(), "queue_full");
		goto out;
	}
	mem_pump(bs);
	if (w->answered)
		goto out;
	if (wait_ms == 0) {
		bl_waitq_remove(&m->q, &w->node);
		m->denied++;
		mem_deny(m, w, bl_mono_now(), "insufficient_memory");
		goto out;
	}
	if (bl_waitq_length(&m->q) > m->max_queue) {
		bl_waitq_remove(&m->q, &w->node);
		m->queue_full++;
		mem_deny(m, w, bl_mono_now(), "queue_full");
		goto out;
	}
	waiter_arm(bs, w, (uint64_t)wait_ms);
	bl_json_fields_cleanup(body);
	return;
bad:
	bl_api_bad_request(req, &e);
out:
	if (w && !w->has_timer)
		bl_slab_free(bs->waiter_pool, w);
	bl_json_fields_cleanup(body);
}

/* Releases a memory lease (POST /v1/release names it like any lease). */
static void mem_release(struct bl_budgets *bs, struct bl_http_req *req, struct lease_rt *l)
{
	struct mem_rt *m = bs->mem;
	bl_time_ns now = bl_mono_now();
	char out[256];
	int n;

	bl_lease_remove(bs->leases, &l->node);
	bl_membudget_release(&m->b, l->mem_bytes, l->mem_prio);
	m->released++;
	n = snprintf(out, sizeof out,
		     "{\"released\":true,\"memory_bytes\":%llu,\"priority\":\"%s\",\"held_ms\":%lld}\n",
		     (unsigned long long)l->mem_bytes, bl_mem_priority_name(l->mem_prio),
		     (long long)((now - l->acquired_ns) / BL_NS_PER_MS));
	bl_http_respond(req, 200, "application/json", out, (size_t)n, NULL);
	lease_free(bs, l);
	arm_expiry(bs);
	mem_pump(bs);
}

/* Reclaims an expired memory lease. */
static void mem_expire(struct bl_budgets *bs, struct lease_rt *l, bl_time_ns now)
{
	char id[17];

	format_id(l->node.id, id);
	bl_membudget_release(&bs->mem->b, l->mem_bytes, l->mem_prio);
	bs->mem->expired++;
	bl_log(BL_LOG_INFO, "memory lease expired", "lease=%s tenant=%s bytes=%llu held_ms=%lld",
	       id, l->tenant, (unsigned long long)l->mem_bytes,
	       (long long)((now - l->acquired_ns) / BL_NS_PER_MS));
	lease_free(bs, l);
	mem_pump(bs);
}

/* ---- release and extend --------------------------------------------------- */

static struct lease_rt *lookup_lease(struct bl_budgets *bs, const char *id_text)
{
	uint64_t id;
	struct bl_lease_node *n;

	if (!parse_id(id_text, &id))
		return NULL;
	n = bl_lease_find(bs->leases, id);
	return n ? BL_CONTAINER_OF(n, struct lease_rt, node) : NULL;
}

static void respond_unknown_lease(struct bl_http_req *req, const char *id)
{
	bl_http_respond_error(req, 404, "unknown_lease",
			      "no live lease '%.64s': it was released already, expired, or never "
			      "granted",
			      id);
}

static void lease_free(struct bl_budgets *bs, struct lease_rt *l)
{
	struct budget_rt *br = l->budget, *bebr = l->be_budget;

	if (l->memory) {
		bs->mem->leases--;
		bl_slab_free(bs->lease_pool, l);
		return;
	}
	if (br)
		br->leases--;
	if (bebr)
		bebr->leases--;
	bl_slab_free(bs->lease_pool, l);
	if (br)
		budget_maybe_free(bs, br);
	if (bebr)
		budget_maybe_free(bs, bebr);
}

/* Feeds the provider's rate-limit headers to the budget; returns how many
 * values were ignored as malformed. */
static int apply_headers(struct budget_rt *br, json_t *headers, bl_time_ns now,
			 int64_t *retry_after_ms)
{
	struct bl_ratelimit_header h[MAX_PROVIDER_HEADERS];
	struct bl_ratelimit_headers out;
	const char *key;
	json_t *v;
	size_t n = 0;

	json_object_foreach(headers, key, v) {
		if (n == MAX_PROVIDER_HEADERS)
			break;
		h[n++] = (struct bl_ratelimit_header){key, strlen(key), json_string_value(v),
						      json_string_length(v)};
	}
	if (bl_ratelimit_headers_parse(h, n, bl_wall_ns() / BL_NS_PER_MS, &out) != 0)
		return 0;
	for (int d = 0; d < BL_RATELIMIT_DIMS; d++) {
		const struct bl_ratelimit_dim_info *di = &out.dim[d];

		if (di->has_remaining)
			bl_budget_sync_remaining(&br->b, (enum bl_dim)d, di->remaining,
						 now + (di->has_reset ? di->reset_after_ms : 0) *
							       BL_NS_PER_MS,
						 now);
	}
	if (out.has_retry_after)
		*retry_after_ms = out.retry_after_ms;
	br->headers_malformed += out.malformed;
	return (int)out.malformed;
}

/* Appends ,"key":{"dim":n,...} with the non-zero amounts; returns its length. */
static size_t write_amounts(char *out, size_t cap, const char *key, const uint64_t *n)
{
	size_t o = (size_t)snprintf(out, cap, ",\"%s\":{", key);

	for (int d = 0; d < BL_DIM_COUNT && o < cap; d++)
		if (n[d])
			o += (size_t)snprintf(out + o, cap - o, "%s\"%s\":%llu", out[o - 1] == '{' ? "" : ",",
					      bl_dim_name((enum bl_dim)d), (unsigned long long)n[d]);
	if (o < cap)
		o += (size_t)snprintf(out + o, cap - o, "}");
	return o < cap ? o : cap - 1;
}

/* Reconciles one budget of a released lease; the key's budget (is_key) also
 * gets the provider's headers and its 429. Returns the header values ignored. */
static int settle(struct budget_rt *br, const struct lease_rt *l, uint64_t ticket,
		  const struct bl_amounts *used, int out_kind, json_t *headers, bool is_key,
		  bl_time_ns now, struct bl_budget_reconcile *rec)
{
	int64_t retry_after_ms = -1;
	int malformed = 0;

	bl_budget_release(&br->b, &l->reserved, used, ticket, now, rec);
	br->outcomes[out_kind]++;
	if (!is_key)
		return 0;
	if (headers)
		malformed = apply_headers(br, headers, now, &retry_after_ms);
	if (out_kind == OUT_RATE_LIMITED) {
		int64_t pause_ns = retry_after_ms > 0 ? retry_after_ms * BL_NS_PER_MS : 0;

		/* One decrease per round trip: calls already in flight when the
		 * budget slowed down were sent at the old rate. */
		if (br->last_decrease_ns && l->acquired_ns < br->last_decrease_ns) {
			bl_budget_on_rate_limited_stale(&br->b, now, pause_ns);
		} else {
			bl_budget_on_rate_limited(&br->b, now, pause_ns);
			br->last_decrease_ns = now;
		}
	}
	return malformed;
}

void bl_budgets_release(struct bl_budgets *bs, struct bl_http_req *req)
{
	static const char *const allowed[] = {"lease", "outcome", "requests_used", "tokens_used",
					      "input_tokens_used", "output_tokens_used", "latency_ms",
					      "provider_headers", "backend", NULL};
	struct bl_json_error e = {0};
	struct bl_json_fields fields, *body = &fields;
	json_t *headers = NULL;
	const char *id = NULL, *outcome = "ok";
	struct lease_rt *l;
	struct budget_rt *br;
	struct bl_amounts used;
	struct bl_budget_reconcile rec;
	bool given[BL_DIM_COUNT] = {false};
	const struct bl_pool *pool = NULL; /* the call's, for pool_wake */
	int64_t latency_ms = 0;
	int out_kind = -1, malformed = 0;
	bl_time_ns now;

	if (bl_api_body(req, false, allowed, body) != 0)
		return;
	if (bl_json_get_string(body, "outcome", 16, &outcome, &e) < 0 ||
	    bl_json_get_int(body, "latency_ms", 0, INT64_C(86400000), &latency_ms, &e) < 0)
		goto bad;
	if (bl_json_get_string(body, "lease", 64, &id, &e) != 0) {
		if (!id)
			snprintf(e.message, sizeof e.message,
				 "field 'lease' is required: the id acquire returned");
		snprintf(e.code, sizeof e.code, "invalid_field");
		goto bad;
	}
	for (int k = 0; k < 5; k++)
		if (strcmp(outcome, outcome_names[k]) == 0)
			out_kind = k;
	if (out_kind < 0) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "field 'outcome': '%.16s' is not one of ok, error, timeout, "
				      "rate_limited, cancelled",
				      outcome);
		goto out;
	}
	if (bl_json_get_object(body, "provider_headers", &headers, &e) < 0) {
		bl_http_respond_error(req, 400, "invalid_field",
				      "field 'provider_headers' must be an object of header name to "
				      "string value");
		goto out;
	}
	if (headers) {
		const char *k;
		json_t *v;

		json_object_foreach(headers, k, v) {
			if (!json_is_string(v)) {
				bl_http_respond_error(req, 400, "invalid_field",
						      "provider_headers.%.64s must be a string", k);
				goto out;
			}
		}
	}
	l = lookup_lease(bs, id);
	if (!l) {
		respond_unknown_lease(req, id);
		goto out;
	}
	if (l->memory) {
		mem_release(bs, req, l);
		goto out;
	}
	br = l->budget;
	/* What was used: the estimate unless told otherwise; nothing if the call
	 * never reached the provider. */
	used = out_kind == OUT_CANCELLED ? (struct bl_amounts){{0}} : l->reserved;
	if (get_units(body, "requests_used", &used.n[BL_DIM_REQUESTS], &given[BL_DIM_REQUESTS], &e) < 0 ||
	    get_units(body, "tokens_used", &used.n[BL_DIM_TOKENS], &given[BL_DIM_TOKENS], &e) < 0 ||
	    get_units(body, "input_tokens_used", &used.n[BL_DIM_INPUT_TOKENS],
		      &given[BL_DIM_INPUT_TOKENS], &e) < 0 ||
	    get_units(body, "output_tokens_used", &used.n[BL_DIM_OUTPUT_TOKENS],
		      &given[BL_DIM_OUTPUT_TOKENS], &e) < 0)
		goto bad;
	if (!given[BL_DIM_TOKENS] && (given[BL_DIM_INPUT_TOKENS] || given[BL_DIM_OUTPUT_TOKENS]))
		used.n[BL_DIM_TOKENS] = 0; /* the tokens rule sums input and output */
	now = bl_mono_now();
	bl_lease_remove(bs->leases, &l->node);
	{
		/* The provider's answer (headers, 429) is about the key: the
		 * backend's own budget when it has one, else the shared one. */
		struct budget_rt *key_budget = l->be_budget ? l->be_budget : br;
		struct bl_budget_reconcile be_rec;

		if (br)
			malformed = settle(br, l, l->ticket, &used, out_kind, headers,
					   key_budget == br, now, &rec);
		if (l->be_budget)
			malformed = settle(l->be_budget, l, l->be_ticket, &used, out_kind, headers,
					   true, now, br ? &be_rec : &rec);
	}
	{
		/* Written directly, as the grant is (see there). */
		char out[1024];
		size_t n = (size_t)snprintf(out, sizeof out, "{\"released\":true");

		if (br)
			n += (size_t)snprintf(out + n, sizeof out - n, ",\"budget\":\"%s\"", br->name);
		if (l->has_backend)
			n += (size_t)snprintf(out + n, sizeof out - n, ",\"backend\":\"%s\"",
					      bl_pool_backend_name(l->choice.backend));
		if (l->be_budget)
			n += (size_t)snprintf(out + n, sizeof out - n, ",\"backend_budget\":\"%s\"",
					      l->be_budget->name);
		if (br || l->be_budget) {
			n += write_amounts(out + n, sizeof out - n, "refunded", rec.refunded);
			n += write_amounts(out + n, sizeof out - n, "charged", rec.charged);
			n += write_amounts(out + n, sizeof out - n, "lapsed", rec.lapsed);
		}
		n += (size_t)snprintf(out + n, sizeof out - n, ",\"held_ms\":%lld,\"headers_ignored\":%d}\n",
				      (long long)((now - l->acquired_ns) / BL_NS_PER_MS), malformed);
		bl_http_respond(req, 200, "application/json", out, n, NULL);
	}
	if (l->has_backend) {
		/* Last: a backend a reload removed goes with its last call. */
		int64_t lat_ns = bl_json_has(body, "latency_ms") ? latency_ms * BL_NS_PER_MS
								 : now - l->acquired_ns;

		pool = bl_pool_backend_pool(l->choice.backend);
		bl_pool_finish(&l->choice, (enum bl_pool_outcome)out_kind, lat_ns, now);
	}
	{
		struct budget_rt *bebr = l->be_budget;

		lease_free(bs, l);
		arm_expiry(bs);
		if (br && find_budget(bs, br->name, true) == br)
			pump(br);
		if (bebr && bebr != br && find_budget(bs, bebr->name, true) == bebr)
			pump(bebr);
		if (pool)
			pool_wake(bs, pool);
	}
	goto out;
bad:
	bl_api_bad_request(req, &e);
out:
	bl_json_fields_cleanup(body);
}

/* The TTL a lease gets when extend names none. */
static int64_t lease_default_ttl_ns(struct bl_budgets *bs, const struct lease_rt *l)
{
	if (l->memory)
		return bs->mem->lease_ttl_ns;
	if (l->budget)
		return l->budget->lease_ttl_ns;
	if (l->be_budget)
		return l->be_budget->lease_ttl_ns;
	return DEFAULT_POOL_TTL_MS * BL_NS_PER_MS;
}

void bl_budgets_extend(struct bl_budgets *bs, struct bl_http_req *req, const char *lease_id)
{
	static const char *const allowed[] = {"ttl_ms", NULL};
	struct bl_json_error e = {0};
	struct bl_json_fields fields, *body = &fields;
	struct lease_rt *l;
	int64_t ttl_ms = -1;
	bl_time_ns now;

	if (bl_api_body(req, true, allowed, body) != 0)
		return;
	if (bl_json_get_int(body, "ttl_ms", 1000, MAX_TTL_MS, &ttl_ms, &e) < 0) {
		bl_api_bad_request(req, &e);
		goto out;
	}
	l = lookup_lease(bs, lease_id);
	if (!l) {
		respond_unknown_lease(req, lease_id);
		goto out;
	}
	if (ttl_ms < 0)
		ttl_ms = lease_default_ttl_ns(bs, l) / BL_NS_PER_MS;
	now = bl_mono_now();
	bl_lease_set_expiry(bs->leases, &l->node, now + ttl_ms * BL_NS_PER_MS);
	arm_expiry(bs);
	bl_http_respond_json(req, 200,
			     json_pack("{s:s,s:I,s:I}", "lease", lease_id, "expires_at_ms",
				       (json_int_t)mono_to_wall_ms(l->node.expires_ns), "ttl_ms",
				       (json_int_t)ttl_ms),
			     NULL);
out:
	bl_json_fields_cleanup(body);
}

/* Answers a growth that does not fit now; the reservation keeps its size. */
static void respond_no_growth(struct bl_http_req *req, struct mem_rt *m, const struct lease_rt *l,
			      uint64_t bytes, const struct waiter *ahead)
{
	struct bl_membudget_stats st;
	json_t *detail;

	bl_membudget_stats(&m->b, &st);
	detail = json_pack(
		"{s:I,s:I,s:I,s:I,s:s,s:s}", "retry_after_ms", (json_int_t)MEM_RETRY_MS, "bytes",
		(json_int_t)bytes, "held_bytes", (json_int_t)l->mem_bytes, "available_bytes",
		(json_int_t)st.available_bytes[l->mem_prio], "priority",
		bl_mem_priority_name(l->mem_prio), "pressure", bl_mem_pressure_name(st.pressure));

	if (ahead)
		bl_http_respond_error_ex(req, 429, "insufficient_memory", detail, "Retry-After: 1\r\n",
					 "growing to %llu bytes waits behind %u queued "
					 "reservation(s), the first at priority %s; the lease keeps "
					 "its %llu bytes, retry after releases",
					 (unsigned long long)bytes, (unsigned)bl_waitq_length(&m->q),
					 bl_mem_priority_name(ahead->mem_prio),
					 (unsigned long long)l->mem_bytes);
	else
		bl_http_respond_error_ex(req, 429, "insufficient_memory", detail, "Retry-After: 1\r\n",
					 "growing to %llu bytes does not fit now: priority %s may "
					 "reserve %llu more bytes; the lease keeps its %llu bytes, "
					 "retry after releases",
					 (unsigned long long)bytes, bl_mem_priority_name(l->mem_prio),
					 (unsigned long long)st.available_bytes[l->mem_prio],
					 (unsigned long long)l->mem_bytes);
}

/* POST /v1/leases/{id}/resize: a memory reservation grows or shrinks in
 * place. Shrinking always succeeds and may admit waiters. Growing is admitted
 * now or not at all (429, the lease unchanged): by the reservation rule of
 * its priority, and only when no reservation of the same or a higher
 * priority is waiting, so a growth never jumps the queue. */
void bl_budgets_resize(struct bl_budgets *bs, struct bl_http_req *req, const char *lease_id)
{
	static const char *const allowed[] = {"bytes", "size", NULL};
	struct bl_json_fields fields, *body = &fields;
	struct mem_rt *m = bs->mem;
	struct bl_waitq_node *head;
	struct lease_rt *l;
	uint64_t bytes, old;
	int rc;

	if (bl_api_body(req, false, allowed, body) != 0)
		return;
	if (body_bytes(req, body, &bytes) != 0)
		goto out;
	l = lookup_lease(bs, lease_id);
	if (!l) {
		respond_unknown_lease(req, lease_id);
		goto out;
	}
	if (!l->memory) {
		bl_http_respond_error(req, 409, "not_resizable",
				      "lease '%.64s' is a rate lease: only memory reservations "
				      "(POST /v1/memory/reserve) can be resized",
				      lease_id);
		goto out;
	}
	old = l->mem_bytes;
	if (bytes > old) {
		/* A growth is new memory: refused as a new reservation would be. */
		if (m->retired) {
			bl_http_respond_error(req, 404, "memory_not_configured",
					      "the memory section was removed by a config reload: "
					      "reservations may shrink and release, not grow");
			goto out;
		}
		if (refuse_new_work(bs, req))
			goto out;
		if (bytes > bl_membudget_limit(&m->b, l->mem_prio)) {
			respond_too_large_mem(req, m, bytes, l->mem_prio);
			goto out;
		}
		head = bl_waitq_peek(&m->q);
		if (head && BL_WAITQ_ENTRY(head, struct waiter, node)->mem_prio >= l->mem_prio) {
			m->denied++;
			respond_no_growth(req, m, l, bytes, BL_WAITQ_ENTRY(head, struct waiter, node));
			goto out;
		}
	}
	rc = bl_membudget_resize(&m->b, old, bytes, l->mem_prio, NULL);
	if (rc == BL_EAGAIN) {
		m->denied++;
		respond_no_growth(req, m, l, bytes, NULL);
		goto out;
	}
	if (rc != 0) { /* the lease's bytes are in the budget: cannot happen */
		bl_http_respond_error(req, 500, "internal", "memory budget refused a resize (%s)",
				      bl_strerror(rc));
		goto out;
	}
	l->mem_bytes = bytes;
	if (bytes != old)
		m->resized++;
	bl_http_respond_json(
		req, 200,
		json_pack("{s:s,s:I,s:I,s:s,s:I,s:s}", "lease", lease_id, "bytes", (json_int_t)bytes,
			  "previous_bytes", (json_int_t)old, "priority",
			  bl_mem_priority_name(l->mem_prio), "expires_at_ms",
			  (json_int_t)mono_to_wall_ms(l->node.expires_ns), "pressure",
			  bl_mem_pressure_name(bl_membudget_pressure(&m->b))),
		NULL);
	if (bytes < old)
		mem_pump(bs);
out:
	bl_json_fields_cleanup(body);
}

/* ---- lease expiry ----------------------------------------------------------- */

static void on_expiry(uv_timer_t *t)
{
	struct bl_budgets *bs = t->data;
	struct bl_lease_node *n;
	bl_time_ns now = bl_mono_now();

	bs->expiry_at_ns = 0;
	while ((n = bl_lease_pop_expired(bs->leases, now))) {
		struct lease_rt *l = BL_CONTAINER_OF(n, struct lease_rt, node);
		const struct bl_pool *pool;
		struct budget_rt *br = l->budget, *bebr = l->be_budget;
		char id[17];

		if (l->memory) {
			mem_expire(bs, l, now);
			continue;
		}
		if (br)
			bl_budget_expire(&br->b, now);
		if (bebr)
			bl_budget_expire(&bebr->b, now);
		format_id(l->node.id, id);
		bl_log(BL_LOG_INFO, "lease expired",
		       "budget=%s backend=%s lease=%s tenant=%s held_ms=%lld", br ? br->name : "-",
		       l->has_backend ? bl_pool_backend_name(l->choice.backend) : "-", id, l->tenant,
		       (long long)((now - l->acquired_ns) / BL_NS_PER_MS));
		/* A call that never came back counts against its backend (which a
		 * reload may have removed: it goes with this, its last call). */
		pool = NULL;
		if (l->has_backend) {
			pool = bl_pool_backend_pool(l->choice.backend);
			bl_pool_finish(&l->choice, BL_POOL_TIMEOUT, now - l->acquired_ns, now);
		}
		lease_free(bs, l);
		if (br && find_budget(bs, br->name, true) == br)
			pump(br);
		if (bebr && bebr != br && find_budget(bs, bebr->name, true) == bebr)
			pump(bebr);
		if (pool)
			pool_wake(bs, pool);
	}
	arm_expiry(bs);
}

static void arm_expiry(struct bl_budgets *bs)
{
	struct bl_lease_node *first = bl_lease_first_expiry(bs->leases);
	bl_time_ns now;

	if (bs->shutting_down)
		return;
	if (!first) {
		uv_timer_stop(&bs->expiry);
		bs->expiry_at_ns = 0;
		return;
	}
	if (first->expires_ns == bs->expiry_at_ns)
		return;
	now = bl_mono_now();
	bs->expiry_at_ns = first->expires_ns;
	bl_timer_start(&bs->expiry, on_expiry,
		       first->expires_ns > now ? (uint64_t)ceil_ms(first->expires_ns - now) : 0, 0);
}

/* ---- views ------------------------------------------------------------------ */

static json_t *budget_json(struct budget_rt *br)
{
	struct bl_budget_stats st;
	bl_time_ns now = bl_mono_now();
	json_t *dims = json_object(), *queue = json_object(), *outcomes = json_object(), *o;

	bl_budget_stats(&br->b, now, &st);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		const struct bl_budget_dim_stats *ds = &st.dim[d];
		char per[32];

		if (!ds->limit)
			continue;
		bl_format_duration(ds->per_ns, per, sizeof per);
		json_object_set_new(
			dims, bl_dim_name((enum bl_dim)d),
			json_pack("{s:I,s:s,s:I,s:f,s:f,s:I,s:I,s:I,s:f,s:I,s:I}", "limit",
				  (json_int_t)ds->limit, "per", per, "burst_capacity",
				  (json_int_t)ds->capacity, "target_rate_per_s", ds->target_rate_per_s,
				  "rate_per_s", ds->rate_per_s, "available", (json_int_t)ds->available,
				  "debt", (json_int_t)ds->debt, "window_units",
				  (json_int_t)ds->window_units, "utilization", ds->utilization,
				  "refunded", (json_int_t)ds->refunded, "charged",
				  (json_int_t)ds->charged));
	}
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		json_object_set_new(queue, bl_waitq_class_name((enum bl_waitq_class)c),
				    json_integer(bl_waitq_class_length(&br->q, (enum bl_waitq_class)c)));
	for (int k = 0; k < 5; k++)
		json_object_set_new(outcomes, outcome_names[k],
				    json_integer((json_int_t)br->outcomes[k]));
	o = json_pack("{s:s,s:o,s:i,s:i,s:f,s:f,s:f,s:o,s:i,s:i,s:o,"
		      "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o},s:b}",
		      "name", br->name, "limits", dims, "concurrent", (int)st.concurrent,
		      "in_flight", (int)st.in_flight, "target_utilization",
		      br->limits.target_utilization, "burst", br->limits.burst, "rate_factor",
		      st.rate_factor, "paused_until_ms",
		      st.paused_until_ns > now ? json_integer((json_int_t)mono_to_wall_ms(
							 st.paused_until_ns))
					       : json_null(),
		      "queue_depth", (int)bl_waitq_length(&br->q), "max_queue", (int)br->max_queue,
		      "queue", queue, "counts", "grants", (json_int_t)br->granted, "waited",
		      (json_int_t)br->granted_after_wait, "denials", (json_int_t)br->denied,
		      "queue_full", (json_int_t)br->queue_full, "wait_timeouts",
		      (json_int_t)br->wait_timeouts, "cancelled", (json_int_t)br->cancelled,
		      "provider_429s", (json_int_t)st.provider_429s, "resyncs",
		      (json_int_t)st.resyncs, "expired_leases", (json_int_t)st.expired,
		      "headers_malformed", (json_int_t)br->headers_malformed, "releases",
		      outcomes, "retired", br->retired);
	return o;
}

json_t *bl_budgets_json(struct bl_budgets *bs)
{
	json_t *o = json_object();

	for (struct budget_rt *br = bs->list; br; br = br->next)
		json_object_set_new(o, br->name, budget_json(br));
	return o;
}

void bl_budgets_list(struct bl_budgets *bs, struct bl_http_req *req)
{
	bl_http_respond_json(req, 200,
			     json_pack("{s:o,s:I}", "budgets", bl_budgets_json(bs), "leases",
				       (json_int_t)bl_lease_count(bs->leases)),
			     NULL);
}

void bl_budgets_get(struct bl_budgets *bs, struct bl_http_req *req, const char *name)
{
	struct budget_rt *br = find_budget(bs, name, true);

	if (!br) {
		bl_http_respond_error(req, 404, "unknown_budget",
				      "no budget '%.128s' is configured (GET /v1/budgets lists them)",
				      name);
		return;
	}
	bl_http_respond_json(req, 200, budget_json(br), NULL);
}

/* ---- memory: views ------------------------------------------------------------ */

struct tenant_use {
	json_t *by_tenant;
};

static void add_tenant_use(struct bl_lease_node *n, void *ctx)
{
	struct tenant_use *tu = ctx;
	struct lease_rt *l = BL_CONTAINER_OF(n, struct lease_rt, node);
	json_t *o;

	if (!l->memory)
		return;
	o = json_object_get(tu->by_tenant, l->tenant);
	if (!o) {
		o = json_pack("{s:I,s:I}", "bytes", (json_int_t)0, "reservations", (json_int_t)0);
		json_object_set_new(tu->by_tenant, l->tenant, o);
	}
	json_object_set_new(o, "bytes",
			    json_integer(json_integer_value(json_object_get(o, "bytes")) +
					 (json_int_t)l->mem_bytes));
	json_object_set_new(o, "reservations",
			    json_integer(json_integer_value(json_object_get(o, "reservations")) + 1));
}

json_t *bl_budgets_memory_json(struct bl_budgets *bs)
{
	struct mem_rt *m = bs->mem;
	struct bl_membudget_stats st;
	struct tenant_use tu;
	json_t *prios, *waiters;

	if (!m)
		return json_pack("{s:b}", "configured", false);
	bl_membudget_stats(&m->b, &st);
	prios = json_object();
	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++)
		json_object_set_new(prios, bl_mem_priority_name((enum bl_mem_priority)p),
				    json_pack("{s:I,s:I,s:I,s:I}", "bytes", (json_int_t)st.bytes[p],
					      "reservations", (json_int_t)st.count[p],
					      "limit_bytes",
					      (json_int_t)bl_membudget_limit(&m->b, (enum bl_mem_priority)p),
					      "available_bytes", (json_int_t)st.available_bytes[p]));
	waiters = json_object();
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		json_object_set_new(waiters, bl_waitq_class_name((enum bl_waitq_class)c),
				    json_integer(bl_waitq_class_length(&m->q, (enum bl_waitq_class)c)));
	tu.by_tenant = json_object();
	bl_lease_foreach(bs->leases, add_tenant_use, &tu);
	return json_pack(
		"{s:b,s:b,s:I,s:s,s:f,s:I,s:I,s:{s:f,s:f,s:I,s:I},s:I,s:f,s:s,s:o,s:o,s:o,s:I,s:I,"
		"s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
		"configured", true, "retired", m->retired, "capacity_bytes",
		(json_int_t)st.capacity_bytes, "capacity_source", m->capacity_source,
		"safety_buffer", m->b.config.safety_buffer, "usable_bytes",
		(json_int_t)st.usable_bytes, "buffer_bytes", (json_int_t)st.buffer_bytes,
		"watermarks", "low", m->b.config.low, "high", m->b.config.high, "low_bytes",
		(json_int_t)st.low_limit_bytes, "high_bytes", (json_int_t)st.high_limit_bytes,
		"reserved_bytes", (json_int_t)st.reserved_bytes, "utilization", st.utilization,
		"pressure", bl_mem_pressure_name(st.pressure), "by_priority", prios, "by_tenant",
		tu.by_tenant, "waiters", waiters, "max_queue", (json_int_t)m->max_queue,
		"high_water_bytes", (json_int_t)st.high_water_bytes, "counters", "granted",
		(json_int_t)m->granted, "granted_after_wait", (json_int_t)m->granted_after_wait,
		"denied", (json_int_t)m->denied, "queue_full", (json_int_t)m->queue_full,
		"wait_timeouts", (json_int_t)m->wait_timeouts, "cancelled", (json_int_t)m->cancelled,
		"released", (json_int_t)m->released, "expired", (json_int_t)m->expired, "resized",
		(json_int_t)m->resized);
}

void bl_budgets_memory_get(struct bl_budgets *bs, struct bl_http_req *req)
{
	bl_http_respond_json(req, 200, bl_budgets_memory_json(bs), NULL);
}

static void mem_write_metrics(struct bl_budgets *bs, struct bl_text *t)
{
	struct mem_rt *m = bs->mem;
	struct bl_membudget_stats st;

	if (!m)
		return;
	bl_membudget_stats(&m->b, &st);
	bl_text_printf(t,
		       "# HELP ballast_memory_capacity_bytes Memory the budget governs.\n"
		       "# TYPE ballast_memory_capacity_bytes gauge\n"
		       "ballast_memory_capacity_bytes %llu\n"
		       "# HELP ballast_memory_usable_bytes Capacity minus the safety buffer.\n"
		       "# TYPE ballast_memory_usable_bytes gauge\n"
		       "ballast_memory_usable_bytes %llu\n"
		       "# HELP ballast_memory_limit_bytes Most reserved may reach, by priority.\n"
		       "# TYPE ballast_memory_limit_bytes gauge\n",
		       (unsigned long long)st.capacity_bytes, (unsigned long long)st.usable_bytes);
	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++)
		bl_text_printf(t, "ballast_memory_limit_bytes{priority=\"%s\"} %llu\n",
			       bl_mem_priority_name((enum bl_mem_priority)p),
			       (unsigned long long)bl_membudget_limit(&m->b, (enum bl_mem_priority)p));
	bl_text_printf(t, "# HELP ballast_memory_reserved_bytes Bytes reserved, by priority.\n"
			  "# TYPE ballast_memory_reserved_bytes gauge\n");
	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++)
		bl_text_printf(t, "ballast_memory_reserved_bytes{priority=\"%s\"} %llu\n",
			       bl_mem_priority_name((enum bl_mem_priority)p),
			       (unsigned long long)st.bytes[p]);
	bl_text_printf(t, "# HELP ballast_memory_reservations Reservations held, by priority.\n"
			  "# TYPE ballast_memory_reservations gauge\n");
	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++)
		bl_text_printf(t, "ballast_memory_reservations{priority=\"%s\"} %llu\n",
			       bl_mem_priority_name((enum bl_mem_priority)p),
			       (unsigned long long)st.count[p]);
	bl_text_printf(t, "# HELP ballast_memory_queue_depth Reservations waiting, by class.\n"
			  "# TYPE ballast_memory_queue_depth gauge\n");
	for (int c = 0; c < BL_WAITQ_CLASSES; c++)
		bl_text_printf(t, "ballast_memory_queue_depth{priority=\"%s\"} %u\n",
			       bl_waitq_class_name((enum bl_waitq_class)c),
			       bl_waitq_class_length(&m->q, (enum bl_waitq_class)c));
	bl_text_printf(t,
		       "# HELP ballast_memory_utilization Reserved / usable (the autoscaler's memory "
		       "metric).\n# TYPE ballast_memory_utilization gauge\n"
		       "ballast_memory_utilization %.6f\n"
		       "# HELP ballast_memory_pressure 0 ok, 1 high (in the band), 2 critical.\n"
		       "# TYPE ballast_memory_pressure gauge\nballast_memory_pressure %d\n"
		       "# HELP ballast_memory_high_water_bytes Most ever reserved at once.\n"
		       "# TYPE ballast_memory_high_water_bytes gauge\n"
		       "ballast_memory_high_water_bytes %llu\n"
		       "# HELP ballast_memory_grants_total Reservations admitted.\n"
		       "# TYPE ballast_memory_grants_total counter\nballast_memory_grants_total %llu\n"
		       "# HELP ballast_memory_denials_total Reservations and growths answered 429, "
		       "by reason.\n"
		       "# TYPE ballast_memory_denials_total counter\n"
		       "ballast_memory_denials_total{reason=\"insufficient_memory\"} %llu\n"
		       "ballast_memory_denials_total{reason=\"queue_full\"} %llu\n"
		       "# HELP ballast_memory_expired_leases_total Reservations reclaimed on TTL.\n"
		       "# TYPE ballast_memory_expired_leases_total counter\n"
		       "ballast_memory_expired_leases_total %llu\n"
		       "# HELP ballast_memory_resizes_total Reservations grown or shrunk in place.\n"
		       "# TYPE ballast_memory_resizes_total counter\nballast_memory_resizes_total %llu\n",
		       st.utilization, (int)st.pressure, (unsigned long long)st.high_water_bytes,
		       (unsigned long long)m->granted, (unsigned long long)m->denied,
		       (unsigned long long)m->queue_full, (unsigned long long)m->expired,
		       (unsigned long long)m->resized);
}

size_t bl_budgets_object_pools(struct bl_budgets *bs, const char **names, struct bl_slab_stats *ss,
			size_t cap)
{
	if (cap < 2)
		return 0;
	names[0] = "leases";
	bl_slab_stats(bs->lease_pool, &ss[0]);
	names[1] = "waiters";
	bl_slab_stats(bs->waiter_pool, &ss[1]);
	return 2;
}

void bl_budgets_write_metrics(struct bl_budgets *bs, struct bl_text *t)
{
	struct budget_rt *br;
	bl_time_ns now = bl_mono_now();

#define FAMILY(name, type, help) bl_text_printf(t, "# HELP " name " " help "\n# TYPE " name " " type "\n")
	FAMILY("ballast_budget_grants_total", "counter", "Acquires admitted.");
	for (br = bs->list; br; br = br->next)
		bl_text_printf(t, "ballast_budget_grants_total{budget=\"%s\"} %llu\n", br->name,
			       (unsigned long long)br->granted);
	FAMILY("ballast_budget_waited_grants_total", "counter", "Acquires admitted after waiting.");
	for (br = bs->list; br; br = br->next)
		bl_text_printf(t, "ballast_budget_waited_grants_total{budget=\"%s\"} %llu\n",
			       br->name, (unsigned long long)br->granted_after_wait);
	FAMILY("ballast_budget_denials_total", "counter", "Acquires answered 429, by reason.");
	for (br = bs->list; br; br = br->next)
		bl_text_printf(t,
			       "ballast_budget_denials_total{budget=\"%s\",reason=\"rate_limited\"} "
			       "%llu\nballast_budget_denials_total{budget=\"%s\",reason=\"queue_full\"} %llu\n",
			       br->name, (unsigned long long)br->denied, br->name,
			       (unsigned long long)br->queue_full);
	FAMILY("ballast_budget_in_flight", "gauge", "Leases holding a concurrency slot.");
	FAMILY("ballast_budget_queue_depth", "gauge", "Requests waiting, by priority.");
	FAMILY("ballast_budget_utilization", "gauge", "Units admitted over the last window / limit.");
	FAMILY("ballast_budget_debt_units", "gauge", "Units owed beyond an empty burst.");
	FAMILY("ballast_budget_rate_factor", "gauge", "Adaptive rate factor (1 = target rate).");
	FAMILY("ballast_budget_provider_429s_total", "counter", "Provider 429s reported on release.");
	FAMILY("ballast_budget_expired_leases_total", "counter", "Leases reclaimed on TTL.");
	for (br = bs->list; br; br = br->next) {
		struct bl_budget_stats st;

		bl_budget_stats(&br->b, now, &st);
		bl_text_printf(t, "ballast_budget_in_flight{budget=\"%s\"} %u\n", br->name,
			       st.in_flight);
		for (int c = 0; c < BL_WAITQ_CLASSES; c++)
			bl_text_printf(t, "ballast_budget_queue_depth{budget=\"%s\",priority=\"%s\"} %u\n",
				       br->name, bl_waitq_class_name((enum bl_waitq_class)c),
				       bl_waitq_class_length(&br->q, (enum bl_waitq_class)c));
		for (int d = 0; d < BL_DIM_COUNT; d++) {
			if (!st.dim[d].limit)
				continue;
			bl_text_printf(t,
				       "ballast_budget_utilization{budget=\"%s\",dimension=\"%s\"} %.6f\n"
				       "ballast_budget_debt_units{budget=\"%s\",dimension=\"%s\"} %llu\n",
				       br->name, bl_dim_name((enum bl_dim)d), st.dim[d].utilization,
				       br->name, bl_dim_name((enum bl_dim)d),
				       (unsigned long long)st.dim[d].debt);
		}
		bl_text_printf(t,
			       "ballast_budget_rate_factor{budget=\"%s\"} %.6f\n"
			       "ballast_budget_provider_429s_total{budget=\"%s\"} %llu\n"
			       "ballast_budget_expired_leases_total{budget=\"%s\"} %llu\n",
			       br->name, st.rate_factor, br->name,
			       (unsigned long long)st.provider_429s, br->name,
			       (unsigned long long)st.expired);
	}
	FAMILY("ballast_leases", "gauge", "Live leases.");
	bl_text_printf(t, "ballast_leases %zu\n", bl_lease_count(bs->leases));
	mem_write_metrics(bs, t);
#undef FAMILY
}

/* ---- snapshot ------------------------------------------------------------- */

/* Re-attaches a restored lease to its backend (and the backend's budget),
 * when the snapshot names one that is still configured. */
static void restore_backend(struct bl_budgets *bs, struct lease_rt *lr, json_t *l)
{
	const char *pname = json_string_value(json_object_get(l, "pool"));
	const char *bname = json_string_value(json_object_get(l, "backend"));
	const char *bbname = json_string_value(json_object_get(l, "backend_budget"));
	json_t *permit = json_object_get(l, "permit");
	struct bl_pool *p = pname ? bl_pools_find(bs->pools, pname, false) : NULL;
	struct bl_pool_backend *be = p && bname ? bl_pool_backend_find(p, bname) : NULL;
	json_int_t gen = 0, ticket = 0;
	int probe = 0;

	if (!pname)
		return;
	if (!be || json_unpack(permit, "[Ib]", &gen, &probe) != 0 || gen < 0) {
		bl_log(BL_LOG_WARN, "restored lease's backend is gone: its call is not tracked",
		       "pool=%s backend=%s", pname, bname ? bname : "-");
		return;
	}
	lr->has_backend = true;
	lr->choice.backend = be;
	lr->choice.permit = (struct bl_breaker_permit){(uint64_t)gen, probe != 0};
	bl_pool_restore_call(&lr->choice);
	if (bbname && (lr->be_budget = find_budget(bs, bbname, false)) != NULL) {
		json_unpack(json_object_get(l, "backend_ticket"), "I", &ticket);
		lr->be_ticket = ticket > 0 ? (uint64_t)ticket : 0;
		lr->be_budget->leases++;
	}
}

static json_t *budget_state_json(struct budget_rt *br, bl_time_ns now, int64_t offset)
{
	struct bl_budget_state st;
	json_t *dims = json_array();

	bl_budget_state_get(&br->b, now, &st);
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		const struct bl_budget_dim_state *ds = &st.dim[d];
		json_t *marks = json_array();

		for (uint32_t m = 0; m < ds->n_marks; m++)
			json_array_append_new(marks, json_pack("[I,I]", (json_int_t)ds->marks[m].seq,
							       (json_int_t)ds->marks[m].slack));
		json_array_append_new(
			dims, json_pack("{s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:I}", "tat_wall_ns",
					(json_int_t)to_wall(ds->tat_ns, offset), "tat_frac",
					(json_int_t)ds->tat_frac, "interval_ns",
					(json_int_t)ds->interval_ns, "interval_frac",
					(json_int_t)ds->interval_frac, "limited_since_seq",
					(json_int_t)ds->limited_since_seq, "marks", marks, "refunded",
					(json_int_t)ds->refunded, "charged", (json_int_t)ds->charged));
	}
	return json_pack("{s:o,s:I,s:i,s:f,s:f,s:I,s:I,s:[I,I,I,I,I,I],s:I}", "dims", dims, "seq",
			 (json_int_t)st.seq, "in_flight", (int)st.in_flight, "factor", st.factor,
			 "factor_base", st.factor_base, "recover_from_wall_ns",
			 (json_int_t)to_wall(st.recover_from_ns, offset), "paused_until_wall_ns",
			 (json_int_t)to_wall(st.paused_until_ns, offset), "counters",
			 (json_int_t)st.grants, (json_int_t)st.denials, (json_int_t)st.releases,
			 (json_int_t)st.expired, (json_int_t)st.provider_429s,
			 (json_int_t)st.resyncs, "granted", (json_int_t)br->granted);
}

void bl_budgets_mark_clean(struct bl_budgets *bs)
{
	bs->clean = true;
}

/* The memory budget's counters; its reserved totals come back from the
 * restored leases, so they can never disagree with them. */
static json_t *mem_state_json(struct bl_budgets *bs)
{
	struct bl_membudget_state st;

	if (!bs->mem)
		return json_null();
	bl_membudget_state_get(&bs->mem->b, &st);
	return json_pack("{s:I,s:I,s:I}", "high_water_bytes", (json_int_t)st.high_water_bytes,
			 "grants", (json_int_t)st.grants, "denials", (json_int_t)st.denials);
}

/* Checks one memory lease of a snapshot; fills what it says. */
static int mem_lease_from_json(json_t *l, uint64_t *id, uint64_t *bytes,
			       enum bl_mem_priority *prio, json_int_t *exp, json_int_t *acq,
			       const char **tenant)
{
	const char *ids, *kind, *pname;
	json_int_t b;

	if (json_unpack(l, "{s:s,s:s,s:I,s:s,s:I,s:I,s:s}", "id", &ids, "kind", &kind, "bytes", &b,
			"priority", &pname, "expires_wall_ns", exp, "acquired_wall_ns", acq,
			"tenant", tenant) != 0 ||
	    strcmp(kind, "memory") != 0 || !parse_id(ids, id) || b <= 0 ||
	    bl_mem_priority_parse(pname, strlen(pname), prio) != 0 ||
	    strlen(*tenant) > BL_WAITQ_TENANT_NAME_MAX)
		return -1;
	*bytes = (uint64_t)b;
	return 0;
}

/* Restores the memory leases of a validated snapshot and the totals they
 * hold. Without a memory section now, they are dropped (and logged). */
static void mem_restore(struct bl_budgets *bs, json_t *leases, json_t *mstate, int64_t offset)
{
	struct bl_membudget_state st = {0};
	json_t *l;
	size_t i;

	json_array_foreach(leases, i, l) {
		uint64_t id, bytes;
		enum bl_mem_priority prio;
		json_int_t exp, acq;
		const char *tenant;
		struct lease_rt *lr;

		if (!json_object_get(l, "kind"))
			continue;
		mem_lease_from_json(l, &id, &bytes, &prio, &exp, &acq, &tenant);
		if (!bs->mem || !(lr = bl_slab_alloc(bs->lease_pool))) {
			bs->leases_dropped++;
			continue;
		}
		lr->node.id = id;
		lr->memory = true;
		lr->mem_bytes = bytes;
		lr->mem_prio = prio;
		lr->node.expires_ns = from_wall(exp, offset);
		lr->acquired_ns = from_wall(acq, offset);
		snprintf(lr->tenant, sizeof lr->tenant, "%s", tenant);
		if (st.bytes[prio] > UINT64_MAX - bytes || bl_lease_insert(bs->leases, &lr->node) != 0) {
			bl_slab_free(bs->lease_pool, lr);
			bs->leases_dropped++;
			continue;
		}
		st.bytes[prio] += bytes;
		st.count[prio]++;
		bs->mem->leases++;
		bs->leases_restored++;
	}
	if (!bs->mem)
		return;
	{
		json_int_t hw = 0, g = 0, dn = 0;
		uint64_t total = 0;

		if (json_is_object(mstate))
			json_unpack(mstate, "{s?I,s?I,s?I}", "high_water_bytes", &hw, "grants", &g,
				    "denials", &dn);
		for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++)
			total += st.bytes[p];
		st.high_water_bytes = hw > 0 && (uint64_t)hw > total ? (uint64_t)hw : total;
		st.grants = g > 0 ? (uint64_t)g : 0;
		st.denials = dn > 0 ? (uint64_t)dn : 0;
		if (bl_membudget_state_set(&bs->mem->b, &st) != 0)
			bl_log(BL_LOG_WARN, "memory budget state refused", NULL);
	}
}

/* ---- snapshot: capture on the loop, render off it --------------------------
 *
 * A snapshot holds every live lease. Building their JSON on the loop thread
 * stalled it (about 100 ms at 10 000 leases, 700 ms at 100 000), so the loop
 * only copies each lease into a plain record; the thread pool builds the
 * JSON from the copies (bl_snapshot_register_split). Names (budgets, pools,
 * backends) are copied once each into a table, since a reload may free the
 * originals while the render runs. */

struct lease_snap {
	uint64_t id, ticket, be_ticket, mem_bytes, permit_generation;
	int64_t expires_wall_ns, acquired_wall_ns;
	uint64_t reserved[BL_DIM_COUNT];
	int32_t budget, be_budget, pool, backend; /* name table indexes, -1 none */
	bool memory, has_backend, probe;
	enum bl_mem_priority mem_prio;
	char tenant[BL_WAITQ_TENANT_NAME_MAX + 1];
	char worker[WORKER_ID_MAX + 1];
};

/* Copies of the names leases refer to, found by the original's address. */
struct name_table {
	const void **keys;  /* open addressing, NULL empty */
	int32_t *slots;     /* index into names, for each key */
	size_t mask;
	char **names;
	size_t n, cap;
	bool failed;        /* out of memory: the capture is dropped */
};

struct budgets_capture {
	struct bl_budgets *bs; /* only for discard, on the loop thread */
	json_t *head;       /* clean, saved_wall_ns, budgets, memory: small, built on the loop */
	int64_t offset;
	struct lease_snap *leases;
	size_t n, cap;
	struct lease_snap *next;  /* a larger buffer for the next capture, faulted in by render */
	size_t next_cap;
	struct name_table names;
};

static bool names_grow(struct name_table *t)
{
	size_t size = t->mask ? (t->mask + 1) * 2 : 64;
	const void **keys = calloc(size, sizeof *keys);
	int32_t *slots = calloc(size, sizeof *slots);
	char **names = realloc(t->names, size / 2 * sizeof *names);

	if (!keys || !slots || !names) {
		free(keys);
		free(slots);
		if (names)
			t->names = names;
		return false;
	}
	t->names = names;
	t->cap = size / 2;
	for (size_t i = 0; t->mask && i <= t->mask; i++) {
		size_t j;

		if (!t->keys[i])
			continue;
		for (j = ((uintptr_t)t->keys[i] >> 4) & (size - 1); keys[j]; j = (j + 1) & (size - 1))
			;
		keys[j] = t->keys[i];
		slots[j] = t->slots[i];
	}
	free(t->keys);
	free(t->slots);
	t->keys = keys;
	t->slots = slots;
	t->mask = size - 1;
	return true;
}

/* The index of name (keyed by its address), copied on first sight; -1 for
 * NULL or when out of memory. */
static int32_t names_intern(struct name_table *t, const char *name)
{
	size_t j;

	if (!name || t->failed)
		return -1;
	if (t->n == t->cap && !names_grow(t)) {
		t->failed = true;
		return -1;
	}
	for (j = ((uintptr_t)name >> 4) & t->mask; t->keys[j]; j = (j + 1) & t->mask)
		if (t->keys[j] == name)
			return t->slots[j];
	if (!(t->names[t->n] = strdup(name))) {
		t->failed = true;
		return -1;
	}
	t->keys[j] = name;
	t->slots[j] = (int32_t)t->n;
	return (int32_t)t->n++;
}

static void names_free(struct name_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->names[i]);
	free(t->names);
	free(t->keys);
	free(t->slots);
}

static void capture_lease(struct bl_lease_node *n, void *ctx)
{
	struct budgets_capture *c = ctx;
	struct lease_rt *l = BL_CONTAINER_OF(n, struct lease_rt, node);
	struct lease_snap *r;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct lease_snap *grown = realloc(c->leases, cap * sizeof *grown);

		if (!grown) {
			c->names.failed = true;
			return;
		}
		c->leases = grown;
		c->cap = cap;
	}
	r = &c->leases[c->n++];
	memset(r, 0, sizeof *r);
	r->id = n->id;
	r->expires_wall_ns = to_wall(n->expires_ns, c->offset);
	r->acquired_wall_ns = to_wall(l->acquired_ns, c->offset);
	memcpy(r->tenant, l->tenant, sizeof r->tenant);
	r->budget = r->be_budget = r->pool = r->backend = -1;
	if (l->memory) {
		r->memory = true;
		r->mem_bytes = l->mem_bytes;
		r->mem_prio = l->mem_prio;
		return;
	}
	r->ticket = l->ticket;
	memcpy(r->reserved, l->reserved.n, sizeof r->reserved);
	memcpy(r->worker, l->worker, sizeof r->worker);
	r->budget = names_intern(&c->names, l->budget ? l->budget->name : "");
	if (l->has_backend) {
		struct bl_pool_backend *be = l->choice.backend;

		r->has_backend = true;
		r->pool = names_intern(&c->names, bl_pool_name(bl_pool_backend_pool(be)));
		r->backend = names_intern(&c->names, bl_pool_backend_name(be));
		r->permit_generation = l->choice.permit.generation;
		r->probe = l->choice.permit.probe;
		if (l->be_budget) {
			r->be_budget = names_intern(&c->names, l->be_budget->name);
			r->be_ticket = l->be_ticket;
		}
	}
}

static void budgets_capture_free(struct budgets_capture *c)
{
	if (!c)
		return;
	json_decref(c->head);
	free(c->leases);
	free(c->next);
	names_free(&c->names);
	free(c);
}

/* Keeps *buf as the spare for the next capture if it is the largest yet. */
static void keep_spare(struct bl_budgets *bs, struct lease_snap **buf, size_t cap)
{
	if (!*buf || cap <= bs->snap_spare_cap)
		return;
	free(bs->snap_spare);
	bs->snap_spare = *buf;
	bs->snap_spare_cap = cap;
	*buf = NULL;
}

/* On the loop thread, after the write: a lease records' buffer is kept for
 * the next capture — the one render made ready with room to grow, else this
 * one — so a large one is not mapped afresh and faulted in, page by page,
 * on the loop every snapshot. */
void bl_budgets_discard(void *capture)
{
	struct budgets_capture *c = capture;

	if (c) {
		keep_spare(c->bs, &c->next, c->next_cap);
		keep_spare(c->bs, &c->leases, c->cap);
	}
	budgets_capture_free(c);
}

void *bl_budgets_capture(void *ctx)
{
	struct bl_budgets *bs = ctx;
	bl_time_ns now = bl_mono_now();
	struct budgets_capture *c = calloc(1, sizeof *c);
	json_t *budgets = json_object();

	if (!c) {
		json_decref(budgets);
		return BL_SNAPSHOT_CAPTURE_FAILED;
	}
	c->offset = bl_wall_ns() - now;
	/* One allocation for every lease: growing by doubling would copy them
	 * all again on the loop. */
	c->bs = bs;
	c->cap = bl_lease_count(bs->leases);
	if (c->cap && c->cap <= bs->snap_spare_cap) {
		c->leases = bs->snap_spare;
		c->cap = bs->snap_spare_cap;
		bs->snap_spare = NULL;
		bs->snap_spare_cap = 0;
	} else if (c->cap && !(c->leases = malloc(c->cap * sizeof *c->leases))) {
		c->cap = 0;
	}
	for (struct budget_rt *br = bs->list; br; br = br->next)
		json_object_set_new(budgets, br->name, budget_state_json(br, now, c->offset));
	c->head = json_pack("{s:b,s:I,s:o,s:o}", "clean", bs->clean, "saved_wall_ns",
			    (json_int_t)(now + c->offset), "budgets", budgets, "memory",
			    mem_state_json(bs));
	bl_lease_foreach(bs->leases, capture_lease, c);
	if (!c->head || c->names.failed || (c->n < bl_lease_count(bs->leases))) {
		/* Better no snapshot this time than one that lost leases. */
		budgets_capture_free(c);
		return BL_SNAPSHOT_CAPTURE_FAILED;
	}
	return c;
}

static json_t *lease_json(const struct budgets_capture *c, const struct lease_snap *r)
{
	char id[17];
	json_t *o, *res;

	format_id(r->id, id);
	if (r->memory)
		return json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:s}", "id", id, "kind", "memory",
				 "bytes", (json_int_t)r->mem_bytes, "priority",
				 bl_mem_priority_name(r->mem_prio), "expires_wall_ns",
				 (json_int_t)r->expires_wall_ns, "acquired_wall_ns",
				 (json_int_t)r->acquired_wall_ns, "tenant", r->tenant);
	res = json_array();
	for (int d = 0; d < BL_DIM_COUNT; d++)
		json_array_append_new(res, json_integer((json_int_t)r->reserved[d]));
	o = json_pack("{s:s,s:s,s:I,s:o,s:I,s:I,s:s}", "id", id, "budget",
		      c->names.names[r->budget], "ticket", (json_int_t)r->ticket, "reserved", res,
		      "expires_wall_ns", (json_int_t)r->expires_wall_ns, "acquired_wall_ns",
		      (json_int_t)r->acquired_wall_ns, "tenant", r->tenant);
	if (o && r->worker[0])
		json_object_set_new(o, "worker", json_string(r->worker));
	if (o && r->has_backend) {
		json_object_set_new(o, "pool", json_string(c->names.names[r->pool]));
		json_object_set_new(o, "backend", json_string(c->names.names[r->backend]));
		json_object_set_new(o, "permit", json_pack("[I,b]", (json_int_t)r->permit_generation,
							   r->probe));
		if (r->be_budget >= 0) {
			json_object_set_new(o, "backend_budget",
					    json_string(c->names.names[r->be_budget]));
			json_object_set_new(o, "backend_ticket", json_integer((json_int_t)r->be_ticket));
		}
	}
	return o;
}

/* Runs on the thread pool: reads the capture only. */
json_t *bl_budgets_render(void *capture)
{
	struct budgets_capture *c = capture;
	json_t *doc = json_deep_copy(c->head), *leases = json_array();

	for (size_t i = 0; i < c->n && leases; i++) {
		if (json_array_append_new(leases, lease_json(c, &c->leases[i])) != 0) {
			json_decref(leases);
			leases = NULL;
		}
	}
	if (json_object_set_new(doc, "leases", leases) != 0) {
		json_decref(doc);
		doc = NULL;
	}
	/* Room for the next capture to grow by a quarter, its pages touched
	 * here rather than by the copy on the loop. */
	if (c->n + c->n / 4 > c->cap) {
		size_t bytes;

		c->next_cap = c->n + c->n / 4 + 256;
		bytes = c->next_cap * sizeof *c->next;
		c->next = malloc(bytes);
		/* A write per page: not memset(0), which the compiler may turn,
		 * with the malloc, into a calloc that touches nothing. */
		for (size_t off = 0; c->next && off < bytes; off += 4096)
			((volatile char *)c->next)[off] = 0;
	}
	return doc;
}

json_t *bl_budgets_save(void *ctx)
{
	void *c = bl_budgets_capture(ctx);
	json_t *doc;

	if (c == BL_SNAPSHOT_CAPTURE_FAILED)
		return NULL;
	doc = bl_budgets_render(c);
	bl_budgets_discard(c);
	return doc;
}

static int read_i64(json_t *o, const char *k, int64_t *out)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v))
		return -1;
	*out = json_integer_value(v);
	return 0;
}

static int state_from_json(json_t *j, int64_t offset, struct bl_budget_state *st)
{
	json_t *dims = json_object_get(j, "dims"), *counters = json_object_get(j, "counters");

	memset(st, 0, sizeof *st);
	if (!json_is_array(dims) || json_array_size(dims) != BL_DIM_COUNT ||
	    !json_is_array(counters) || json_array_size(counters) != 6)
		return -1;
	for (int d = 0; d < BL_DIM_COUNT; d++) {
		json_t *dj = json_array_get(dims, (size_t)d), *marks = json_object_get(dj, "marks");
		struct bl_budget_dim_state *ds = &st->dim[d];
		int64_t a, b2, c, e2, f, g, h;

		if (read_i64(dj, "tat_wall_ns", &a) || read_i64(dj, "tat_frac", &b2) ||
		    read_i64(dj, "interval_ns", &c) || read_i64(dj, "interval_frac", &e2) ||
		    read_i64(dj, "limited_since_seq", &f) || read_i64(dj, "refunded", &g) ||
		    read_i64(dj, "charged", &h) || !json_is_array(marks) ||
		    json_array_size(marks) > BL_BUDGET_MARKS || b2 < 0 || b2 > UINT32_MAX || e2 < 0 ||
		    e2 > UINT32_MAX || c < 0 || f < 0 || g < 0 || h < 0)
			return -1;
		ds->tat_ns = from_wall(a, offset);
		ds->tat_frac = (uint32_t)b2;
		ds->interval_ns = c;
		ds->interval_frac = (uint32_t)e2;
		ds->limited_since_seq = (uint64_t)f;
		ds->refunded = (uint64_t)g;
		ds->charged = (uint64_t)h;
		ds->n_marks = (uint32_t)json_array_size(marks);
		for (uint32_t m = 0; m < ds->n_marks; m++) {
			json_t *mj = json_array_get(marks, m);
			json_int_t s, sl;
			if (json_unpack(mj, "[II]", &s, &sl) != 0 || s < 0 || sl < 0)
				return -1;
			ds->marks[m].seq = (uint64_t)s;
			ds->marks[m].slack = (uint64_t)sl;
		}
	}
	{
		json_int_t seq, infl, r, p, c0, c1, c2, c3, c4, c5;
		double factor, base;

		if (json_unpack(j, "{s:I,s:I,s:F,s:F,s:I,s:I}", "seq", &seq, "in_flight", &infl,
				"factor", &factor, "factor_base", &base, "recover_from_wall_ns", &r,
				"paused_until_wall_ns", &p) != 0 ||
		    json_unpack(counters, "[IIIIII]", &c0, &c1, &c2, &c3, &c4, &c5) != 0 || seq < 0 ||
		    infl < 0 || infl > UINT32_MAX || c0 < 0 || c1 < 0 || c2 < 0 || c3 < 0 ||
		    c4 < 0 || c5 < 0)
			return -1;
		st->seq = (uint64_t)seq;
		st->in_flight = (uint32_t)infl;
		st->factor = factor;
		st->factor_base = base;
		st->recover_from_ns = from_wall(r, offset);
		st->paused_until_ns = from_wall(p, offset);
		st->grants = (uint64_t)c0;
		st->denials = (uint64_t)c1;
		st->releases = (uint64_t)c2;
		st->expired = (uint64_t)c3;
		st->provider_429s = (uint64_t)c4;
		st->resyncs = (uint64_t)c5;
	}
	return 0;
}

int bl_budgets_restore(void *ctx, json_t *state, char *err, size_t errcap)
{
	struct bl_budgets *bs = ctx;
	bl_time_ns now = bl_mono_now();
	int64_t offset = bl_wall_ns() - now, saved_wall;
	json_t *budgets = json_object_get(state, "budgets"), *leases = json_object_get(state, "leases");
	bool clean = json_is_true(json_object_get(state, "clean"));
	const char *name;
	json_t *bj;
	size_t i;
	json_t *l;

	if (!json_is_object(budgets) || !json_is_array(leases) ||
	    read_i64(state, "saved_wall_ns", &saved_wall) != 0) {
		snprintf(err, errcap, "expected {clean, saved_wall_ns, budgets:{}, leases:[]}");
		return BL_ECORRUPT;
	}
	/* Validate everything before touching anything. */
	json_object_foreach(budgets, name, bj) {
		struct bl_budget_state st;

		if (state_from_json(bj, offset, &st) != 0) {
			snprintf(err, errcap, "budget '%.64s': malformed state", name);
			return BL_ECORRUPT;
		}
	}
	json_array_foreach(leases, i, l) {
		json_int_t ticket, exp, acq;
		const char *id, *bname, *tenant;
		json_t *res;
		uint64_t idv, bytes;
		enum bl_mem_priority prio;

		if (json_object_get(l, "kind")) {
			if (mem_lease_from_json(l, &idv, &bytes, &prio, &exp, &acq, &tenant) != 0) {
				snprintf(err, errcap, "lease %zu: malformed memory reservation", i);
				return BL_ECORRUPT;
			}
			continue;
		}
		if (json_unpack(l, "{s:s,s:s,s:I,s:o,s:I,s:I,s:s}", "id", &id, "budget", &bname,
				"ticket", &ticket, "reserved", &res, "expires_wall_ns", &exp,
				"acquired_wall_ns", &acq, "tenant", &tenant) != 0 ||
		    !parse_id(id, &idv) || !json_is_array(res) ||
		    json_array_size(res) != BL_DIM_COUNT || ticket < 0) {
			snprintf(err, errcap, "lease %zu: malformed", i);
			return BL_ECORRUPT;
		}
	}
	json_object_foreach(budgets, name, bj) {
		struct budget_rt *br = find_budget(bs, name, false);
		struct bl_budget_state st;

		if (!br) {
			bl_log(BL_LOG_WARN, "snapshot budget no longer configured: dropped", "budget=%s",
			       name);
			continue;
		}
		state_from_json(bj, offset, &st);
		if (bl_budget_state_set(&br->b, &st, now) != 0) {
			bl_log(BL_LOG_WARN, "snapshot budget state refused: assuming spent",
			       "budget=%s", name);
			bl_budget_assume_spent(&br->b, now);
			continue;
		}
		json_int_t granted;
		if (json_unpack(bj, "{s:I}", "granted", &granted) == 0 && granted >= 0)
			br->granted = (uint64_t)granted;
		/* After an unclean stop, grants after the snapshot are unknown. If the
		 * snapshot is older than one window of a dimension, its state says
		 * nothing about the window the provider counts now: assume it spent. */
		if (!clean) {
			int64_t age_ns = now + offset - saved_wall;
			for (int d = 0; d < BL_DIM_COUNT; d++) {
				if (br->limits.rate[d].limit && age_ns > br->limits.rate[d].per_ns) {
					bl_log(BL_LOG_WARN,
					       "unclean stop with an old snapshot: budget starts as "
					       "spent for one window",
					       "budget=%s age_ms=%lld", name,
					       (long long)(age_ns / BL_NS_PER_MS));
					bl_budget_assume_spent(&br->b, now);
					break;
				}
			}
		}
	}
	json_array_foreach(leases, i, l) {
		const char *id, *bname, *tenant;
		json_int_t ticket, exp, acq;
		json_t *res;
		struct budget_rt *br;
		struct lease_rt *lr;

		if (json_object_get(l, "kind"))
			continue; /* memory: mem_restore */
		json_unpack(l, "{s:s,s:s,s:I,s:o,s:I,s:I,s:s}", "id", &id, "budget", &bname,
			    "ticket", &ticket, "reserved", &res, "expires_wall_ns", &exp,
			    "acquired_wall_ns", &acq, "tenant", &tenant);
		br = *bname ? find_budget(bs, bname, false) : NULL;
		if ((*bname && !br) || !(lr = bl_slab_alloc(bs->lease_pool))) {
			bs->leases_dropped++;
			continue;
		}
		parse_id(id, &lr->node.id);
		lr->budget = br;
		lr->ticket = (uint64_t)ticket;
		for (int d = 0; d < BL_DIM_COUNT; d++) {
			json_t *v = json_array_get(res, (size_t)d);
			lr->reserved.n[d] = json_is_integer(v) && json_integer_value(v) > 0
						    ? (uint64_t)json_integer_value(v)
						    : 0;
		}
		lr->node.expires_ns = from_wall(exp, offset);
		lr->acquired_ns = from_wall(acq, offset);
		snprintf(lr->tenant, sizeof lr->tenant, "%s", tenant);
		if (bl_lease_insert(bs->leases, &lr->node) != 0) {
			bl_slab_free(bs->lease_pool, lr);
			bs->leases_dropped++;
			continue;
		}
		if (br)
			br->leases++;
		if (json_is_string(json_object_get(l, "worker")))
			snprintf(lr->worker, sizeof lr->worker, "%s",
				 json_string_value(json_object_get(l, "worker")));
		restore_backend(bs, lr, l);
		bs->leases_restored++;
	}
	mem_restore(bs, leases, json_object_get(state, "memory"), offset);
	if (bs->leases_restored || bs->leases_dropped)
		bl_log(BL_LOG_INFO, "leases restored", "restored=%llu dropped=%llu",
		       (unsigned long long)bs->leases_restored, (unsigned long long)bs->leases_dropped);
	arm_expiry(bs);
	return 0;
}

/* ---- shutdown ------------------------------------------------------------- */

void bl_budgets_shutdown(struct bl_budgets *bs)
{
	struct budget_rt *br, *next;

	bs->shutting_down = true;
	uv_timer_stop(&bs->expiry);
	if (!uv_is_closing((uv_handle_t *)&bs->expiry))
		uv_close((uv_handle_t *)&bs->expiry, NULL);
	while (bs->pool_waiters) {
		struct waiter *w = bs->pool_waiters;

		w->req->on_abort = NULL;
		bl_http_respond_error(w->req, 503, "draining",
				      "the daemon is shutting down; retry on its successor");
		waiter_free(w); /* unlinks it */
	}
	if (bs->mem) {
		struct bl_waitq_node *n;

		while ((n = bl_waitq_pop(&bs->mem->q))) {
			struct waiter *w = BL_WAITQ_ENTRY(n, struct waiter, node);

			w->req->on_abort = NULL;
			bl_http_respond_error(w->req, 503, "draining",
					      "the daemon is shutting down; retry on its successor");
			waiter_free(w);
		}
	}
	for (br = bs->list; br; br = next) {
		struct bl_waitq_node *n;

		next = br->next;
		while ((n = bl_waitq_pop(&br->q))) {
			struct waiter *w = BL_WAITQ_ENTRY(n, struct waiter, node);

			w->req->on_abort = NULL;
			bl_http_respond_error(w->req, 503, "draining",
					      "the daemon is shutting down; retry on its successor");
			waiter_free(w);
		}
		if (!br->closing) {
			br->closing = true;
			uv_close((uv_handle_t *)&br->wake, NULL);
		}
	}
}

void bl_budgets_destroy(struct bl_budgets *bs)
{
	struct budget_rt *br, *next;

	if (!bs)
		return;
	free(bs->snap_spare);
	/* Leases and waiters go with their slabs. */
	for (br = bs->list; br; br = next) {
		next = br->next;
		bl_waitq_cleanup(&br->q);
		bl_waitq_tenants_destroy(br->tenants);
		free(br->name);
		free(br);
	}
	mem_free(bs->mem);
	bl_lease_table_destroy(bs->leases);
	bl_slab_destroy(bs->lease_pool);
	bl_slab_destroy(bs->waiter_pool);
	free(bs);
}

/* ---- for the autoscaler ------------------------------------------------------- */

struct worker_walk {
	void (*fn)(void *ctx, const char *worker, const char *budget);
	void *ctx;
};

static void walk_worker_lease(struct bl_lease_node *n, void *ctx)
{
	struct worker_walk *ww = ctx;
	struct lease_rt *l = BL_CONTAINER_OF(n, struct lease_rt, node);

	if (!l->memory && l->worker[0])
		ww->fn(ww->ctx, l->worker, l->budget ? l->budget->name
				      : l->be_budget ? l->be_budget->name : "");
}

void bl_budgets_worker_leases(struct bl_budgets *bs,
			      void (*fn)(void *ctx, const char *worker, const char *budget),
			      void *ctx)
{
	struct worker_walk ww = {fn, ctx};

	bl_lease_foreach(bs->leases, walk_worker_lease, &ww);
}

int bl_budgets_planner_budget(struct bl_budgets *bs, const char *name,
			      struct bl_planner_budget *out)
{
	struct budget_rt *br = find_budget(bs, name, false);
	struct bl_budget_stats st;
	int worst = -1;

	if (!br)
		return BL_ENOENT;
	bl_budget_stats(&br->b, bl_mono_now(), &st);
	/* The most used limited dimension is the one that binds. */
	for (int d = 0; d < BL_DIM_COUNT; d++)
		if (st.dim[d].limit && (worst < 0 || st.dim[d].utilization > st.dim[worst].utilization))
			worst = d;
	out->name = br->name;
	out->queue_length = bl_waitq_length(&br->q);
	out->target_utilization = br->limits.target_utilization;
	out->utilization = worst >= 0 ? st.dim[worst].utilization : 0;
	out->admitted_per_s = worst >= 0 ? st.dim[worst].rate_per_s : 0;
	/* A budget limited only by concurrency is the bottleneck when full. */
	if (worst < 0 && br->limits.concurrent) {
		out->utilization = (double)st.in_flight / br->limits.concurrent;
		out->target_utilization = 1.0;
	}
	return 0;
}

int bl_budgets_memory_pressure(struct bl_budgets *bs, double *utilization)
{
	if (!bs->mem || bs->mem->retired)
		return -1;
	if (utilization)
		*utilization = bl_membudget_utilization(&bs->mem->b);
	return (int)bl_membudget_pressure(&bs->mem->b);
}

