/* A simulation scenario: the fleet, its work, the providers it calls and the
 * policies under test, read from YAML.
 *
 * The policy blocks (budgets, pools, memory, autoscaler) are the daemon's
 * own: they are read by the daemon's config loader (src/daemon/config.c),
 * so a scenario's policies validate, default and fail exactly as a
 * `ballast serve` config would, with the same file:line:column messages.
 * The scenario's own sections (fleet, workload, providers, backends,
 * baselines) are read here, with messages in the same form.
 * docs/simulator.md documents the schema.
 */
#ifndef BALLAST_SIM_SCENARIO_H
#define BALLAST_SIM_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballast/units.h"
#include "ballast/waitq.h"
#include "config.h"
#include "provider.h"
#include "rng.h"

#define BL_SIM_BURSTS_MAX 64    /* bursts in one workload */
#define BL_SIM_TENANTS_MAX 64   /* tenants in one workload */
#define BL_SIM_PROVIDERS_MAX 16 /* providers in one scenario */
#define BL_SIM_BACKENDS_MAX 64  /* backends of all pools */

/* How tasks arrive. */
enum bl_sim_arrivals {
	BL_SIM_ARRIVALS_CONSTANT = 0, /* evenly spaced at the rate */
	BL_SIM_ARRIVALS_POISSON = 1,  /* a Poisson process at the rate */
	BL_SIM_ARRIVALS_DIURNAL = 2,  /* Poisson, the rate following the day */
	BL_SIM_ARRIVALS_TRACE = 3,    /* replayed from a CSV file */
};

/* A period in which the arrival rate is multiplied. */
struct bl_sim_burst {
	bl_time_ns at_ns; /* start */
	int64_t for_ns;   /* length, > 0 */
	double factor;    /* rate multiplier, > 0 */
};

/* One task of a CSV trace. */
struct bl_sim_trace_row {
	bl_time_ns at_ns;       /* arrival */
	uint64_t input_tokens;  /* over the whole task, split across its calls */
	uint64_t output_tokens; /* over the whole task */
	int32_t tenant;         /* index into the workload's tenants; -1: the default */
};

/* A tenant of the workload: a share of the arrivals and a priority. */
struct bl_sim_tenant {
	char *name;
	double share;              /* share of arrivals (normalised over all tenants) */
	enum bl_waitq_class cls;   /* priority in the budget's waiting queue */
};

/* A provider: its true limits, errors and outages (provider.h), and latency. */
struct bl_sim_provider_spec {
	char *name;
	struct bl_sim_provider_config config;
	struct bl_sim_dist latency_ns;    /* time to the answer, before output */
	double per_output_token_ns;       /* added per output token produced */
};

/* A pool backend as the simulation sees it: which provider it fronts, and
 * how it behaves on top of the provider (a slow region, its own outages). */
struct bl_sim_backend_spec {
	char *name;                 /* as in the pools block */
	int provider;               /* index into providers */
	double latency_factor;      /* multiplies the provider's latency, > 0 (default 1) */
	double error_rate;          /* added to the provider's error rate */
	struct bl_sim_outage outages[BL_SIM_OUTAGES_MAX]; /* its own schedule */
	size_t n_outages;
};

struct bl_scenario {
	char *path;               /* the file it was read from */
	char *name;               /* `name`, or the file's base name */
	int64_t duration_ns;      /* arrivals stop then */
	int64_t drain_ns;         /* then at most this long for the tasks in flight */
	int64_t sample_ns;        /* timeseries resolution */
	uint64_t seed;            /* default seed */

	/* fleet */
	uint32_t replicas;            /* at the start (and always, for `static`) */
	struct bl_sim_dist startup_ns; /* from creation to ready */
	uint32_t tasks_per_worker;    /* tasks one worker runs at once */
	double cpu_cores;             /* a worker's CPU request, cores */
	uint64_t worker_memory;       /* a worker's memory limit, bytes: above it, OOM */
	uint64_t base_memory;         /* a worker's memory with no task, bytes */

	/* workload */
	enum bl_sim_arrivals arrivals;
	double rate_per_s;            /* tasks per second (the peak, for diurnal) */
	struct bl_sim_burst bursts[BL_SIM_BURSTS_MAX];
	size_t n_bursts;
	bl_time_ns diurnal_peak_ns;   /* time of day of the peak */
	double diurnal_low;           /* trough rate as a share of the peak rate, 0..1 */
	int64_t diurnal_period_ns;    /* default 24 h */
	struct bl_sim_trace_row *trace; /* TRACE: rows, by time */
	size_t n_trace;
	struct bl_sim_dist task_cpu_ns;     /* CPU time per task, ns of one core */
	struct bl_sim_dist task_memory;     /* bytes a running task holds */
	struct bl_sim_dist calls;           /* model calls per task (rounded, >= 1) */
	struct bl_sim_dist input_tokens;    /* per call */
	struct bl_sim_dist output_tokens;   /* per call, produced (capped by max_tokens) */
	uint64_t max_tokens;                /* per call: asked for, and acquired as the estimate */
	int64_t slo_ns;                     /* arrival to done */
	int64_t max_wait_ns;                /* waiting for a worker longer: dropped */
	uint32_t max_queue;                 /* tasks waiting for a worker; more are dropped */
	struct bl_sim_tenant tenants[BL_SIM_TENANTS_MAX];
	size_t n_tenants;
	char *budget;                       /* budget agents acquire from, or NULL */
	char *pool;                         /* pool agents call through, or NULL */
	int provider;                       /* provider called without a pool, or -1 */

	/* providers and backends */
	struct bl_sim_provider_spec providers[BL_SIM_PROVIDERS_MAX];
	size_t n_providers;
	struct bl_sim_backend_spec backends[BL_SIM_BACKENDS_MAX];
	size_t n_backends;

	/* baselines */
	int64_t retry_base_ns;        /* first backoff after a 429 or an error */
	int64_t retry_max_ns;         /* backoff cap */
	uint32_t retry_attempts;      /* 429s one call survives before its task fails */
	uint32_t error_attempts;      /* provider errors one call survives */
	bool honor_retry_after;       /* baselines wait at least the retry-after */
	double hpa_cpu_target;        /* the hpa baseline's one CPU target, share */

	/* the policy blocks, read by the daemon's loader */
	struct bl_config *policy;
};

/* Reads the scenario at path. Returns 0 and sets *out (free with
 * bl_scenario_destroy); or BL_EINVAL / BL_EIO / BL_ENOMEM with every
 * problem found in diags as file:line:column: path: message. */
int bl_scenario_load_file(const char *path, struct bl_scenario **out, struct bl_diags *diags);

/* As bl_scenario_load_file, from len bytes of text named `name`; a trace
 * file is looked up relative to the directory of `name`. */
int bl_scenario_load_string(const char *text, size_t len, const char *name,
			    struct bl_scenario **out, struct bl_diags *diags);

/* Frees sc and everything it owns. NULL is a no-op. */
void bl_scenario_destroy(struct bl_scenario *sc);

/* How the simulation sees the pool backend `name`: its entry under
 * `backends`, else a provider of the same name, else the only provider.
 * Returns 0 and fills *out (name not set for the latter two), or BL_ENOENT. */
int bl_scenario_backend(const struct bl_scenario *sc, const char *name,
			struct bl_sim_backend_spec *out);

/* The arrival rate multiplier at t (bursts and the diurnal curve), relative
 * to rate_per_s. */
double bl_scenario_rate_factor(const struct bl_scenario *sc, bl_time_ns t);

/* The largest value bl_scenario_rate_factor takes. */
double bl_scenario_rate_factor_max(const struct bl_scenario *sc);

#endif
