/* libFuzzer target: the JSON request decoder every POST body goes through. */
#include <stddef.h>
#include <stdint.h>

#include "jsonreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const allowed[] = {"budget", "tokens", "dry_run", NULL};
	struct bl_json_error err;
	json_t *obj = bl_json_decode_object((const char *)data, size, true, &err);
	const char *s;
	int64_t n;
	bool b;

	if (!obj)
		return 0;
	(void)bl_json_only_keys(obj, allowed, &err);
	(void)bl_json_get_string(obj, "budget", 128, &s, &err);
	(void)bl_json_get_int(obj, "tokens", 0, 1000000, &n, &err);
	(void)bl_json_get_bool(obj, "dry_run", &b, &err);
	json_decref(obj);
	return 0;
}
