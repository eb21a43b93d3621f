/* libFuzzer target: the simulator's scenario loader (src/sim/scenario.c),
 * fed arbitrary bytes as YAML: its own sections, and the policy blocks it
 * hands to the daemon's loader with the rest blanked out.
 *
 * Whatever the input, loading must not crash, leak or run away: it either
 * yields a scenario or diagnostics saying why not. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ballast/error.h"
#include "scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	struct bl_diags diags = {0};
	struct bl_scenario *sc = NULL;
	int err;

	if (!sink)
		sink = fopen("/dev/null", "w");
	err = bl_scenario_load_string((const char *)data, size, "fuzz.yaml", &sc, &diags);
	if (err == 0 && (!sc || !sc->policy || !sc->name))
		abort(); /* a loaded scenario is complete */
	if (err == BL_EINVAL && diags.n == 0)
		abort(); /* a refusal always says why */
	if (sink)
		bl_diags_print(&diags, sink);
	bl_scenario_destroy(sc);
	bl_diags_cleanup(&diags);
	return 0;
}
