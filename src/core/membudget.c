/* Memory budgets: see include/ballast/membudget.h and
 * docs/internals/memory-budgets.md. */
#include "ballast/membudget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

/* How far (in ppm) a share times 10^6 may sit from a whole number and still be
 * taken as that number: covers the binary representation error of a decimal
 * share (about 1e-10 ppm), far below one ppm. */
#define PPM_EPSILON 1e-6

static const char *const priority_names[BL_MEM_PRIORITY_COUNT] = {
	"low",
	"normal",
	"critical",
};

int bl_mem_priority_parse(const char *s, size_t len, enum bl_mem_priority *out)
{
	if (!s)
		return BL_EINVAL;
	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++) {
		if (strlen(priority_names[p]) == len && memcmp(s, priority_names[p], len) == 0) {
			*out = (enum bl_mem_priority)p;
			return 0;
		}
	}
	return BL_EINVAL;
}

const char *bl_mem_priority_name(enum bl_mem_priority p)
{
	if ((unsigned)p >= BL_MEM_PRIORITY_COUNT)
		return "unknown";
	return priority_names[p];
}

enum bl_waitq_class bl_mem_priority_waitq_class(enum bl_mem_priority p)
{
	switch (p) {
	case BL_MEM_CRITICAL:
		return BL_WAITQ_CRITICAL;
	case BL_MEM_NORMAL:
		return BL_WAITQ_NORMAL;
	default:
		return BL_WAITQ_LOW;
	}
}

const char *bl_mem_pressure_name(enum bl_mem_pressure p)
{
	switch (p) {
	case BL_MEM_PRESSURE_OK:
		return "ok";
	case BL_MEM_PRESSURE_HIGH:
		return "high";
	case BL_MEM_PRESSURE_CRITICAL:
		return "critical";
	}
	return "unknown";
}

/* ---- shares and limits ---------------------------------------------------- */

/* A share in 0..1 as parts per million: exact when the share is a whole number
 * of ppm (up to the double's representation error), otherwise rounded down,
 * or up when round_up. */
static uint64_t share_ppm(double x, bool round_up)
{
	double scaled = x * (double)BL_MEMBUDGET_PPM;
	uint64_t r = (uint64_t)(scaled + 0.5);
	double diff = (double)r - scaled;

	if (diff > PPM_EPSILON && !round_up)
		r--;
	else if (diff < -PPM_EPSILON && round_up)
		r++;
	return r;
}

/* floor(bytes x ppm / 10^6), exactly, for any bytes and ppm <= 10^6. */
static uint64_t mul_ppm(uint64_t bytes, uint64_t ppm)
{
	return bytes / BL_MEMBUDGET_PPM * ppm + bytes % BL_MEMBUDGET_PPM * ppm / BL_MEMBUDGET_PPM;
}

/* The byte figures a configuration comes to. */
struct limits {
	uint64_t usable;                       /* capacity minus the buffer */
	uint64_t limit[BL_MEM_PRIORITY_COUNT]; /* per priority */
};

/* Every figure rounds toward the safe side: the buffer up (usable down), the
 * watermarks down. c must have passed the range checks. */
static void compute_limits(const struct bl_membudget_config *c, struct limits *out)
{
	uint64_t buffer_ppm = share_ppm(c->safety_buffer, true);

	out->usable = mul_ppm(c->capacity_bytes, BL_MEMBUDGET_PPM - buffer_ppm);
	out->limit[BL_MEM_LOW] = mul_ppm(out->usable, share_ppm(c->low, false));
	out->limit[BL_MEM_NORMAL] = mul_ppm(out->usable, share_ppm(c->high, false));
	out->limit[BL_MEM_CRITICAL] = c->capacity_bytes;
}

/* ---- configuration ------------------------------------------------------ */

void bl_membudget_config_default(struct bl_membudget_config *c)
{
	memset(c, 0, sizeof *c);
	c->safety_buffer = 0.20;
	c->low = 0.80;
	c->high = 0.90;
}

/* Formats a share as a person wrote it: "0.90" when two decimals say it
 * exactly, otherwise the shortest form that reads back as the same double. */
static const char *fmt_share(char *buf, size_t cap, double x)
{
	snprintf(buf, cap, "%.2f", x);
	for (int prec = 1; prec <= 17 && strtod(buf, NULL) != x; prec++)
		snprintf(buf, cap, "%.*g", prec, x);
	return buf;
}

int bl_membudget_config_check(const struct bl_membudget_config *c, char *err, size_t errcap)
{
	char a[32], b[32];
	struct limits lim;

	if (c->capacity_bytes == 0)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "capacity_bytes: 0 must be above 0 (the memory the budget governs, in "
			    "bytes, such as 17179869184 for 16 GiB)");
	if (!(c->safety_buffer >= 0.0 && c->safety_buffer <= BL_MEMBUDGET_BUFFER_MAX))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "safety_buffer: %s is outside 0..0.9 (the share of capacity held back "
			    "for critical reservations, such as 0.20)",
			    fmt_share(a, sizeof a, c->safety_buffer));
	if (!(c->low > 0.0 && c->low < 1.0))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "watermarks.low: %s is outside (0, 1) (a share of usable memory, such "
			    "as 0.80)",
			    fmt_share(a, sizeof a, c->low));
	if (!(c->high > 0.0 && c->high <= 1.0))
		return bl_errorf(err, errcap, BL_EINVAL,
			    "watermarks.high: %s is outside (0, 1] (a share of usable memory, such "
			    "as 0.90)",
			    fmt_share(a, sizeof a, c->high));
	if (!(c->low < c->high) || share_ppm(c->low, false) >= share_ppm(c->high, false))
		return bl_errorf(err, errcap, BL_EINVAL, "watermarks.low: %s must be below watermarks.high (%s)",
			    fmt_share(a, sizeof a, c->low), fmt_share(b, sizeof b, c->high));
	compute_limits(c, &lim);
	if (lim.limit[BL_MEM_LOW] == 0)
		return bl_errorf(err, errcap, BL_EINVAL,
			    "capacity_bytes: %llu leaves no byte below watermarks.low (%s of %llu "
			    "usable bytes); the capacity is in bytes",
			    (unsigned long long)c->capacity_bytes, fmt_share(a, sizeof a, c->low),
			    (unsigned long long)lim.usable);
	if (err && errcap)
		err[0] = '\0';
	return 0;
}

/* ---- the budget ---------------------------------------------------------- */

static void apply_config(struct bl_membudget *b, const struct bl_membudget_config *c)
{
	struct limits lim;

	compute_limits(c, &lim);
	b->config = *c;
	b->usable_bytes = lim.usable;
	memcpy(b->limit_bytes, lim.limit, sizeof b->limit_bytes);
}

int bl_membudget_init(struct bl_membudget *b, const struct bl_membudget_config *c)
{
	if (bl_membudget_config_check(c, NULL, 0))
		return BL_EINVAL;
	memset(b, 0, sizeof *b);
	apply_config(b, c);
	return 0;
}

int bl_membudget_reconfigure(struct bl_membudget *b, const struct bl_membudget_config *c)
{
	if (bl_membudget_config_check(c, NULL, 0))
		return BL_EINVAL;
	apply_config(b, c);
	return 0;
}

static bool priority_valid(enum bl_mem_priority p)
{
	return (unsigned)p < BL_MEM_PRIORITY_COUNT;
}

uint64_t bl_membudget_limit(const struct bl_membudget *b, enum bl_mem_priority p)
{
	return priority_valid(p) ? b->limit_bytes[p] : 0;
}

uint64_t bl_membudget_available(const struct bl_membudget *b, enum bl_mem_priority p)
{
	if (!priority_valid(p) || b->reserved_bytes >= b->limit_bytes[p])
		return 0;
	return b->limit_bytes[p] - b->reserved_bytes;
}

/* The admission rule for `bytes` more at priority p (valid): 0, BL_ETOOBIG
 * when `whole` (the reservation's size after it) is above the limit, or
 * BL_EAGAIN. Fills out when not NULL. Changes nothing. */
static int admit(const struct bl_membudget *b, uint64_t bytes, uint64_t whole,
		 enum bl_mem_priority p, struct bl_membudget_decision *out)
{
	uint64_t avail = bl_membudget_available(b, p);

	if (out) {
		out->limit_bytes = b->limit_bytes[p];
		out->available_bytes = avail;
	}
	if (whole > b->limit_bytes[p])
		return BL_ETOOBIG;
	return bytes <= avail ? 0 : BL_EAGAIN;
}

static void add_bytes(struct bl_membudget *b, enum bl_mem_priority p, uint64_t bytes)
{
	b->bytes[p] += bytes;
	b->reserved_bytes += bytes;
	if (b->reserved_bytes > b->high_water_bytes)
		b->high_water_bytes = b->reserved_bytes;
}

bool bl_membudget_would_admit(const struct bl_membudget *b, uint64_t bytes,
			      enum bl_mem_priority p)
{
	return bytes > 0 && priority_valid(p) && admit(b, bytes, bytes, p, NULL) == 0;
}

int bl_membudget_reserve(struct bl_membudget *b, uint64_t bytes, enum bl_mem_priority p,
			 struct bl_membudget_decision *out)
{
	int rc;

	if (bytes == 0 || !priority_valid(p))
		return BL_EINVAL;
	rc = admit(b, bytes, bytes, p, out);
	if (rc == BL_EAGAIN)
		b->denials++;
	if (rc)
		return rc;
	add_bytes(b, p, bytes);
	b->count[p]++;
	b->grants++;
	return 0;
}

int bl_membudget_resize(struct bl_membudget *b, uint64_t old_bytes, uint64_t new_bytes,
			enum bl_mem_priority p, struct bl_membudget_decision *out)
{
	int rc;

	if (!priority_valid(p) || b->count[p] == 0 || old_bytes > b->bytes[p])
		return BL_EINVAL;
	/* The only reservation of p holds all of p's bytes. */
	if (b->count[p] == 1 && old_bytes != b->bytes[p])
		return BL_EINVAL;
	if (new_bytes <= old_bytes) {
		if (out) {
			out->limit_bytes = b->limit_bytes[p];
			out->available_bytes = bl_membudget_available(b, p);
		}
		b->bytes[p] -= old_bytes - new_bytes;
		b->reserved_bytes -= old_bytes - new_bytes;
		return 0;
	}
	rc = admit(b, new_bytes - old_bytes, new_bytes, p, out);
	if (rc == BL_EAGAIN)
		b->denials++;
	if (rc)
		return rc;
	add_bytes(b, p, new_bytes - old_bytes);
	b->grants++;
	return 0;
}

int bl_membudget_release(struct bl_membudget *b, uint64_t bytes, enum bl_mem_priority p)
{
	if (!priority_valid(p) || b->count[p] == 0 || bytes > b->bytes[p])
		return BL_EINVAL;
	/* The last reservation of p must take all of p's bytes with it. */
	if (b->count[p] == 1 && bytes != b->bytes[p])
		return BL_EINVAL;
	b->bytes[p] -= bytes;
	b->reserved_bytes -= bytes;
	b->count[p]--;
	return 0;
}

/* ---- observability ------------------------------------------------------- */

enum bl_mem_pressure bl_membudget_pressure(const struct bl_membudget *b)
{
	if (b->reserved_bytes < b->limit_bytes[BL_MEM_LOW])
		return BL_MEM_PRESSURE_OK;
	if (b->reserved_bytes <= b->limit_bytes[BL_MEM_NORMAL])
		return BL_MEM_PRESSURE_HIGH;
	return BL_MEM_PRESSURE_CRITICAL;
}

double bl_membudget_utilization(const struct bl_membudget *b)
{
	/* usable >= the low limit >= 1 byte: bl_membudget_config_check sees to it. */
	return (double)b->reserved_bytes / (double)b->usable_bytes;
}

void bl_membudget_stats(const struct bl_membudget *b, struct bl_membudget_stats *out)
{
	memset(out, 0, sizeof *out);
	out->capacity_bytes = b->config.capacity_bytes;
	out->usable_bytes = b->usable_bytes;
	out->buffer_bytes = b->config.capacity_bytes - b->usable_bytes;
	out->low_limit_bytes = b->limit_bytes[BL_MEM_LOW];
	out->high_limit_bytes = b->limit_bytes[BL_MEM_NORMAL];
	out->reserved_bytes = b->reserved_bytes;
	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++) {
		out->bytes[p] = b->bytes[p];
		out->count[p] = b->count[p];
		out->available_bytes[p] = bl_membudget_available(b, (enum bl_mem_priority)p);
	}
	out->high_water_bytes = b->high_water_bytes;
	out->grants = b->grants;
	out->denials = b->denials;
	out->utilization = bl_membudget_utilization(b);
	out->pressure = bl_membudget_pressure(b);
}

/* ---- persistence ---------------------------------------------------------- */

void bl_membudget_state_get(const struct bl_membudget *b, struct bl_membudget_state *out)
{
	memset(out, 0, sizeof *out);
	memcpy(out->bytes, b->bytes, sizeof out->bytes);
	memcpy(out->count, b->count, sizeof out->count);
	out->high_water_bytes = b->high_water_bytes;
	out->grants = b->grants;
	out->denials = b->denials;
}

int bl_membudget_state_set(struct bl_membudget *b, const struct bl_membudget_state *st)
{
	uint64_t total = 0;

	for (int p = 0; p < BL_MEM_PRIORITY_COUNT; p++) {
		if (st->count[p] == 0 && st->bytes[p] != 0)
			return BL_EINVAL;
		if (st->bytes[p] > UINT64_MAX - total)
			return BL_EINVAL;
		total += st->bytes[p];
	}
	if (st->high_water_bytes < total)
		return BL_EINVAL;
	memcpy(b->bytes, st->bytes, sizeof b->bytes);
	memcpy(b->count, st->count, sizeof b->count);
	b->reserved_bytes = total;
	b->high_water_bytes = st->high_water_bytes;
	b->grants = st->grants;
	b->denials = st->denials;
	return 0;
}
