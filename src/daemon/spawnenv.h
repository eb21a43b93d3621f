/* Argument and environment vectors for the processes the daemon spawns (the
 * local supervisor's workers and the exec actuator's command). Both run a
 * command directly, without a shell, with the daemon's environment plus
 * entries of their own.
 */
#ifndef BALLAST_SPAWNENV_H
#define BALLAST_SPAWNENV_H

#include <stdbool.h>
#include <stddef.h>

/* Returns a malloc'd copy of the NULL-terminated vector v (strings copied)
 * with extra_slots NULL entries after its last string, still NULL-terminated,
 * so a caller can add entries of its own in place: room for
 * count(v) + extra_slots + 1 pointers. Sets *n to count(v) if n is not NULL.
 * v may be NULL (an empty vector). NULL on ENOMEM. */
char **bl_strv_dup(const char *const *v, size_t extra_slots, size_t *n);

/* Frees a vector made by bl_strv_dup or bl_spawn_env_build and every string
 * up to its first NULL. NULL is a no-op. */
void bl_strv_free(char **v);

/* Builds a child's environment: the daemon's own (unless clear), minus every
 * key that extra or reserved names, then extra ("KEY=VALUE" each, NULL-
 * terminated, may be NULL), then extra_slots NULL entries for the caller to
 * fill (its own variables), then the terminating NULL. reserved lists keys
 * (NULL-terminated) that only the caller may set: extra naming one of them is
 * an error. On success *out is the vector, *n the count of strings before
 * the free slots; returns 0. Returns BL_EINVAL with a reason in err (an entry
 * without '=' or with an empty key, a reserved key), or BL_ENOMEM. */
int bl_spawn_env_build(const char *const *extra, bool clear, const char *const *reserved,
		       size_t extra_slots, char ***out, size_t *n, char *err, size_t errcap);

#endif
