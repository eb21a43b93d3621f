/* Load balancing: see include/ballast/balancer.h and
 * docs/internals/balancing.md. */
#include "ballast/balancer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ballast/error.h"

/* Weights inside the balancer are fixed point with this many fraction bits,
 * so that slow start can hand out a fraction of a weight and smooth weighted
 * round robin stays in exact integer arithmetic (scaling every weight by the
 * same factor leaves nginx's sequence as it is). */
#define WEIGHT_SHIFT 10
#define WEIGHT_ONE (INT64_C(1) << WEIGHT_SHIFT)

/* Random draws p2c, peak_ewma and random make before they fall back to a full
 * scan of the eligible backends, per candidate wanted. */
#define TRIES_PER_CHOICE 4
#define RANDOM_TRIES 8

/* peak_ewma's cost for a backend with calls in flight and no latency
 * estimate (none yet, or decayed to exactly 0): above any real cost, so that
 * such a backend gets one probe at a time (Finagle's Penalty), ns. */
#define PEAK_EWMA_PENALTY 1e15

/* External loads are kept in thousandths of a call, so that the sum the
 * stand-in for unknown loads needs is exact whatever the order of updates. */
#define LOAD_SCALE 1000.0

#define DEFAULT_MAX_BACKENDS 1024
#define FIRST_SLOTS 8

enum slot_state {
	SLOT_FREE = 0, /* unused; may be taken by add */
	SLOT_LIVE,     /* a backend that may be picked */
	SLOT_DRAINING, /* removed, calls still in flight */
};

/* One backend's state. Kept small and free of the name so that the O(N)
 * strategies scan a dense array. */
struct backend {
	uint64_t name_hash;     /* hash of the name: its rendezvous-hashing seed */
	int64_t swrr_current;   /* smooth weighted round robin's current weight, fixed point */
	bl_time_ns joined_ns;   /* when it (re)joined: start of slow start */
	bl_time_ns ewma_at_ns;  /* time of the last latency sample */
	double ewma_ns;         /* peak EWMA of latency as of ewma_at_ns, ns */
	double error_rate;      /* EWMA of failures, 0..1 */
	double rr_credit;       /* round robin under slow start: turns owed, < 1 */
	uint64_t load_milli;    /* external load, thousandths of a call (when load_fresh) */
	uint64_t inflight;      /* calls started and not ended */
	uint64_t picks;         /* times chosen */
	uint64_t completions;   /* on_finish calls */
	uint64_t failures;      /* on_finish calls that failed */
	uint32_t weight;        /* configured weight, 1..BL_BALANCER_WEIGHT_MAX */
	uint8_t state;          /* enum slot_state */
	bool load_fresh;        /* load_milli is known */
	bool sampled;           /* ewma_ns holds at least one sample */
};

typedef char name_buf[BL_BALANCER_NAME_MAX + 1];

/* A live backend in the turn order. Its rendezvous seed and weight sit here
 * too, so that consistent_hash scans 16 dense bytes per backend, not the
 * whole struct backend. */
struct member {
	uint64_t seed;   /* the backend's name_hash */
	uint32_t slot;   /* its index */
	uint32_t weight; /* its configured weight (copy) */
};

struct bl_balancer {
	struct bl_balancer_config cfg; /* in force; cfg.hook is NULL (see hook) */
	struct bl_alloc_hook hook;     /* where memory comes from */
	void *block;                   /* the one allocation holding the arrays below */
	size_t block_bytes;            /* its size */
	struct backend *be;            /* cap slots */
	struct member *live;           /* nlive live backends by ascending slot: the turn order */
	uint32_t *scratch;             /* cap entries: pick's workspace for full scans */
	name_buf *names;               /* cap names */
	size_t cap;                    /* slots allocated */
	size_t nslots;                 /* 1 + highest slot not free */
	size_t nlive;                  /* live backends */
	size_t ndraining;              /* draining backends */
	size_t turn;                   /* round robin's next position in live[] */
	uint64_t rng;                  /* splitmix64 state */
	uint64_t total_weight;         /* sum of live weights */
	uint32_t max_weight;           /* largest live weight (0 when none) */
	uint64_t live_inflight;        /* sum of live backends' in-flight calls */
	uint64_t fresh_count;          /* live backends with a fresh external load */
	uint64_t fresh_sum_milli;      /* sum of their loads, thousandths */
	uint64_t picks;                /* picks that chose a backend */
	uint64_t none;                 /* picks that found none */
};

/* ---- strategies ------------------------------------------------------------ */

static const char *const strategy_names[BL_BALANCE_STRATEGY_COUNT] = {
	"round_robin", "weighted", "random", "least_inflight",
	"p2c", "peak_ewma", "consistent_hash",
};

int bl_balance_strategy_parse(const char *s, size_t len, enum bl_balance_strategy *out)
{
	if (!s)
		return BL_EINVAL;
	for (int i = 0; i < BL_BALANCE_STRATEGY_COUNT; i++) {
		if (strlen(strategy_names[i]) == len && memcmp(s, strategy_names[i], len) == 0) {
			*out = (enum bl_balance_strategy)i;
			return 0;
		}
	}
	return BL_EINVAL;
}

const char *bl_balance_strategy_name(enum bl_balance_strategy s)
{
	if ((unsigned)s >= BL_BALANCE_STRATEGY_COUNT)
		return "unknown";
	return strategy_names[s];
}

/* ---- randomness and hashing ------------------------------------------------------ */

/* The splitmix64 finalizer (Stafford's variant 13): a bijection that mixes
 * every input bit into every output bit. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* splitmix64: one word of state, passes BigCrush, plenty for balancing. */
static uint64_t rng_next(struct bl_balancer *b)
{
	b->rng += UINT64_C(0x9e3779b97f4a7c15);
	return mix64(b->rng);
}

/* Uniform in 0..n-1 (n >= 1), without bias: Lemire's multiply-shift with
 * rejection of the few low products that would favour some results; a
 * division only once in a long while. */
static uint64_t rng_below(struct bl_balancer *b, uint64_t n)
{
	if (n <= UINT32_MAX) {
		uint32_t n32 = (uint32_t)n;
		uint64_t m = (rng_next(b) >> 32) * n32;

		if ((uint32_t)m < n32) {
			uint32_t t = (uint32_t)(-n32) % n32;

			while ((uint32_t)m < t)
				m = (rng_next(b) >> 32) * n32;
		}
		return m >> 32;
	}
	uint64_t lim = UINT64_MAX - UINT64_MAX % n, r;

	do
		r = rng_next(b);
	while (r >= lim);
	return r % n;
}

static uint64_t load_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

uint64_t bl_balancer_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = UINT64_C(0x6a09e667f3bcc909) ^ ((uint64_t)len * UINT64_C(0x9e3779b97f4a7c15));
	uint64_t tail = 0;

	for (; len >= 8; p += 8, len -= 8)
		h = mix64(h ^ load_le64(p));
	for (size_t i = 0; i < len; i++)
		tail |= (uint64_t)p[i] << (8 * i);
	return mix64(h ^ tail ^ UINT64_C(0xbb67ae8584caa73b));
}

/* ---- configuration -------------------------------------------------------------- */

void bl_balancer_config_default(struct bl_balancer_config *c)
{
	memset(c, 0, sizeof *c);
	c->strategy = BL_BALANCE_PEAK_EWMA;
	c->max_backends = DEFAULT_MAX_BACKENDS;
	c->choices = 2;
	c->slow_start_ns = 0;
	c->slow_start_min_share = 0.1;
	c->ewma_decay_ns = 10 * BL_NS_PER_S;
	c->ewma_initial_ns = 0;
	c->error_alpha = 0.1;
	c->hash_balance_factor = 1.25;
}

/* A duration for a message: "30s", "250ms", or "-5ns" when negative. */
static const char *fmt_ns(char *buf, size_t cap, int64_t ns)
{
	if (ns < 0 || bl_format_duration(ns, buf, cap) < 0)
		snprintf(buf, cap, "%lldns", (long long)ns);
	return buf;
}

int bl_balancer_config_check(const struct bl_balancer_config *c, char *err, size_t errcap)
{
	char a[48];

	if ((unsigned)c->strategy >= BL_BALANCE_STRATEGY_COUNT)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "strategy: %d is not a strategy (round_robin, weighted, random, "
			    "least_inflight, p2c, peak_ewma or consistent_hash)",
			    (int)c->strategy);
	if (c->max_backends < 1 || c->max_backends > BL_BALANCER_BACKENDS_MAX)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "max_backends: %zu is outside 1..%u (how many backends a pool may "
			    "hold, such as 1024)",
			    c->max_backends, BL_BALANCER_BACKENDS_MAX);
	if (c->choices < 2 || c->choices > BL_BALANCER_CHOICES_MAX)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "choices: %u is outside 2..%u (how many random backends p2c and "
			    "peak_ewma compare, such as 2)",
			    c->choices, BL_BALANCER_CHOICES_MAX);
	if (c->slow_start_ns < 0)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "slow_start: %s is negative (a duration such as 30s, or 0 to disable)",
			    fmt_ns(a, sizeof a, c->slow_start_ns));
	if (!(c->slow_start_min_share > 0.0 && c->slow_start_min_share <= 1.0))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "slow_start_min_share: %g is outside (0, 1] (the share of its weight "
			    "a backend gets as it joins, such as 0.1)",
			    c->slow_start_min_share);
	if (c->ewma_decay_ns <= 0)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "ewma_decay: %s must be above 0 (the latency EWMA's time constant, "
			    "such as 10s)",
			    fmt_ns(a, sizeof a, c->ewma_decay_ns));
	if (c->ewma_initial_ns < 0)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "ewma_initial: %s is negative (the latency assumed before a "
			    "backend's first call, such as 0 or 2s)",
			    fmt_ns(a, sizeof a, c->ewma_initial_ns));
	if (!(c->error_alpha > 0.0 && c->error_alpha <= 1.0))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "error_alpha: %g is outside (0, 1] (the weight of each call in the "
			    "error rate, such as 0.1)",
			    c->error_alpha);
	if (!(c->hash_balance_factor == 0.0 ||
	      (c->hash_balance_factor >= 1.0 && c->hash_balance_factor <= 1e6)))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "hash_balance_factor: %g must be 0 (unbounded) or in 1..1000000 (no "
			    "backend takes more than that times the average load, such as 1.25)",
			    c->hash_balance_factor);
	if (err && errcap)
		err[0] = '\0';
	return 0;
}

/* ---- the balancer ------------------------------------------------------------------ */

int bl_balancer_create(const struct bl_balancer_config *c, struct bl_balancer **out)
{
	struct bl_alloc_hook hook = bl_alloc_malloc;
	struct bl_balancer *b;

	if (!c || !out || bl_balancer_config_check(c, NULL, 0))
		return BL_EINVAL;
	if (c->hook) {
		if (!c->hook->malloc_fn != !c->hook->free_fn)
			return BL_EINVAL;
		if (c->hook->malloc_fn)
			hook = *c->hook;
	}
	b = hook.malloc_fn(hook.ctx, sizeof *b);
	if (!b)
		return BL_ENOMEM;
	memset(b, 0, sizeof *b);
	b->cfg = *c;
	b->cfg.hook = NULL;
	b->hook = hook;
	b->rng = c->seed;
	*out = b;
	return 0;
}

void bl_balancer_destroy(struct bl_balancer *b)
{
	if (!b)
		return;
	if (b->block)
		b->hook.free_fn(b->hook.ctx, b->block, b->block_bytes);
	b->hook.free_fn(b->hook.ctx, b, sizeof *b);
}

int bl_balancer_reconfigure(struct bl_balancer *b, const struct bl_balancer_config *c)
{
	if (bl_balancer_config_check(c, NULL, 0))
		return BL_EINVAL;
	uint64_t seed = b->cfg.seed;

	b->cfg = *c;
	b->cfg.seed = seed;
	b->cfg.hook = NULL;
	return 0;
}

/* ---- slots ------------------------------------------------------------------------ */

/* Most slots b may hold: live backends plus as many draining. */
static size_t slot_limit(const struct bl_balancer *b)
{
	return 2 * b->cfg.max_backends;
}

static size_t block_size(size_t cap)
{
	return cap * (sizeof(struct backend) + sizeof(struct member) + sizeof(uint32_t) +
		      sizeof(name_buf));
}

/* Grows the slot arrays to hold at least one more slot, in one allocation.
 * Returns 0, BL_EFULL or BL_ENOMEM with b unchanged. */
static int grow(struct bl_balancer *b)
{
	size_t limit = slot_limit(b);
	size_t cap = b->cap ? 2 * b->cap : FIRST_SLOTS;
	size_t bytes;
	char *p;

	if (b->cap >= limit)
		return BL_EFULL;
	if (cap > limit)
		cap = limit;
	bytes = block_size(cap);
	p = b->hook.malloc_fn(b->hook.ctx, bytes);
	if (!p)
		return BL_ENOMEM;
	memset(p, 0, bytes);

	/* In order of decreasing alignment: 8, 8, 4, 1. */
	struct backend *be = (struct backend *)(void *)p;
	struct member *live = (struct member *)(void *)(p + cap * sizeof(struct backend));
	uint32_t *scratch = (uint32_t *)(void *)(live + cap);
	name_buf *names = (name_buf *)(void *)(scratch + cap);

	if (b->block) {
		memcpy(be, b->be, b->cap * sizeof *be);
		memcpy(live, b->live, b->nlive * sizeof *live);
		memcpy(names, b->names, b->cap * sizeof *names);
		b->hook.free_fn(b->hook.ctx, b->block, b->block_bytes);
	}
	b->block = p;
	b->block_bytes = bytes;
	b->be = be;
	b->live = live;
	b->scratch = scratch;
	b->names = names;
	b->cap = cap;
	return 0;
}

static struct backend *live_backend(const struct bl_balancer *b, size_t idx)
{
	if (idx >= b->cap || b->be[idx].state != SLOT_LIVE)
		return NULL;
	return &b->be[idx];
}

/* A live or draining backend. */
static struct backend *held_backend(const struct bl_balancer *b, size_t idx)
{
	if (idx >= b->cap || b->be[idx].state == SLOT_FREE)
		return NULL;
	return &b->be[idx];
}

/* Position of the first live slot >= slot in live[] (binary search). */
static size_t live_pos(const struct bl_balancer *b, uint32_t slot)
{
	size_t lo = 0, hi = b->nlive;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->live[mid].slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void recompute_max_weight(struct bl_balancer *b)
{
	b->max_weight = 0;
	for (size_t i = 0; i < b->nlive; i++)
		if (b->live[i].weight > b->max_weight)
			b->max_weight = b->live[i].weight;
}

/* Takes e's external load out of (or back into) the stand-in's sums. */
static void fresh_leave(struct bl_balancer *b, const struct backend *e)
{
	if (e->load_fresh) {
		b->fresh_count--;
		b->fresh_sum_milli -= e->load_milli;
	}
}

static void fresh_join(struct bl_balancer *b, const struct backend *e)
{
	if (e->load_fresh) {
		b->fresh_count++;
		b->fresh_sum_milli += e->load_milli;
	}
}

static void free_slot(struct bl_balancer *b, size_t idx)
{
	memset(&b->be[idx], 0, sizeof b->be[idx]);
	memset(b->names[idx], 0, sizeof b->names[idx]);
	while (b->nslots > 0 && b->be[b->nslots - 1].state == SLOT_FREE)
		b->nslots--;
}

int bl_balancer_find(const struct bl_balancer *b, const char *name, size_t *out_idx)
{
	if (!name)
		return BL_ENOENT;
	for (size_t i = 0; i < b->nlive; i++) {
		if (strcmp(b->names[b->live[i].slot], name) == 0) {
			*out_idx = b->live[i].slot;
			return 0;
		}
	}
	return BL_ENOENT;
}

int bl_balancer_add(struct bl_balancer *b, const char *name, uint32_t weight,
		    bl_time_ns joined_ns, size_t *out_idx)
{
	size_t len, slot, pos, found;
	struct backend *e;
	int rc;

	if (!name || weight < 1 || weight > BL_BALANCER_WEIGHT_MAX)
		return BL_EINVAL;
	len = strnlen(name, BL_BALANCER_NAME_MAX + 1);
	if (len == 0)
		return BL_EINVAL;
	if (len > BL_BALANCER_NAME_MAX)
		return BL_ETOOBIG;
	if (bl_balancer_find(b, name, &found) == 0)
		return BL_EEXIST;
	if (b->nlive >= b->cfg.max_backends)
		return BL_EFULL;
	for (slot = 0; slot < b->cap && b->be[slot].state != SLOT_FREE; slot++)
		;
	if (slot == b->cap) {
		rc = grow(b);
		if (rc)
			return rc;
	}

	e = &b->be[slot];
	memset(e, 0, sizeof *e);
	e->state = SLOT_LIVE;
	e->weight = weight;
	e->joined_ns = joined_ns;
	e->name_hash = bl_balancer_hash(name, len);
	e->ewma_ns = (double)b->cfg.ewma_initial_ns;
	memcpy(b->names[slot], name, len + 1);

	pos = live_pos(b, (uint32_t)slot);
	memmove(&b->live[pos + 1], &b->live[pos], (b->nlive - pos) * sizeof *b->live);
	b->live[pos].slot = (uint32_t)slot;
	b->live[pos].seed = e->name_hash;
	b->live[pos].weight = weight;
	b->nlive++;
	/* Keep the turn on the backend it was on. */
	if (pos < b->turn)
		b->turn++;
	b->total_weight += weight;
	if (weight > b->max_weight)
		b->max_weight = weight;
	if (slot + 1 > b->nslots)
		b->nslots = slot + 1;
	if (out_idx)
		*out_idx = slot;
	return 0;
}

int bl_balancer_remove(struct bl_balancer *b, size_t idx)
{
	struct backend *e = live_backend(b, idx);
	size_t pos;

	if (!e)
		return BL_ENOENT;
	pos = live_pos(b, (uint32_t)idx);
	memmove(&b->live[pos], &b->live[pos + 1], (b->nlive - pos - 1) * sizeof *b->live);
	b->nlive--;
	if (pos < b->turn)
		b->turn--;
	b->total_weight -= e->weight;
	b->live_inflight -= e->inflight;
	fresh_leave(b, e);
	recompute_max_weight(b);
	if (e->inflight > 0) {
		e->state = SLOT_DRAINING;
		b->ndraining++;
	} else {
		free_slot(b, idx);
	}
	return 0;
}

int bl_balancer_set_weight(struct bl_balancer *b, size_t idx, uint32_t weight)
{
	struct backend *e = live_backend(b, idx);

	if (!e)
		return BL_ENOENT;
	if (weight < 1 || weight > BL_BALANCER_WEIGHT_MAX)
		return BL_EINVAL;
	b->total_weight = b->total_weight - e->weight + weight;
	e->weight = weight;
	b->live[live_pos(b, (uint32_t)idx)].weight = weight;
	recompute_max_weight(b);
	return 0;
}

int bl_balancer_rejoin(struct bl_balancer *b, size_t idx, bl_time_ns now_ns)
{
	struct backend *e = live_backend(b, idx);

	if (!e)
		return BL_ENOENT;
	e->joined_ns = now_ns;
	e->rr_credit = 0;
	return 0;
}

size_t bl_balancer_count(const struct bl_balancer *b)
{
	return b->nlive;
}

size_t bl_balancer_slots(const struct bl_balancer *b)
{
	return b->nslots;
}

/* ---- the figures strategies read ----------------------------------------------------- */

/* Slow start: the share of its weight e has at now, max(min_share, elapsed /
 * window), 1 once the window is over. */
static double ramp(const struct bl_balancer *b, const struct backend *e, bl_time_ns now_ns)
{
	int64_t window = b->cfg.slow_start_ns;
	double f;

	if (window <= 0 || e->joined_ns == BL_BALANCER_JOINED_LONG_AGO)
		return 1.0;
	if (now_ns < e->joined_ns)
		return b->cfg.slow_start_min_share;
	/* The difference of two int64 fits a uint64 once now >= joined. */
	uint64_t elapsed = (uint64_t)now_ns - (uint64_t)e->joined_ns;

	if (elapsed >= (uint64_t)window)
		return 1.0;
	f = (double)elapsed / (double)window;
	return f > b->cfg.slow_start_min_share ? f : b->cfg.slow_start_min_share;
}

/* The effective weight in fixed point: weight << WEIGHT_SHIFT when no slow
 * start is running, never below 1. */
static int64_t weight_fp(const struct bl_balancer *b, const struct backend *e, bl_time_ns now_ns)
{
	double f = ramp(b, e, now_ns);
	int64_t w;

	if (f >= 1.0)
		return (int64_t)e->weight << WEIGHT_SHIFT;
	w = (int64_t)((double)e->weight * (double)WEIGHT_ONE * f);
	return w > 0 ? w : 1;
}

static double weight_eff(const struct bl_balancer *b, const struct backend *e, bl_time_ns now_ns)
{
	return (double)e->weight * ramp(b, e, now_ns);
}

/* External load in calls: the backend's own when fresh, otherwise the mean of
 * the fresh ones (0 when none): unknown is not zero. */
static double ext_load(const struct bl_balancer *b, const struct backend *e)
{
	if (e->load_fresh)
		return (double)e->load_milli / LOAD_SCALE;
	if (b->fresh_count == 0)
		return 0.0;
	return (double)b->fresh_sum_milli / LOAD_SCALE / (double)b->fresh_count;
}

static double load_of(const struct bl_balancer *b, const struct backend *e)
{
	return (double)e->inflight + ext_load(b, e);
}

/* The peak EWMA decayed to now: toward zero while no sample comes, as Finagle
 * and linkerd do, so that a backend left alone after a bad spell is tried
 * again. Reading changes nothing. */
static double latency_now(const struct bl_balancer *b, const struct backend *e, bl_time_ns now_ns)
{
	double dt;

	if (!e->sampled)
		return (double)b->cfg.ewma_initial_ns;
	dt = (double)now_ns - (double)e->ewma_at_ns;
	if (dt <= 0)
		return e->ewma_ns;
	return e->ewma_ns * exp(-dt / (double)b->cfg.ewma_decay_ns);
}

/* least_inflight and p2c: (load + 1) per unit of effective weight. The + 1
 * counts the call being placed, so that among idle backends the heavier one
 * wins. */
static double cost_load(const struct bl_balancer *b, const struct backend *e, bl_time_ns now_ns)
{
	return (load_of(b, e) + 1.0) / weight_eff(b, e, now_ns);
}

/* peak_ewma: latency x (load + 1) per unit of effective weight. */
static double cost_peak(const struct bl_balancer *b, const struct backend *e, bl_time_ns now_ns)
{
	double lat = latency_now(b, e, now_ns);
	double load = load_of(b, e);

	if (lat <= 0.0)
		return ((e->inflight > 0 ? PEAK_EWMA_PENALTY : 0.0) + load) / weight_eff(b, e, now_ns);
	return lat * (load + 1.0) / weight_eff(b, e, now_ns);
}

static bool is_eligible(bl_balancer_eligible_fn eligible, void *ctx, uint32_t slot)
{
	return !eligible || eligible(ctx, slot);
}

/* ---- the strategies ------------------------------------------------------------------- */

#define NONE UINT32_MAX

/* round_robin: the live backends in slot order from the turn on. Under slow
 * start a ramping backend takes its turn only once its credit (its share,
 * added at each turn) reaches one; when no other eligible backend takes the
 * call, the first one passed over for credit does. */
static uint32_t pick_round_robin(struct bl_balancer *b, bl_time_ns now_ns,
				 bl_balancer_eligible_fn eligible, void *ctx)
{
	size_t n = b->nlive, pos = b->turn < n ? b->turn : 0, deferred_pos = 0;
	uint32_t deferred = NONE;

	for (size_t k = 0; k < n; k++, pos = pos + 1 == n ? 0 : pos + 1) {
		uint32_t s = b->live[pos].slot;
		struct backend *e = &b->be[s];

		if (!is_eligible(eligible, ctx, s))
			continue;
		double f = ramp(b, e, now_ns);

		if (f < 1.0) {
			e->rr_credit += f;
			if (e->rr_credit < 1.0) {
				if (deferred == NONE) {
					deferred = s;
					deferred_pos = pos;
				}
				continue;
			}
			e->rr_credit -= 1.0;
		}
		b->turn = pos + 1;
		return s;
	}
	if (deferred != NONE) {
		b->be[deferred].rr_credit = 0;
		b->turn = deferred_pos + 1;
	}
	return deferred;
}

/* weighted: nginx's smooth weighted round robin. Every eligible backend's
 * current weight grows by its effective weight; the largest (the first in
 * slot order on a tie) is chosen and gives back the total. O(N). */
static uint32_t pick_weighted(struct bl_balancer *b, bl_time_ns now_ns,
			      bl_balancer_eligible_fn eligible, void *ctx)
{
	uint32_t best = NONE;
	int64_t total = 0;

	for (size_t i = 0; i < b->nlive; i++) {
		uint32_t s = b->live[i].slot;
		struct backend *e = &b->be[s];

		if (!is_eligible(eligible, ctx, s))
			continue;
		int64_t w = weight_fp(b, e, now_ns);

		e->swrr_current += w;
		total += w;
		if (best == NONE || e->swrr_current > b->be[best].swrr_current)
			best = s;
	}
	if (best != NONE)
		b->be[best].swrr_current -= total;
	return best;
}

/* Gathers every eligible live backend into scratch. Returns how many. */
static size_t gather_eligible(struct bl_balancer *b, bl_balancer_eligible_fn eligible, void *ctx)
{
	size_t m = 0;

	for (size_t i = 0; i < b->nlive; i++)
		if (is_eligible(eligible, ctx, b->live[i].slot))
			b->scratch[m++] = b->live[i].slot;
	return m;
}

/* random: a uniform draw accepted with probability effective weight / largest
 * weight (rejection sampling), so each eligible backend comes out in
 * proportion to its effective weight, in O(1) expected while weights are
 * alike and most backends eligible. After RANDOM_TRIES misses, one exact
 * draw over the eligible backends: the same distribution, in O(N). */
static uint32_t pick_random(struct bl_balancer *b, bl_time_ns now_ns,
			    bl_balancer_eligible_fn eligible, void *ctx)
{
	int64_t top = (int64_t)b->max_weight << WEIGHT_SHIFT, sum = 0;
	size_t m;

	for (int t = 0; t < RANDOM_TRIES; t++) {
		uint32_t s = b->live[rng_below(b, b->nlive)].slot;
		int64_t w = weight_fp(b, &b->be[s], now_ns);

		if (w < top && (int64_t)rng_below(b, (uint64_t)top) >= w)
			continue;
		if (is_eligible(eligible, ctx, s))
			return s;
	}
	m = gather_eligible(b, eligible, ctx);
	if (m == 0)
		return NONE;
	for (size_t i = 0; i < m; i++)
		sum += weight_fp(b, &b->be[b->scratch[i]], now_ns);
	int64_t r = (int64_t)rng_below(b, (uint64_t)sum);

	for (size_t i = 0; i < m; i++) {
		r -= weight_fp(b, &b->be[b->scratch[i]], now_ns);
		if (r < 0)
			return b->scratch[i];
	}
	return b->scratch[m - 1]; /* not reached: the weights sum to `sum` */
}

/* Chooses up to k distinct eligible backends uniformly at random into out:
 * random draws first (O(k) expected when most backends are eligible), then,
 * after TRIES_PER_CHOICE x k misses, a partial Fisher-Yates shuffle of all
 * the eligible ones. With k or fewer live backends, all eligible ones.
 * Returns how many were chosen (0: none eligible). */
static size_t sample(struct bl_balancer *b, size_t k, bl_balancer_eligible_fn eligible, void *ctx,
		     uint32_t *out)
{
	size_t n = b->nlive, got = 0, m;

	if (n <= k) {
		for (size_t i = 0; i < n; i++)
			if (is_eligible(eligible, ctx, b->live[i].slot))
				out[got++] = b->live[i].slot;
		return got;
	}
	for (size_t t = 0; t < TRIES_PER_CHOICE * k && got < k; t++) {
		uint32_t s = b->live[rng_below(b, n)].slot;
		bool dup = false;

		for (size_t j = 0; j < got; j++)
			dup |= out[j] == s;
		if (!dup && is_eligible(eligible, ctx, s))
			out[got++] = s;
	}
	if (got == k)
		return k;
	m = gather_eligible(b, eligible, ctx);
	if (m <= k) {
		memcpy(out, b->scratch, m * sizeof *out);
		return m;
	}
	for (size_t i = 0; i < k; i++) {
		size_t j = i + (size_t)rng_below(b, m - i);
		uint32_t t = b->scratch[j];

		b->scratch[j] = b->scratch[i];
		b->scratch[i] = t;
		out[i] = t;
	}
	return k;
}

typedef double (*cost_fn)(const struct bl_balancer *b, const struct backend *e, bl_time_ns now_ns);

/* p2c and peak_ewma: the cheapest of `choices` random eligible backends (the
 * first drawn on a tie). */
static uint32_t pick_choices(struct bl_balancer *b, bl_time_ns now_ns,
			     bl_balancer_eligible_fn eligible, void *ctx, cost_fn cost)
{
	uint32_t cand[BL_BALANCER_CHOICES_MAX], best = NONE;
	size_t got = sample(b, b->cfg.choices, eligible, ctx, cand);
	double best_cost = 0;

	for (size_t i = 0; i < got; i++) {
		double c = cost(b, &b->be[cand[i]], now_ns);

		if (best == NONE || c < best_cost) {
			best = cand[i];
			best_cost = c;
		}
	}
	return best;
}

/* least_inflight: the cheapest eligible backend of all, O(N). The scan starts
 * one further each pick so that ties take turns. */
static uint32_t pick_least(struct bl_balancer *b, bl_time_ns now_ns,
			   bl_balancer_eligible_fn eligible, void *ctx)
{
	size_t n = b->nlive, pos = b->turn < n ? b->turn : 0;
	uint32_t best = NONE;
	double best_cost = 0;

	b->turn = pos + 1;
	for (size_t k = 0; k < n; k++, pos = pos + 1 == n ? 0 : pos + 1) {
		uint32_t s = b->live[pos].slot;
		double c = cost_load(b, &b->be[s], now_ns);

		if ((best == NONE || c < best_cost) && is_eligible(eligible, ctx, s)) {
			best = s;
			best_cost = c;
		}
	}
	return best;
}

/* consistent_hash: weighted rendezvous (highest random weight) hashing. Each
 * backend draws u = hash(key, its name) in (0, 1) and bids -ln(u) / weight,
 * an exponential race: the lowest bid wins, backend i with probability
 * weight_i / total, and removing or reweighting one backend moves only the
 * keys it wins or starts winning. Since -ln(u) >= 1 - u, a bid whose
 * (1 - u) / weight already loses is dropped without a logarithm, and the
 * eligibility callback and the load bound are consulted only for a bid that
 * would lead: O(log N) of each per pick, expected.
 *
 * With the bound (c > 0), a backend takes the call only if afterwards its
 * in-flight calls stay within ceil(c x (in flight + 1) x weight / total
 * weight) (consistent hashing with bounded loads, Mirrokni et al.); the key
 * then goes to the next backend in its own order. Some backend always has
 * room; if the eligible ones have none, the bound is waived. */
static uint32_t hrw(struct bl_balancer *b, uint64_t key, bl_time_ns now_ns,
		    bl_balancer_eligible_fn eligible, void *ctx, bool bounded)
{
	double scale = 0.0, best_bid = INFINITY;
	uint64_t km = mix64(key);
	uint32_t best = NONE;
	bool ramps = b->cfg.slow_start_ns > 0;

	if (bounded)
		scale = b->cfg.hash_balance_factor * (double)(b->live_inflight + 1) /
			(double)b->total_weight;
	for (const struct member *mb = b->live, *end = mb + b->nlive; mb < end; mb++) {
		/* 1 - u, exact in a double: u = (m + 0.5) / 2^53 for the top
		 * 53 bits m of the hash, never 0 nor 1. */
		int64_t m = (int64_t)(mix64(km ^ mb->seed) >> 11);
		double q = ((double)((INT64_C(1) << 53) - m) - 0.5) * 0x1p-53;
		double w = ramps ? weight_eff(b, &b->be[mb->slot], now_ns) : (double)mb->weight;

		if (q >= best_bid * w)
			continue;
		double bid = -log1p(-q) / w;

		if (bid >= best_bid)
			continue;
		if (bounded && (double)(b->be[mb->slot].inflight + 1) > ceil(scale * (double)mb->weight))
			continue;
		if (!is_eligible(eligible, ctx, mb->slot))
			continue;
		best = mb->slot;
		best_bid = bid;
	}
	return best;
}

static uint32_t pick_hash(struct bl_balancer *b, uint64_t key, bl_time_ns now_ns,
			  bl_balancer_eligible_fn eligible, void *ctx)
{
	bool bounded = b->cfg.hash_balance_factor > 0.0;
	uint32_t s = hrw(b, key, now_ns, eligible, ctx, bounded);

	if (s == NONE && bounded)
		s = hrw(b, key, now_ns, eligible, ctx, false);
	return s;
}

int bl_balancer_pick(struct bl_balancer *b, uint64_t key, bl_time_ns now_ns,
		     bl_balancer_eligible_fn eligible, void *ctx, size_t *out_idx)
{
	uint32_t s = NONE;

	if (b->nlive > 0) {
		switch (b->cfg.strategy) {
		case BL_BALANCE_ROUND_ROBIN:
			s = pick_round_robin(b, now_ns, eligible, ctx);
			break;
		case BL_BALANCE_WEIGHTED:
			s = pick_weighted(b, now_ns, eligible, ctx);
			break;
		case BL_BALANCE_RANDOM:
			s = pick_random(b, now_ns, eligible, ctx);
			break;
		case BL_BALANCE_LEAST_INFLIGHT:
			s = pick_least(b, now_ns, eligible, ctx);
			break;
		case BL_BALANCE_P2C:
			s = pick_choices(b, now_ns, eligible, ctx, cost_load);
			break;
		case BL_BALANCE_PEAK_EWMA:
			s = pick_choices(b, now_ns, eligible, ctx, cost_peak);
			break;
		case BL_BALANCE_CONSISTENT_HASH:
			s = pick_hash(b, key, now_ns, eligible, ctx);
			break;
		default:
			break;
		}
	}
	if (s == NONE) {
		b->none++;
		return BL_EAGAIN;
	}
	b->be[s].picks++;
	b->picks++;
	*out_idx = s;
	return 0;
}

/* ---- metrics ------------------------------------------------------------------------ */

int bl_balancer_on_start(struct bl_balancer *b, size_t idx)
{
	struct backend *e = live_backend(b, idx);

	if (!e)
		return BL_ENOENT;
	e->inflight++;
	b->live_inflight++;
	return 0;
}

/* In flight - 1 on held backend e; frees a draining backend's slot with its
 * last call. */
static void end_call(struct bl_balancer *b, size_t idx, struct backend *e)
{
	e->inflight--;
	if (e->state == SLOT_LIVE) {
		b->live_inflight--;
	} else if (e->inflight == 0) {
		b->ndraining--;
		free_slot(b, idx);
	}
}

int bl_balancer_on_finish(struct bl_balancer *b, size_t idx, int64_t latency_ns, bool failed,
			  bl_time_ns now_ns)
{
	struct backend *e = held_backend(b, idx);
	double lat = (double)latency_ns;

	if (!e)
		return BL_ENOENT;
	if (latency_ns < 0 || e->inflight == 0)
		return BL_EINVAL;
	if (failed && e->sampled && lat < e->ewma_ns)
		lat = e->ewma_ns;
	if (!e->sampled || lat >= e->ewma_ns) {
		/* First sample, or a peak: taken at once. */
		e->ewma_ns = lat;
	} else {
		double dt = (double)now_ns - (double)e->ewma_at_ns;
		double keep = dt > 0 ? exp(-dt / (double)b->cfg.ewma_decay_ns) : 1.0;

		e->ewma_ns = e->ewma_ns * keep + lat * (1.0 - keep);
	}
	if (!e->sampled || now_ns > e->ewma_at_ns)
		e->ewma_at_ns = now_ns;
	e->sampled = true;
	e->error_rate += b->cfg.error_alpha * ((failed ? 1.0 : 0.0) - e->error_rate);
	e->completions++;
	if (failed)
		e->failures++;
	end_call(b, idx, e);
	return 0;
}

int bl_balancer_on_cancel(struct bl_balancer *b, size_t idx)
{
	struct backend *e = held_backend(b, idx);

	if (!e)
		return BL_ENOENT;
	if (e->inflight == 0)
		return BL_EINVAL;
	end_call(b, idx, e);
	return 0;
}

int bl_balancer_set_load(struct bl_balancer *b, size_t idx, double load, bool stale)
{
	struct backend *e = live_backend(b, idx);

	if (!e)
		return BL_ENOENT;
	if (!stale && !(load >= 0.0 && load <= BL_BALANCER_LOAD_MAX))
		return BL_EINVAL;
	fresh_leave(b, e);
	e->load_fresh = !stale;
	e->load_milli = stale ? 0 : (uint64_t)llround(load * LOAD_SCALE);
	fresh_join(b, e);
	return 0;
}

/* ---- observability ---------------------------------------------------------------- */

int bl_balancer_backend_stats(const struct bl_balancer *b, size_t idx, bl_time_ns now_ns,
			      struct bl_balancer_backend_stats *out)
{
	const struct backend *e = held_backend(b, idx);

	if (!e)
		return BL_ENOENT;
	memset(out, 0, sizeof *out);
	memcpy(out->name, b->names[idx], sizeof out->name);
	out->draining = e->state == SLOT_DRAINING;
	out->weight = e->weight;
	out->slow_start_factor = ramp(b, e, now_ns);
	out->effective_weight = weight_eff(b, e, now_ns);
	out->joined_ns = e->joined_ns;
	out->inflight = e->inflight;
	out->latency_ewma_ns = e->ewma_ns;
	out->latency_now_ns = latency_now(b, e, now_ns);
	out->latency_sampled = e->sampled;
	out->error_rate = e->error_rate;
	out->external_load = e->load_fresh ? (double)e->load_milli / LOAD_SCALE : 0.0;
	out->external_load_fresh = e->load_fresh;
	out->load = load_of(b, e);
	out->picks = e->picks;
	out->completions = e->completions;
	out->failures = e->failures;
	return 0;
}

void bl_balancer_stats(const struct bl_balancer *b, struct bl_balancer_stats *out)
{
	memset(out, 0, sizeof *out);
	out->strategy = b->cfg.strategy;
	out->backends = b->nlive;
	out->draining = b->ndraining;
	out->inflight = b->live_inflight;
	out->total_weight = b->total_weight;
	out->picks = b->picks;
	out->none = b->none;
}
