/* Durations and sizes as people write them in configs and headers.
 *
 * Pure functions: no allocation, no locale, no globals.
 */
#ifndef BALLAST_UNITS_H
#define BALLAST_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic time in nanoseconds. The core never reads a clock: time is an argument. */
typedef int64_t bl_time_ns;

#define BL_NS_PER_US INT64_C(1000)
#define BL_NS_PER_MS INT64_C(1000000)
#define BL_NS_PER_S INT64_C(1000000000)

/* Parses a duration of len bytes at s into nanoseconds.
 *
 * Accepts one or more <number><unit> terms, Go style: "250ms", "30s", "5m",
 * "1h", "1.5s", "6m0s", "1h30m". Units: ns, us (or µs), ms, s, m, h, d.
 * "0" alone is accepted. Negative values and a number without unit are not.
 * Returns 0 and sets *out_ns, or BL_ESYNTAX (malformed) / BL_ERANGE (overflow)
 * and leaves *out_ns untouched. */
int bl_parse_duration(const char *s, size_t len, int64_t *out_ns);

/* Parses a byte size of len bytes at s.
 *
 * Accepts a non-negative integer or decimal followed by an optional unit:
 * B; binary KiB MiB GiB TiB (also Ki Mi Gi Ti, as Kubernetes writes them);
 * decimal KB MB GB TB (also K M G T). "64MiB", "16GiB", "512KiB", "1.5GiB",
 * "4096". Returns 0 and sets *out_bytes, or BL_ESYNTAX / BL_ERANGE and leaves
 * *out_bytes untouched. */
int bl_parse_size(const char *s, size_t len, uint64_t *out_bytes);

/* Writes ns as the shortest exact duration string ("250ms", "1m30s", "0s")
 * into buf of cap bytes, NUL-terminated. Returns the length written, or
 * BL_ETOOBIG if cap is too small (buf then holds a truncated string). */
int bl_format_duration(int64_t ns, char *buf, size_t cap);

/* Writes bytes with the largest binary unit that divides it exactly
 * ("64MiB", "1000B" stays "1000"): as bl_format_duration. */
int bl_format_size(uint64_t bytes, char *buf, size_t cap);

#endif
