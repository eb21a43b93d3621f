#include "ballast/units.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ballast/error.h"

struct unit {
	const char *name; /* suffix as written */
	uint64_t scale;   /* nanoseconds or bytes per unit */
};

static const struct unit duration_units[] = {
	{"ns", 1},
	{"us", 1000},
	{"\xc2\xb5s", 1000}, /* µs */
	{"ms", 1000000},
	{"s", UINT64_C(1000000000)},
	{"m", UINT64_C(60000000000)},
	{"h", UINT64_C(3600000000000)},
	{"d", UINT64_C(86400000000000)},
};

static const struct unit size_units[] = {
	{"", 1},
	{"B", 1},
	{"K", UINT64_C(1000)},
	{"KB", UINT64_C(1000)},
	{"k", UINT64_C(1000)},
	{"kB", UINT64_C(1000)},
	{"M", UINT64_C(1000000)},
	{"MB", UINT64_C(1000000)},
	{"G", UINT64_C(1000000000)},
	{"GB", UINT64_C(1000000000)},
	{"T", UINT64_C(1000000000000)},
	{"TB", UINT64_C(1000000000000)},
	{"Ki", UINT64_C(1) << 10},
	{"KiB", UINT64_C(1) << 10},
	{"Mi", UINT64_C(1) << 20},
	{"MiB", UINT64_C(1) << 20},
	{"Gi", UINT64_C(1) << 30},
	{"GiB", UINT64_C(1) << 30},
	{"Ti", UINT64_C(1) << 40},
	{"TiB", UINT64_C(1) << 40},
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Reads "123" or "123.45" at s[*pos]; returns false if there is no digit. The
 * value is whole + frac / frac_div; frac keeps at most 18 digits. */
static int read_number(const char *s, size_t len, size_t *pos, uint64_t *whole,
		       uint64_t *frac, uint64_t *frac_div)
{
	size_t i = *pos;
	bool any = false;

	*whole = 0;
	*frac = 0;
	*frac_div = 1;
	while (i < len && is_digit(s[i])) {
		if (__builtin_mul_overflow(*whole, 10, whole) ||
		    __builtin_add_overflow(*whole, (uint64_t)(s[i] - '0'), whole))
			return BL_ERANGE;
		i++;
		any = true;
	}
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && is_digit(s[i])) {
			if (*frac_div < UINT64_C(1000000000000000000)) {
				*frac = *frac * 10 + (uint64_t)(s[i] - '0');
				*frac_div *= 10;
			}
			i++;
			any = true;
		}
	}
	if (!any)
		return BL_ESYNTAX;
	*pos = i;
	return 0;
}

/* whole * scale + frac * scale / frac_div, checked; the fraction rounds down. */
static int scale_number(uint64_t whole, uint64_t frac, uint64_t frac_div, uint64_t scale,
			uint64_t *out)
{
	uint64_t v;
	/* frac < frac_div <= 1e18 and scale < 2^47: the product needs 128 bits. */
	uint64_t part = (uint64_t)((unsigned __int128)frac * scale / frac_div);

	if (__builtin_mul_overflow(whole, scale, &v) || __builtin_add_overflow(v, part, out))
		return BL_ERANGE;
	return 0;
}

static const struct unit *match_unit(const struct unit *units, size_t n, const char *s,
				     size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(units[i].name) == len && memcmp(units[i].name, s, len) == 0)
			return &units[i];
	return NULL;
}

int bl_parse_duration(const char *s, size_t len, int64_t *out_ns)
{
	size_t pos = 0;
	uint64_t total = 0;
	int err;

	if (len == 0)
		return BL_ESYNTAX;
	if (len == 1 && s[0] == '0') {
		*out_ns = 0;
		return 0;
	}
	while (pos < len) {
		uint64_t whole, frac, frac_div, v;
		size_t ustart;
		const struct unit *u;

		err = read_number(s, len, &pos, &whole, &frac, &frac_div);
		if (err)
			return err;
		ustart = pos;
		while (pos < len && !is_digit(s[pos]) && s[pos] != '.')
			pos++;
		u = match_unit(duration_units, sizeof duration_units / sizeof duration_units[0],
			       s + ustart, pos - ustart);
		if (!u)
			return BL_ESYNTAX;
		err = scale_number(whole, frac, frac_div, u->scale, &v);
		if (err)
			return err;
		if (__builtin_add_overflow(total, v, &total) || total > (uint64_t)INT64_MAX)
			return BL_ERANGE;
	}
	*out_ns = (int64_t)total;
	return 0;
}

int bl_parse_size(const char *s, size_t len, uint64_t *out_bytes)
{
	size_t pos = 0;
	uint64_t whole, frac, frac_div, v;
	const struct unit *u;
	int err;

	err = read_number(s, len, &pos, &whole, &frac, &frac_div);
	if (err)
		return err;
	u = match_unit(size_units, sizeof size_units / sizeof size_units[0], s + pos, len - pos);
	if (!u)
		return BL_ESYNTAX;
	err = scale_number(whole, frac, frac_div, u->scale, &v);
	if (err)
		return err;
	*out_bytes = v;
	return 0;
}

static int finish(int n, size_t cap)
{
	if (n < 0)
		return BL_EINVAL;
	if ((size_t)n >= cap)
		return BL_ETOOBIG;
	return n;
}

int bl_format_duration(int64_t ns, char *buf, size_t cap)
{
	static const struct {
		const char *name;
		int64_t scale;
	} parts[] = {
		{"h", INT64_C(3600000000000)},
		{"m", INT64_C(60000000000)},
		{"s", INT64_C(1000000000)},
	};
	size_t used = 0;
	int n;

	if (cap == 0)
		return BL_ETOOBIG;
	buf[0] = '\0';
	if (ns < 0)
		return BL_EINVAL;
	if (ns == 0)
		return finish(snprintf(buf, cap, "0s"), cap);
	if (ns % BL_NS_PER_S != 0 || ns < BL_NS_PER_S) {
		/* Sub-second precision: one term in the largest exact small unit. */
		if (ns % BL_NS_PER_MS == 0)
			return finish(snprintf(buf, cap, "%lldms", (long long)(ns / BL_NS_PER_MS)), cap);
		if (ns % BL_NS_PER_US == 0)
			return finish(snprintf(buf, cap, "%lldus", (long long)(ns / BL_NS_PER_US)), cap);
		return finish(snprintf(buf, cap, "%lldns", (long long)ns), cap);
	}
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		int64_t q = ns / parts[i].scale;

		if (q == 0)
			continue;
		ns -= q * parts[i].scale;
		n = snprintf(buf + used, cap - used, "%lld%s", (long long)q, parts[i].name);
		n = finish(n, cap - used);
		if (n < 0)
			return n;
		used += (size_t)n;
	}
	return (int)used;
}

int bl_format_size(uint64_t bytes, char *buf, size_t cap)
{
	static const char *names[] = {"TiB", "GiB", "MiB", "KiB"};
	static const int shifts[] = {40, 30, 20, 10};

	if (cap == 0)
		return BL_ETOOBIG;
	for (size_t i = 0; i < 4; i++) {
		uint64_t unit = UINT64_C(1) << shifts[i];

		if (bytes != 0 && bytes % unit == 0)
			return finish(snprintf(buf, cap, "%llu%s",
					       (unsigned long long)(bytes / unit), names[i]),
				      cap);
	}
	return finish(snprintf(buf, cap, "%llu", (unsigned long long)bytes), cap);
}
