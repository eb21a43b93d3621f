/* Argument and environment vectors for spawned processes. See spawnenv.h. */
#include "spawnenv.h"

#include <stdlib.h>
#include <string.h>

#include "ballast/error.h"

extern char **environ;

static size_t strv_len(const char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

char **bl_strv_dup(const char *const *v, size_t extra_slots, size_t *n)
{
	size_t len = strv_len(v);
	char **out = calloc(len + extra_slots + 1, sizeof *out);

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		out[i] = strdup(v[i]);
		if (!out[i]) {
			bl_strv_free(out);
			return NULL;
		}
	}
	if (n)
		*n = len;
	return out;
}

void bl_strv_free(char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

/* Length of the key of "KEY=VALUE", or 0 when there is no '='. */
static size_t key_len(const char *entry)
{
	const char *eq = strchr(entry, '=');

	return eq ? (size_t)(eq - entry) : 0;
}

/* Whether list (NULL-terminated, "KEY" or "KEY=VALUE" entries) names the key
 * of entry. */
static bool names_key(const char *const *list, const char *entry, size_t klen)
{
	for (size_t i = 0; list && list[i]; i++) {
		size_t l = strcspn(list[i], "=");

		if (l == klen && memcmp(list[i], entry, klen) == 0)
			return true;
	}
	return false;
}

int bl_spawn_env_build(const char *const *extra, bool clear, const char *const *reserved,
		       size_t extra_slots, char ***out, size_t *n, char *err, size_t errcap)
{
	size_t n_extra = strv_len(extra);
	size_t n_inherit = clear ? 0 : strv_len((const char *const *)environ);
	size_t count = 0;
	char **env;

	for (size_t i = 0; i < n_extra; i++) {
		size_t kl = key_len(extra[i]);

		if (kl == 0)
			return bl_errorf(err, errcap, BL_EINVAL,
					 "env entry '%s' is not KEY=VALUE with a non-empty KEY",
					 extra[i]);
		if (names_key(reserved, extra[i], kl))
			return bl_errorf(err, errcap, BL_EINVAL,
					 "env entry '%.*s' is set by ballast itself and cannot be given",
					 (int)kl, extra[i]);
	}
	env = calloc(n_inherit + n_extra + extra_slots + 1, sizeof *env);
	if (!env)
		return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
	for (size_t i = 0; i < n_inherit; i++) {
		const char *e = environ[i];
		size_t kl = key_len(e);

		if (kl == 0 || names_key(extra, e, kl) || names_key(reserved, e, kl))
			continue;
		if (!(env[count++] = strdup(e)))
			goto out_nomem;
	}
	for (size_t i = 0; i < n_extra; i++)
		if (!(env[count++] = strdup(extra[i])))
			goto out_nomem;
	*out = env;
	*n = count;
	return 0;

out_nomem:
	bl_strv_free(env);
	return bl_errorf(err, errcap, BL_ENOMEM, "out of memory");
}
