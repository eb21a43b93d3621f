/* Prometheus text exposition format 0.0.4, read in place.
 *
 * A self-hosted backend (vLLM, TGI, SGLang, Triton) reports its own load on a
 * /metrics endpoint: vLLM's `vllm:num_requests_waiting` is the queue the pool
 * balancer adds to its in-flight count. This module answers "what is the sum
 * of metric M over the series whose labels match L" from the text of one
 * scrape, and validates the whole text on the way.
 *
 * Accepted, as the format describes it
 * (prometheus.io/docs/instrumenting/exposition_formats):
 *   - lines separated by LF; a CR before the LF is dropped (CRLF bodies); the
 *     last line may lack its LF; blank lines are ignored;
 *   - `#` comments. `# HELP <name> <text>` needs a valid metric name (the
 *     text is not interpreted); `# TYPE <name> <type>` needs a valid name and
 *     one of counter, gauge, histogram, summary, untyped; any other comment
 *     (`# EOF` included) is ignored;
 *   - samples `name{label="value",...} value [timestamp]`: metric names
 *     [a-zA-Z_:][a-zA-Z0-9_:]* (colons as in `vllm:num_requests_waiting`),
 *     label names [a-zA-Z_][a-zA-Z0-9_]*, label values with the escapes \\
 *     \" and \n (any other backslash is an error; bytes are not checked for
 *     UTF-8), an optional trailing comma, spaces or tabs between tokens;
 *   - values: decimal numbers with an optional sign, fraction and exponent
 *     ("3", "-0.5", "1.2e+10", ".5"), and NaN, Inf, +Inf, -Inf, Infinity in
 *     any case; at most BL_PROMTEXT_LITERAL_MAX bytes. A literal beyond the
 *     range of a double ("1e309") is malformed, as Prometheus has it; one
 *     that underflows reads as its nearest double (0 or subnormal);
 *   - timestamps: an optional, signed 64-bit integer of milliseconds.
 * Not accepted: hexadecimal or digit-separated numbers, OpenMetrics exemplars.
 * Duplicate series and repeated label names are not detected (that would
 * need memory per series); each such sample is seen and counted.
 *
 * One malformed line makes the whole text malformed: a body that is half
 * garbage is not trusted for its other half either. Errors name the line
 * (1-based) and column, say what was expected, and quote the line start.
 *
 * Pure: no allocation, no clock, no globals. Numbers are converted with
 * strtod after the syntax above has been checked, so the process must run in
 * the "C" numeric locale (ballast never calls setlocale). Any bytes are safe
 * input: every read is bounded by the length given, no NUL is assumed.
 */
#ifndef BALLAST_PROMTEXT_H
#define BALLAST_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest value or timestamp literal, in bytes. The longest a client writes
 * (Go's or Python's shortest round-trip form of a double) is 24. */
#define BL_PROMTEXT_LITERAL_MAX 64

/* One equality matcher, PromQL style: label `name` equals `value`. A series
 * without that label has it as "", so value "" matches series that lack it.
 * Both strings are NUL-terminated; value is compared after unescaping. */
struct bl_promtext_match {
	const char *name;  /* label name */
	const char *value; /* label value, unescaped */
};

/* One sample line, pointing into the caller's text. */
struct bl_promtext_sample {
	const char *name;     /* metric name (not NUL-terminated) */
	size_t name_len;      /* bytes at name */
	const char *labels;   /* between the braces, escaped as sent; NULL when no braces */
	size_t labels_len;    /* bytes at labels */
	double value;         /* may be NaN or +-Inf */
	bool has_timestamp;   /* timestamp_ms was given */
	int64_t timestamp_ms; /* ms since the epoch, as sent */
	size_t line;          /* 1-based line number */
};

/* A cursor over one text. Plain data, embeddable; the text must outlive it. */
struct bl_promtext_iter {
	const char *text; /* the exposition */
	size_t len;       /* bytes at text */
	size_t pos;       /* start of the next line */
	size_t line;      /* lines consumed so far */
	bool failed;      /* a malformed line was met: every later call fails */
};

/* What bl_promtext_next returns besides errors. */
enum {
	BL_PROMTEXT_END = 0,    /* no more samples: the text is well-formed */
	BL_PROMTEXT_SAMPLE = 1, /* *out holds the next sample */
};

/* Starts a cursor at the beginning of len bytes at text (NULL with len 0 is
 * an empty text). Allocates nothing. */
void bl_promtext_iter_init(struct bl_promtext_iter *it, const char *text, size_t len);

/* Reads on to the next sample, checking comment lines on the way. Returns
 * BL_PROMTEXT_SAMPLE and fills *out, BL_PROMTEXT_END when the text is over,
 * or BL_EINVAL for a malformed line, with "line N, column C: ..." in err
 * (errcap bytes, NUL-terminated; err may be NULL). *out means something
 * only after BL_PROMTEXT_SAMPLE. After an error the cursor stays on the bad
 * line and every later call fails the same way. */
int bl_promtext_next(struct bl_promtext_iter *it, struct bl_promtext_sample *out, char *err,
		     size_t errcap);

/* True when s carries every label of labels[0..n) with the value given (a
 * missing label reading as ""). n == 0 matches every sample. When a label
 * name repeats in s, its first occurrence counts. s must come from
 * bl_promtext_next (its label text is already checked). */
bool bl_promtext_matches(const struct bl_promtext_sample *s, const struct bl_promtext_match *labels,
			 size_t n);

/* Sums the samples of metric `name` (NUL-terminated, compared exactly: a
 * histogram's series are name_bucket, name_sum, name_count) whose labels
 * match labels[0..n_labels) (NULL when n_labels is 0), over the whole text,
 * which must be well-formed. Returns 0, sets *out to the sum and *n_series
 * (may be NULL) to the number of samples in it (so that a caller can take
 * a mean: vllm:gpu_cache_usage_perc is a share per engine, not a count).
 * Fails, leaving *out and *n_series untouched and a message in err (as
 * bl_promtext_next; err may be NULL):
 *   BL_EINVAL  a malformed line anywhere (the message names it), or NULL
 *              name or out, or NULL labels with n_labels > 0;
 *   BL_ENOENT  no sample matched;
 *   BL_ERANGE  a matched sample is NaN or infinite, or the sum overflows: a
 *              load that is not a finite number is unknown, never a value.
 */
int bl_promtext_sum(const char *text, size_t len, const char *name,
		    const struct bl_promtext_match *labels, size_t n_labels, double *out,
		    size_t *n_series, char *err, size_t errcap);

#endif
