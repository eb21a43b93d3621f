/* Load balancing: which of a pool's backends gets the next call.
 *
 * A balancer holds a pool's backends and, per backend, the live figures the
 * caller reports: calls in flight, a peak EWMA of latency, an EWMA of the
 * error rate and an optional external load (a queue depth the backend
 * reports, such as vLLM's). bl_balancer_pick chooses a backend by one of
 * seven strategies (docs/internals/balancing.md explains each and why):
 *
 *   round_robin      each backend in turn, weights aside            O(1)*
 *   weighted         smooth weighted round robin, as nginx          O(N)
 *   random           random, in proportion to weight                O(1)*
 *   least_inflight   fewest (in flight + external load) / weight    O(N)
 *   p2c              the less loaded of `choices` random backends   O(1)*
 *   peak_ewma        p2c on latency x (load + 1), as Finagle        O(1)*
 *   consistent_hash  weighted rendezvous hashing of a key, bounded  O(N), a few ns
 *                    to ceil(c x average load) per backend          per backend
 *   (* expected, while eligible backends are found by a few random draws;
 *    the O(N) ones ask the eligibility callback about every backend, except
 *    least_inflight and consistent_hash, which ask only about leaders)
 *
 * Every strategy skips the backends the caller's eligibility callback refuses
 * for this pick (a breaker that refuses, a budget that cannot admit), and
 * honours slow start: a backend that joins or rejoins at time t counts with
 * weight x max(min_share, (now - t) / slow_start) until the window is over.
 *
 * Backends live in slots. The index bl_balancer_add returns stays the
 * backend's until it is removed, whatever else is added or removed, and the
 * other backends keep their state: a configuration reload calls add for new
 * names, remove for names gone and set_weight for the rest. A removed backend
 * with calls in flight drains: it is never picked again, but its index stays
 * valid for on_finish / on_cancel until the last call ends, and only then is
 * the slot reused.
 *
 * Pure: time is an argument (bl_time_ns), randomness comes from a PRNG seeded
 * at creation, so a run is reproducible; no I/O, no globals. Memory is taken
 * (from the hook) only by create and by add when the slots are full; pick,
 * the on_* calls and set_load never allocate. The daemon's loop thread owns a
 * balancer: no locks. A function that fails leaves the balancer as it was.
 */
#ifndef BALLAST_BALANCER_H
#define BALLAST_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/alloc.h"
#include "ballast/units.h"

/* ---- strategies ----------------------------------------------------------- */

enum bl_balance_strategy {
	BL_BALANCE_ROUND_ROBIN = 0,     /* "round_robin" */
	BL_BALANCE_WEIGHTED = 1,        /* "weighted" */
	BL_BALANCE_RANDOM = 2,          /* "random" */
	BL_BALANCE_LEAST_INFLIGHT = 3,  /* "least_inflight" */
	BL_BALANCE_P2C = 4,             /* "p2c" */
	BL_BALANCE_PEAK_EWMA = 5,       /* "peak_ewma" */
	BL_BALANCE_CONSISTENT_HASH = 6, /* "consistent_hash" */
	BL_BALANCE_STRATEGY_COUNT
};

/* Parses a strategy name (exact, lower case, as in the comments above) of len
 * bytes. Returns 0 and sets *out, or BL_EINVAL leaving *out untouched. */
int bl_balance_strategy_parse(const char *s, size_t len, enum bl_balance_strategy *out);

/* Returns the name of s, or "unknown". */
const char *bl_balance_strategy_name(enum bl_balance_strategy s);

/* ---- configuration ---------------------------------------------------------- */

#define BL_BALANCER_NAME_MAX 63           /* bytes in a backend name, NUL excluded */
#define BL_BALANCER_WEIGHT_MAX 1000000u   /* largest weight */
#define BL_BALANCER_BACKENDS_MAX 65536u   /* largest max_backends */
#define BL_BALANCER_CHOICES_MAX 8u        /* largest choices */
#define BL_BALANCER_LOAD_MAX 1e9          /* largest external load, calls */

/* A joined_ns for bl_balancer_add that means "long ago": no slow start. */
#define BL_BALANCER_JOINED_LONG_AGO INT64_MIN

/* A balancer's configuration. Start from bl_balancer_config_default. */
struct bl_balancer_config {
	enum bl_balance_strategy strategy; /* default peak_ewma */
	uint64_t seed;               /* PRNG seed; any value (creation only) */
	size_t max_backends;         /* backends at once, 1..BL_BALANCER_BACKENDS_MAX;
					default 1024 */
	unsigned choices;            /* backends p2c and peak_ewma compare, 2..8;
					default 2 */
	int64_t slow_start_ns;       /* ramp window after (re)joining, ns, >= 0;
					0 (the default) disables slow start */
	double slow_start_min_share; /* share of its weight a backend has as it
					joins, (0, 1]; default 0.1 */
	int64_t ewma_decay_ns;       /* time constant of the latency EWMA, ns, > 0;
					default 10 s */
	int64_t ewma_initial_ns;     /* latency assumed before a backend's first
					sample, ns, >= 0; default 0 (Finagle's: one
					probe at a time until it answers) */
	double error_alpha;          /* weight of each call in the error-rate EWMA,
					(0, 1]; default 0.1 (about the last 10 calls) */
	double hash_balance_factor;  /* consistent_hash load bound c: no backend
					takes a call past ceil(c x average load);
					0 = unbounded, else >= 1; default 1.25 */
	const struct bl_alloc_hook *hook; /* copied at creation; NULL = malloc */
};

/* Fills c with the defaults above. */
void bl_balancer_config_default(struct bl_balancer_config *c);

/* Checks c. Returns 0, or BL_EINVAL and writes what is wrong and what is
 * accepted into err (errcap bytes, NUL-terminated, truncated if need be; err
 * may be NULL when errcap is 0), such as "choices: 1 is outside 2..8 (how many
 * random backends p2c and peak_ewma compare, such as 2)". */
int bl_balancer_config_check(const struct bl_balancer_config *c, char *err, size_t errcap);

/* ---- the balancer --------------------------------------------------------------- */

struct bl_balancer;

/* Creates an empty balancer configured by c (copied) and stores it in *out.
 * Returns 0; BL_EINVAL when c does not pass bl_balancer_config_check or the
 * hook has only one of its two functions; BL_ENOMEM. On failure *out is left
 * untouched. */
int bl_balancer_create(const struct bl_balancer_config *c, struct bl_balancer **out);

/* Frees b and everything it holds. NULL is a no-op. */
void bl_balancer_destroy(struct bl_balancer *b);

/* Applies a new configuration on reload: strategy, limits and constants. The
 * backends and all their figures are kept; the seed and the hook are not
 * changed (the PRNG goes on). A max_backends below the backends held takes
 * nothing away, it only refuses further adds. Returns 0 or BL_EINVAL leaving
 * b unchanged. */
int bl_balancer_reconfigure(struct bl_balancer *b, const struct bl_balancer_config *c);

/* ---- backends --------------------------------------------------------------------- */

/* Adds a backend named `name` (1..BL_BALANCER_NAME_MAX bytes, NUL-terminated,
 * copied) with weight 1..BL_BALANCER_WEIGHT_MAX, that joined at joined_ns:
 * slow start ramps its weight from then on (pass the current time for a new
 * backend, BL_BALANCER_JOINED_LONG_AGO for one present from the start).
 * Stores its index in *out_idx (may be NULL). Returns 0; BL_EINVAL (no name,
 * empty name, weight out of range), BL_ETOOBIG (name too long), BL_EEXIST (a
 * live backend has that name), BL_EFULL (max_backends live, or no slot left
 * because 2 x max_backends are live or draining), BL_ENOMEM; b unchanged. */
int bl_balancer_add(struct bl_balancer *b, const char *name, uint32_t weight,
		    bl_time_ns joined_ns, size_t *out_idx);

/* Removes live backend idx: it is never picked again. With calls in flight
 * it drains (its index stays valid for on_finish and on_cancel until the last
 * one ends); otherwise its slot is free at once. Returns 0 or BL_ENOENT (idx
 * is not a live backend), b unchanged. */
int bl_balancer_remove(struct bl_balancer *b, size_t idx);

/* Sets live backend idx's weight (1..BL_BALANCER_WEIGHT_MAX), keeping its
 * figures and its slow start. Returns 0, BL_ENOENT or BL_EINVAL; b unchanged
 * on failure. */
int bl_balancer_set_weight(struct bl_balancer *b, size_t idx, uint32_t weight);

/* Restarts live backend idx's slow start at now_ns: for a backend that
 * comes back (its breaker closed again). Its other figures are kept. Returns
 * 0 or BL_ENOENT. */
int bl_balancer_rejoin(struct bl_balancer *b, size_t idx, bl_time_ns now_ns);

/* Looks up the live backend named `name` (NUL-terminated). Returns 0 and sets
 * *out_idx, or BL_ENOENT (draining backends are not found). O(N). */
int bl_balancer_find(const struct bl_balancer *b, const char *name, size_t *out_idx);

/* Returns the number of live backends (draining ones excluded). */
size_t bl_balancer_count(const struct bl_balancer *b);

/* Returns a bound on the indices in use: every live or draining backend's
 * index is below it. For iterating with bl_balancer_backend_stats. */
size_t bl_balancer_slots(const struct bl_balancer *b);

/* ---- picking ------------------------------------------------------------------------ */

/* May backend idx take this call? Called by bl_balancer_pick with the ctx it
 * was given, zero or more times per backend per pick, in no promised order:
 * it must be a query without side effects (a breaker's half-open probe is
 * taken by the caller after the pick, not here). */
typedef bool (*bl_balancer_eligible_fn)(void *ctx, size_t idx);

/* Chooses a live backend for one call at now_ns by the configured strategy,
 * among those `eligible` accepts (NULL: all). `key` is the request's key for
 * consistent_hash (a session or prompt-prefix id through bl_balancer_hash)
 * and is ignored by the other strategies. Returns 0 and sets *out_idx, or
 * BL_EAGAIN when no live backend is eligible (*out_idx untouched). Updates
 * the strategy's state (turn, PRNG, counters) but not the backend's in-flight
 * count: call bl_balancer_on_start when the call goes ahead. */
int bl_balancer_pick(struct bl_balancer *b, uint64_t key, bl_time_ns now_ns,
		     bl_balancer_eligible_fn eligible, void *ctx, size_t *out_idx);

/* Returns a 64-bit hash of len bytes at data: the key consistent_hash wants.
 * Stable across runs, machines and versions of the same major release, so
 * that several daemons and restarts map a key alike. Not keyed: do not feed
 * it keys an adversary picks to collide (the load bound limits the harm). */
uint64_t bl_balancer_hash(const void *data, size_t len);

/* ---- metrics, reported by the caller ------------------------------------------------------ */

/* A call to live backend idx starts: in flight + 1. Returns 0 or BL_ENOENT. */
int bl_balancer_on_start(struct bl_balancer *b, size_t idx);

/* A call to backend idx (live or draining) ended at now_ns after latency_ns
 * (>= 0), failed or not: in flight - 1, the latency feeds the peak EWMA (a
 * failure can only raise it: a backend that fails fast must not look fast),
 * the outcome feeds the error rate. A draining backend's slot is freed with
 * its last call. Returns 0; BL_ENOENT (no such backend), BL_EINVAL (negative
 * latency, nothing in flight); b unchanged on failure. */
int bl_balancer_on_finish(struct bl_balancer *b, size_t idx, int64_t latency_ns, bool failed,
			  bl_time_ns now_ns);

/* A call to backend idx (live or draining) ends without an outcome to learn
 * from (picked, started, then not made): in flight - 1 only. Returns 0,
 * BL_ENOENT or BL_EINVAL (nothing in flight); b unchanged on failure. */
int bl_balancer_on_cancel(struct bl_balancer *b, size_t idx);

/* Sets live backend idx's external load: a queue depth it reports (in calls,
 * like the in-flight count, 0..BL_BALANCER_LOAD_MAX), added to its load by
 * least_inflight, p2c and peak_ewma. With stale, the value is unknown (the
 * scrape failed or is too old) and `load` is ignored: an unknown load is
 * never taken as zero, but as the mean of the fresh loads of the other live
 * backends (0 when none is fresh), so it neither attracts nor repels calls.
 * Returns 0, BL_ENOENT or BL_EINVAL (a fresh load negative, NaN or too
 * large); b unchanged on failure. */
int bl_balancer_set_load(struct bl_balancer *b, size_t idx, double load, bool stale);

/* ---- observability --------------------------------------------------------------- */

/* One backend as the daemon shows it. */
struct bl_balancer_backend_stats {
	char name[BL_BALANCER_NAME_MAX + 1]; /* NUL-terminated */
	bool draining;             /* removed, calls still in flight */
	uint32_t weight;           /* configured weight */
	double slow_start_factor;  /* share of the weight in force now, (0, 1] */
	double effective_weight;   /* weight x slow_start_factor */
	bl_time_ns joined_ns;      /* when the backend (re)joined */
	uint64_t inflight;         /* calls started and not ended */
	double latency_ewma_ns;    /* peak EWMA of latency at its last sample, ns
				      (ewma_initial before the first) */
	double latency_now_ns;     /* the same decayed to now, ns: what peak_ewma uses */
	bool latency_sampled;      /* at least one latency was recorded */
	double error_rate;         /* EWMA of failures, 0..1 */
	double external_load;      /* last fresh external load, calls (0 if none) */
	bool external_load_fresh;  /* false: unknown (never set, or stale) */
	double load;               /* what least_inflight, p2c and peak_ewma count:
				      in flight + external load (or its stand-in) */
	uint64_t picks;            /* times bl_balancer_pick chose it */
	uint64_t completions;      /* on_finish calls */
	uint64_t failures;         /* on_finish calls with failed */
};

/* Fills *out with backend idx's figures as of now_ns. Returns 0, or
 * BL_ENOENT (no live or draining backend at idx) leaving *out untouched. */
int bl_balancer_backend_stats(const struct bl_balancer *b, size_t idx, bl_time_ns now_ns,
			      struct bl_balancer_backend_stats *out);

/* A balancer as the daemon shows it. */
struct bl_balancer_stats {
	enum bl_balance_strategy strategy; /* in force */
	size_t backends;       /* live backends */
	size_t draining;       /* removed backends with calls in flight */
	uint64_t inflight;     /* calls in flight on live backends */
	uint64_t total_weight; /* sum of the live backends' weights */
	uint64_t picks;        /* picks that chose a backend */
	uint64_t none;         /* picks that found none eligible (BL_EAGAIN) */
};

/* Fills *out with b's figures. Changes nothing. */
void bl_balancer_stats(const struct bl_balancer *b, struct bl_balancer_stats *out);

#endif
