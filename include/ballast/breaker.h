/* Circuit breakers: one per backend, so that agents stop piling onto an
 * endpoint that is failing and find out by themselves when it is back.
 *
 * The states (docs/internals/breakers.md explains the why of each rule):
 *   closed      calls go through; their outcomes fill a sliding window (the
 *               last N outcomes, or the outcomes of the last N seconds). It
 *               trips to open when, with at least min_calls in the window,
 *               failures / calls >= failure_rate or slow / calls >= slow_rate
 *               (a rate rule needs at least one such call in the window), or
 *               at once after consecutive_failures failures in a row (0: off).
 *   open        every call is refused until open_until; the period is
 *               open_for, doubled on each repeated trip, up to max_open_for.
 *   half_open   after the open period, half_open_probes trial calls are let
 *               through, one permit each; more are refused until outcomes come
 *               back. All probes succeed: closed, with a fresh window and the
 *               backoff reset. Any probe fails or is slow: open again, for
 *               twice as long.
 *   forced_open set by an operator: every call is refused, nothing is recorded.
 *   disabled    set by an operator: every call is admitted, nothing is recorded.
 * An operator leaves forced_open or disabled by setting closed (which also
 * resets the window and the backoff).
 *
 * Outcomes: ok is a success; error and timeout are failures; rate_limited is a
 * failure when rate_limited_trips is set and otherwise counts as nothing, as
 * cancelled always does. "Nothing" means: not a call, not a failure, not in
 * the window, no effect on the streak of consecutive failures; it only gives
 * back a half-open probe permit. Any call (success or failure) whose latency
 * is >= slow_call is slow as well.
 *
 * Admission hands out a permit (plain data) that the caller keeps with the
 * call and passes back with its outcome. The permit names the breaker's
 * generation, which changes on every state change: the outcome of a call
 * admitted before a trip, a close or an operator override belongs to a state
 * that is over, and is ignored instead of being counted twice or taken for a
 * probe.
 *
 * Pure: no I/O, no clock, no globals; time is an argument (monotonic ns, never
 * going backwards: an earlier time is taken as the latest seen). The window is
 * allocated once, at creation (or handed in by the caller at init); admitting
 * and recording allocate nothing and cost O(1), plus, for a time window, the
 * expiry of one bucket per second that has passed since the last outcome (at
 * most the window's buckets; a gap longer than the window empties it in
 * O(1)). The daemon's loop thread owns a breaker: no locks. A function that
 * fails leaves the breaker as it was.
 */
#ifndef BALLAST_BREAKER_H
#define BALLAST_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/alloc.h"
#include "ballast/units.h"

/* ---- states, outcomes, reasons ------------------------------------------- */

/* A breaker's state. The first three are the breaker's own verdicts; the
 * last two are set only by an operator (bl_breaker_force). */
enum bl_breaker_state {
	BL_BREAKER_CLOSED = 0,      /* admits; outcomes fill the window */
	BL_BREAKER_OPEN = 1,        /* refuses until the open period is over */
	BL_BREAKER_HALF_OPEN = 2,   /* admits half_open_probes trial calls */
	BL_BREAKER_FORCED_OPEN = 3, /* operator: refuses everything, records nothing */
	BL_BREAKER_DISABLED = 4,    /* operator: admits everything, records nothing */
	BL_BREAKER_STATE_COUNT
};

/* Returns the name of s ("closed", "open", "half_open", "forced_open",
 * "disabled"), or "unknown". */
const char *bl_breaker_state_name(enum bl_breaker_state s);

/* Parses a state name as bl_breaker_state_name writes it (exact, lower case)
 * of len bytes. Returns 0 and sets *out, or BL_EINVAL leaving *out untouched. */
int bl_breaker_state_parse(const char *s, size_t len, enum bl_breaker_state *out);

/* How a call ended, as the agent reports it on release. */
enum bl_breaker_outcome {
	BL_BREAKER_OK = 0,           /* the backend answered: a success */
	BL_BREAKER_ERROR = 1,        /* the backend failed the call: a failure */
	BL_BREAKER_TIMEOUT = 2,      /* no answer in time (or a lease reclaimed): a failure */
	BL_BREAKER_RATE_LIMITED = 3, /* the provider said 429: a failure only with rate_limited_trips */
	BL_BREAKER_CANCELLED = 4,    /* the caller gave up: counts as nothing */
	BL_BREAKER_OUTCOME_COUNT
};

/* Returns the name of o ("ok", "error", "timeout", "rate_limited",
 * "cancelled"), or "unknown". */
const char *bl_breaker_outcome_name(enum bl_breaker_outcome o);

/* Parses an outcome name as bl_breaker_outcome_name writes it (exact, lower
 * case) of len bytes. Returns 0 and sets *out, or BL_EINVAL leaving *out
 * untouched. */
int bl_breaker_outcome_parse(const char *s, size_t len, enum bl_breaker_outcome *out);

/* Why a breaker last opened. When several rules hold at once, the first in
 * this order is named. */
enum bl_breaker_trip {
	BL_BREAKER_TRIP_NONE = 0,        /* never tripped (or reset by an operator) */
	BL_BREAKER_TRIP_CONSECUTIVE = 1, /* consecutive_failures failures in a row */
	BL_BREAKER_TRIP_FAILURE_RATE = 2, /* failures / calls >= failure_rate */
	BL_BREAKER_TRIP_SLOW_RATE = 3,   /* slow / calls >= slow_rate */
	BL_BREAKER_TRIP_PROBE = 4,       /* a half-open probe failed or was slow */
	BL_BREAKER_TRIP_COUNT
};

/* Returns the name of t ("none", "consecutive_failures", "failure_rate",
 * "slow_rate", "probe"), or "unknown". */
const char *bl_breaker_trip_name(enum bl_breaker_trip t);

/* ---- configuration ------------------------------------------------------ */

/* Bounds of the configuration (see bl_breaker_config_check). */
#define BL_BREAKER_WINDOW_COUNT_MAX UINT32_C(100000)        /* outcomes a count window keeps */
#define BL_BREAKER_BUCKET_NS BL_NS_PER_S                   /* a time window's bucket: 1 s */
#define BL_BREAKER_WINDOW_NS_MIN BL_NS_PER_S               /* 1 s */
#define BL_BREAKER_WINDOW_NS_MAX (INT64_C(3600) * BL_NS_PER_S) /* 1 h: 3600 buckets */
#define BL_BREAKER_BACKOFF_LEVEL_MAX 62                    /* doublings, far past any cap */

/* A breaker's configuration; the fields match the daemon's breaker section.
 * Start from bl_breaker_config_default. */
struct bl_breaker_config {
	bool window_is_time;           /* false: the last window_count calls; true: the last window_ns */
	uint32_t window_count;         /* outcomes kept by a count window, 1..100000 */
	int64_t window_ns;             /* span of a time window, 1 s..1 h, rounded up to whole seconds */
	uint32_t min_calls;            /* calls in the window before a rate may trip, >= 1
					  (<= window_count for a count window) */
	double failure_rate;           /* share of failed calls that trips, 0..1 */
	int64_t slow_call_ns;          /* a call this slow or slower is slow, ns, > 0 */
	double slow_rate;              /* share of slow calls that trips, 0..1 */
	uint32_t consecutive_failures; /* failures in a row that trip; 0 disables the rule */
	int64_t open_for_ns;           /* first open period, ns, > 0 */
	int64_t max_open_for_ns;       /* cap of the doubled open period, ns, >= open_for_ns */
	uint32_t half_open_probes;     /* trial calls when half-open, >= 1 */
	bool rate_limited_trips;       /* rate_limited outcomes count as failures */
};

/* Fills c with the defaults: a count window of 50, min_calls 20, failure_rate
 * 0.5, slow_call 20 s, slow_rate 0.8, consecutive_failures 5, open_for 30 s,
 * max_open_for 5 min, half_open_probes 3, rate_limited_trips false; and
 * window_ns 60 s, used when window_is_time is set. */
void bl_breaker_config_default(struct bl_breaker_config *c);

/* Checks c. Returns 0, or BL_EINVAL and writes what is wrong and what is
 * accepted into err (errcap bytes, NUL-terminated, truncated if need be; err
 * may be NULL when errcap is 0), such as "min_calls: 60 exceeds the window of
 * 50 calls, so the breaker could never trip". Fields are named as in the
 * configuration file (window.count, window.time, slow_call, open_for ...). */
int bl_breaker_config_check(const struct bl_breaker_config *c, char *err, size_t errcap);

/* ---- the breaker --------------------------------------------------------- */

/* A circuit breaker. Embed it and set it up with bl_breaker_init and a window
 * buffer of your own, or get one from bl_breaker_create. Fields are private:
 * read them through bl_breaker_stats. */
struct bl_breaker {
	struct bl_breaker_config config; /* configuration in force */
	enum bl_breaker_state state;     /* as last changed; OPEN may be over (see bl_breaker_state) */
	enum bl_breaker_trip last_trip;  /* why it last opened */
	uint64_t generation;             /* changes on every state change; starts at 1 */
	bl_time_ns open_until_ns;        /* OPEN: end of the open period, monotonic ns */
	int64_t open_period_ns;          /* length of the current (or last) open period, ns */
	uint32_t backoff_level;          /* doublings of open_for in the current (or last) period */
	uint32_t probes_out;             /* HALF_OPEN: permits handed out, outcome not yet back */
	uint32_t probes_ok;              /* HALF_OPEN: probes that succeeded */
	uint32_t consecutive;            /* failures in a row among the calls counted */
	/* the sliding window */
	void *window;          /* uint8_t per outcome (count) or one bucket per second (time) */
	uint32_t n_slots;      /* outcomes (count) or buckets (time) */
	uint32_t head;         /* count: the slot the next outcome goes in */
	uint32_t filled;       /* count: slots holding an outcome */
	uint32_t window_gen;   /* time: buckets written under another value are empty */
	bool started;          /* time: last_sec is set */
	int64_t last_sec;      /* time: the latest second the window has reached */
	uint64_t win_calls;    /* calls in the window */
	uint64_t win_failures; /* failures in the window */
	uint64_t win_slow;     /* slow calls in the window */
	/* lifetime counters */
	uint64_t trips;    /* times it opened (forced_open is not a trip) */
	uint64_t calls;    /* outcomes counted as calls (in closed and half_open) */
	uint64_t failures; /* of those, failures */
	uint64_t slow;     /* of those, slow */
	uint64_t rejected; /* admissions refused */
	uint64_t ignored;  /* outcomes that counted as nothing (see the top of this file) */
	/* ownership */
	struct bl_alloc_hook hook; /* bl_breaker_create: where the memory came from */
	size_t alloc_bytes;        /* bl_breaker_create: bytes allocated; 0 when initialized */
};

/* Returns the bytes of window buffer bl_breaker_init needs for c: window_count
 * bytes for a count window, 24 per second for a time window (86400 bytes for
 * an hour). Returns 0 when c does not pass bl_breaker_config_check. */
size_t bl_breaker_window_bytes(const struct bl_breaker_config *c);

/* Sets up b, closed, with configuration c (copied), and `window` (window_bytes
 * >= bl_breaker_window_bytes(c), aligned for int64_t) as its window. The
 * caller keeps the window buffer alive as long as b and frees it after; b
 * itself owns nothing, so there is nothing to clean up. The window is cleared
 * here, in O(window_bytes). Returns 0, or BL_EINVAL (c does not pass the
 * check, window NULL, too small or misaligned) leaving b untouched. */
int bl_breaker_init(struct bl_breaker *b, const struct bl_breaker_config *c, void *window,
		    size_t window_bytes);

/* Creates a breaker, closed, with configuration c (copied), in one
 * allocation from hook (NULL: malloc and free) holding the breaker and its
 * window. Returns 0 and sets *out; or BL_EINVAL (c does not pass the check)
 * or BL_ENOMEM, leaving *out untouched. */
int bl_breaker_create(const struct bl_breaker_config *c, const struct bl_alloc_hook *hook,
		      struct bl_breaker **out);

/* Frees a breaker made by bl_breaker_create. NULL, and a breaker set up with
 * bl_breaker_init, are no-ops. */
void bl_breaker_destroy(struct bl_breaker *b);

/* What an admission hands out: plain data the caller keeps with the call and
 * passes back to bl_breaker_record. A zeroed permit is never current, so its
 * outcome is always ignored (use it for a call that went around the breaker,
 * such as one routed in a pool's panic). */
struct bl_breaker_permit {
	uint64_t generation; /* the breaker's generation at admission */
	bool probe;          /* admitted as a half-open trial call */
};

/* Asks to send one call through b at now. Returns true and fills *permit
 * (not NULL: the outcome needs it, and a half-open probe holds its place until
 * its outcome is recorded), or false (refused: open, forced_open, or
 * half_open with every probe permit out) and zeroes *permit, counting the
 * refusal in `rejected`. When an open period is over, the first call moves b
 * to half_open and takes the first probe permit. */
bool bl_breaker_allow(struct bl_breaker *b, bl_time_ns now, struct bl_breaker_permit *permit);

/* Would bl_breaker_allow admit a call at now? The check a balancer makes on
 * each candidate before it picks one: true exactly when bl_breaker_allow
 * would return true. Changes nothing. */
bool bl_breaker_would_allow(const struct bl_breaker *b, bl_time_ns now);

/* Records the outcome of a call admitted with *permit, which took latency_ns
 * (>= 0), at now. In closed, a success or a failure enters the window and may
 * trip b; in half_open, a probe's outcome closes b (the last of
 * half_open_probes successes) or re-opens it (a failure, or a slow call).
 * Outcomes that count as nothing (cancelled, rate_limited without
 * rate_limited_trips), outcomes of a permit from an earlier generation, and
 * outcomes in forced_open or disabled are ignored (counted in `ignored`),
 * except that a current probe's gives its permit back. Returns 0, or
 * BL_EINVAL (permit NULL or from a generation b has not reached, outcome out
 * of range, negative latency, or a current permit b did not hand out: a
 * second outcome for one probe) leaving b unchanged. Compare bl_breaker_state
 * before and after to see a transition. */
int bl_breaker_record(struct bl_breaker *b, const struct bl_breaker_permit *permit,
		      enum bl_breaker_outcome outcome, int64_t latency_ns, bl_time_ns now);

/* Returns b's state at now: half_open once an open period is over, even
 * before the next call moves it there. Changes nothing. */
enum bl_breaker_state bl_breaker_state(const struct bl_breaker *b, bl_time_ns now);

/* Is b ejecting its backend at now: open (period not over) or forced_open?
 * What a pool counts as "open" for bl_breaker_panic. A half-open breaker is on
 * trial, not ejected. */
bool bl_breaker_is_ejected(const struct bl_breaker *b, bl_time_ns now);

/* "No time is known": retry after the outcomes of the probes in flight, or
 * after an operator acts. */
#define BL_BREAKER_RETRY_UNKNOWN INT64_C(-1)

/* Returns how long from now until b admits a call: 0 when it admits now;
 * the rest of the open period when open; BL_BREAKER_RETRY_UNKNOWN when
 * half_open with every probe permit out, or forced_open. */
int64_t bl_breaker_retry_after_ns(const struct bl_breaker *b, bl_time_ns now);

/* Sets b's state by operator decision: BL_BREAKER_CLOSED (back to normal:
 * empty window, no streak, backoff reset, last_trip none), BL_BREAKER_FORCED_OPEN
 * or BL_BREAKER_DISABLED (until set closed). Every call starts a new
 * generation: permits handed out before are stale. Returns 0, or BL_EINVAL
 * (open, half_open or out of range: those are the breaker's own verdicts)
 * leaving b unchanged. */
int bl_breaker_force(struct bl_breaker *b, enum bl_breaker_state s);

/* ---- observability ------------------------------------------------------- */

/* A breaker as the daemon shows it. */
struct bl_breaker_stats {
	enum bl_breaker_state state;    /* at now (bl_breaker_state) */
	enum bl_breaker_trip last_trip; /* why it last opened */
	uint64_t window_calls;          /* calls in the window at now */
	uint64_t window_failures;       /* failures in the window at now */
	uint64_t window_slow;           /* slow calls in the window at now */
	double failure_rate;            /* window_failures / window_calls; 0 when empty */
	double slow_rate;               /* window_slow / window_calls; 0 when empty */
	uint32_t consecutive_failures;  /* current streak */
	uint32_t probes_in_flight;      /* half_open: permits out */
	uint32_t probes_succeeded;      /* half_open: successes so far */
	uint32_t backoff_level;         /* doublings in the current (or last) open period */
	int64_t open_period_ns;         /* open: this period's length; otherwise the length a
					   trip now would get */
	bl_time_ns open_until_ns;       /* open: end of the period (monotonic); otherwise 0 */
	int64_t retry_after_ns;         /* bl_breaker_retry_after_ns at now */
	uint64_t generation;            /* current generation */
	uint64_t trips;                 /* lifetime counters, as in struct bl_breaker */
	uint64_t calls;
	uint64_t failures;
	uint64_t slow;
	uint64_t rejected;
	uint64_t ignored;
};

/* Fills *out with b's figures at now. Changes nothing; costs O(1), plus for a
 * time window one bucket per second since the last outcome. */
void bl_breaker_stats(const struct bl_breaker *b, bl_time_ns now, struct bl_breaker_stats *out);

/* ---- persistence ---------------------------------------------------------- */

/* A breaker's persistent state: plain data for a snapshot. The window is not
 * in it (a restored breaker starts with an empty window and no streak), nor is
 * the configuration. The daemon converts open_until_ns to wall clock and back. */
struct bl_breaker_snapshot {
	enum bl_breaker_state state;    /* as stored: OPEN even when the period is over */
	enum bl_breaker_trip last_trip; /* why it last opened */
	bl_time_ns open_until_ns;       /* OPEN: end of the open period, monotonic ns; else 0 */
	uint32_t backoff_level;         /* doublings of open_for, 0..BL_BREAKER_BACKOFF_LEVEL_MAX */
	uint64_t generation;            /* so that restored leases' permits stay current */
	uint64_t trips;                 /* lifetime counters */
	uint64_t calls;
	uint64_t failures;
	uint64_t slow;
	uint64_t rejected;
	uint64_t ignored;
};

/* Exports b's state into *out. Changes nothing. */
void bl_breaker_state_get(const struct bl_breaker *b, struct bl_breaker_snapshot *out);

/* Imports a state exported by bl_breaker_state_get (possibly by another run,
 * its time converted to this run's clock, and under another configuration) at
 * now. The window starts empty. An open period ends no later than now plus the
 * period the backoff level gives under b's configuration. A half_open state
 * starts its probing over in a new generation (probes in flight before the
 * restart are not waited for). Returns 0, or BL_EINVAL (state, last_trip or
 * backoff level out of range, generation 0 or UINT64_MAX) leaving b unchanged. */
int bl_breaker_state_set(struct bl_breaker *b, const struct bl_breaker_snapshot *st,
			 bl_time_ns now);

/* ---- pools --------------------------------------------------------------- */

/* Is a pool of n_backends, n_open of them ejected (bl_breaker_is_ejected), in
 * panic? True when more than max_ejected of the pool is ejected:
 *   n_open > max_ejected x n_backends
 * The pool then routes across all its backends, as if no breaker were open,
 * rather than pile everything onto the few left (Envoy's panic threshold, with
 * healthy share < 1 - max_ejected). With 0.5: 1 open of 2 is not panic, 2 of 3
 * is; max_ejected 0 panics as soon as one backend is open (breakers only
 * advise), 1 never panics. False for an empty pool; n_open above n_backends is
 * taken as n_backends, and max_ejected outside 0..1 as the nearest bound (NaN:
 * never panics). */
bool bl_breaker_panic(size_t n_backends, size_t n_open, double max_ejected);

#endif
