/* Per-process-tree CPU and memory from /proc. See procstat.h and
 * docs/internals/supervisor.md. */
#include "procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ballast/error.h"

/* A stat line is ~300 bytes; the fields we read end well before this. */
#define STAT_READ_MAX 1024

/* Reads one signed decimal field starting at *p (after skipping one space).
 * Returns false at the end of the line or on anything else. */
static bool next_field(const char **p, const char *end, int64_t *out)
{
	const char *s = *p;
	bool neg = false;
	uint64_t v = 0;
	int digits = 0;

	if (s >= end || *s != ' ')
		return false;
	s++;
	if (s < end && *s == '-') {
		neg = true;
		s++;
	}
	while (s < end && *s >= '0' && *s <= '9') {
		if (v > (UINT64_C(1) << 62))
			return false; /* far beyond anything /proc prints */
		v = v * 10 + (uint64_t)(*s - '0');
		s++;
		digits++;
	}
	if (digits == 0 || (s < end && *s != ' ' && *s != '\n'))
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	*p = s;
	return true;
}

int bl_proc_stat_parse(const char *text, size_t len, struct bl_proc_stat *out)
{
	const char *end = text + len;
	const char *close = NULL;
	const char *p;
	int64_t f[25]; /* f[k] is field k; 1, 3 and 4.. are read */
	int64_t pid;

	for (const char *q = text; q < end; q++)
		if (*q == ')')
			close = q;
	if (!close)
		return BL_ESYNTAX;
	/* field 1: the pid, then " (" */
	p = text;
	pid = 0;
	if (p >= close || *p < '0' || *p > '9')
		return BL_ESYNTAX;
	while (p < close && *p >= '0' && *p <= '9') {
		pid = pid * 10 + (*p - '0');
		if (pid > INT32_MAX)
			return BL_ESYNTAX;
		p++;
	}
	if (close - p < 2 || p[0] != ' ' || p[1] != '(')
		return BL_ESYNTAX;
	/* field 3: one state letter */
	p = close + 1;
	if (end - p < 3 || p[0] != ' ' || p[2] != ' ')
		return BL_ESYNTAX;
	f[3] = p[1];
	p += 2;
	for (int k = 4; k <= 24; k++)
		if (!next_field(&p, end, &f[k]))
			return BL_ESYNTAX;
	if (f[4] < 0 || f[4] > INT32_MAX || f[5] < 0 || f[5] > INT32_MAX)
		return BL_ESYNTAX;

	out->pid = (int)pid;
	out->state = (char)f[3];
	out->ppid = (int)f[4];
	out->pgrp = (int)f[5];
	out->ticks = 0;
	for (int k = 14; k <= 17; k++)
		if (f[k] > 0)
			out->ticks += (uint64_t)f[k];
	out->start_ticks = f[22] > 0 ? (uint64_t)f[22] : 0;
	out->rss_pages = f[24] > 0 ? (uint64_t)f[24] : 0;
	return 0;
}

/* ---- attribution ---------------------------------------------------------- */

struct pid_index {
	int pid;
	size_t idx;
};

static int cmp_pid_index(const void *a, const void *b)
{
	const struct pid_index *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Index of pid in the sorted table, or -1. */
static long find_pid(const struct pid_index *t, size_t n, int pid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t[mid].pid == pid)
			return (long)t[mid].idx;
		if (t[mid].pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

#define OWNER_UNKNOWN (-3)
#define OWNER_ON_PATH (-2) /* on the chain being walked: seeing it again is a cycle */
#define OWNER_NONE (-1)

int bl_proc_attribute(const struct bl_proc_stat *ps, size_t n, const int *leaders,
		      size_t n_leaders, struct bl_proc_usage *usage)
{
	struct pid_index *by_pid = NULL, *by_leader = NULL;
	long *owner = NULL;
	size_t *chain = NULL;

	memset(usage, 0, n_leaders * sizeof *usage);
	if (n == 0 || n_leaders == 0)
		return 0;
	by_pid = malloc(n * sizeof *by_pid);
	by_leader = malloc(n_leaders * sizeof *by_leader);
	owner = malloc(n * sizeof *owner);
	chain = malloc(n * sizeof *chain);
	if (!by_pid || !by_leader || !owner || !chain)
		goto out_nomem;

	for (size_t i = 0; i < n; i++) {
		by_pid[i] = (struct pid_index){.pid = ps[i].pid, .idx = i};
		owner[i] = OWNER_UNKNOWN;
	}
	qsort(by_pid, n, sizeof *by_pid, cmp_pid_index);
	for (size_t i = 0; i < n_leaders; i++)
		by_leader[i] = (struct pid_index){.pid = leaders[i], .idx = i};
	qsort(by_leader, n_leaders, sizeof *by_leader, cmp_pid_index);

	for (size_t i = 0; i < n; i++) {
		size_t depth = 0;
		long found = OWNER_NONE;
		long j = (long)i;

		/* Walk up until a process whose owner is known or decidable;
		 * every process on the way gets the same answer. */
		while (j >= 0 && depth < n) {
			const struct bl_proc_stat *p = &ps[j];
			long l;

			if (owner[j] == OWNER_ON_PATH)
				break; /* a cycle: pids reused during the scan */
			if (owner[j] != OWNER_UNKNOWN) {
				found = owner[j];
				break;
			}
			owner[j] = OWNER_ON_PATH;
			chain[depth++] = (size_t)j;
			if ((l = find_pid(by_leader, n_leaders, p->pid)) >= 0 ||
			    (l = find_pid(by_leader, n_leaders, p->pgrp)) >= 0) {
				found = l;
				break;
			}
			if (p->ppid <= 1 || p->ppid == p->pid)
				break;
			j = find_pid(by_pid, n, p->ppid);
		}
		for (size_t k = 0; k < depth; k++)
			owner[chain[k]] = found;
		if (found >= 0) {
			usage[found].ticks += ps[i].ticks;
			usage[found].rss_pages += ps[i].rss_pages;
			usage[found].procs++;
		}
	}
	free(chain);
	free(owner);
	free(by_leader);
	free(by_pid);
	return 0;

out_nomem:
	free(chain);
	free(owner);
	free(by_leader);
	free(by_pid);
	return BL_ENOMEM;
}

/* ---- reading /proc ------------------------------------------------------- */

static bool is_pid_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Reads root/name/stat into *out. Returns true when it parsed. */
static bool read_one(const char *root, const char *name, struct bl_proc_stat *out)
{
	char path[4096];
	char buf[STAT_READ_MAX];
	size_t len = 0;
	int fd;

	if ((size_t)snprintf(path, sizeof path, "%s/%s/stat", root, name) >= sizeof path)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false; /* gone since readdir */
	while (len < sizeof buf) {
		ssize_t r = read(fd, buf + len, sizeof buf - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	return bl_proc_stat_parse(buf, len, out) == 0;
}

int bl_proc_stat_read(const char *proc_root, int pid, struct bl_proc_stat *out)
{
	char name[16];

	if (pid <= 0)
		return BL_EINVAL;
	snprintf(name, sizeof name, "%d", pid);
	return read_one(proc_root, name, out) ? 0 : BL_ENOENT;
}

int bl_proc_read_all(const char *proc_root, struct bl_proc_stat **out, size_t *n)
{
	struct bl_proc_stat *ps = NULL;
	size_t count = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir(proc_root);

	if (!d)
		return BL_EIO;
	while ((de = readdir(d)) != NULL) {
		struct bl_proc_stat st;

		if (!is_pid_name(de->d_name) || !read_one(proc_root, de->d_name, &st))
			continue;
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct bl_proc_stat *grown;

			if (count >= BL_PROC_MAX_PROCESSES)
				break;
			grown = realloc(ps, ncap * sizeof *ps);
			if (!grown) {
				free(ps);
				closedir(d);
				return BL_ENOMEM;
			}
			ps = grown;
			cap = ncap;
		}
		ps[count++] = st;
	}
	closedir(d);
	*out = ps;
	*n = count;
	return 0;
}

int bl_proc_usage_of(const char *proc_root, const int *leaders, size_t n_leaders,
		     struct bl_proc_usage *usage)
{
	struct bl_proc_stat *ps;
	size_t n;
	int rc = bl_proc_read_all(proc_root, &ps, &n);

	if (rc) {
		memset(usage, 0, n_leaders * sizeof *usage);
		return rc;
	}
	rc = bl_proc_attribute(ps, n, leaders, n_leaders, usage);
	free(ps);
	return rc;
}
