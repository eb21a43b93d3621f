/* State that survives restarts: see snapshot.h for the contract and
 * docs/internals/snapshots.md for why the file is written the way it is.
 *
 * Two halves with different threading rules:
 *   - the registry (create/register/collect/restore) belongs to the loop
 *     thread, like every other piece of daemon state;
 *   - bl_snapshot_write_file touches nothing but its arguments and the file
 *     system, so it can run on a libuv thread-pool thread. It must stay free
 *     of shared state: it reports errors through err, formats errno text with
 *     strerror_r, and never logs.
 */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ballast/error.h"
#include "log.h"

#ifndef BL_VERSION
#define BL_VERSION "unknown"
#endif

#define SNAPSHOT_FORMAT "ballast-snapshot"
#define TEMP_PREFIX BL_SNAPSHOT_FILE ".tmp-"

/* Longest path we build (state_dir + "/" + a file name). Fixed so that
 * write_file, which runs off the loop thread, never has to allocate. */
#define PATH_CAP 4096

/* Longest component name: it becomes a JSON key and a log value. */
#define NAME_MAX_BYTES 128

/* How many names we try before giving up on a temp or an aside file. */
#define NAME_ATTEMPTS 100

/* Biggest single write(2): Linux caps a call at about 2 GiB anyway, and
 * POSIX leaves counts above SSIZE_MAX implementation-defined. */
#define WRITE_CHUNK ((size_t)1 << 30)

struct component {
	char *name;                     /* unique key under "components" */
	bl_snapshot_save_fn save;       /* produces the component's state, or NULL: */
	bl_snapshot_capture_fn capture; /* ... a split save */
	bl_snapshot_render_fn render;
	bl_snapshot_discard_fn discard;
	bool required;                  /* a NULL from save is a failure */
	bl_snapshot_restore_fn restore; /* takes it back at start */
	void *ctx;                      /* handed to save, capture and restore */
};

/* One component's part of a capture: its JSON, or a capture to render. */
struct captured {
	char *name;
	json_t *state;
	void *capture;
	bl_snapshot_render_fn render;
	bl_snapshot_discard_fn discard;
};

struct bl_snapshot_capture {
	int64_t wall_ms;
	size_t n;
	struct captured items[];
};

struct bl_snapshot {
	char *state_dir;          /* where state.json lives */
	struct component *items;  /* registered components, in registration order */
	size_t n;                 /* entries used in items */
	size_t cap;               /* entries allocated in items */
};

/* A growable byte buffer for the serialised document. */
struct outbuf {
	char *p;     /* malloc'd bytes, NUL-terminated once finished */
	size_t len;  /* bytes used, without the NUL */
	size_t cap;  /* bytes allocated */
};

/* ---- registry ---------------------------------------------------------- */

/* Allocates only: the directory is left alone until the first write, so a
 * daemon that never snapshots (or only checks its config) creates nothing. */
int bl_snapshot_create(const char *state_dir, struct bl_snapshot **out)
{
	struct bl_snapshot *s;

	*out = NULL;
	if (!state_dir || !*state_dir)
		return BL_EINVAL;
	s = calloc(1, sizeof *s);
	if (!s)
		return BL_ENOMEM;
	s->state_dir = strdup(state_dir);
	if (!s->state_dir)
		goto free_s;
	*out = s;
	return 0;

free_s:
	free(s);
	return BL_ENOMEM;
}

/* Frees the registry only: component contexts belong to their components. */
void bl_snapshot_destroy(struct bl_snapshot *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->items[i].name);
	free(s->items);
	free(s->state_dir);
	free(s);
}

/* Names become JSON object keys and logfmt values, so keep them to printable
 * ASCII without spaces: always valid UTF-8, never in need of quoting. */
static bool is_valid_name(const char *name)
{
	size_t len = 0;

	for (const char *p = name; *p; p++, len++)
		if (*p <= ' ' || *p > '~' || *p == '"' || *p == '\\' || *p == '=')
			return false;
	return len > 0 && len <= NAME_MAX_BYTES;
}

/* A linear scan: a daemon has a handful of components, looked up at
 * registration and once per restore. */
static struct component *find_component(struct bl_snapshot *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->items[i].name, name) == 0)
			return &s->items[i];
	return NULL;
}

/* Checks everything before changing anything, so a refused registration
 * leaves the registry as it was. */
static int add_component(struct bl_snapshot *s, const char *name, const struct component *proto)
{
	struct component *c;
	char *copy;

	if (!s || !name || !proto->restore || !is_valid_name(name))
		return BL_EINVAL;
	if (find_component(s, name))
		return BL_EEXIST;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct component *items = realloc(s->items, cap * sizeof *items);

		if (!items)
			return BL_ENOMEM;
		s->items = items;
		s->cap = cap;
	}
	copy = strdup(name);
	if (!copy)
		return BL_ENOMEM;
	c = &s->items[s->n++];
	*c = *proto;
	c->name = copy;
	return 0;
}

int bl_snapshot_register(struct bl_snapshot *s, const char *name, bl_snapshot_save_fn save,
			 bl_snapshot_restore_fn restore, void *ctx)
{
	struct component c = {.save = save, .restore = restore, .ctx = ctx};

	if (!save)
		return BL_EINVAL;
	return add_component(s, name, &c);
}

int bl_snapshot_register_required(struct bl_snapshot *s, const char *name,
				  bl_snapshot_save_fn save, bl_snapshot_restore_fn restore,
				  void *ctx)
{
	struct component c = {.save = save, .restore = restore, .ctx = ctx, .required = true};

	if (!save)
		return BL_EINVAL;
	return add_component(s, name, &c);
}

int bl_snapshot_register_split(struct bl_snapshot *s, const char *name,
			       bl_snapshot_capture_fn capture, bl_snapshot_render_fn render,
			       bl_snapshot_discard_fn discard, bl_snapshot_restore_fn restore,
			       void *ctx)
{
	struct component c = {.capture = capture, .render = render, .discard = discard,
			      .restore = restore, .ctx = ctx};

	if (!capture || !render || !discard)
		return BL_EINVAL;
	return add_component(s, name, &c);
}

/* ---- collect ----------------------------------------------------------- */

/* json_dump_callback sink. We serialise into our own malloc'd buffer rather
 * than use json_dumps so that the caller's free() is always the right one,
 * even if someone installs other allocators with json_set_alloc_funcs. */
static int outbuf_append(const char *bytes, size_t size, void *data)
{
	struct outbuf *b = data;

	if (size + 1 > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (size + 1 > cap - b->len) {
			if (cap > SIZE_MAX / 2)
				return -1;
			cap *= 2;
		}
		p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, bytes, size);
	b->len += size;
	b->p[b->len] = '\0';
	return 0;
}

char bl_snapshot_capture_failed;

void bl_snapshot_capture_free(struct bl_snapshot_capture *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		json_decref(c->items[i].state);
		if (c->items[i].capture)
			c->items[i].discard(c->items[i].capture);
		free(c->items[i].name);
	}
	free(c);
}

/* Runs on the loop thread: the callbacks read live state. A plain save
 * builds its JSON here; a split one only copies. Everything slow (building
 * the big parts, serialising, the file system) is left to render and
 * bl_snapshot_write_file. */
int bl_snapshot_capture(struct bl_snapshot *s, int64_t wall_ms, struct bl_snapshot_capture **out)
{
	struct bl_snapshot_capture *c = calloc(1, sizeof *c + s->n * sizeof c->items[0]);

	*out = NULL;
	if (!c)
		return BL_ENOMEM;
	c->wall_ms = wall_ms;
	for (size_t i = 0; i < s->n; i++) {
		const struct component *k = &s->items[i];
		struct captured *it = &c->items[c->n];

		if (k->save) {
			it->state = k->save(k->ctx);
			if (!it->state && k->required) {
				bl_snapshot_capture_free(c);
				return BL_ENOMEM;
			}
			if (!it->state)
				continue;
		} else {
			it->capture = k->capture(k->ctx);
			if (it->capture == BL_SNAPSHOT_CAPTURE_FAILED) {
				/* A snapshot without this component would replace
				 * the last one that has it: write none. */
				it->capture = NULL;
				bl_snapshot_capture_free(c);
				return BL_ENOMEM;
			}
			if (!it->capture)
				continue;
			it->render = k->render;
			it->discard = k->discard;
		}
		c->n++;
		it->name = strdup(k->name);
		if (!it->name) {
			bl_snapshot_capture_free(c);
			return BL_ENOMEM;
		}
	}
	*out = c;
	return 0;
}

int bl_snapshot_render(struct bl_snapshot_capture *c, char **out_text, size_t *out_len)
{
	struct outbuf buf = {0};
	json_t *doc, *comps;
	int rc = BL_ENOMEM;

	*out_text = NULL;
	if (out_len)
		*out_len = 0;
	doc = json_object();
	if (!doc)
		return BL_ENOMEM;
	/* set_new steals its value even when it fails, and accepts NULL (as a
	 * failure), so each line below leaks nothing whatever happens. */
	if (json_object_set_new(doc, "format", json_string(SNAPSHOT_FORMAT)) ||
	    json_object_set_new(doc, "version", json_integer(BL_SNAPSHOT_VERSION)) ||
	    json_object_set_new(doc, "written_at_ms", json_integer(c->wall_ms)) ||
	    json_object_set_new(doc, "ballast_version", json_string(BL_VERSION)) ||
	    json_object_set_new(doc, "components", json_object()))
		goto put_doc;
	comps = json_object_get(doc, "components");
	for (size_t i = 0; i < c->n; i++) {
		struct captured *it = &c->items[i];
		json_t *state = it->state;

		if (it->capture)
			state = it->render(it->capture);
		it->state = NULL; /* the document takes it */
		if (json_object_set_new(comps, it->name, state))
			goto put_doc;
	}

	/* Sorted keys: the same state always gives the same bytes, which keeps
	 * snapshots diffable and tests exact. */
	if (json_dump_callback(doc, outbuf_append, &buf, JSON_COMPACT | JSON_SORT_KEYS) != 0)
		goto free_buf;
	if (!buf.p && outbuf_append("", 0, &buf) != 0)
		goto free_buf;
	*out_text = buf.p;
	if (out_len)
		*out_len = buf.len;
	rc = 0;
	goto put_doc;

free_buf:
	free(buf.p);
put_doc:
	json_decref(doc);
	return rc;
}

int bl_snapshot_collect(struct bl_snapshot *s, int64_t wall_ms, char **out_text,
			size_t *out_len)
{
	struct bl_snapshot_capture *c;
	int rc = bl_snapshot_capture(s, wall_ms, &c);

	if (rc != 0) {
		*out_text = NULL;
		if (out_len)
			*out_len = 0;
		return rc;
	}
	rc = bl_snapshot_render(c, out_text, out_len);
	bl_snapshot_capture_free(c);
	return rc;
}

/* ---- write ------------------------------------------------------------- */

/* errno text for err messages. strerror() may share a static buffer between
 * threads; this runs on the thread pool, so use the XSI strerror_r. */
static const char *errno_text(int errnum, char *buf, size_t cap)
{
	if (strerror_r(errnum, buf, cap) != 0)
		snprintf(buf, cap, "errno %d", errnum);
	return buf;
}

/* Fills err with "<step> <path>: <errno text>" and returns BL_EIO, so every
 * failure says what was being done, to which file, and what the OS said. */
static int fail_io(char *err, size_t errcap, const char *step, const char *path, int errnum)
{
	char text[128];

	if (err && errcap)
		snprintf(err, errcap, "%s %s: %s", step, path,
			 errno_text(errnum, text, sizeof text));
	return BL_EIO;
}

/* Joins dir and name into out. Returns false when it does not fit, rather
 * than act on a truncated path. */
static bool join_path(char *out, size_t cap, const char *dir, const char *name)
{
	int k = snprintf(out, cap, "%s/%s", dir, name);

	return k > 0 && (size_t)k < cap;
}

/* fsync, retried when a signal interrupts it. Any other error is final: after
 * a failed fsync the kernel may already have dropped the dirty pages, so a
 * retry that succeeds proves nothing. */
static int fsync_retry(int fd)
{
	int rc;

	do
		rc = fsync(fd);
	while (rc != 0 && errno == EINTR);
	return rc;
}

/* Makes a directory's entries durable: a rename or a new file is only on disk
 * once the directory that names it has been synced. Returns 0 or an errno. */
static int fsync_dir(const char *dir)
{
	int fd, rc = 0;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	/* Some file systems cannot sync a directory at all and say EINVAL;
	 * there is nothing more we could do there, so that is not a failure. */
	if (fsync_retry(fd) != 0 && errno != EINVAL)
		rc = errno;
	close(fd);
	return rc;
}

/* Syncs the directory holding path (its parent), after path was created. */
static int fsync_parent(char *path)
{
	char *slash = strrchr(path, '/');
	int rc;

	if (!slash)
		return fsync_dir(".");
	if (slash == path)
		return fsync_dir("/");
	*slash = '\0';
	rc = fsync_dir(path);
	*slash = '/';
	return rc;
}

/* mkdir -p with mode 0700: the snapshot may hold tenant names and backend
 * URLs, so only the daemon's user may look inside. A directory we create is
 * made durable in its parent too, or a crash could lose the whole tree
 * together with the snapshot inside it. */
static int make_dirs(const char *dir, char *err, size_t errcap)
{
	char path[PATH_CAP];
	size_t len = strlen(dir);
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		return fail_io(err, errcap, "use state directory", dir, ENOTDIR);
	}
	if (len >= sizeof path)
		return fail_io(err, errcap, "create state directory", dir, ENAMETOOLONG);
	memcpy(path, dir, len + 1);

	for (char *p = path + 1;; p++) {
		char c = *p;
		int e;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) == 0) {
			e = fsync_parent(path);
			if (e)
				return fail_io(err, errcap, "fsync parent of", path, e);
		} else if (errno != EEXIST) {
			return fail_io(err, errcap, "create directory", path, errno);
		}
		*p = c;
		if (c == '\0')
			break;
	}
	/* EEXIST above may have been a file standing where a directory should. */
	if (stat(dir, &st) != 0)
		return fail_io(err, errcap, "create state directory", dir, errno);
	if (!S_ISDIR(st.st_mode))
		return fail_io(err, errcap, "use state directory", dir, ENOTDIR);
	return 0;
}

/* Creates a fresh temp file next to state.json and returns its fd, with its
 * path in tmp. O_EXCL makes it ours alone: a leftover from a crashed write,
 * or a concurrent writer, can never be opened and clobbered by mistake. The
 * name mixes pid and a clock reading; on a clash we simply try again. */
static int open_temp(const char *dir, char *tmp, size_t cap, char *err, size_t errcap)
{
	struct timespec ts;
	char name[96];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	for (unsigned attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
		int fd;

		snprintf(name, sizeof name, TEMP_PREFIX "%ld-%lld%09ld-%u", (long)getpid(),
			 (long long)ts.tv_sec, ts.tv_nsec, attempt);
		if (!join_path(tmp, cap, dir, name)) {
			fail_io(err, errcap, "create temp file in", dir, ENAMETOOLONG);
			return -1;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST && errno != EINTR) {
			fail_io(err, errcap, "create temp file", tmp, errno);
			return -1;
		}
	}
	fail_io(err, errcap, "create temp file", tmp, EEXIST);
	return -1;
}

/* write(2) until every byte is out: a short write (a signal, a full pipe of
 * a FUSE mount) is not an error, just a reason to go on. */
static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t k = write(fd, p, len < WRITE_CHUNK ? len : WRITE_CHUNK);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (k == 0) {
			errno = EIO;
			return -1;
		}
		p += k;
		len -= (size_t)k;
	}
	return 0;
}

/* temp file, write, fsync, rename, fsync of the directory: each step closes
 * one way a crash could leave no snapshot or half of one; see
 * docs/internals/snapshots.md. Every path before the rename ends by removing
 * the temp file, so a failure leaves the directory as it found it. */
int bl_snapshot_write_file(const char *dir, const char *text, size_t len, char *err,
			   size_t errcap)
{
	char tmp[PATH_CAP], final[PATH_CAP];
	int fd, rc, e;

	if (err && errcap)
		err[0] = '\0';
	if (!dir || !*dir || (!text && len))
		return fail_io(err, errcap, "write snapshot to", dir ? dir : "(null)", EINVAL);
	rc = make_dirs(dir, err, errcap);
	if (rc)
		return rc;
	if (!join_path(final, sizeof final, dir, BL_SNAPSHOT_FILE))
		return fail_io(err, errcap, "write snapshot to", dir, ENAMETOOLONG);

	fd = open_temp(dir, tmp, sizeof tmp, err, errcap);
	if (fd < 0)
		return BL_EIO;
	if (write_all(fd, text, len) != 0) {
		rc = fail_io(err, errcap, "write", tmp, errno);
		goto close_temp;
	}
	if (fsync_retry(fd) != 0) {
		rc = fail_io(err, errcap, "fsync", tmp, errno);
		goto close_temp;
	}
	/* close can report a deferred write error (NFS). EINTR is not one: on
	 * Linux the fd is gone either way and the data is already synced. */
	e = close(fd) == 0 || errno == EINTR ? 0 : errno;
	if (e) {
		rc = fail_io(err, errcap, "close", tmp, e);
		goto unlink_temp;
	}
	if (rename(tmp, final) != 0) {
		rc = fail_io(err, errcap, "rename temp file over", final, errno);
		goto unlink_temp;
	}
	/* From here the new file is in place and there is no temp file left. A
	 * failure only means the rename is not known to be durable: a crash now
	 * could bring back the previous snapshot, which is still a whole one. */
	e = fsync_dir(dir);
	if (e)
		return fail_io(err, errcap, "new snapshot in place but not durable: fsync directory",
			       dir, e);
	return 0;

close_temp:
	close(fd);
unlink_temp:
	unlink(tmp);
	return rc;
}

/* ---- restore ----------------------------------------------------------- */

enum read_result { READ_OK, READ_MISSING, READ_FAILED, READ_NOMEM };

/* Reads the whole file at path into a malloc'd buffer. On READ_FAILED *errnum
 * says why. The size from fstat is only a first guess: the file is read to
 * EOF whatever it says. */
static enum read_result read_whole(const char *path, char **out, size_t *out_len, int *errnum)
{
	enum read_result res = READ_FAILED;
	size_t len = 0, cap;
	struct stat st;
	char *buf;
	int fd;

	*out = NULL;
	*out_len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*errnum = errno;
		return errno == ENOENT ? READ_MISSING : READ_FAILED;
	}
	cap = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
	buf = malloc(cap);
	if (!buf) {
		res = READ_NOMEM;
		goto close_fd;
	}
	for (;;) {
		ssize_t k;

		if (len == cap) {
			char *p = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;

			if (!p) {
				res = READ_NOMEM;
				goto free_buf;
			}
			buf = p;
			cap *= 2;
		}
		k = read(fd, buf + len, cap - len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			*errnum = errno;
			goto free_buf;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	*out = buf;
	*out_len = len;
	return READ_OK;

free_buf:
	free(buf);
close_fd:
	close(fd);
	return res;
}

/* Removes temp files left by a write that never reached its rename (a crash
 * or a kill between open and rename). They are never a valid snapshot, only
 * litter; restore runs at start, before this daemon queues any write. */
static void remove_stale_temps(const char *dir)
{
	char path[PATH_CAP], qpath[1024], text[128], qtext[160];
	struct dirent *de;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return; /* no directory yet, or the read of state.json will say why */
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, TEMP_PREFIX, strlen(TEMP_PREFIX)) != 0)
			continue;
		if (!join_path(path, sizeof path, dir, de->d_name))
			continue;
		if (unlink(path) == 0) {
			bl_log(BL_LOG_INFO, "removed leftover snapshot temp file", "file=%s",
			       bl_log_quote(qpath, sizeof qpath, path));
		} else {
			errno_text(errno, text, sizeof text);
			bl_log(BL_LOG_WARN, "cannot remove leftover snapshot temp file",
			       "file=%s error=%s", bl_log_quote(qpath, sizeof qpath, path),
			       bl_log_quote(qtext, sizeof qtext, text));
		}
	}
	closedir(d);
}

/* Whether two parse failures are the same one: same place, same message. */
static bool same_error(const json_error_t *a, const json_error_t *b)
{
	return a->line == b->line && a->column == b->column && a->position == b->position &&
	       strcmp(a->text, b->text) == 0;
}

/* Parses the file's bytes. Returns 0 with *doc set, 0 with *doc NULL and the
 * reason in *jerr when the bytes are not JSON, or BL_ENOMEM.
 *
 * jansson cannot always say that it ran out of memory: a failed allocation
 * before parsing starts leaves the error empty, and one while scanning a
 * string comes back as a syntax error ("invalid token"). Moving a good
 * snapshot aside for that would throw its state away, so a failure counts as
 * corruption only when a second parse fails in exactly the same place, with
 * the same message. A transient shortage then shows as a different (or no)
 * failure the second time; see docs/internals/snapshots.md for what remains. */
static int parse_document(const char *bytes, size_t len, json_t **doc, json_error_t *jerr)
{
	json_error_t again;

	/* Duplicate keys never come out of our writer, so they mean damage. */
	memset(jerr, 0, sizeof *jerr);
	*doc = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, jerr);
	if (*doc)
		return 0;
	if (json_error_code(jerr) == json_error_out_of_memory || jerr->text[0] == '\0')
		return BL_ENOMEM;
	memset(&again, 0, sizeof again);
	*doc = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &again);
	if (*doc)
		return 0;
	if (!same_error(jerr, &again))
		return BL_ENOMEM;
	return 0;
}

/* Checks that doc is a snapshot this build can read. Returns NULL when it is,
 * or the tag for the aside name ("corrupt", "newer") with a sentence for a
 * person in why. */
static const char *check_document(json_t *doc, char *why, size_t cap)
{
	json_t *format, *version;
	json_int_t v;

	if (!json_is_object(doc)) {
		snprintf(why, cap, "top-level JSON value is not an object");
		return "corrupt";
	}
	format = json_object_get(doc, "format");
	if (!json_is_string(format) || strcmp(json_string_value(format), SNAPSHOT_FORMAT) != 0) {
		snprintf(why, cap, "\"format\" is %s, expected \"%s\"",
			 json_is_string(format) ? json_string_value(format)
						: format ? "not a string" : "missing",
			 SNAPSHOT_FORMAT);
		return "corrupt";
	}
	version = json_object_get(doc, "version");
	if (!json_is_integer(version) || json_integer_value(version) < 1) {
		snprintf(why, cap, "\"version\" is %s, expected an integer from 1",
			 version ? "invalid" : "missing");
		return "corrupt";
	}
	v = json_integer_value(version);
	if (v > BL_SNAPSHOT_VERSION) {
		snprintf(why, cap, "version %" JSON_INTEGER_FORMAT
			 " is newer than this build reads (%d)", v, BL_SNAPSHOT_VERSION);
		return "newer";
	}
	if (!json_is_object(json_object_get(doc, "components"))) {
		snprintf(why, cap, "\"components\" is missing or not an object");
		return "corrupt";
	}
	return NULL;
}

/* Renames path to path.<tag>-<wall_ms>, or .<tag>-<wall_ms>.<n> when that
 * name is taken (two bad starts in the same millisecond), so that no earlier
 * evidence is ever overwritten. Returns 0 with the new name in aside, or an
 * errno. */
static int move_aside(const char *path, const char *tag, int64_t wall_ms, char *aside,
		      size_t cap)
{
	struct stat st;

	for (int n = 0; n < NAME_ATTEMPTS; n++) {
		int k = n == 0 ? snprintf(aside, cap, "%s.%s-%lld", path, tag, (long long)wall_ms)
			       : snprintf(aside, cap, "%s.%s-%lld.%d", path, tag,
					  (long long)wall_ms, n);

		if (k < 0 || (size_t)k >= cap)
			return ENAMETOOLONG;
		if (lstat(aside, &st) == 0)
			continue;
		if (errno != ENOENT)
			return errno;
		return rename(path, aside) == 0 ? 0 : errno;
	}
	return EEXIST;
}

/* Hands every registered component its part of a valid document, and counts
 * what nobody claimed. A refusal is the component's own business: it has
 * stayed as it was, so we log it and go on with the others. */
static void restore_components(struct bl_snapshot *s, json_t *comps,
			       struct bl_snapshot_restore_report *r)
{
	char msg[512], qmsg[600], qname[NAME_MAX_BYTES + 8];
	const char *key;
	json_t *value;

	for (size_t i = 0; i < s->n; i++) {
		struct component *c = &s->items[i];
		json_t *state = json_object_get(comps, c->name);
		int rc;

		if (!state)
			continue;
		msg[0] = '\0';
		rc = c->restore(c->ctx, state, msg, sizeof msg);
		if (rc == 0) {
			r->restored++;
			continue;
		}
		r->failed++;
		bl_log(BL_LOG_WARN, "snapshot component not restored, starting it clean",
		       "component=%s code=%s error=%s",
		       bl_log_quote(qname, sizeof qname, c->name), bl_errname(rc),
		       bl_log_quote(qmsg, sizeof qmsg, msg[0] ? msg : bl_strerror(rc)));
	}
	json_object_foreach(comps, key, value) {
		if (find_component(s, key))
			continue;
		r->skipped++;
		bl_log(BL_LOG_INFO, "snapshot component not registered, skipped",
		       "component=%s", bl_log_quote(qmsg, sizeof qmsg, key));
	}
}

/* Unusable files are moved aside rather than refused: starting clean is what
 * a first start does and is safe for every component, while refusing to start
 * would turn a damaged file into an outage. A file we merely failed to read
 * is not moved: that could throw away good state, so the caller decides. */
int bl_snapshot_restore(struct bl_snapshot *s, int64_t wall_ms,
			struct bl_snapshot_restore_report *report)
{
	struct bl_snapshot_restore_report local;
	struct bl_snapshot_restore_report *r = report ? report : &local;
	char path[PATH_CAP], qpath[1024], qaside[1024], qwhy[600], text[128], qtext[160];
	const char *tag;
	json_error_t jerr;
	json_t *doc = NULL, *written;
	char *bytes = NULL;
	size_t len;
	int rc = 0, e;

	memset(r, 0, sizeof *r);
	if (!join_path(path, sizeof path, s->state_dir, BL_SNAPSHOT_FILE)) {
		bl_log(BL_LOG_ERROR, "snapshot path too long", "dir=%s",
		       bl_log_quote(qpath, sizeof qpath, s->state_dir));
		return BL_EIO;
	}
	remove_stale_temps(s->state_dir);

	switch (read_whole(path, &bytes, &len, &e)) {
	case READ_MISSING:
		return 0;
	case READ_NOMEM:
		return BL_ENOMEM;
	case READ_FAILED:
		errno_text(e, text, sizeof text);
		bl_log(BL_LOG_ERROR, "cannot read snapshot", "file=%s error=%s",
		       bl_log_quote(qpath, sizeof qpath, path),
		       bl_log_quote(qtext, sizeof qtext, text));
		return BL_EIO;
	case READ_OK:
		break;
	}
	r->found = 1;

	rc = parse_document(bytes, len, &doc, &jerr);
	if (rc)
		goto free_bytes;
	if (!doc) {
		tag = "corrupt";
		snprintf(r->reason, sizeof r->reason, "invalid JSON at line %d column %d: %s",
			 jerr.line, jerr.column, jerr.text);
	} else {
		tag = check_document(doc, r->reason, sizeof r->reason);
	}

	if (tag) {
		e = move_aside(path, tag, wall_ms, r->aside_path, sizeof r->aside_path);
		if (e) {
			r->aside_path[0] = '\0';
			errno_text(e, text, sizeof text);
			bl_log(BL_LOG_ERROR, "unusable snapshot cannot be moved aside",
			       "file=%s reason=%s error=%s",
			       bl_log_quote(qpath, sizeof qpath, path),
			       bl_log_quote(qwhy, sizeof qwhy, r->reason),
			       bl_log_quote(qtext, sizeof qtext, text));
			rc = BL_EIO;
			goto put_doc;
		}
		/* Best effort: if this rename is lost in a crash, the next start
		 * finds the same bad file and moves it again. */
		(void)fsync_dir(s->state_dir);
		r->moved_aside = 1;
		bl_log(BL_LOG_WARN, "unusable snapshot moved aside, starting clean",
		       "file=%s reason=%s moved_to=%s", bl_log_quote(qpath, sizeof qpath, path),
		       bl_log_quote(qwhy, sizeof qwhy, r->reason),
		       bl_log_quote(qaside, sizeof qaside, r->aside_path));
		goto put_doc;
	}

	written = json_object_get(doc, "written_at_ms");
	if (json_is_integer(written))
		r->written_at_ms = json_integer_value(written);
	restore_components(s, json_object_get(doc, "components"), r);

put_doc:
	json_decref(doc);
free_bytes:
	free(bytes);
	return rc;
}
