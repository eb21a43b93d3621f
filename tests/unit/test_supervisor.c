/* The local supervisor and the exec actuator, with real child processes on a
 * real libuv loop, and the /proc accounting they rely on.
 *
 * These tests cannot advance time by hand: the thing under test is how
 * processes, signals and timers meet. So they wait for events (never for a
 * fixed time, except to show that something has NOT happened yet), check
 * order and counts rather than durations, and take only lower bounds on
 * timing, which a loaded machine cannot break: a timer never fires early.
 * The workers are small /bin/sh scripts; the supervisor itself never uses a
 * shell, it runs argv as given.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "ballast/error.h"
#include "exec_actuator.h"
#include "log.h"
#include "procstat.h"
#include "supervisor.h"

#define MS BL_NS_PER_MS
#define WAIT_MS 10000 /* the most any wait may take before the test fails */
#define MAX_EVENTS 512

/* ---- harness ------------------------------------------------------------------- */

struct ev {
	enum bl_supervisor_event_kind kind;
	char id[BL_SUPERVISOR_ID_MAX];
	int pid;
	bl_time_ns at_ns;
	int64_t exit_status;
	int term_signal;
	int error;
	bool expected;
	bool will_restart;
	int64_t restart_in_ns;
	uint32_t restarts;
	uint32_t leases;
};

struct fixture {
	uv_loop_t loop;
	struct bl_supervisor *sup;
	struct ev evs[MAX_EVENTS];
	size_t n_evs;
	bool done;
	char dir[64];
	char file[128];
};

/* The fixture of the running test, for the teardown. */
static struct fixture *current;

/* After a failed assertion the test is gone but its workers are not: kill
 * every group it started so none outlives the test run. */
static int kill_leftovers(void **state)
{
	struct bl_supervisor_worker ws[64];
	size_t n;

	(void)state;
	if (current && current->sup) {
		n = bl_supervisor_workers(current->sup, ws, 64);
		for (size_t i = 0; i < n && i < 64; i++)
			if (ws[i].pid > 0)
				kill(-ws[i].pid, SIGKILL);
	}
	current = NULL;
	return 0;
}

static void on_event(void *ctx, const struct bl_supervisor_event *e)
{
	struct fixture *f = ctx;
	struct ev *r;

	if (f->n_evs == MAX_EVENTS)
		return;
	r = &f->evs[f->n_evs++];
	r->kind = e->kind;
	snprintf(r->id, sizeof r->id, "%s", e->id);
	r->pid = e->pid;
	r->at_ns = e->at_ns;
	r->exit_status = e->exit_status;
	r->term_signal = e->term_signal;
	r->error = e->error;
	r->expected = e->expected;
	r->will_restart = e->will_restart;
	r->restart_in_ns = e->restart_in_ns;
	r->restarts = e->restarts;
	r->leases = e->leases;
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

static void close_cb_noop(uv_handle_t *h)
{
	(void)h;
}

/* Runs the loop until pred(ctx) holds or timeout_ms passes (a 5 ms ticker
 * keeps the loop turning). Returns whether pred held. */
static bool run_until(uv_loop_t *loop, bool (*pred)(void *), void *ctx, int timeout_ms)
{
	uv_timer_t t;
	uint64_t end;
	bool ok;

	uv_update_time(loop);
	end = uv_now(loop) + (uint64_t)timeout_ms;
	uv_timer_init(loop, &t);
	uv_timer_start(&t, tick, 5, 5);
	while (!(ok = pred(ctx)) && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, close_cb_noop);
	uv_run(loop, UV_RUN_NOWAIT);
	return ok;
}

static bool never(void *ctx)
{
	(void)ctx;
	return false;
}

/* Runs the loop for ms milliseconds. */
static void run_for(uv_loop_t *loop, int ms)
{
	run_until(loop, never, NULL, ms);
}

static size_t count_events(const struct fixture *f, enum bl_supervisor_event_kind kind,
			   const char *id)
{
	size_t n = 0;

	for (size_t i = 0; i < f->n_evs; i++)
		if (f->evs[i].kind == kind && (!id || strcmp(f->evs[i].id, id) == 0))
			n++;
	return n;
}

/* The k-th (0-based) event of kind, or NULL. */
static const struct ev *nth_event(const struct fixture *f, enum bl_supervisor_event_kind kind,
				  size_t k)
{
	for (size_t i = 0; i < f->n_evs; i++)
		if (f->evs[i].kind == kind && k-- == 0)
			return &f->evs[i];
	return NULL;
}

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof *f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	snprintf(f->dir, sizeof f->dir, "/tmp/bl-sup-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->file, sizeof f->file, "%s/out", f->dir);
	current = f;
}

static void fixture_cleanup(struct fixture *f)
{
	unlink(f->file);
	assert_int_equal(rmdir(f->dir), 0);
	/* every handle closed, nothing left behind */
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void config_for(struct bl_supervisor_config *cfg, struct fixture *f,
		       const char *const *argv)
{
	bl_supervisor_config_defaults(cfg);
	cfg->argv = argv;
	cfg->ballast_url = "http://127.0.0.1:7070";
	cfg->max_replicas = 20;
	cfg->grace_ns = 5000 * MS;
	cfg->startup_ns = 0;
	cfg->backoff_base_ns = 50 * MS;
	cfg->backoff_max_ns = 1000 * MS;
	cfg->sample_interval_ns = 0;
	cfg->history = 32;
	cfg->on_event = on_event;
	cfg->ctx = f;
}

static void start(struct fixture *f, const struct bl_supervisor_config *cfg)
{
	char err[256] = "";

	assert_int_equal(bl_supervisor_create(&f->loop, cfg, &f->sup, err, sizeof err), 0);
}

static void on_done(void *ctx)
{
	((struct fixture *)ctx)->done = true;
}

static bool is_done(void *ctx)
{
	return ((struct fixture *)ctx)->done;
}

struct groups {
	const int *pgids;
	size_t n;
};

/* Whether no process of the given groups is alive. */
static bool groups_gone(void *ctx)
{
	const struct groups *g = ctx;
	struct bl_proc_stat *ps;
	size_t n;
	bool gone = true;

	assert_int_equal(bl_proc_read_all("/proc", &ps, &n), 0);
	for (size_t i = 0; i < n && gone; i++)
		for (size_t k = 0; k < g->n; k++)
			if (ps[i].pgrp == g->pgids[k] && ps[i].state != 'Z')
				gone = false;
	free(ps);
	return gone;
}

/* Shuts the supervisor down, waits for it and checks no process is left. */
static void stop(struct fixture *f, int64_t grace_ns)
{
	int pids[64];
	size_t n = 0;
	struct bl_supervisor_worker ws[64];
	size_t nw = bl_supervisor_workers(f->sup, ws, 64);
	struct groups g = {pids, 0};

	for (size_t i = 0; i < nw && i < 64; i++)
		if (ws[i].pid > 0)
			pids[n++] = ws[i].pid;
	bl_supervisor_shutdown(f->sup, grace_ns, on_done, f);
	assert_int_equal(bl_supervisor_scale(f->sup, 1), BL_EINVAL);
	assert_true(run_until(&f->loop, is_done, f, WAIT_MS));
	bl_supervisor_destroy(f->sup);
	f->sup = NULL;
	/* no member of any worker's group survives (a zombie waiting for init
	 * to reap it is dead already) */
	g.n = n;
	assert_true(run_until(&f->loop, groups_gone, &g, WAIT_MS));
}

static int live_state(struct fixture *f, const char *id)
{
	struct bl_supervisor_worker w;

	if (bl_supervisor_worker(f->sup, id, &w) != 0)
		return -1;
	return (int)w.state;
}

static int pid_of(struct fixture *f, const char *id)
{
	struct bl_supervisor_worker w;

	assert_int_equal(bl_supervisor_worker(f->sup, id, &w), 0);
	return w.pid;
}

struct count_wait {
	struct fixture *f;
	enum bl_supervisor_event_kind kind;
	size_t n;
};

static bool have_events(void *ctx)
{
	struct count_wait *c = ctx;

	return count_events(c->f, c->kind, NULL) >= c->n;
}

static void wait_events(struct fixture *f, enum bl_supervisor_event_kind kind, size_t n)
{
	struct count_wait c = {f, kind, n};

	assert_true(run_until(&f->loop, have_events, &c, WAIT_MS));
}

static size_t file_lines(const char *path)
{
	FILE *fp = fopen(path, "r");
	size_t n = 0;
	int ch;

	if (!fp)
		return 0;
	while ((ch = fgetc(fp)) != EOF)
		n += ch == '\n';
	fclose(fp);
	return n;
}

struct lines_wait {
	const char *path;
	size_t n;
};

static bool have_lines(void *ctx)
{
	struct lines_wait *l = ctx;

	return file_lines(l->path) >= l->n;
}

static bool file_has_line(const char *path, const char *line)
{
	FILE *fp = fopen(path, "r");
	char buf[512];
	bool found = false;

	if (!fp)
		return false;
	while (!found && fgets(buf, sizeof buf, fp)) {
		buf[strcspn(buf, "\n")] = '\0';
		found = strcmp(buf, line) == 0;
	}
	fclose(fp);
	return found;
}

/* ---- supervisor: configuration --------------------------------------------------- */

static void test_create_validates(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const char *argv[] = {"sleep", "1000", NULL};
	const char *bad_env[] = {"BALLAST_WORKER_ID=x", NULL};
	const char *no_eq[] = {"FOO", NULL};
	const char *empty_argv[] = {NULL};
	struct bl_supervisor *sup = NULL;
	char err[256];

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	cfg.argv = empty_argv;
	assert_int_equal(bl_supervisor_create(&f.loop, &cfg, &sup, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "command"));
	config_for(&cfg, &f, argv);
	cfg.ballast_url = NULL;
	assert_int_equal(bl_supervisor_create(&f.loop, &cfg, &sup, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "ballast_url"));
	config_for(&cfg, &f, argv);
	cfg.min_replicas = 30;
	assert_int_equal(bl_supervisor_create(&f.loop, &cfg, &sup, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "min_replicas"));
	config_for(&cfg, &f, argv);
	cfg.env = bad_env;
	assert_int_equal(bl_supervisor_create(&f.loop, &cfg, &sup, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "BALLAST_WORKER_ID"));
	config_for(&cfg, &f, argv);
	cfg.env = no_eq;
	assert_int_equal(bl_supervisor_create(&f.loop, &cfg, &sup, err, sizeof err), BL_EINVAL);
	config_for(&cfg, &f, argv);
	cfg.grace_ns = -1;
	assert_int_equal(bl_supervisor_create(&f.loop, &cfg, &sup, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "grace"));
	config_for(&cfg, &f, argv);
	cfg.backoff_max_ns = cfg.backoff_base_ns - 1;
	assert_int_equal(bl_supervisor_create(&f.loop, &cfg, &sup, err, sizeof err), BL_EINVAL);
	assert_null(sup);
	bl_supervisor_destroy(NULL);
	fixture_cleanup(&f);
}

/* ---- supervisor: scaling ------------------------------------------------------------- */

static void test_scale_up_and_down(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const char *env[] = {"BL_TEST_EXTRA=extra", NULL};
	const char *argv[] = {"/bin/sh", "-c",
			      "echo \"$BALLAST_WORKER_ID $BALLAST_URL $BL_TEST_EXTRA\" >> \"$0\"; "
			      "exec sleep 1000", NULL, NULL};
	struct bl_supervisor_stats st;
	struct bl_supervisor_worker ws[16];
	struct lines_wait lw;
	int pids[9] = {0};
	char id[16], line[128];

	(void)state;
	fixture_init(&f);
	argv[3] = f.file;
	config_for(&cfg, &f, argv);
	cfg.env = env;
	cfg.max_replicas = 8;
	cfg.startup_ns = 100 * MS;
	start(&f, &cfg);

	/* nothing runs before the first scale */
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.current, 0);

	assert_int_equal(bl_supervisor_scale(f.sup, 5), 0);
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.desired, 5);
	assert_int_equal(st.starting, 5); /* spawned at once, running after startup */
	for (int i = 1; i <= 5; i++) {
		snprintf(id, sizeof id, "w-%d", i);
		pids[i] = pid_of(&f, id);
		assert_true(pids[i] > 0);
		assert_int_equal(kill(pids[i], 0), 0);
		/* each worker leads a process group (and session) of its own */
		assert_int_equal(getpgid(pids[i]), pids[i]);
		assert_int_equal(getsid(pids[i]), pids[i]);
		for (int j = 1; j < i; j++)
			assert_int_not_equal(pids[i], pids[j]);
	}
	lw = (struct lines_wait){f.file, 5};
	assert_true(run_until(&f.loop, have_lines, &lw, WAIT_MS));
	for (int i = 1; i <= 5; i++) {
		snprintf(line, sizeof line, "w-%d http://127.0.0.1:7070 extra", i);
		assert_true(file_has_line(f.file, line));
	}
	wait_events(&f, BL_SUPERVISOR_EV_RUNNING, 5);
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.running, 5);
	assert_int_equal(st.current, 5);

	/* up: asking for more than max_replicas gets max_replicas */
	assert_int_equal(bl_supervisor_scale(f.sup, 50), 0);
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.desired, 8);
	assert_int_equal(st.current, 8);
	for (int i = 6; i <= 8; i++) {
		snprintf(id, sizeof id, "w-%d", i);
		pids[i] = pid_of(&f, id);
		assert_int_equal(getpgid(pids[i]), pids[i]);
	}
	lw.n = 8;
	assert_true(run_until(&f.loop, have_lines, &lw, WAIT_MS));

	/* down: all idle, so the newest go, SIGTERM ends them */
	assert_int_equal(bl_supervisor_scale(f.sup, 5), 0);
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.desired, 5);
	assert_int_equal(st.stopping, 3);
	assert_int_equal(st.current, 5);
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 0)->id, "w-8");
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 1)->id, "w-7");
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 2)->id, "w-6");
	wait_events(&f, BL_SUPERVISOR_EV_REMOVED, 3);
	for (size_t k = 0; k < 3; k++) {
		const struct ev *e = nth_event(&f, BL_SUPERVISOR_EV_EXITED, k);

		assert_non_null(e);
		assert_true(e->expected);
		assert_false(e->will_restart);
		assert_int_equal(e->term_signal, SIGTERM);
	}
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_KILLED, NULL), 0);
	for (int i = 6; i <= 8; i++) {
		errno = 0;
		assert_int_equal(kill(pids[i], 0), -1);
		assert_int_equal(errno, ESRCH);
	}
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.current, 5);
	assert_int_equal(st.stopping, 0);
	assert_int_equal(st.spawns, 8);
	assert_int_equal(st.crashes, 0);
	/* the five live ones in id order, then the history (in the order
	 * they went, which is up to the kernel) */
	assert_int_equal(bl_supervisor_workers(f.sup, ws, 16), 8);
	assert_string_equal(ws[0].id, "w-1");
	assert_string_equal(ws[4].id, "w-5");
	for (int i = 5; i < 8; i++) {
		assert_int_equal(ws[i].state, BL_WORKER_EXITED);
		assert_int_equal(ws[i].pid, 0);
		assert_int_equal(ws[i].last_term_signal, SIGTERM);
		assert_true(strcmp(ws[i].id, "w-6") == 0 || strcmp(ws[i].id, "w-7") == 0 ||
			    strcmp(ws[i].id, "w-8") == 0);
	}
	assert_string_not_equal(ws[5].id, ws[6].id);
	assert_string_not_equal(ws[6].id, ws[7].id);
	assert_string_not_equal(ws[5].id, ws[7].id);

	/* a new worker gets a new id: ids are never reused */
	assert_int_equal(bl_supervisor_scale(f.sup, 6), 0);
	assert_int_equal(live_state(&f, "w-9"), BL_WORKER_STARTING);
	assert_int_equal(live_state(&f, "w-8"), -1);

	stop(&f, -1);
	fixture_cleanup(&f);
}

/* ---- supervisor: restarts ------------------------------------------------------------ */

static void test_crash_restarts_with_backoff(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const char *argv[] = {"/bin/sh", "-c", "exit 3", NULL};
	const int64_t want_ms[] = {40, 80, 160, 200, 200, 200};
	struct bl_supervisor_worker w;
	struct bl_supervisor_stats st;

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	cfg.backoff_base_ns = 40 * MS;
	cfg.backoff_max_ns = 200 * MS;
	cfg.backoff_reset_ns = 10000 * MS; /* these runs are all short */
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 1), 0);
	wait_events(&f, BL_SUPERVISOR_EV_EXITED, 6);

	for (size_t k = 0; k < 6; k++) {
		const struct ev *ex = nth_event(&f, BL_SUPERVISOR_EV_EXITED, k);
		const struct ev *st0 = nth_event(&f, BL_SUPERVISOR_EV_STARTED, k);
		const struct ev *st1 = nth_event(&f, BL_SUPERVISOR_EV_STARTED, k + 1);

		assert_string_equal(ex->id, "w-1"); /* the same worker, restarted */
		assert_int_equal(ex->exit_status, 3);
		assert_int_equal(ex->term_signal, 0);
		assert_false(ex->expected);
		assert_true(ex->will_restart);
		/* doubling from the base, capped at the max */
		assert_int_equal(ex->restart_in_ns, want_ms[k] * MS);
		assert_int_equal(st0->restarts, k);
		assert_true(st0->at_ns <= ex->at_ns);
		/* a timer never fires early (1 ms: the loop clock's resolution) */
		if (st1)
			assert_true(st1->at_ns - ex->at_ns >= (want_ms[k] - 1) * MS);
	}
	assert_int_equal(bl_supervisor_worker(f.sup, "w-1", &w), 0);
	assert_true(w.restarts >= 5);
	assert_true(w.has_exit);
	assert_int_equal(w.last_exit_status, 3);
	bl_supervisor_stats(f.sup, &st);
	assert_true(st.crashes >= 6);
	assert_int_equal(st.desired, 1);
	stop(&f, -1);
	/* stopped while waiting to restart: it just goes */
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_KILLED, NULL), 0);
	fixture_cleanup(&f);
}

static void test_backoff_resets_after_a_long_run(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const char *argv[] = {"/bin/sh", "-c", "sleep 0.2; exit 1", NULL};

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	cfg.backoff_base_ns = 30 * MS;
	cfg.backoff_reset_ns = 100 * MS; /* every run lasts longer than this */
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 1), 0);
	wait_events(&f, BL_SUPERVISOR_EV_EXITED, 3);
	for (size_t k = 0; k < 3; k++)
		assert_int_equal(nth_event(&f, BL_SUPERVISOR_EV_EXITED, k)->restart_in_ns, 30 * MS);
	stop(&f, -1);
	fixture_cleanup(&f);
}

static void test_spawn_failure_backs_off(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const char *argv[] = {"/nonexistent/ballast-worker", NULL};
	struct bl_supervisor_worker w;
	struct bl_supervisor_stats st;
	const struct ev *e0, *e1;

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	cfg.backoff_base_ns = 20 * MS;
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 1), 0);
	/* the first failure is known at once */
	assert_int_equal(live_state(&f, "w-1"), BL_WORKER_BACKOFF);
	wait_events(&f, BL_SUPERVISOR_EV_SPAWN_FAILED, 3);
	e0 = nth_event(&f, BL_SUPERVISOR_EV_SPAWN_FAILED, 0);
	e1 = nth_event(&f, BL_SUPERVISOR_EV_SPAWN_FAILED, 1);
	assert_int_equal(e0->error, UV_ENOENT);
	assert_int_equal(e0->restart_in_ns, 20 * MS);
	assert_int_equal(e1->restart_in_ns, 40 * MS);
	assert_true(e1->at_ns - e0->at_ns >= 19 * MS);
	assert_int_equal(bl_supervisor_worker(f.sup, "w-1", &w), 0);
	assert_int_equal(w.last_spawn_error, UV_ENOENT);
	assert_int_equal(w.pid, 0);
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.current, 0);
	assert_true(st.spawn_failures >= 3);
	assert_int_equal(st.spawns, 0);
	stop(&f, -1);
	fixture_cleanup(&f);
}

/* ---- supervisor: what an earlier daemon left behind ---------------------------------- */

/* A process leading a group of its own, as a worker does; ignore_term makes
 * it outlast SIGTERM. Returns its pid. */
static pid_t start_orphan(bool ignore_term)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		setsid();
		if (ignore_term)
			signal(SIGTERM, SIG_IGN);
		execlp("sleep", "sleep", "1000", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static struct bl_supervisor_identity identity_of(pid_t pid)
{
	struct bl_proc_stat st;

	/* the child may not have called setsid yet: wait until it leads its group */
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(bl_proc_stat_read("/proc", pid, &st), 0);
		if (st.pgrp == pid)
			break;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	assert_int_equal(st.pgrp, pid);
	return (struct bl_supervisor_identity){pid, st.start_ticks};
}

static void test_orphans_stopped_and_ids_continue(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const char *argv[] = {"sleep", "1000", NULL};
	pid_t soft = start_orphan(false), hard = start_orphan(true), other = start_orphan(false);
	struct bl_supervisor_identity ids[4], mine[4];
	struct bl_supervisor_stats st;
	struct bl_supervisor_worker w;
	int status;

	(void)state;
	ids[0] = identity_of(soft);
	ids[1] = identity_of(hard);
	/* the pid of a process that is not the one the snapshot knew */
	ids[2] = identity_of(other);
	ids[2].start_ticks += 1;
	ids[3] = (struct bl_supervisor_identity){0, 5}; /* nonsense is ignored */
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	cfg.grace_ns = 300 * MS;
	cfg.orphans = ids;
	cfg.n_orphans = 4;
	cfg.first_seq = 7;
	start(&f, &cfg);
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.orphans_stopped, 2);
	/* SIGTERM at once: the first goes */
	assert_int_equal(waitpid(soft, &status, 0), soft);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	/* the one ignoring it gets SIGKILL after the grace */
	run_for(&f.loop, 150);
	assert_int_equal(waitpid(hard, &status, WNOHANG), 0);
	run_for(&f.loop, 400);
	assert_int_equal(waitpid(hard, &status, 0), hard);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* the stranger is untouched */
	assert_int_equal(waitpid(other, &status, WNOHANG), 0);
	kill(other, SIGKILL);
	assert_int_equal(waitpid(other, &status, 0), other);
	/* new workers are numbered after the old ones, and known by pid and start */
	assert_int_equal(bl_supervisor_next_seq(f.sup), 7);
	assert_int_equal(bl_supervisor_scale(f.sup, 2), 0);
	assert_int_equal(bl_supervisor_worker(f.sup, "w-7", &w), 0);
	assert_int_equal(bl_supervisor_worker(f.sup, "w-8", &w), 0);
	assert_int_equal(bl_supervisor_next_seq(f.sup), 9);
	assert_int_equal(bl_supervisor_identities(f.sup, mine, 4), 2);
	assert_int_equal(mine[1].pid, w.pid);
	assert_int_equal(mine[1].start_ticks, identity_of(w.pid).start_ticks);
	stop(&f, -1);
	fixture_cleanup(&f);
}

/* ---- supervisor: stopping ----------------------------------------------------------- */

/* Ignores SIGTERM, and so does everything it execs. */
static const char *const stubborn_argv[] = {"/bin/sh", "-c", "trap '' TERM; exec sleep 1000",
					    NULL};

static void test_grace_then_sigkill(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	struct bl_supervisor_worker w;
	struct bl_supervisor_stats st;
	const struct ev *stopping, *killed, *exited;
	int pid;

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, (const char *const *)stubborn_argv);
	cfg.grace_ns = 300 * MS;
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 1), 0);
	pid = pid_of(&f, "w-1");
	run_for(&f.loop, 50); /* let the trap be set */
	assert_int_equal(bl_supervisor_scale(f.sup, 0), 0);
	assert_int_equal(bl_supervisor_worker(f.sup, "w-1", &w), 0);
	assert_int_equal(w.state, BL_WORKER_STOPPING);
	assert_true(w.until_ns > 0);

	/* it shrugs off SIGTERM, and nothing kills it before the grace ends */
	run_for(&f.loop, 100);
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(live_state(&f, "w-1"), BL_WORKER_STOPPING);
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_KILLED, NULL), 0);

	wait_events(&f, BL_SUPERVISOR_EV_REMOVED, 1);
	stopping = nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 0);
	killed = nth_event(&f, BL_SUPERVISOR_EV_KILLED, 0);
	exited = nth_event(&f, BL_SUPERVISOR_EV_EXITED, 0);
	assert_non_null(killed);
	assert_true(killed->at_ns - stopping->at_ns >= 299 * MS);
	assert_int_equal(exited->term_signal, SIGKILL);
	assert_true(exited->expected);
	bl_supervisor_stats(f.sup, &st);
	assert_int_equal(st.kills, 1);
	assert_int_equal(st.current, 0);
	stop(&f, -1);
	fixture_cleanup(&f);
}

static void test_least_busy_stop_first(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const char *argv[] = {"/bin/sh", "-c", "exec sleep 1000", NULL};
	const uint32_t leases[] = {0, 3, 0, 1, 0, 2}; /* w-1 .. w-6 */
	char id[16];

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 6), 0);
	for (int i = 0; i < 6; i++) {
		snprintf(id, sizeof id, "w-%d", i + 1);
		assert_int_equal(bl_supervisor_set_busy(f.sup, id, leases[i]), 0);
	}
	assert_int_equal(bl_supervisor_set_busy(f.sup, "w-99", 1), BL_ENOENT);

	/* idle ones first, newest first among them */
	assert_int_equal(bl_supervisor_scale(f.sup, 3), 0);
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_STOPPING, NULL), 3);
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 0)->id, "w-5");
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 1)->id, "w-3");
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 2)->id, "w-1");
	/* then the least busy */
	assert_int_equal(bl_supervisor_scale(f.sup, 1), 0);
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 3)->id, "w-4");
	assert_int_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 3)->leases, 1);
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 4)->id, "w-6");
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_STOPPING, NULL), 5);
	wait_events(&f, BL_SUPERVISOR_EV_REMOVED, 5);
	assert_int_equal(live_state(&f, "w-2"), BL_WORKER_RUNNING);
	stop(&f, -1);
	fixture_cleanup(&f);
}

static void test_waiting_to_restart_goes_first(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	/* w-2 crashes and waits 10 s to restart; the others run */
	const char *argv[] = {"/bin/sh", "-c",
			      "case $BALLAST_WORKER_ID in w-2) exit 1;; esac; exec sleep 1000", NULL};

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	cfg.backoff_base_ns = 10000 * MS;
	cfg.backoff_max_ns = 10000 * MS;
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 3), 0);
	wait_events(&f, BL_SUPERVISOR_EV_EXITED, 1);
	assert_int_equal(live_state(&f, "w-2"), BL_WORKER_BACKOFF);
	assert_int_equal(bl_supervisor_scale(f.sup, 2), 0);
	/* no process to stop: it is simply removed, and w-3 (newest) stays */
	wait_events(&f, BL_SUPERVISOR_EV_REMOVED, 1);
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_REMOVED, 0)->id, "w-2");
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_STOPPING, NULL), 0);
	assert_int_equal(live_state(&f, "w-3"), BL_WORKER_RUNNING);
	stop(&f, -1);
	fixture_cleanup(&f);
}

static void test_lease_holder_not_killed_before_grace(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	const struct ev *stopping, *killed;
	int pid1;

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, (const char *const *)stubborn_argv);
	cfg.grace_ns = 500 * MS;
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 2), 0);
	pid1 = pid_of(&f, "w-1");
	assert_int_equal(bl_supervisor_set_busy(f.sup, "w-1", 2), 0);
	run_for(&f.loop, 50);

	/* down by one: the idle w-2 is chosen, not the busier and older w-1 */
	assert_int_equal(bl_supervisor_scale(f.sup, 1), 0);
	assert_string_equal(nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 0)->id, "w-2");
	/* down to zero: w-1 holds its leases through SIGTERM until the grace ends */
	assert_int_equal(bl_supervisor_scale(f.sup, 0), 0);
	stopping = nth_event(&f, BL_SUPERVISOR_EV_STOPPING, 1);
	assert_string_equal(stopping->id, "w-1");
	assert_int_equal(stopping->leases, 2);
	run_for(&f.loop, 250);
	assert_int_equal(kill(pid1, 0), 0);
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_KILLED, "w-1"), 0);
	wait_events(&f, BL_SUPERVISOR_EV_REMOVED, 2);
	killed = NULL;
	for (size_t k = 0; (killed = nth_event(&f, BL_SUPERVISOR_EV_KILLED, k)); k++)
		if (strcmp(killed->id, "w-1") == 0)
			break;
	assert_non_null(killed);
	assert_true(killed->at_ns - stopping->at_ns >= 499 * MS);
	stop(&f, -1);
	fixture_cleanup(&f);
}

static void test_shutdown_shortens_grace(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	bl_time_ns t0;

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, (const char *const *)stubborn_argv);
	cfg.grace_ns = 60000 * MS; /* a scale-down would wait a minute */
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 2), 0);
	run_for(&f.loop, 50);
	assert_int_equal(bl_supervisor_scale(f.sup, 1), 0);
	t0 = (bl_time_ns)uv_hrtime();
	/* the daemon's exit cannot wait that long: shutdown brings both kills in */
	stop(&f, 200 * MS);
	assert_int_equal(count_events(&f, BL_SUPERVISOR_EV_KILLED, NULL), 2);
	assert_true((bl_time_ns)uv_hrtime() - t0 < 30000 * MS);
	fixture_cleanup(&f);
}

/* ---- supervisor: CPU and memory ------------------------------------------------------- */

struct cpu_wait {
	struct fixture *f;
	double cores;
};

static bool burner_measured(void *ctx)
{
	struct cpu_wait *c = ctx;
	struct bl_supervisor_worker w;

	if (bl_supervisor_worker(c->f->sup, "w-1", &w) != 0)
		return false;
	c->cores = w.cpu_cores;
	return w.cpu_cores > 0.3 && w.rss_bytes > 0 && w.procs >= 2;
}

static void test_cpu_and_rss_include_children(void **state)
{
	struct fixture f;
	struct bl_supervisor_config cfg;
	/* w-1's leader only waits; its child burns a core. w-2 sleeps. */
	const char *argv[] = {"/bin/sh", "-c",
			      "case $BALLAST_WORKER_ID in w-1) (while :; do :; done) & wait;; "
			      "*) exec sleep 1000;; esac", NULL};
	struct cpu_wait c;
	struct bl_supervisor_worker w;
	struct bl_supervisor_stats st;

	(void)state;
	fixture_init(&f);
	config_for(&cfg, &f, argv);
	cfg.sample_interval_ns = 200 * MS;
	start(&f, &cfg);
	assert_int_equal(bl_supervisor_scale(f.sup, 2), 0);
	c = (struct cpu_wait){&f, 0};
	if (!run_until(&f.loop, burner_measured, &c, WAIT_MS))
		fail_msg("the CPU burner was measured at %.3f cores", c.cores);
	assert_int_equal(bl_supervisor_worker(f.sup, "w-2", &w), 0);
	assert_true(w.sampled_ns > 0);
	assert_true(w.rss_bytes > 0);
	assert_int_equal(w.procs, 1);
	assert_true(w.cpu_cores < 0.2);
	bl_supervisor_stats(f.sup, &st);
	assert_true(st.cpu_cores > 0.3);
	assert_true(st.rss_bytes > 0);
	stop(&f, -1);
	fixture_cleanup(&f);
}

/* ---- /proc accounting -------------------------------------------------------------------- */

static void test_proc_stat_parse(void **state)
{
	struct bl_proc_stat ps;
	/* comm may hold spaces and parentheses: fields count from the last ')' */
	const char *line = "4242 (we ird) (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 "
			   "150 50 7 3 20 0 1 0 12345 10000000 321 18446744073709551615\n";
	const char *bad[] = {"", "12 (x S 1 2", "12 (x) S 1 2 3", "x (y) S 1 1 1 0 -1 0 0 0 0 0 1 1 1 1 "
			     "20 0 1 0 1 1 1", "12 (x) S -1 1 1 0 -1 0 0 0 0 0 1 1 1 1 20 0 1 0 1 1 1"};

	(void)state;
	assert_int_equal(bl_proc_stat_parse(line, strlen(line), &ps), 0);
	assert_int_equal(ps.pid, 4242);
	assert_int_equal(ps.state, 'S');
	assert_int_equal(ps.ppid, 17);
	assert_int_equal(ps.pgrp, 4242);
	assert_int_equal(ps.ticks, 150 + 50 + 7 + 3);
	assert_int_equal(ps.rss_pages, 321);
	assert_int_equal(ps.start_ticks, 12345);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(bl_proc_stat_parse(bad[i], strlen(bad[i]), &ps), BL_ESYNTAX);
}

static void test_proc_attribute(void **state)
{
	/* two workers, 100 and 300, under the daemon (pid 50) */
	const struct bl_proc_stat ps[] = {
		{.pid = 50, .ppid = 1, .pgrp = 50, .ticks = 1000, .rss_pages = 1000},
		{.pid = 100, .ppid = 50, .pgrp = 100, .ticks = 10, .rss_pages = 1},
		{.pid = 101, .ppid = 100, .pgrp = 100, .ticks = 20, .rss_pages = 2},
		/* left the group (setsid) but still a descendant */
		{.pid = 102, .ppid = 101, .pgrp = 102, .ticks = 40, .rss_pages = 4},
		{.pid = 103, .ppid = 102, .pgrp = 102, .ticks = 80, .rss_pages = 8},
		/* orphaned into init, still in the group */
		{.pid = 104, .ppid = 1, .pgrp = 100, .ticks = 160, .rss_pages = 16},
		{.pid = 300, .ppid = 50, .pgrp = 300, .ticks = 5, .rss_pages = 5},
		/* unrelated, and a cycle from pid reuse during a scan */
		{.pid = 400, .ppid = 1, .pgrp = 400, .ticks = 9, .rss_pages = 9},
		{.pid = 500, .ppid = 501, .pgrp = 500, .ticks = 9, .rss_pages = 9},
		{.pid = 501, .ppid = 500, .pgrp = 501, .ticks = 9, .rss_pages = 9},
	};
	const int leaders[] = {300, 100, 999};
	struct bl_proc_usage u[3];

	(void)state;
	assert_int_equal(bl_proc_attribute(ps, sizeof ps / sizeof *ps, leaders, 3, u), 0);
	assert_int_equal(u[1].ticks, 10 + 20 + 40 + 80 + 160);
	assert_int_equal(u[1].rss_pages, 1 + 2 + 4 + 8 + 16);
	assert_int_equal(u[1].procs, 5);
	assert_int_equal(u[0].ticks, 5);
	assert_int_equal(u[0].procs, 1);
	assert_int_equal(u[2].procs, 0); /* gone */
	assert_int_equal(bl_proc_attribute(ps, 0, leaders, 3, u), 0);
	assert_int_equal(u[1].procs, 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void test_proc_read_fake_tree(void **state)
{
	char root[] = "/tmp/bl-proc-XXXXXX";
	char path[256];
	const char *dirs[] = {"7", "8", "9", "self"};
	struct bl_proc_stat *ps = NULL;
	size_t n = 0;
	int leader = 7;
	struct bl_proc_usage u;

	(void)state;
	assert_non_null(mkdtemp(root));
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
		assert_int_equal(mkdir(path, 0700), 0);
	}
	snprintf(path, sizeof path, "%s/7/stat", root);
	write_file(path, "7 (w) S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 11\n");
	snprintf(path, sizeof path, "%s/8/stat", root);
	write_file(path, "8 (c) R 7 7 7 0 -1 0 0 0 0 0 30 40 0 0 20 0 1 0 1 1 22\n");
	snprintf(path, sizeof path, "%s/9/stat", root);
	write_file(path, "garbage\n");
	/* 10 is listed nowhere: a process that vanished has no directory */
	assert_int_equal(bl_proc_read_all(root, &ps, &n), 0);
	assert_int_equal(n, 2);
	free(ps);
	assert_int_equal(bl_proc_usage_of(root, &leader, 1, &u), 0);
	assert_int_equal(u.ticks, 77);
	assert_int_equal(u.rss_pages, 33);
	assert_int_equal(u.procs, 2);
	snprintf(path, sizeof path, "%s/nonexistent", root);
	assert_int_equal(bl_proc_usage_of(path, &leader, 1, &u), BL_EIO);

	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s/stat", root, dirs[i]);
		unlink(path);
	}
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
		rmdir(path);
	}
	assert_int_equal(rmdir(root), 0);
}

/* ---- the exec actuator ------------------------------------------------------------------------ */

struct xfix {
	uv_loop_t loop;
	struct bl_exec_actuator *a;
	uint32_t done_desired[32];
	bool done_ok[32];
	size_t n_done;
	bool shut;
};

static void on_exec_done(void *ctx, const struct bl_exec_result *r)
{
	struct xfix *x = ctx;

	if (x->n_done < 32) {
		x->done_desired[x->n_done] = r->desired;
		x->done_ok[x->n_done] = r->ok;
	}
	x->n_done++;
	assert_non_null(r->stderr_tail);
	assert_int_equal(strlen(r->stderr_tail), r->stderr_len);
}

static void xfix_start(struct xfix *x, const char *const *argv, int64_t timeout_ns,
		       int64_t kill_grace_ns, size_t tail)
{
	struct bl_exec_actuator_config cfg;
	char err[256] = "";

	memset(x, 0, sizeof *x);
	assert_int_equal(uv_loop_init(&x->loop), 0);
	bl_exec_actuator_config_defaults(&cfg);
	cfg.argv = argv;
	if (timeout_ns)
		cfg.timeout_ns = timeout_ns;
	if (kill_grace_ns)
		cfg.kill_grace_ns = kill_grace_ns;
	if (tail)
		cfg.stderr_tail_bytes = tail;
	cfg.on_done = on_exec_done;
	cfg.ctx = x;
	if (bl_exec_actuator_create(&x->loop, &cfg, &x->a, err, sizeof err) != 0)
		fail_msg("create: %s", err);
}

static bool exec_idle(void *ctx)
{
	struct xfix *x = ctx;
	struct bl_exec_stats st;

	bl_exec_actuator_stats(x->a, &st);
	return !st.running;
}

static void on_exec_shut(void *ctx)
{
	((struct xfix *)ctx)->shut = true;
}

static bool exec_shut(void *ctx)
{
	return ((struct xfix *)ctx)->shut;
}

static void xfix_stop(struct xfix *x)
{
	bl_exec_actuator_shutdown(x->a, on_exec_shut, x);
	assert_int_equal(bl_exec_actuator_request(x->a, 1), BL_EINVAL);
	assert_true(run_until(&x->loop, exec_shut, x, WAIT_MS));
	bl_exec_actuator_destroy(x->a);
	assert_int_equal(uv_loop_close(&x->loop), 0);
}

static void read_all(const char *path, char *buf, size_t cap)
{
	FILE *fp = fopen(path, "r");
	size_t n;

	assert_non_null(fp);
	n = fread(buf, 1, cap - 1, fp);
	buf[n] = '\0';
	fclose(fp);
}

static void test_exec_coalesces(void **state)
{
	struct xfix x;
	char dir[] = "/tmp/bl-exec-XXXXXX";
	char file[64], got[64];
	const char *argv[] = {"/bin/sh", "-c", "echo \"$1\" >> \"$0\"; sleep 0.3", NULL, NULL};
	struct bl_exec_stats st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof file, "%s/calls", dir);
	argv[3] = file;
	xfix_start(&x, argv, 0, 0, 0);

	/* 3 runs; 4 waits and is replaced by 5; 5 runs after 3 */
	assert_int_equal(bl_exec_actuator_request(x.a, 3), 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 4), 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 5), 0);
	bl_exec_actuator_stats(x.a, &st);
	assert_true(st.running);
	assert_int_equal(st.running_desired, 3);
	assert_true(st.pending);
	assert_int_equal(st.pending_desired, 5);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	read_all(file, got, sizeof got);
	assert_string_equal(got, "3\n5\n");
	assert_int_equal(x.n_done, 2);
	assert_int_equal(x.done_desired[0], 3);
	assert_int_equal(x.done_desired[1], 5);
	assert_true(x.done_ok[0] && x.done_ok[1]);
	bl_exec_actuator_stats(x.a, &st);
	assert_int_equal(st.runs, 2);
	assert_int_equal(st.coalesced, 1);
	assert_int_equal(st.failures, 0);
	assert_true(st.has_last);
	assert_int_equal(st.last.desired, 5);
	assert_true(st.last.ok);
	/* one run never overlaps the next */
	assert_true(st.last.started_ns > 0);

	/* 7 runs; 8 then 7 again: 7 is what the run applied, so nothing more */
	assert_int_equal(bl_exec_actuator_request(x.a, 7), 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 8), 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 7), 0);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	read_all(file, got, sizeof got);
	assert_string_equal(got, "3\n5\n7\n");
	bl_exec_actuator_stats(x.a, &st);
	assert_int_equal(st.runs, 3);
	assert_int_equal(st.coalesced, 3);
	xfix_stop(&x);
	unlink(file);
	assert_int_equal(rmdir(dir), 0);
}

static void test_exec_failure_reports_stderr(void **state)
{
	struct xfix x;
	const char *argv[] = {"/bin/sh", "-c", "printf 'line1\\nboom %s\\n' \"$1\" >&2; exit 4", "sh",
			      NULL};
	const char *chatty[] = {"/bin/sh", "-c",
				"i=100; while [ $i -lt 300 ]; do printf '%d,' $i >&2; i=$((i+1)); done",
				NULL};
	struct bl_exec_stats st;

	(void)state;
	xfix_start(&x, argv, 0, 0, 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 9), 0);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	bl_exec_actuator_stats(x.a, &st);
	assert_false(st.last.ok);
	assert_int_equal(st.last.exit_status, 4);
	assert_int_equal(st.last.term_signal, 0);
	assert_false(st.last.timed_out);
	assert_string_equal(st.last.stderr_tail, "line1\nboom 9\n");
	assert_int_equal(st.failures, 1);
	xfix_stop(&x);

	/* only the tail is kept */
	xfix_start(&x, chatty, 0, 0, 16);
	assert_int_equal(bl_exec_actuator_request(x.a, 1), 0);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	bl_exec_actuator_stats(x.a, &st);
	assert_true(st.last.ok);
	assert_string_equal(st.last.stderr_tail, "296,297,298,299,");
	xfix_stop(&x);
}

static void test_exec_timeout(void **state)
{
	struct xfix x;
	const char *slow[] = {"/bin/sh", "-c", "sleep 30", NULL};
	const char *stubborn[] = {"/bin/sh", "-c", "trap '' TERM; sleep 30; sleep 30", NULL};
	struct bl_exec_stats st;

	(void)state;
	xfix_start(&x, slow, 200 * MS, 0, 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 2), 0);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	bl_exec_actuator_stats(x.a, &st);
	assert_true(st.last.timed_out);
	assert_false(st.last.ok);
	assert_int_equal(st.last.term_signal, SIGTERM);
	assert_true(st.last.ended_ns - st.last.started_ns >= 199 * MS);
	assert_int_equal(st.timeouts, 1);
	xfix_stop(&x);

	/* ignores SIGTERM: SIGKILL after the kill grace */
	xfix_start(&x, stubborn, 200 * MS, 200 * MS, 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 2), 0);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	bl_exec_actuator_stats(x.a, &st);
	assert_true(st.last.timed_out);
	assert_int_equal(st.last.term_signal, SIGKILL);
	assert_true(st.last.ended_ns - st.last.started_ns >= 399 * MS);
	xfix_stop(&x);
}

/* A timeout counts from when the hook started, even when the loop iteration
 * that started it had been busy for a while: libuv counts timers from the
 * time cached at the start of the iteration, which is stale by then. */
static void test_exec_timeout_counts_from_now(void **state)
{
	struct xfix x;
	const char *slow[] = {"/bin/sh", "-c", "sleep 30", NULL};
	struct bl_exec_stats st;

	(void)state;
	xfix_start(&x, slow, 200 * MS, 0, 0);
	uv_update_time(&x.loop);
	nanosleep(&(struct timespec){0, 150 * 1000 * 1000}, NULL); /* a busy iteration */
	assert_int_equal(bl_exec_actuator_request(x.a, 2), 0);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	bl_exec_actuator_stats(x.a, &st);
	assert_true(st.last.timed_out);
	assert_true(st.last.ended_ns - st.last.started_ns >= 199 * MS);
	xfix_stop(&x);
}

static void test_exec_spawn_error_and_shutdown(void **state)
{
	struct xfix x;
	const char *missing[] = {"/nonexistent/scale-me", NULL};
	const char *slow[] = {"/bin/sh", "-c", "sleep 30", NULL};
	struct bl_exec_stats st;

	(void)state;
	xfix_start(&x, missing, 0, 0, 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 4), 0);
	assert_true(run_until(&x.loop, exec_idle, &x, WAIT_MS));
	bl_exec_actuator_stats(x.a, &st);
	assert_int_equal(st.last.spawn_error, UV_ENOENT);
	assert_false(st.last.ok);
	assert_int_equal(st.runs, 1);
	xfix_stop(&x);

	/* shutdown ends a running command and drops what was pending */
	xfix_start(&x, slow, 0, 0, 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 1), 0);
	assert_int_equal(bl_exec_actuator_request(x.a, 2), 0);
	run_for(&x.loop, 50);
	bl_exec_actuator_shutdown(x.a, on_exec_shut, &x);
	assert_true(run_until(&x.loop, exec_shut, &x, WAIT_MS));
	bl_exec_actuator_stats(x.a, &st);
	assert_int_equal(st.runs, 1);
	assert_false(st.pending);
	assert_int_equal(st.last.term_signal, SIGTERM);
	assert_false(st.last.timed_out);
	bl_exec_actuator_destroy(x.a);
	assert_int_equal(uv_loop_close(&x.loop), 0);
}

static void test_exec_create_validates(void **state)
{
	uv_loop_t loop;
	struct bl_exec_actuator_config cfg;
	struct bl_exec_actuator *a = NULL;
	const char *argv[] = {"true", NULL};
	char err[256];

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	bl_exec_actuator_config_defaults(&cfg);
	assert_int_equal(bl_exec_actuator_create(&loop, &cfg, &a, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "command"));
	cfg.argv = argv;
	cfg.stderr_tail_bytes = 0;
	assert_int_equal(bl_exec_actuator_create(&loop, &cfg, &a, err, sizeof err), BL_EINVAL);
	cfg.stderr_tail_bytes = 10;
	cfg.timeout_ns = 0;
	assert_int_equal(bl_exec_actuator_create(&loop, &cfg, &a, err, sizeof err), BL_EINVAL);
	assert_non_null(strstr(err, "timeout"));
	assert_null(a);
	bl_exec_actuator_destroy(NULL);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_create_validates, kill_leftovers),
		cmocka_unit_test_teardown(test_scale_up_and_down, kill_leftovers),
		cmocka_unit_test_teardown(test_crash_restarts_with_backoff, kill_leftovers),
		cmocka_unit_test_teardown(test_backoff_resets_after_a_long_run, kill_leftovers),
		cmocka_unit_test_teardown(test_spawn_failure_backs_off, kill_leftovers),
		cmocka_unit_test_teardown(test_orphans_stopped_and_ids_continue, kill_leftovers),
		cmocka_unit_test_teardown(test_grace_then_sigkill, kill_leftovers),
		cmocka_unit_test_teardown(test_least_busy_stop_first, kill_leftovers),
		cmocka_unit_test_teardown(test_waiting_to_restart_goes_first, kill_leftovers),
		cmocka_unit_test_teardown(test_lease_holder_not_killed_before_grace, kill_leftovers),
		cmocka_unit_test_teardown(test_shutdown_shortens_grace, kill_leftovers),
		cmocka_unit_test_teardown(test_cpu_and_rss_include_children, kill_leftovers),
		cmocka_unit_test_teardown(test_proc_stat_parse, kill_leftovers),
		cmocka_unit_test_teardown(test_proc_attribute, kill_leftovers),
		cmocka_unit_test_teardown(test_proc_read_fake_tree, kill_leftovers),
		cmocka_unit_test_teardown(test_exec_create_validates, kill_leftovers),
		cmocka_unit_test_teardown(test_exec_coalesces, kill_leftovers),
		cmocka_unit_test_teardown(test_exec_failure_reports_stderr, kill_leftovers),
		cmocka_unit_test_teardown(test_exec_timeout_counts_from_now, kill_leftovers),
		cmocka_unit_test_teardown(test_exec_timeout, kill_leftovers),
		cmocka_unit_test_teardown(test_exec_spawn_error_and_shutdown, kill_leftovers),
	};

	/* the tests read events, not log lines */
	bl_log_set_level(BL_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
