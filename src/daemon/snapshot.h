/* State that survives restarts: one versioned JSON snapshot in state_dir.
 *
 * Components register a save and a restore callback under a unique name.
 * The daemon collects every component's state on the loop thread
 * (bl_snapshot_collect), writes the text off the loop thread
 * (bl_snapshot_write_file, blocking: run it from the libuv thread pool), and
 * restores at start (bl_snapshot_restore).
 *
 * The file is state_dir/state.json:
 *   {"format":"ballast-snapshot","version":1,"written_at_ms":...,
 *    "ballast_version":"0.1.0","components":{"<name>":<whatever save returned>}}
 * Writes are atomic: a temp file in the same directory, fsync, rename over
 * state.json, fsync of the directory. A reader therefore sees the old or the
 * new snapshot, never a mix.
 */
#ifndef BALLAST_SNAPSHOT_H
#define BALLAST_SNAPSHOT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define BL_SNAPSHOT_VERSION 1
#define BL_SNAPSHOT_FILE "state.json"

/* Returns the component's state as a new JSON value (the snapshot takes the
 * reference), or NULL to leave it out of this snapshot. */
typedef json_t *(*bl_snapshot_save_fn)(void *ctx);

/* Restores the component from state (borrowed). Returns 0, or a negative
 * BL_E* code with a message in err (errcap bytes) when state is unusable; the
 * component must then be left as it was before the call. */
typedef int (*bl_snapshot_restore_fn)(void *ctx, json_t *state, char *err, size_t errcap);

struct bl_snapshot;

/* Creates a registry for snapshots kept in state_dir (copied). The directory
 * is created (mode 0700) on first write if missing. Returns 0, BL_EINVAL for
 * an empty state_dir, or BL_ENOMEM. */
int bl_snapshot_create(const char *state_dir, struct bl_snapshot **out);

/* Frees s. NULL is a no-op. */
void bl_snapshot_destroy(struct bl_snapshot *s);

/* Registers a component. name is copied and must be unique (else BL_EEXIST);
 * it is 1..128 bytes of printable ASCII without space, '"', '\\' or '='
 * (such as "budgets" or "pool/claude"), and save and restore are both
 * required (else BL_EINVAL). Returns 0, BL_EEXIST, BL_EINVAL or BL_ENOMEM. */
int bl_snapshot_register(struct bl_snapshot *s, const char *name, bl_snapshot_save_fn save,
			 bl_snapshot_restore_fn restore, void *ctx);

/* As bl_snapshot_register, for a component that always has state: a NULL
 * from its save can only be a failure (out of memory), so no snapshot is
 * written that time rather than one without the component, which would
 * replace the last file that has it. */
int bl_snapshot_register_required(struct bl_snapshot *s, const char *name,
				  bl_snapshot_save_fn save, bl_snapshot_restore_fn restore,
				  void *ctx);

/* A component whose state is large (the budgets, with every live lease)
 * splits its save in two, so that the loop thread only copies:
 *   capture  on the loop thread: a plain copy of what to save (no JSON),
 *            NULL to leave the component out of this snapshot, or
 *            BL_SNAPSHOT_CAPTURE_FAILED when the copy could not be made
 *            (out of memory): then no snapshot is written this time, so the
 *            previous file, with the component's state, stays;
 *   render   on a thread-pool thread: the JSON of a capture, built from the
 *            copy alone (it must not touch live state), or NULL when out of
 *            memory; the capture stays;
 *   discard  frees a capture, rendered or not, on the thread that frees the
 *            whole capture (the daemon: the loop thread, once the write is
 *            done), so it may hand buffers back to the component. */
typedef void *(*bl_snapshot_capture_fn)(void *ctx);
extern char bl_snapshot_capture_failed;
#define BL_SNAPSHOT_CAPTURE_FAILED ((void *)&bl_snapshot_capture_failed)
typedef json_t *(*bl_snapshot_render_fn)(void *capture);
typedef void (*bl_snapshot_discard_fn)(void *capture);

/* Registers a component with a split save: as bl_snapshot_register, with
 * capture, render and discard all required. */
int bl_snapshot_register_split(struct bl_snapshot *s, const char *name,
			       bl_snapshot_capture_fn capture, bl_snapshot_render_fn render,
			       bl_snapshot_discard_fn discard, bl_snapshot_restore_fn restore,
			       void *ctx);

/* Everything a snapshot will hold, taken at one instant on the loop thread. */
struct bl_snapshot_capture;

/* Calls every component's save (or capture) on the loop thread, stamped with
 * wall_ms (milliseconds since the epoch). Returns 0 with *out set, or
 * BL_ENOMEM (nothing kept: out of memory here, or a capture that failed).
 * The capture does not refer to s. */
int bl_snapshot_capture(struct bl_snapshot *s, int64_t wall_ms, struct bl_snapshot_capture **out);

/* Turns a capture into the document's text, on any one thread (the thread
 * pool: this is where the time goes with many leases); render it once. On
 * success *out_text is a malloc'd NUL-terminated string the caller frees.
 * Returns 0 or BL_ENOMEM. The capture stays: free it afterwards. */
int bl_snapshot_render(struct bl_snapshot_capture *c, char **out_text, size_t *out_len);

/* Frees a capture, rendered or not (calling the components' discard). NULL
 * is a no-op. */
void bl_snapshot_capture_free(struct bl_snapshot_capture *c);

/* bl_snapshot_capture, bl_snapshot_render and bl_snapshot_capture_free, in
 * one go. */
int bl_snapshot_collect(struct bl_snapshot *s, int64_t wall_ms, char **out_text,
			size_t *out_len);

/* Writes text atomically as dir/state.json (see above). Blocking. Returns 0,
 * or BL_EIO with the failing step and errno text in err. On failure the
 * previous state.json is untouched and no temp file is left behind; the one
 * exception is a failed fsync of the directory after the rename, where the
 * new file is in place but not known to be durable (err says so). Touches no
 * shared state and does not log, so it is safe on a thread-pool thread. */
int bl_snapshot_write_file(const char *dir, const char *text, size_t len, char *err,
			   size_t errcap);

/* Outcome of bl_snapshot_restore(). */
struct bl_snapshot_restore_report {
	int found;               /* 1 if a state.json existed */
	int restored;            /* components restored */
	int skipped;             /* components in the file that nobody registered */
	int failed;              /* components whose restore callback refused */
	int moved_aside;         /* 1 if the file was corrupt/newer and was renamed */
	int64_t written_at_ms;   /* from the file, 0 if none */
	char aside_path[512];    /* where it was moved, if moved_aside */
	char reason[256];        /* why it was moved aside, if moved_aside */
};

/* Reads dir/state.json, if any, and hands each registered component its part.
 * A file that is not valid JSON, not a ballast snapshot, or of a newer
 * version is renamed to state.json.<reason>-<wall_ms> and logged, and the
 * daemon starts clean (returns 0 with moved_aside set). A component whose
 * restore fails is logged and left clean; the others still restore.
 * Leftover temp files of an interrupted write are removed, so call this
 * before any write is queued. report may be NULL.
 * Returns 0, BL_EIO when the file exists but cannot be read or moved, or
 * BL_ENOMEM (the file is then left where it is). */
int bl_snapshot_restore(struct bl_snapshot *s, int64_t wall_ms,
			struct bl_snapshot_restore_report *report);

#endif
