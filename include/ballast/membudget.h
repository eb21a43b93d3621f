/* Memory budgets: admission control that keeps reserved memory in the
 * 80-90 % band of usable memory while holding a safety buffer back.
 *
 * The numbers (docs/internals/memory-budgets.md explains the why):
 *   usable   = capacity x (1 - safety_buffer)        (default buffer 0.20)
 *   low      = watermarks.low  x usable              (default 0.80)
 *   high     = watermarks.high x usable              (default 0.90)
 * A reservation of n bytes is admitted when, after it, reserved <= the limit
 * of its priority:
 *   low      -> low watermark     (refused once the band is reached)
 *   normal   -> high watermark    (refused past 90 % of usable)
 *   critical -> capacity          (may enter the safety buffer, never past it)
 * Every limit is computed in integer arithmetic and rounded down, and each
 * share is read to one part per million (exact for shares written with up to
 * six decimals, rounded to the safe side otherwise), so no reservation ever
 * passes the share the configuration states.
 *
 * The budget keeps totals only: reserved bytes and reservation counts per
 * priority. The caller (the daemon's lease) keeps each reservation's bytes
 * and priority and passes them back to resize and release.
 *
 * Waiting reservations are not queued here: the daemon queues them in the
 * shared waiting queue (ballast/waitq.h) and asks bl_membudget_would_admit
 * whether the head fits before popping it.
 *
 * Pure: no I/O, no clock, no globals, no allocation. The capacity is given in
 * bytes; resolving "auto" (cgroup memory.max, MemTotal) is the daemon's job.
 * The daemon's loop thread owns a budget: no locks. A function that fails
 * leaves the budget as it was, except that a reservation or growth refused
 * with BL_EAGAIN counts itself in `denials`.
 */
#ifndef BALLAST_MEMBUDGET_H
#define BALLAST_MEMBUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/waitq.h"

/* ---- priorities and pressure ---------------------------------------------- */

/* Reservation priorities, least urgent first. */
enum bl_mem_priority {
	BL_MEM_LOW = 0,      /* refused above the low watermark */
	BL_MEM_NORMAL = 1,   /* refused above the high watermark; the default */
	BL_MEM_CRITICAL = 2, /* may use the safety buffer, never past capacity */
	BL_MEM_PRIORITY_COUNT
};

/* Parses a priority name ("low", "normal", "critical"; exact, lower case) of
 * len bytes. Returns 0 and sets *out, or BL_EINVAL leaving *out untouched. */
int bl_mem_priority_parse(const char *s, size_t len, enum bl_mem_priority *out);

/* Returns the name of p ("low", "normal", "critical"), or "unknown". */
const char *bl_mem_priority_name(enum bl_mem_priority p);

/* Returns the waiting-queue class a waiting reservation of priority p goes in
 * (low -> BL_WAITQ_LOW, normal -> BL_WAITQ_NORMAL, critical ->
 * BL_WAITQ_CRITICAL; out of range -> BL_WAITQ_LOW). */
enum bl_waitq_class bl_mem_priority_waitq_class(enum bl_mem_priority p);

/* Memory pressure, the autoscaler's memory signal. */
enum bl_mem_pressure {
	BL_MEM_PRESSURE_OK = 0,       /* reserved below the low watermark */
	BL_MEM_PRESSURE_HIGH = 1,     /* reserved in the band: low <= reserved <= high */
	BL_MEM_PRESSURE_CRITICAL = 2, /* reserved above the high watermark (in the buffer) */
};

/* Returns the name of p ("ok", "high", "critical"), or "unknown". */
const char *bl_mem_pressure_name(enum bl_mem_pressure p);

/* ---- configuration ------------------------------------------------------ */

/* Bounds of the configuration (see bl_membudget_config_check). */
#define BL_MEMBUDGET_BUFFER_MAX 0.9

/* Resolution of every share: parts per million. */
#define BL_MEMBUDGET_PPM UINT64_C(1000000)

/* A memory budget's configuration. Start from bl_membudget_config_default. */
struct bl_membudget_config {
	uint64_t capacity_bytes; /* memory the budget governs, bytes, > 0 (resolved by the caller) */
	double safety_buffer;    /* share of capacity held back, 0..0.9 */
	double low;              /* low watermark, share of usable, 0 < low < high */
	double high;             /* high watermark, share of usable, low < high <= 1 */
};

/* Fills c with the defaults: capacity 0 (must be set), buffer 0.20,
 * watermarks 0.80 / 0.90. */
void bl_membudget_config_default(struct bl_membudget_config *c);

/* Checks c. Returns 0, or BL_EINVAL and writes what is wrong and what is
 * accepted into err (errcap bytes, NUL-terminated, truncated if need be; err
 * may be NULL when errcap is 0), such as "watermarks.low: 0.95 must be below
 * watermarks.high (0.90)". Besides the ranges, the low watermark must come to
 * at least one byte. */
int bl_membudget_config_check(const struct bl_membudget_config *c, char *err, size_t errcap);

/* ---- the budget ---------------------------------------------------------- */

/* A memory budget. Embed it and set it up with bl_membudget_init; it owns no
 * memory, so there is nothing to clean up. Fields are private: read them
 * through bl_membudget_stats. */
struct bl_membudget {
	struct bl_membudget_config config;          /* configuration in force */
	uint64_t limit_bytes[BL_MEM_PRIORITY_COUNT]; /* most reserved may reach, per priority */
	uint64_t usable_bytes;                      /* capacity minus the buffer, rounded down */
	uint64_t reserved_bytes;                    /* sum of bytes[] */
	uint64_t bytes[BL_MEM_PRIORITY_COUNT];      /* bytes reserved, per priority */
	uint64_t count[BL_MEM_PRIORITY_COUNT];      /* reservations held, per priority */
	uint64_t high_water_bytes;                  /* most ever reserved at once */
	uint64_t grants;                            /* reserves and growths admitted */
	uint64_t denials;                           /* reserves and growths refused with BL_EAGAIN */
};

/* Sets up b, empty, with configuration c (copied). Returns 0 or BL_EINVAL (c
 * does not pass bl_membudget_config_check) leaving b untouched. */
int bl_membudget_init(struct bl_membudget *b, const struct bl_membudget_config *c);

/* Applies a new configuration on reload (capacity or shares changed).
 * Reservations, counters and the high-water mark are kept as they are, even
 * when they now sit above the new limits: nothing is taken back, and nothing
 * new of a priority is admitted until releases bring reserved back under its
 * limit (shrinking and releasing always work). Returns 0 or BL_EINVAL leaving
 * b unchanged. */
int bl_membudget_reconfigure(struct bl_membudget *b, const struct bl_membudget_config *c);

/* The answer to a reserve or a growth, also on refusal. */
struct bl_membudget_decision {
	uint64_t limit_bytes;     /* most reserved may reach for this priority; also the
				     largest reservation it could ever get (BL_ETOOBIG's maximum) */
	uint64_t available_bytes; /* bytes this priority could still get now (before the call) */
};

/* Returns the most reserved may reach for priority p (0 when p is out of
 * range): the low watermark, the high watermark or the capacity, in bytes. */
uint64_t bl_membudget_limit(const struct bl_membudget *b, enum bl_mem_priority p);

/* Returns how many more bytes priority p could reserve now (0 when reserved is
 * already at or above its limit, or p is out of range). */
uint64_t bl_membudget_available(const struct bl_membudget *b, enum bl_mem_priority p);

/* Would a new reservation of `bytes` at priority p be admitted now? The pure
 * check the daemon makes on the waiting queue's head before popping it: true
 * exactly when bl_membudget_reserve would return 0. Changes nothing. */
bool bl_membudget_would_admit(const struct bl_membudget *b, uint64_t bytes,
			      enum bl_mem_priority p);

/* Reserves `bytes` (> 0) at priority p. Returns 0 (admitted); or BL_ETOOBIG
 * when bytes is above the priority's limit, so that it could never be
 * admitted (nothing changes); or BL_EAGAIN when it does not fit now (nothing
 * is reserved; `denials` counts it); or BL_EINVAL (0 bytes, p out of range)
 * leaving b unchanged. Fills out (may be NULL) on every answer but BL_EINVAL. */
int bl_membudget_reserve(struct bl_membudget *b, uint64_t bytes, enum bl_mem_priority p,
			 struct bl_membudget_decision *out);

/* Resizes one reservation of priority p from old_bytes (what it holds now) to
 * new_bytes (may be 0). Shrinking always succeeds. Growing is admitted by the
 * reservation rule applied to the growth: after it, reserved <= the limit of
 * p; a new size above that limit is BL_ETOOBIG, one that does not fit now
 * BL_EAGAIN (counted in `denials`); either way the reservation keeps
 * old_bytes. BL_EINVAL (p out of range, no reservation of p held, old_bytes
 * above what p holds, or other than what p holds when p holds just one
 * reservation) leaves b unchanged. Fills out (may be NULL) on every
 * answer but BL_EINVAL. */
int bl_membudget_resize(struct bl_membudget *b, uint64_t old_bytes, uint64_t new_bytes,
			enum bl_mem_priority p, struct bl_membudget_decision *out);

/* Releases one reservation of `bytes` at priority p. Returns 0, or BL_EINVAL
 * (p out of range, no reservation of p held, bytes above what p holds, or
 * other than what p holds when p holds just one reservation: totals never
 * underflow) leaving b unchanged. */
int bl_membudget_release(struct bl_membudget *b, uint64_t bytes, enum bl_mem_priority p);

/* ---- observability ------------------------------------------------------- */

/* Returns the pressure level: ok below the low watermark, high from the low
 * to the high watermark inclusive, critical above the high watermark. */
enum bl_mem_pressure bl_membudget_pressure(const struct bl_membudget *b);

/* Returns reserved / usable (the autoscaler's memory metric): 0.8 at the low
 * watermark with the defaults, above 1 when critical reservations use the
 * buffer. */
double bl_membudget_utilization(const struct bl_membudget *b);

/* A budget as the daemon shows it. */
struct bl_membudget_stats {
	uint64_t capacity_bytes;   /* as configured */
	uint64_t usable_bytes;     /* capacity minus the buffer */
	uint64_t buffer_bytes;     /* capacity - usable: only critical reservations enter it */
	uint64_t low_limit_bytes;  /* low watermark in bytes: the limit of low priority */
	uint64_t high_limit_bytes; /* high watermark in bytes: the limit of normal priority */
	uint64_t reserved_bytes;   /* all reservations held */
	uint64_t bytes[BL_MEM_PRIORITY_COUNT]; /* reserved per priority */
	uint64_t count[BL_MEM_PRIORITY_COUNT]; /* reservations held per priority */
	uint64_t available_bytes[BL_MEM_PRIORITY_COUNT]; /* what each priority could get now */
	uint64_t high_water_bytes; /* most ever reserved at once */
	uint64_t grants;           /* reserves and growths admitted */
	uint64_t denials;          /* reserves and growths refused with BL_EAGAIN */
	double utilization;        /* reserved / usable */
	enum bl_mem_pressure pressure; /* level at the moment of the call */
};

/* Fills *out with b's figures. Changes nothing. */
void bl_membudget_stats(const struct bl_membudget *b, struct bl_membudget_stats *out);

/* ---- persistence ---------------------------------------------------------- */

/* A budget's persistent state: plain data for a snapshot. The configuration
 * is not in it: a restored budget keeps the one it was initialized with. */
struct bl_membudget_state {
	uint64_t bytes[BL_MEM_PRIORITY_COUNT]; /* bytes reserved per priority */
	uint64_t count[BL_MEM_PRIORITY_COUNT]; /* reservations held per priority */
	uint64_t high_water_bytes;             /* most ever reserved, >= the sum of bytes */
	uint64_t grants;                       /* counter */
	uint64_t denials;                      /* counter */
};

/* Exports b's state into *out. Changes nothing. */
void bl_membudget_state_get(const struct bl_membudget *b, struct bl_membudget_state *out);

/* Imports a state exported by bl_membudget_state_get (possibly by a run with
 * another configuration: reservations above the limits in force are kept, as
 * on reconfigure). Returns 0, or BL_EINVAL when the state is inconsistent
 * (bytes without a reservation to hold them, a total that overflows, a
 * high-water mark below the total) leaving b unchanged. */
int bl_membudget_state_set(struct bl_membudget *b, const struct bl_membudget_state *st);

#endif
