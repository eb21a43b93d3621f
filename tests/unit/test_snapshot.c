/* Unit tests for the snapshot module: collect, atomic write, restore, and
 * what happens to files that are corrupt, truncated, newer or left over from
 * an interrupted write. Every test gets a fresh mkdtemp directory, removed
 * afterwards; state_dir is a "state" subdirectory of it, so the tests also
 * see the module create its directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ballast/error.h"
#include "snapshot.h"

#define PATH_LEN 512

/* A test's private directory tree. */
struct fx {
	char root[64];            /* the mkdtemp directory */
	char state_dir[PATH_LEN]; /* root/state, not created up front */
	char file[PATH_LEN];      /* state_dir/state.json */
};

/* A component whose whole state is one integer, with knobs to misbehave. */
struct counter {
	json_int_t value;  /* the state that is saved and restored */
	int save_calls;    /* times save ran */
	int restore_calls; /* times restore ran, successful or not */
	int refuse;        /* restore fails with BL_EINVAL when set */
	int save_null;     /* save returns NULL (nothing to save) when set */
};

/* ---- helpers ----------------------------------------------------------- */

static void pathf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* snprintf into a PATH_LEN buffer, failing the test rather than truncating. */
static void pathf(char *buf, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(buf, PATH_LEN, fmt, ap);
	va_end(ap);
	assert_true(k > 0 && k < PATH_LEN);
}

/* rm -rf, by hand: nftw needs _XOPEN_SOURCE and the build is plain POSIX. */
static void remove_tree(const char *path)
{
	char child[PATH_LEN];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	d = opendir(path);
	if (d) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (snprintf(child, sizeof child, "%s/%s", path, de->d_name) <
			    (int)sizeof child)
				remove_tree(child);
		}
		closedir(d);
	}
	rmdir(path);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (!f)
		return -1;
	strcpy(f->root, "/tmp/ballast-snap-XXXXXX");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	pathf(f->state_dir, "%s/state", f->root);
	pathf(f->file, "%s/%s", f->state_dir, BL_SNAPSHOT_FILE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	remove_tree(f->root);
	free(f);
	return 0;
}

static void write_bytes(const char *path, const void *bytes, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(bytes, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Returns the file's bytes, NUL-terminated, or NULL if it cannot be read. */
static char *read_bytes(const char *path, size_t *out_len)
{
	FILE *fp = fopen(path, "rb");
	size_t len = 0, cap = 1024;
	char *buf;

	if (!fp)
		return NULL;
	buf = malloc(cap);
	assert_non_null(buf);
	for (;;) {
		size_t k = fread(buf + len, 1, cap - len - 1, fp);

		len += k;
		if (k == 0)
			break;
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	fclose(fp);
	buf[len] = '\0';
	if (out_len)
		*out_len = len;
	return buf;
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Counts entries of dir whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
	struct dirent *de;
	int n = 0;
	DIR *d = opendir(dir);

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

static int count_temps(const char *dir)
{
	return count_prefixed(dir, BL_SNAPSHOT_FILE ".tmp-");
}

static json_t *counter_save(void *ctx)
{
	struct counter *c = ctx;

	c->save_calls++;
	if (c->save_null)
		return NULL;
	return json_pack("{s:I}", "value", c->value);
}

/* Like a real component: checks the state first and changes nothing when it
 * refuses. */
static int counter_restore(void *ctx, json_t *state, char *err, size_t errcap)
{
	struct counter *c = ctx;
	json_int_t v;

	c->restore_calls++;
	if (c->refuse) {
		snprintf(err, errcap, "refusing on purpose");
		return BL_EINVAL;
	}
	if (json_unpack(state, "{s:I}", "value", &v) != 0) {
		snprintf(err, errcap, "\"value\" missing or not an integer");
		return BL_ECORRUPT;
	}
	c->value = v;
	return 0;
}

static struct bl_snapshot *make_registry(const char *dir)
{
	struct bl_snapshot *s = NULL;

	assert_int_equal(bl_snapshot_create(dir, &s), 0);
	assert_non_null(s);
	return s;
}

static void add(struct bl_snapshot *s, const char *name, struct counter *c)
{
	assert_int_equal(bl_snapshot_register(s, name, counter_save, counter_restore, c), 0);
}

/* Collects s at wall_ms and writes it into dir; returns the text (free it). */
static char *save_to(struct bl_snapshot *s, const char *dir, int64_t wall_ms)
{
	char err[512] = "";
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(bl_snapshot_collect(s, wall_ms, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	if (bl_snapshot_write_file(dir, text, len, err, sizeof err) != 0)
		fail_msg("write failed: %s", err);
	return text;
}

/* Points stderr at a file so a test can read the log lines it caused. */
static int capture_stderr(const char *path)
{
	int saved, fd;

	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
	return saved;
}

static void release_stderr(int saved)
{
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
}

/* ---- collect ----------------------------------------------------------- */

/* The document is compact, its keys sorted whatever the registration order,
 * so equal state gives equal bytes. */
static void test_collect_exact_and_deterministic(void **state)
{
	struct fx *f = *state;
	struct counter a = {.value = 1}, b = {.value = 2};
	struct bl_snapshot *s = make_registry(f->state_dir);
	char *t1 = NULL, *t2 = NULL;
	size_t len = 0;

	add(s, "b", &b);
	add(s, "a", &a);
	assert_int_equal(bl_snapshot_collect(s, 1234, &t1, &len), 0);
	assert_string_equal(t1, "{\"ballast_version\":\"" BL_VERSION "\","
				"\"components\":{\"a\":{\"value\":1},\"b\":{\"value\":2}},"
				"\"format\":\"ballast-snapshot\",\"version\":1,"
				"\"written_at_ms\":1234}");
	assert_int_equal(len, strlen(t1));
	assert_int_equal(bl_snapshot_collect(s, 1234, &t2, NULL), 0);
	assert_string_equal(t1, t2);
	assert_int_equal(a.save_calls, 2);
	assert_int_equal(b.save_calls, 2);
	/* collect does no I/O: the directory does not appear. */
	assert_false(exists(f->state_dir));
	free(t1);
	free(t2);
	bl_snapshot_destroy(s);
}

/* A save that returns NULL leaves the component out; the rest is written,
 * and on restore the silent component is not called. */
static void test_collect_save_returns_null(void **state)
{
	struct fx *f = *state;
	struct counter quiet = {.value = 5, .save_null = 1}, loud = {.value = 6};
	struct counter quiet2 = {.value = 50}, loud2 = {0};
	struct bl_snapshot *s = make_registry(f->state_dir), *s2;
	struct bl_snapshot_restore_report r;
	char *text;

	add(s, "quiet", &quiet);
	add(s, "loud", &loud);
	text = save_to(s, f->state_dir, 77);
	assert_null(strstr(text, "quiet"));
	assert_non_null(strstr(text, "\"components\":{\"loud\":{\"value\":6}}"));
	assert_int_equal(quiet.save_calls, 1);

	s2 = make_registry(f->state_dir);
	add(s2, "quiet", &quiet2);
	add(s2, "loud", &loud2);
	assert_int_equal(bl_snapshot_restore(s2, 100, &r), 0);
	assert_int_equal(r.restored, 1);
	assert_int_equal(r.skipped, 0);
	assert_int_equal(quiet2.restore_calls, 0);
	assert_int_equal(quiet2.value, 50);
	assert_int_equal(loud2.value, 6);
	free(text);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(s2);
}

/* ---- write and restore ------------------------------------------------- */

static void test_round_trip_two_components(void **state)
{
	struct fx *f = *state;
	struct counter budgets = {.value = 41}, pools = {.value = -7};
	struct counter budgets2 = {0}, pools2 = {0};
	struct bl_snapshot *s = make_registry(f->state_dir), *s2;
	struct bl_snapshot_restore_report r;
	struct stat st;
	char *text, *disk;

	add(s, "budgets", &budgets);
	add(s, "pools", &pools);
	text = save_to(s, f->state_dir, 1700000000123);

	/* Exactly the collected bytes, private to the daemon's user. */
	disk = read_bytes(f->file, NULL);
	assert_non_null(disk);
	assert_string_equal(disk, text);
	assert_int_equal(stat(f->file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->state_dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(count_temps(f->state_dir), 0);

	s2 = make_registry(f->state_dir);
	add(s2, "pools", &pools2);
	add(s2, "budgets", &budgets2);
	assert_int_equal(bl_snapshot_restore(s2, 1700000009999, &r), 0);
	assert_int_equal(r.found, 1);
	assert_int_equal(r.restored, 2);
	assert_int_equal(r.skipped, 0);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.moved_aside, 0);
	assert_int_equal(r.written_at_ms, 1700000000123);
	assert_int_equal(budgets2.value, 41);
	assert_int_equal(pools2.value, -7);
	assert_int_equal(budgets2.restore_calls, 1);
	/* Restoring reads; it does not consume the file. */
	assert_true(exists(f->file));
	free(text);
	free(disk);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(s2);
}

/* A second write replaces the first whole, leaving no temp files. */
static void test_write_replaces_previous(void **state)
{
	struct fx *f = *state;
	struct counter c = {.value = 1};
	struct bl_snapshot *s = make_registry(f->state_dir);
	char *t1, *t2, *disk;

	add(s, "c", &c);
	t1 = save_to(s, f->state_dir, 1);
	c.value = 123456789;
	t2 = save_to(s, f->state_dir, 2);
	disk = read_bytes(f->file, NULL);
	assert_string_equal(disk, t2);
	assert_string_not_equal(t1, t2);
	assert_int_equal(count_temps(f->state_dir), 0);
	free(t1);
	free(t2);
	free(disk);
	bl_snapshot_destroy(s);
}

/* Missing parents are created, each with mode 0700. */
static void test_write_creates_missing_parents(void **state)
{
	struct fx *f = *state;
	char dir[PATH_LEN], file[PATH_LEN], err[512];
	struct stat st;

	pathf(dir, "%s/a/b/c", f->root);
	pathf(file, "%s/state.json", dir);
	assert_int_equal(bl_snapshot_write_file(dir, "{}", 2, err, sizeof err), 0);
	assert_true(exists(file));
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	pathf(dir, "%s/a", f->root);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_restore_without_file(void **state)
{
	struct fx *f = *state;
	struct counter c = {.value = 3};
	struct bl_snapshot *s = make_registry(f->state_dir);
	struct bl_snapshot_restore_report r;
	char deeper[PATH_LEN];
	struct bl_snapshot *s2;

	add(s, "c", &c);
	/* state_dir does not even exist yet: a first start. */
	assert_int_equal(bl_snapshot_restore(s, 10, &r), 0);
	assert_int_equal(r.found, 0);
	assert_int_equal(r.restored, 0);
	assert_int_equal(r.moved_aside, 0);
	assert_int_equal(r.written_at_ms, 0);
	assert_int_equal(c.restore_calls, 0);

	/* The directory exists but is empty. */
	assert_int_equal(mkdir(f->state_dir, 0700), 0);
	assert_int_equal(bl_snapshot_restore(s, 10, NULL), 0);
	assert_int_equal(c.restore_calls, 0);
	assert_int_equal(c.value, 3);

	pathf(deeper, "%s/missing/deeper", f->root);
	s2 = make_registry(deeper);
	assert_int_equal(bl_snapshot_restore(s2, 10, &r), 0);
	assert_int_equal(r.found, 0);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(s2);
}

/* ---- corrupt, truncated and newer files -------------------------------- */

struct bad_case {
	const char *what;  /* for failure messages */
	const char *bytes; /* file content; NULL = truncated real snapshot */
	size_t len;        /* bytes to write; 0 with bytes set = strlen */
	const char *tag;   /* expected reason in the aside name */
};

#define GOOD_HEAD "{\"format\":\"ballast-snapshot\","
#define GOOD_TAIL "\"components\":{\"c\":{\"value\":1}}}"

static const struct bad_case bad_cases[] = {
	{"garbage bytes", "\x00\x01\xfe\xff not json \x7f", 15, "corrupt"},
	{"empty file", "", 0, "corrupt"},
	{"truncated (partial write)", NULL, 0, "corrupt"},
	{"trailing garbage", GOOD_HEAD "\"version\":1," GOOD_TAIL "xyz", 0, "corrupt"},
	{"not an object", "[1,2,3]", 0, "corrupt"},
	{"a bare string", "\"ballast-snapshot\"", 0, "corrupt"},
	{"wrong format", "{\"format\":\"other\",\"version\":1," GOOD_TAIL, 0, "corrupt"},
	{"format missing", "{\"version\":1," GOOD_TAIL, 0, "corrupt"},
	{"format not a string", "{\"format\":7,\"version\":1," GOOD_TAIL, 0, "corrupt"},
	{"version missing", GOOD_HEAD GOOD_TAIL, 0, "corrupt"},
	{"version a string", GOOD_HEAD "\"version\":\"1\"," GOOD_TAIL, 0, "corrupt"},
	{"version zero", GOOD_HEAD "\"version\":0," GOOD_TAIL, 0, "corrupt"},
	{"version negative", GOOD_HEAD "\"version\":-3," GOOD_TAIL, 0, "corrupt"},
	{"version a real", GOOD_HEAD "\"version\":1.5," GOOD_TAIL, 0, "corrupt"},
	{"components missing", GOOD_HEAD "\"version\":1}", 0, "corrupt"},
	{"components not an object", GOOD_HEAD "\"version\":1,\"components\":[]}", 0, "corrupt"},
	{"duplicate keys", GOOD_HEAD "\"version\":1,\"version\":1," GOOD_TAIL, 0, "corrupt"},
	{"newer version", GOOD_HEAD "\"version\":2," GOOD_TAIL, 0, "newer"},
	{"much newer version", GOOD_HEAD "\"version\":99,\"whatever\":true}", 0, "newer"},
};

/* Each bad file is renamed to state.json.<tag>-<wall_ms> with its bytes
 * intact, restore returns 0 ("start clean") and no component is touched. */
static void test_bad_files_moved_aside(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *bc = &bad_cases[i];
		struct counter c = {.value = 99}, src = {.value = 1};
		struct bl_snapshot *s = make_registry(f->state_dir);
		struct bl_snapshot_restore_report r;
		int64_t wall_ms = 1700000000000 + (int64_t)i;
		char expect[PATH_LEN], *bytes, *moved;
		size_t len, moved_len;

		print_message("case: %s\n", bc->what);
		remove_tree(f->state_dir);
		if (bc->bytes) {
			bytes = malloc(bc->len ? bc->len : strlen(bc->bytes) + 1);
			assert_non_null(bytes);
			len = bc->len ? bc->len : strlen(bc->bytes);
			memcpy(bytes, bc->bytes, len);
			assert_int_equal(mkdir(f->state_dir, 0700), 0);
			write_bytes(f->file, bytes, len);
		} else {
			/* What a write that died half-way would leave, had it not
			 * gone through a temp file. */
			struct bl_snapshot *w = make_registry(f->state_dir);

			add(w, "c", &src);
			bytes = save_to(w, f->state_dir, 5);
			len = strlen(bytes) / 2;
			assert_int_equal(truncate(f->file, (off_t)len), 0);
			bl_snapshot_destroy(w);
		}

		add(s, "c", &c);
		assert_int_equal(bl_snapshot_restore(s, wall_ms, &r), 0);
		assert_int_equal(r.found, 1);
		assert_int_equal(r.moved_aside, 1);
		assert_int_equal(r.restored, 0);
		assert_int_equal(r.failed, 0);
		assert_true(r.reason[0] != '\0');
		pathf(expect, "%s.%s-%lld", f->file, bc->tag, (long long)wall_ms);
		assert_string_equal(r.aside_path, expect);

		assert_false(exists(f->file));
		moved = read_bytes(expect, &moved_len);
		assert_non_null(moved);
		assert_int_equal(moved_len, len);
		assert_memory_equal(moved, bytes, len);

		assert_int_equal(c.restore_calls, 0);
		assert_int_equal(c.value, 99);
		free(moved);
		free(bytes);
		bl_snapshot_destroy(s);
	}
}

/* The warn line names the file, the reason and where the file went. */
static void test_moved_aside_log_line(void **state)
{
	struct fx *f = *state;
	struct bl_snapshot *s = make_registry(f->state_dir);
	struct bl_snapshot_restore_report r;
	char log_path[PATH_LEN], want[PATH_LEN * 2], *log;
	int saved;

	assert_int_equal(mkdir(f->state_dir, 0700), 0);
	write_bytes(f->file, GOOD_HEAD "\"version\":3," GOOD_TAIL,
		    strlen(GOOD_HEAD "\"version\":3," GOOD_TAIL));
	pathf(log_path, "%s/log.txt", f->root);
	saved = capture_stderr(log_path);
	assert_int_equal(bl_snapshot_restore(s, 42, &r), 0);
	release_stderr(saved);

	log = read_bytes(log_path, NULL);
	assert_non_null(log);
	assert_non_null(strstr(log, "level=warn"));
	snprintf(want, sizeof want, "file=%s ", f->file);
	assert_non_null(strstr(log, want));
	snprintf(want, sizeof want, "moved_to=%s.newer-42", f->file);
	assert_non_null(strstr(log, want));
	assert_non_null(strstr(log, "reason=\"version 3 is newer"));
	assert_non_null(strstr(r.reason, "version 3 is newer"));
	free(log);
	bl_snapshot_destroy(s);
}

/* Two bad starts in the same millisecond keep both files. */
static void test_aside_name_never_overwritten(void **state)
{
	struct fx *f = *state;
	struct bl_snapshot *s = make_registry(f->state_dir);
	struct bl_snapshot_restore_report r;
	char first[PATH_LEN], second[PATH_LEN], *b1, *b2;

	assert_int_equal(mkdir(f->state_dir, 0700), 0);
	write_bytes(f->file, "first", 5);
	assert_int_equal(bl_snapshot_restore(s, 7, &r), 0);
	pathf(first, "%s.corrupt-7", f->file);
	assert_string_equal(r.aside_path, first);

	write_bytes(f->file, "second", 6);
	assert_int_equal(bl_snapshot_restore(s, 7, &r), 0);
	pathf(second, "%s.corrupt-7.1", f->file);
	assert_string_equal(r.aside_path, second);

	b1 = read_bytes(first, NULL);
	b2 = read_bytes(second, NULL);
	assert_string_equal(b1, "first");
	assert_string_equal(b2, "second");
	free(b1);
	free(b2);
	bl_snapshot_destroy(s);
}

/* state.json exists but cannot be read (here: it is a directory). That is
 * not corruption to move aside but an I/O problem to report. */
static void test_unreadable_file_is_eio(void **state)
{
	struct fx *f = *state;
	struct bl_snapshot *s = make_registry(f->state_dir);
	struct bl_snapshot_restore_report r;
	struct counter c = {.value = 1};

	add(s, "c", &c);
	assert_int_equal(mkdir(f->state_dir, 0700), 0);
	assert_int_equal(mkdir(f->file, 0700), 0);
	assert_int_equal(bl_snapshot_restore(s, 1, &r), BL_EIO);
	assert_int_equal(r.moved_aside, 0);
	assert_int_equal(c.restore_calls, 0);
	assert_true(exists(f->file));
	bl_snapshot_destroy(s);
}

/* ---- components -------------------------------------------------------- */

/* One component refusing its state, another finding it malformed: both are
 * counted as failed and left as they were; the others restore regardless of
 * registration order. */
static void test_failing_component_does_not_stop_others(void **state)
{
	struct fx *f = *state;
	struct counter a = {.value = 1}, b = {.value = 2}, c = {.value = 3};
	struct counter a2 = {.value = -1, .refuse = 1}, b2 = {0}, c2 = {.value = -3};
	struct bl_snapshot *s = make_registry(f->state_dir), *s2;
	struct bl_snapshot_restore_report r;
	char log_path[PATH_LEN], *text, *log;
	json_t *doc;
	int saved;

	add(s, "a", &a);
	add(s, "b", &b);
	add(s, "c", &c);
	text = save_to(s, f->state_dir, 9);
	free(text);
	/* Make c's part malformed, keeping the document itself valid. */
	doc = json_load_file(f->file, 0, NULL);
	assert_non_null(doc);
	assert_int_equal(json_object_set_new(json_object_get(doc, "components"), "c",
					     json_string("oops")), 0);
	assert_int_equal(json_dump_file(doc, f->file, JSON_COMPACT), 0);
	json_decref(doc);

	s2 = make_registry(f->state_dir);
	add(s2, "a", &a2);
	add(s2, "c", &c2);
	add(s2, "b", &b2);
	pathf(log_path, "%s/log.txt", f->root);
	saved = capture_stderr(log_path);
	assert_int_equal(bl_snapshot_restore(s2, 10, &r), 0);
	release_stderr(saved);

	assert_int_equal(r.found, 1);
	assert_int_equal(r.restored, 1);
	assert_int_equal(r.failed, 2);
	assert_int_equal(r.skipped, 0);
	assert_int_equal(r.moved_aside, 0);
	assert_int_equal(a2.restore_calls, 1);
	assert_int_equal(a2.value, -1);
	assert_int_equal(c2.restore_calls, 1);
	assert_int_equal(c2.value, -3);
	assert_int_equal(b2.value, 2);
	/* The file is fine as a whole: it stays where it is. */
	assert_true(exists(f->file));

	log = read_bytes(log_path, NULL);
	assert_non_null(log);
	assert_non_null(strstr(log, "component=a "));
	assert_non_null(strstr(log, "refusing on purpose"));
	assert_non_null(strstr(log, "component=c "));
	assert_non_null(strstr(log, "code=ECORRUPT"));
	free(log);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(s2);
}

/* State for a component nobody registered (removed from the config, say) is
 * skipped and logged at info; registered components missing from the file
 * are simply not called. */
static void test_unknown_component_skipped(void **state)
{
	struct fx *f = *state;
	struct counter ghost = {.value = 666}, known = {.value = 8};
	struct counter known2 = {0}, fresh = {.value = 4};
	struct bl_snapshot *s = make_registry(f->state_dir), *s2;
	struct bl_snapshot_restore_report r;
	char log_path[PATH_LEN], *text, *log;
	int saved;

	add(s, "ghost", &ghost);
	add(s, "known", &known);
	text = save_to(s, f->state_dir, 11);
	free(text);

	s2 = make_registry(f->state_dir);
	add(s2, "known", &known2);
	add(s2, "fresh", &fresh);
	pathf(log_path, "%s/log.txt", f->root);
	saved = capture_stderr(log_path);
	assert_int_equal(bl_snapshot_restore(s2, 12, &r), 0);
	release_stderr(saved);

	assert_int_equal(r.restored, 1);
	assert_int_equal(r.skipped, 1);
	assert_int_equal(r.failed, 0);
	assert_int_equal(known2.value, 8);
	assert_int_equal(fresh.restore_calls, 0);
	assert_int_equal(fresh.value, 4);
	log = read_bytes(log_path, NULL);
	assert_non_null(log);
	assert_non_null(strstr(log, "level=info"));
	assert_non_null(strstr(log, "component=ghost"));
	free(log);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(s2);
}

static void test_register_rules(void **state)
{
	struct fx *f = *state;
	struct counter first = {.value = 1}, second = {.value = 2};
	struct bl_snapshot *s = make_registry(f->state_dir);
	char *text = NULL;

	add(s, "budgets", &first);
	assert_int_equal(bl_snapshot_register(s, "budgets", counter_save, counter_restore,
					      &second), BL_EEXIST);
	assert_int_equal(bl_snapshot_register(s, "", counter_save, counter_restore, &second),
			 BL_EINVAL);
	assert_int_equal(bl_snapshot_register(s, "two words", counter_save, counter_restore,
					      &second), BL_EINVAL);
	assert_int_equal(bl_snapshot_register(s, "caf\xc3\xa9", counter_save, counter_restore,
					      &second), BL_EINVAL);
	assert_int_equal(bl_snapshot_register(s, NULL, counter_save, counter_restore, &second),
			 BL_EINVAL);
	assert_int_equal(bl_snapshot_register(s, "x", NULL, counter_restore, &second), BL_EINVAL);
	assert_int_equal(bl_snapshot_register(s, "x", counter_save, NULL, &second), BL_EINVAL);
	/* Punctuation that makes sensible names is fine, and so are many. */
	for (int i = 0; i < 40; i++) {
		char name[32];

		snprintf(name, sizeof name, "pool/claude:%d", i);
		add(s, name, &second);
	}

	/* The refused duplicate did not replace the first registration. */
	assert_int_equal(bl_snapshot_collect(s, 1, &text, NULL), 0);
	assert_non_null(strstr(text, "\"budgets\":{\"value\":1}"));
	assert_non_null(strstr(text, "\"pool/claude:39\":{\"value\":2}"));
	assert_int_equal(first.save_calls, 1);
	free(text);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(NULL);
	assert_int_equal(bl_snapshot_create("", &s), BL_EINVAL);
	assert_null(s);
}

/* ---- write failures ---------------------------------------------------- */

/* state_dir's parent is a regular file: nothing can be created. Root cannot
 * get around that, unlike a read-only mode. */
static void test_write_fails_when_parent_is_file(void **state)
{
	struct fx *f = *state;
	char blocker[PATH_LEN], dir[PATH_LEN], err[512] = "";

	pathf(blocker, "%s/blocker", f->root);
	write_bytes(blocker, "x", 1);
	pathf(dir, "%s/state", blocker);
	assert_int_equal(bl_snapshot_write_file(dir, "{}", 2, err, sizeof err), BL_EIO);
	assert_non_null(strstr(err, "create directory"));
	assert_non_null(strstr(err, dir));
	assert_non_null(strstr(err, strerror(ENOTDIR)));

	/* state_dir itself is a regular file. */
	err[0] = '\0';
	assert_int_equal(bl_snapshot_write_file(blocker, "{}", 2, err, sizeof err), BL_EIO);
	assert_non_null(strstr(err, strerror(ENOTDIR)));
	assert_int_equal(count_prefixed(f->root, "state"), 0);

	/* A tiny errcap still gets a NUL-terminated prefix, NULL none at all. */
	assert_int_equal(bl_snapshot_write_file(blocker, "{}", 2, err, 4), BL_EIO);
	assert_int_equal(strlen(err), 3);
	assert_int_equal(bl_snapshot_write_file(blocker, "{}", 2, NULL, 0), BL_EIO);
}

/* The rename step fails (state.json is a non-empty directory): the temp file
 * is removed and what stood at state.json is still there. */
static void test_write_fails_at_rename(void **state)
{
	struct fx *f = *state;
	char inner[PATH_LEN], err[512] = "";

	assert_int_equal(mkdir(f->state_dir, 0700), 0);
	assert_int_equal(mkdir(f->file, 0700), 0);
	pathf(inner, "%s/keep", f->file);
	write_bytes(inner, "k", 1);
	assert_int_equal(bl_snapshot_write_file(f->state_dir, "{}", 2, err, sizeof err), BL_EIO);
	assert_non_null(strstr(err, "rename"));
	assert_int_equal(count_temps(f->state_dir), 0);
	assert_true(exists(inner));
}

/* The write step fails part-way (RLIMIT_FSIZE makes write(2) stop short and
 * then say EFBIG, even for root): the previous snapshot is intact, no temp
 * file is left, and the next write works again. */
static void test_write_fails_keeps_previous(void **state)
{
	struct fx *f = *state;
	struct counter c = {.value = 1};
	struct bl_snapshot *s = make_registry(f->state_dir), *s2;
	struct bl_snapshot_restore_report r;
	struct counter c2 = {0};
	struct rlimit old, small;
	void (*old_handler)(int);
	char err[512] = "", *before, *after, *big;
	size_t big_len = 64 * 1024;

	add(s, "c", &c);
	before = save_to(s, f->state_dir, 1);

	big = malloc(big_len);
	assert_non_null(big);
	memset(big, ' ', big_len);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 1000;
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	assert_int_equal(bl_snapshot_write_file(f->state_dir, big, big_len, err, sizeof err),
			 BL_EIO);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);

	assert_true(strncmp(err, "write ", 6) == 0);
	assert_non_null(strstr(err, strerror(EFBIG)));
	assert_int_equal(count_temps(f->state_dir), 0);
	after = read_bytes(f->file, NULL);
	assert_string_equal(after, before);

	s2 = make_registry(f->state_dir);
	add(s2, "c", &c2);
	assert_int_equal(bl_snapshot_restore(s2, 2, &r), 0);
	assert_int_equal(r.restored, 1);
	assert_int_equal(c2.value, 1);

	/* With the limit gone the same write succeeds. */
	assert_int_equal(bl_snapshot_write_file(f->state_dir, big, big_len, err, sizeof err), 0);
	free(before);
	free(after);
	free(big);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(s2);
}

/* A temp file from an earlier write that died before its rename neither
 * breaks restore nor lingers. */
static void test_stray_temp_file_ignored(void **state)
{
	struct fx *f = *state;
	struct counter c = {.value = 31}, c2 = {0};
	struct bl_snapshot *s = make_registry(f->state_dir), *s2;
	struct bl_snapshot_restore_report r;
	char stray[PATH_LEN], *text;

	add(s, "c", &c);
	text = save_to(s, f->state_dir, 3);
	pathf(stray, "%s.tmp-12345-999", f->file);
	write_bytes(stray, "{\"format\":\"ballast-snap", 23);

	s2 = make_registry(f->state_dir);
	add(s2, "c", &c2);
	assert_int_equal(bl_snapshot_restore(s2, 4, &r), 0);
	assert_int_equal(r.moved_aside, 0);
	assert_int_equal(r.restored, 1);
	assert_int_equal(c2.value, 31);
	assert_false(exists(stray));
	assert_int_equal(count_prefixed(f->state_dir, ""), 3); /* ".", "..", state.json */

	/* Only a stray temp, no state.json: a clean start, litter removed. */
	assert_int_equal(unlink(f->file), 0);
	write_bytes(stray, "partial", 7);
	assert_int_equal(bl_snapshot_restore(s2, 5, &r), 0);
	assert_int_equal(r.found, 0);
	assert_false(exists(stray));
	free(text);
	bl_snapshot_destroy(s);
	bl_snapshot_destroy(s2);
}

/* ---- allocation failure ------------------------------------------------ */

static int alloc_countdown; /* jansson allocations left before one fails; <0: never */
static int alloc_failed;    /* set once the injected failure happened */

static void *failing_malloc(size_t size)
{
	if (alloc_countdown >= 0 && alloc_countdown-- == 0) {
		alloc_failed = 1;
		return NULL;
	}
	return malloc(size);
}

/* Fails jansson's 1st, 2nd, 3rd ... allocation of a collect and of a restore
 * (SQLite-style). Each run must end in 0 or BL_ENOMEM with nothing leaked
 * (AddressSanitizer checks at exit), and a restore short of memory must never
 * mistake a good file for a corrupt one and move it aside. */
static void test_allocation_failures(void **state)
{
	struct fx *f = *state;
	struct counter a = {.value = 1}, b = {.value = 2};
	struct bl_snapshot *s = make_registry(f->state_dir);
	struct bl_snapshot_restore_report r;
	char *good, *text;
	int n, rc;

	add(s, "a", &a);
	add(s, "b", &b);
	good = save_to(s, f->state_dir, 1);
	for (n = 0; n < 1000; n++) {
		text = NULL;
		alloc_failed = 0;
		alloc_countdown = n;
		json_set_alloc_funcs(failing_malloc, free);
		rc = bl_snapshot_collect(s, 1, &text, NULL);
		json_set_alloc_funcs(malloc, free);
		if (rc == 0) {
			assert_non_null(text);
			free(text);
		} else {
			assert_int_equal(rc, BL_ENOMEM);
			assert_null(text);
		}
		if (!alloc_failed)
			break;
	}
	assert_true(n > 3 && n < 1000);

	for (n = 0; n < 1000; n++) {
		a.value = b.value = 0;
		alloc_failed = 0;
		alloc_countdown = n;
		json_set_alloc_funcs(failing_malloc, free);
		rc = bl_snapshot_restore(s, 2, &r);
		json_set_alloc_funcs(malloc, free);
		assert_true(rc == 0 || rc == BL_ENOMEM);
		assert_int_equal(r.moved_aside, 0);
		assert_true(exists(f->file));
		if (!alloc_failed)
			break;
	}
	assert_true(n < 1000);
	assert_int_equal(rc, 0);
	assert_int_equal(a.value, 1);
	assert_int_equal(b.value, 2);
	free(good);
	bl_snapshot_destroy(s);
}

/* A split component: capture copies on the loop, render builds the JSON
 * (elsewhere), discard frees every capture exactly once, rendered or not. */
struct split {
	json_int_t value;
	int captures, renders, discards;
	bool capture_null;
	bool capture_fail;
};

static void *split_capture(void *ctx)
{
	struct split *sp = ctx;
	json_int_t *copy;

	sp->captures++;
	if (sp->capture_null)
		return NULL;
	if (sp->capture_fail)
		return BL_SNAPSHOT_CAPTURE_FAILED;
	copy = malloc(sizeof *copy + sizeof sp);
	assert_non_null(copy);
	copy[0] = sp->value;
	memcpy(copy + 1, &sp, sizeof sp);
	return copy;
}

static json_t *split_render(void *capture)
{
	json_int_t *copy = capture;
	struct split *sp;

	memcpy(&sp, copy + 1, sizeof sp);
	sp->renders++;
	return json_pack("{s:I}", "value", copy[0]);
}

static void split_discard(void *capture)
{
	json_int_t *copy = capture;
	struct split *sp;

	memcpy(&sp, copy + 1, sizeof sp);
	sp->discards++;
	free(copy);
}

static void test_split_component(void **state)
{
	struct fx *f = *state;
	struct counter a = {.value = 1};
	struct split b = {.value = 2};
	struct bl_snapshot *s = make_registry(f->state_dir);
	struct bl_snapshot_capture *c = NULL;
	char *text = NULL;

	add(s, "a", &a);
	assert_int_equal(bl_snapshot_register_split(s, "b", split_capture, split_render,
						    split_discard, counter_restore, &b),
			 0);
	assert_int_equal(bl_snapshot_register_split(s, "c", split_capture, NULL, split_discard,
						    counter_restore, &b),
			 BL_EINVAL);
	assert_int_equal(bl_snapshot_register_split(s, "b", split_capture, split_render,
						    split_discard, counter_restore, &b),
			 BL_EEXIST);
	/* The state is taken at capture: a change before the render is not in it. */
	assert_int_equal(bl_snapshot_capture(s, 1234, &c), 0);
	b.value = 99;
	assert_int_equal(bl_snapshot_render(c, &text, NULL), 0);
	assert_int_equal(b.discards, 0); /* the capture stays until freed */
	bl_snapshot_capture_free(c);
	assert_string_equal(text, "{\"ballast_version\":\"" BL_VERSION "\","
				  "\"components\":{\"a\":{\"value\":1},\"b\":{\"value\":2}},"
				  "\"format\":\"ballast-snapshot\",\"version\":1,"
				  "\"written_at_ms\":1234}");
	free(text);
	assert_int_equal(b.captures, 1);
	assert_int_equal(b.renders, 1);
	assert_int_equal(b.discards, 1);
	/* A capture never rendered is discarded all the same. */
	assert_int_equal(bl_snapshot_capture(s, 1, &c), 0);
	bl_snapshot_capture_free(c);
	assert_int_equal(b.renders, 1);
	assert_int_equal(b.discards, 2);
	/* NULL leaves the component out; collect does all three in one go. */
	b.capture_null = true;
	assert_int_equal(bl_snapshot_collect(s, 5, &text, NULL), 0);
	assert_null(strstr(text, "\"b\""));
	free(text);
	b.capture_null = false;
	assert_int_equal(bl_snapshot_collect(s, 5, &text, NULL), 0);
	assert_non_null(strstr(text, "\"b\":{\"value\":99}"));
	free(text);
	assert_int_equal(b.discards, 3);
	/* A capture that could not be made: no snapshot at all (one without b
	 * would replace the last file that has it), and nothing leaks. */
	b.capture_fail = true;
	c = (struct bl_snapshot_capture *)&b; /* must be reset */
	assert_int_equal(bl_snapshot_capture(s, 6, &c), BL_ENOMEM);
	assert_null(c);
	text = (char *)&b;
	assert_int_equal(bl_snapshot_collect(s, 6, &text, NULL), BL_ENOMEM);
	assert_null(text);
	assert_int_equal(b.discards, 3);
	bl_snapshot_destroy(s);

	/* A required plain component whose save fails: no snapshot either. */
	s = make_registry(f->state_dir);
	assert_int_equal(bl_snapshot_register_required(s, "r", counter_save, counter_restore, &a), 0);
	assert_int_equal(bl_snapshot_collect(s, 7, &text, NULL), 0);
	free(text);
	a.save_null = 1;
	assert_int_equal(bl_snapshot_collect(s, 7, &text, NULL), BL_ENOMEM);
	assert_null(text);
	bl_snapshot_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_collect_exact_and_deterministic),
		T(test_split_component),
		T(test_collect_save_returns_null),
		T(test_round_trip_two_components),
		T(test_write_replaces_previous),
		T(test_write_creates_missing_parents),
		T(test_restore_without_file),
		T(test_bad_files_moved_aside),
		T(test_moved_aside_log_line),
		T(test_aside_name_never_overwritten),
		T(test_unreadable_file_is_eio),
		T(test_failing_component_does_not_stop_others),
		T(test_unknown_component_skipped),
		T(test_register_rules),
		T(test_write_fails_when_parent_is_file),
		T(test_write_fails_at_rename),
		T(test_write_fails_keeps_previous),
		T(test_stray_temp_file_ignored),
		T(test_allocation_failures),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
