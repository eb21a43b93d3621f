/* The daemon's configuration: YAML (libfyaml) in, validated structs out.
 *
 * Every problem is reported with file:line:column and the field path, e.g.
 *   ballast.yaml:12:25: budgets.anthropic.target_utilization: 1.2 is outside 0.85..0.95
 * A config that does not validate produces no struct at all: callers keep
 * whatever they were running.
 */
#ifndef BALLAST_CONFIG_H
#define BALLAST_CONFIG_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

/* ---- diagnostics ------------------------------------------------------ */

struct bl_diag {
	char *file;    /* file name as given, or "<default>" / "<string>" */
	int line;      /* 1-based; 0 when unknown */
	int column;    /* 1-based; 0 when unknown */
	char *path;    /* field path such as "budgets.anthropic.burst"; "" for the document */
	char *message; /* what is wrong and what is accepted */
};

struct bl_diags {
	struct bl_diag *items; /* n entries, in document order */
	size_t n;              /* number of diagnostics */
	size_t cap;            /* allocated entries */
};

/* Frees every diagnostic; leaves d empty and reusable. */
void bl_diags_cleanup(struct bl_diags *d);

/* Prints each diagnostic as "file:line:column: path: message\n". When the
 * location is unknown (line 0) ":line:column" is left out; when the problem
 * concerns the whole document (path "") "path: " is left out. */
void bl_diags_print(const struct bl_diags *d, FILE *f);

/* Appends one diagnostic, its message printf-formatted. Strings are copied.
 * Returns 0, or BL_ENOMEM leaving d as it was. */
int bl_diags_add(struct bl_diags *d, const char *file, int line, int column, const char *path,
		 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* bl_diags_add with the message's arguments in a va_list. */
int bl_diags_vadd(struct bl_diags *d, const char *file, int line, int column, const char *path,
		  const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

/* ---- the schema ------------------------------------------------------- */

/* Rate dimensions a budget can limit, as providers state them. */
enum bl_cfg_dim {
	BL_CFG_DIM_REQUESTS,
	BL_CFG_DIM_TOKENS,        /* combined input + output (OpenAI TPM) */
	BL_CFG_DIM_INPUT_TOKENS,  /* Anthropic ITPM */
	BL_CFG_DIM_OUTPUT_TOKENS, /* Anthropic OTPM */
	BL_CFG_DIM_COUNT
};

struct bl_cfg_rate {
	bool set;       /* false: this dimension is not limited */
	uint64_t limit; /* units per window, as the provider states it */
	int64_t per_ns; /* window length */
};

struct bl_cfg_tenant {
	char *name;      /* tenant id as agents send it */
	uint32_t weight; /* share within a priority class, >= 1 */
};

struct bl_cfg_budget {
	char *name;
	struct bl_cfg_rate limits[BL_CFG_DIM_COUNT];
	uint32_t concurrent;       /* max in-flight leases; 0 = not limited */
	double target_utilization; /* 0.85..0.95, default 0.90 */
	double burst;              /* share of a limit spendable at once, 0..(1 - target) */
	int64_t lease_ttl_ns;      /* default 120 s */
	uint32_t max_queue;        /* waiting requests, default 10000 */
	double adaptive_decrease;  /* multiplier on a provider 429, 0.1..0.99, default 0.8 */
	double adaptive_increase;  /* additive recovery per period, share of target, default 0.05 */
	int64_t adaptive_period_ns; /* recovery period, default 10 s */
	struct bl_cfg_tenant *tenants;
	size_t n_tenants;
};

enum bl_cfg_strategy {
	BL_STRATEGY_ROUND_ROBIN,
	BL_STRATEGY_WEIGHTED,
	BL_STRATEGY_RANDOM,
	BL_STRATEGY_LEAST_INFLIGHT,
	BL_STRATEGY_P2C,
	BL_STRATEGY_PEAK_EWMA,
	BL_STRATEGY_CONSISTENT_HASH,
};

struct bl_cfg_backend {
	char *name;
	char *url;
	uint32_t weight;   /* default 1 */
	char *budget;      /* optional: name of a budget this backend is charged to */
	char *metrics_url; /* optional: Prometheus endpoint scraped for load */
};

struct bl_cfg_breaker {
	bool window_is_time;           /* false: count-based window */
	uint32_t window_count;         /* outcomes kept when count-based, default 50 */
	int64_t window_ns;             /* span when time-based */
	uint32_t min_calls;            /* default 20 */
	double failure_rate;           /* 0..1, default 0.5 */
	int64_t slow_call_ns;          /* default 20 s */
	double slow_rate;              /* 0..1, default 0.8 */
	uint32_t consecutive_failures; /* default 5; 0 disables */
	int64_t open_for_ns;           /* default 30 s */
	int64_t max_open_for_ns;       /* default 5 min */
	uint32_t half_open_probes;     /* default 3 */
	bool rate_limited_trips;       /* count provider 429s as failures, default false */
};

struct bl_cfg_pool {
	char *name;
	enum bl_cfg_strategy strategy; /* default peak_ewma */
	struct bl_cfg_backend *backends;
	size_t n_backends;
	struct bl_cfg_breaker breaker;
	double max_ejected;             /* 0..1, default 0.5 */
	int64_t slow_start_ns;          /* 0 = off */
	int64_t ewma_decay_ns;          /* default 10 s */
	int64_t metrics_interval_ns;    /* scrape period, default 5 s */
};

struct bl_cfg_memory {
	bool configured;       /* false when the section is absent */
	bool capacity_auto;    /* capacity: auto */
	uint64_t capacity;     /* bytes when not auto */
	double safety_buffer;  /* 0..0.9, default 0.20 */
	double low;            /* watermark, share of usable, default 0.80 */
	double high;           /* watermark, share of usable, default 0.90 */
	int64_t lease_ttl_ns;  /* reservation lease TTL when the request names none, default 10 min */
	uint32_t max_queue;    /* reservations allowed to wait, default 1000 */
};

struct bl_cfg_band {
	bool set;
	double low;  /* 0..1 */
	double high; /* low..1 */
};

enum bl_cfg_actuator { BL_ACTUATOR_NONE, BL_ACTUATOR_LOCAL, BL_ACTUATOR_EXEC, BL_ACTUATOR_KUBERNETES };

struct bl_cfg_autoscaler {
	bool configured;
	uint32_t min_replicas;         /* default 5 */
	uint32_t max_replicas;         /* default 100 */
	int64_t interval_ns;           /* default 15 s */
	struct bl_cfg_band cpu;        /* default 0.70..0.85 */
	struct bl_cfg_band memory;     /* default 0.80..0.90 */
	double inflight_per_replica;   /* 0 = unused */
	double queue_per_replica;      /* 0 = unused */
	int64_t panic_window_ns;       /* default 6 s */
	double panic_threshold;        /* default 2.0 */
	int64_t stable_window_ns;      /* default 60 s */
	int64_t scale_up_stabilization_ns;   /* default 0 */
	int64_t scale_down_stabilization_ns; /* default 300 s */
	char *budget;                  /* optional budget name for budget awareness */
	enum bl_cfg_actuator actuator;
	char **command;                /* argv for local/exec, NULL-terminated */
	size_t n_command;
	char **env;                    /* "NAME=value" for local/exec, NULL-terminated, or NULL */
	size_t n_env;
	char *cwd;                     /* working directory for local/exec, or NULL */
	int64_t grace_ns;              /* default 30 s */
	char *k8s_namespace;           /* kubernetes actuator; NULL: the pod's own namespace */
	char *k8s_deployment;          /* the Deployment (or StatefulSet) to scale */
	bool k8s_statefulset;          /* k8s_deployment names a StatefulSet */
	char *k8s_api_url;             /* NULL: in-cluster (KUBERNETES_SERVICE_HOST) */
	char *k8s_token_file;          /* NULL: the service account's token */
	char *k8s_ca_file;             /* NULL: the service account's CA */
};

struct bl_config {
	char *source;           /* file path, or "<default>" */
	char *listen;           /* "host:port" as configured, default 127.0.0.1:7070 */
	char *listen_host;      /* parsed host (IPv4/IPv6 literal or "localhost") */
	uint16_t listen_port;   /* 0 = ephemeral */
	char *state_dir;        /* default ./ballast-state */
	enum bl_log_level log_level; /* default info */
	bool log_access;        /* one line per request, default false */
	char *auth_token_file;  /* NULL: no auth */
	uint32_t max_connections;   /* default 10000 */
	uint64_t max_body;          /* bytes, default 64 KiB */
	uint64_t max_header;        /* bytes, default 16 KiB */
	int64_t request_timeout_ns; /* idle/slow request timeout, default 10 s */
	uint64_t daemon_memory;     /* bytes, default 256 MiB */
	int64_t snapshot_interval_ns; /* default 5 s */
	struct bl_cfg_budget *budgets;
	size_t n_budgets;
	struct bl_cfg_pool *pools;
	size_t n_pools;
	struct bl_cfg_memory memory;
	struct bl_cfg_autoscaler autoscaler;
};

/* ---- loading ---------------------------------------------------------- */

/* The embedded default config (YAML text), what `ballast serve` runs with no file. */
extern const char bl_default_config_yaml[];

/* Parses and validates len bytes of YAML named `name` (used in diagnostics).
 * On success returns 0 and sets *out (free with bl_config_destroy). Otherwise
 * returns BL_EINVAL (or BL_ENOMEM), leaves *out untouched and appends every
 * problem found to diags (not just the first), in document order. After
 * BL_ENOMEM diags is as it was. diags may be NULL when the caller only
 * wants the verdict. Null values (`key:` or `key: ~`) mean "use the default". */
int bl_config_load_string(const char *text, size_t len, const char *name,
			  struct bl_config **out, struct bl_diags *diags);

/* Reads the file at path and loads it as bl_config_load_string(). A file that
 * cannot be read gives BL_EIO and one diagnostic saying why. */
int bl_config_load_file(const char *path, struct bl_config **out, struct bl_diags *diags);

/* Loads the embedded default config. */
int bl_config_load_default(struct bl_config **out, struct bl_diags *diags);

/* Frees cfg and everything it owns. NULL is a no-op. */
void bl_config_destroy(struct bl_config *cfg);

/* Returns the effective config as JSON (every key, defaults filled in,
 * durations and sizes as strings like "30s", "64KiB"). With redact, secrets
 * are replaced by "<redacted>" (credentials inside URLs). NULL on ENOMEM. */
json_t *bl_config_to_json(const struct bl_config *cfg, bool redact);

/* Looks up a budget / pool by name, or NULL. */
const struct bl_cfg_budget *bl_config_budget(const struct bl_config *cfg, const char *name);
const struct bl_cfg_pool *bl_config_pool(const struct bl_config *cfg, const char *name);

/* Replaces cfg's listen address (as `serve --listen` does), with the same
 * rules as the config key: host:port, [v6]:port, port 0..65535. Returns 0;
 * BL_EINVAL with one diagnostic (file "--listen", path "listen") and cfg
 * unchanged; or BL_ENOMEM with cfg unchanged. diags may be NULL. */
int bl_config_set_listen(struct bl_config *cfg, const char *listen, struct bl_diags *diags);

/* Names as the config spells them ("input_tokens", "peak_ewma", "kubernetes";
 * "none" for BL_ACTUATOR_NONE), or "unknown". Static strings. */
const char *bl_cfg_dim_name(enum bl_cfg_dim dim);
const char *bl_cfg_strategy_name(enum bl_cfg_strategy s);

/* Is s a Kubernetes name: a DNS-1123 label (a namespace: at most 63 bytes, no
 * dots) or subdomain (an object: at most 253, dots allowed)? Lower-case
 * letters, digits and '-' (and '.'), starting and ending with a letter or
 * digit. */
bool bl_cfg_k8s_name_ok(const char *s, size_t max, bool dots);
const char *bl_cfg_actuator_name(enum bl_cfg_actuator a);

/* Returns a copy of url with any user:password@ replaced by "<redacted>@",
 * for logs and /v1/config. The caller frees it. NULL on ENOMEM. */
char *bl_config_redact_url(const char *url);

#endif
