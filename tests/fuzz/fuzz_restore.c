/* libFuzzer target: restoring the state snapshot (state_dir/state.json).
 *
 * The file is ballast's own, but it outlives the process that wrote it: a
 * disk error, a hand edit, a newer or older ballast. bl_snapshot_restore
 * moves aside what is not JSON; valid JSON of the wrong shape reaches the
 * components, and a crash there would keep the daemon from ever starting
 * again. So each input, parsed as JSON, is handed to every component's
 * restore — the budgets (rate state, rate leases, memory reservations),
 * the pools (breakers, calls in flight) and the autoscaler's check — on
 * fresh components built from one config with all of them. A restore may
 * refuse; it must not crash, leak, or leave state a save cannot write back
 * (the budgets' and pools' saves run after every restore, accepted or not). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "autoscaler.h"
#include "budgets.h"
#include "config.h"
#include "dmem.h"
#include "log.h"
#include "pools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config_yaml[] =
	"state_dir: /nonexistent\n"
	"budgets:\n"
	"  api:\n"
	"    limits:\n"
	"      requests: {limit: 600, per: 1m}\n"
	"      input_tokens: {limit: 100000, per: 1m}\n"
	"      output_tokens: {limit: 20000, per: 1m}\n"
	"      concurrent: 8\n"
	"    tenants: {a: {weight: 2}, b: {weight: 1}}\n"
	"  key1:\n"
	"    limits: {tokens: {limit: 50000, per: 1m}}\n"
	"memory:\n"
	"  capacity: 1GiB\n"
	"pools:\n"
	"  llm:\n"
	"    strategy: least_inflight\n"
	"    backends:\n"
	"      - {name: a, url: \"http://127.0.0.1:9\", budget: key1}\n"
	"      - {name: b, url: \"http://127.0.0.1:9\"}\n"
	"autoscaler:\n"
	"  min_replicas: 1\n"
	"  max_replicas: 20\n"
	"  targets: {queue_per_replica: 2}\n";

static struct bl_config *cfg;

static void setup(void)
{
	bl_log_set_level(BL_LOG_ERROR); /* a refusal is logged: quiet, faster */
	if (bl_config_load_string(config_yaml, sizeof config_yaml - 1, "fuzz_restore.yaml", &cfg,
				  NULL) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bl_dmem dmem;
	struct bl_pools *pools = NULL;
	struct bl_budgets *budgets = NULL;
	uv_loop_t loop;
	json_error_t jerr;
	json_t *doc, *comps, *part;
	char err[512];

	if (!cfg)
		setup();
	doc = json_loadb((const char *)data, size, 0, &jerr);
	if (!doc)
		return 0;
	/* A whole snapshot, or one component's state for all of them. */
	comps = json_object_get(doc, "components");
	if (uv_loop_init(&loop) != 0)
		abort();
	bl_dmem_init(&dmem, 64u << 20);
	if (bl_pools_create(&loop, cfg, &dmem, &pools, err, sizeof err) != 0 ||
	    bl_budgets_create(&loop, cfg, &dmem, pools, &budgets, err, sizeof err) != 0)
		abort();
	/* The order of the daemon: pools first, the leases name their backends. */
	part = comps ? json_object_get(comps, "pools") : doc;
	if (part)
		(void)bl_pools_restore(pools, part, err, sizeof err);
	part = comps ? json_object_get(comps, "budgets") : doc;
	if (part)
		(void)bl_budgets_restore(budgets, part, err, sizeof err);
	part = comps ? json_object_get(comps, "autoscaler") : doc;
	if (part)
		(void)bl_autoscaler_check_saved(part, err, sizeof err);
	json_decref(bl_pools_save(pools));
	json_decref(bl_budgets_save(budgets));
	json_decref(doc);

	bl_budgets_shutdown(budgets);
	bl_pools_shutdown(pools);
	uv_run(&loop, UV_RUN_DEFAULT);
	bl_budgets_destroy(budgets);
	bl_pools_destroy(pools);
	if (uv_loop_close(&loop) != 0)
		abort();
	if (dmem.held != 0)
		abort(); /* everything the account lent came back */
	return 0;
}
