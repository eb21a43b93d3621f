/* libFuzzer target: the config loader, fed arbitrary bytes as YAML.
 *
 * Whatever the input, loading must not crash, leak or run away: it either
 * yields a config (which must then serialise to JSON) or diagnostics (which
 * must print). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ballast/error.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	struct bl_diags diags = {0};
	struct bl_config *cfg = NULL;
	int err;

	if (!sink)
		sink = fopen("/dev/null", "w");
	err = bl_config_load_string((const char *)data, size, "fuzz.yaml", &cfg, &diags);
	if (err == 0) {
		json_t *j = bl_config_to_json(cfg, true);
		char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

		if (!j || !text || diags.n != 0)
			abort(); /* a loaded config always serialises, with no diagnostics */
		free(text);
		json_decref(j);
	} else if (err == BL_EINVAL && diags.n == 0) {
		abort(); /* a refusal always says why */
	}
	if (sink)
		bl_diags_print(&diags, sink);
	bl_config_destroy(cfg);
	bl_diags_cleanup(&diags);
	return 0;
}
