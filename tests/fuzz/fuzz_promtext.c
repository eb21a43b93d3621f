/* libFuzzer target: the Prometheus text parser (src/core/promtext.c), which
 * reads whatever a backend's /metrics endpoint sends. The input is copied
 * into an exactly sized heap buffer, so AddressSanitizer catches any read
 * past the length (nothing may rely on a NUL). Every sample the iterator
 * hands out must point inside the text, and bl_promtext_sum must agree with
 * the iterator: malformed exactly when the iteration failed, and a finite
 * sum over at least one series when it succeeds.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"
#include "ballast/promtext.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct bl_promtext_match matchers[] = {
	{"engine", "0"},
	{"model_name", ""},
	{"path", "a\"b\\c\nd"},
};

static void check_sum(const char *text, size_t len, const char *name, bool malformed)
{
	char err[256];
	size_t n = 12345;
	double v = 42;

	for (size_t k = 0; k <= sizeof matchers / sizeof matchers[0]; k++) {
		int rc = bl_promtext_sum(text, len, name, k ? matchers : NULL, k, &v, &n, err,
					 sizeof err);

		if (malformed != (rc == BL_EINVAL))
			abort();
		if (rc == 0 && (!isfinite(v) || n == 0 || n > len))
			abort();
		if (rc != 0 && rc != BL_ENOENT && rc != BL_EINVAL && rc != BL_ERANGE)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1);
	char first[256] = "vllm:num_requests_waiting";
	struct bl_promtext_iter it;
	struct bl_promtext_sample s;
	size_t last_line = 0;
	bool named = false;
	char err[128];
	int rc;

	if (!text)
		return 0;
	if (size)
		memcpy(text, data, size);
	bl_promtext_iter_init(&it, text, size);
	while ((rc = bl_promtext_next(&it, &s, err, sizeof err)) == BL_PROMTEXT_SAMPLE) {
		if (s.name < text || s.name_len == 0 || s.name_len > size ||
		    s.name + s.name_len > text + size)
			abort();
		if (s.labels && (s.labels < text || s.labels + s.labels_len > text + size))
			abort();
		if (s.line <= last_line)
			abort();
		last_line = s.line;
		if (!named) {
			/* Sum the first sample's metric too: its name is in the text. */
			size_t n = s.name_len < sizeof first - 1 ? s.name_len : sizeof first - 1;

			memcpy(first, s.name, n);
			first[n] = '\0';
			named = true;
		}
		for (size_t k = 0; k <= sizeof matchers / sizeof matchers[0]; k++)
			(void)bl_promtext_matches(&s, matchers, k);
	}
	if (rc != BL_PROMTEXT_END && rc != BL_EINVAL)
		abort();
	/* A failed cursor keeps failing. */
	if (rc == BL_EINVAL && bl_promtext_next(&it, &s, NULL, 0) != BL_EINVAL)
		abort();
	check_sum(text, size, first, rc == BL_EINVAL);
	free(text);
	return 0;
}
