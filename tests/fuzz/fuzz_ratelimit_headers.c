/* libFuzzer target: provider rate-limit headers, as the agent passes them on
 * release. The input is split into "name:value" lines; the first 8 bytes, if
 * the input is long enough, set the wall clock. Each name and value is copied
 * into its own exactly sized heap buffer, so AddressSanitizer catches any read
 * past a length (nothing may rely on a NUL). The result's invariants are
 * checked too: whatever comes in, nothing absurd may come out.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/ratelimit_headers.h"

#define MAX_PAIRS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A heap copy of exactly len bytes (one byte is allocated for len 0, and the
 * length stays 0). */
static char *dup_exact(const uint8_t *p, size_t len)
{
	char *s = malloc(len ? len : 1);

	if (s && len)
		memcpy(s, p, len);
	return s;
}

static void check_delay(int64_t ms)
{
	if (ms < 0 || ms > BL_RATELIMIT_HORIZON_MS)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bl_ratelimit_header h[MAX_PAIRS];
	struct bl_ratelimit_headers out;
	int64_t now = INT64_C(1795815600000);
	size_t n = 0, pos = 0;

	if (size >= 9 && data[0] == '@') {
		/* "@" + 8 bytes: an explicit, possibly absurd, clock. */
		memcpy(&now, data + 1, sizeof now);
		pos = 9;
	}
	while (pos < size && n < MAX_PAIRS) {
		const uint8_t *line = data + pos;
		const uint8_t *nl = memchr(line, '\n', size - pos);
		size_t len = nl ? (size_t)(nl - line) : size - pos;
		const uint8_t *colon = memchr(line, ':', len);
		size_t name_len = colon ? (size_t)(colon - line) : len;
		size_t value_len = colon ? len - name_len - 1 : 0;

		h[n].name = dup_exact(line, name_len);
		h[n].name_len = name_len;
		h[n].value = dup_exact(colon ? colon + 1 : line, value_len);
		h[n].value_len = value_len;
		if (!h[n].name || !h[n].value) {
			free((void *)h[n].name);
			free((void *)h[n].value);
			break;
		}
		n++;
		pos += len + (nl != NULL);
	}

	if (bl_ratelimit_headers_parse(h, n, now, &out) != 0)
		abort();
	if ((size_t)out.used + out.malformed > n)
		abort();
	for (int d = 0; d < BL_RATELIMIT_DIMS; d++) {
		if (out.dim[d].has_reset)
			check_delay(out.dim[d].reset_after_ms);
		if (out.dim[d].has_limit && out.dim[d].limit > (uint64_t)INT64_MAX)
			abort();
		if (out.dim[d].has_remaining && out.dim[d].remaining > (uint64_t)INT64_MAX)
			abort();
	}
	if (out.has_retry_after)
		check_delay(out.retry_after_ms);

	/* The date parsers on their own, over the whole input. */
	{
		int64_t ms;

		if (bl_ratelimit_parse_rfc3339((const char *)data, size, &ms) == 0 &&
		    (ms < 0 || ms > INT64_C(253402300801000)))
			abort();
		if (bl_ratelimit_parse_http_date((const char *)data, size, &ms) == 0 &&
		    (ms < 0 || ms > INT64_C(253402300801000)))
			abort();
	}

	for (size_t i = 0; i < n; i++) {
		free((void *)h[i].name);
		free((void *)h[i].value);
	}
	return 0;
}
