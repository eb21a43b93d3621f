/* Per-process-tree CPU and memory from /proc, for the local supervisor.
 *
 * Each supervised worker leads its own process group (the supervisor starts
 * it in a new session). Its usage is the sum over every process that belongs
 * to it: the processes of its group, plus any process whose parent chain
 * leads to one of them (a descendant that moved to a group or session of its
 * own is still the worker's). docs/internals/supervisor.md says why the sum
 * includes cutime/cstime and what the figures do not cover.
 *
 * bl_proc_stat_parse and bl_proc_attribute are pure. bl_proc_read_all and
 * bl_proc_usage_of read the file system and block; they touch no shared
 * state and do not log, so they are safe on a thread-pool thread.
 */
#ifndef BALLAST_PROCSTAT_H
#define BALLAST_PROCSTAT_H

#include <stddef.h>
#include <stdint.h>

/* Most processes one scan reads (Linux's highest pid_max). */
#define BL_PROC_MAX_PROCESSES 4194304

/* What one /proc/<pid>/stat line says that the supervisor needs. */
struct bl_proc_stat {
	int pid;            /* field 1 */
	int ppid;           /* field 4: parent */
	int pgrp;           /* field 5: process group */
	char state;         /* field 3: R, S, D, Z, ... */
	uint64_t ticks;     /* fields 14..17: utime + stime + cutime + cstime, clock ticks */
	uint64_t start_ticks; /* field 22: when it started, clock ticks after boot; with
	                       * the pid, what tells a process from a later one that
	                       * reuses its pid */
	uint64_t rss_pages; /* field 24: resident set, pages */
};

/* One worker's share of a scan: the sums over every process attributed to it. */
struct bl_proc_usage {
	uint64_t ticks;     /* CPU time, clock ticks (sysconf(_SC_CLK_TCK) per second) */
	uint64_t rss_pages; /* resident pages (sysconf(_SC_PAGESIZE) bytes each) */
	uint32_t procs;     /* processes counted; 0 when the leader is gone */
};

/* Parses the len bytes of one stat line at text into *out. The command name
 * (field 2) is in parentheses and may hold spaces and ')' itself, so the
 * fields are counted from the last ')'. Returns 0, or BL_ESYNTAX with *out
 * unchanged. */
int bl_proc_stat_parse(const char *text, size_t len, struct bl_proc_stat *out);

/* Attributes each of the n processes in ps to at most one of the n_leaders
 * leader pids and adds it to that leader's usage[i] (usage has n_leaders
 * entries; it is zeroed first). A process belongs to leader L when it is L,
 * when its group is L's group (pgrp == L), or when its parent belongs to L;
 * chains are followed through ps only, and a broken or cyclic chain (a scan
 * is not an atomic snapshot) attributes nothing. Scratch memory is malloc'd
 * and freed before returning. Returns 0, or BL_ENOMEM with usage zeroed. */
int bl_proc_attribute(const struct bl_proc_stat *ps, size_t n, const int *leaders,
		      size_t n_leaders, struct bl_proc_usage *usage);

/* Reads <proc_root>/<pid>/stat into *out. Returns 0, BL_ENOENT when there is
 * no such process (or its line does not parse), BL_EINVAL for pid <= 0.
 * Blocking, but one small procfs read. */
int bl_proc_stat_read(const char *proc_root, int pid, struct bl_proc_stat *out);

/* Reads <proc_root>/<pid>/stat for every numeric entry of proc_root
 * ("/proc", or a fake tree in tests). Entries that vanish or do not parse
 * are skipped. On success *out is a malloc'd array of *n entries (NULL when
 * none) the caller frees. Returns 0, BL_EIO when proc_root cannot be read,
 * or BL_ENOMEM; *out and *n are untouched on failure. Blocking. */
int bl_proc_read_all(const char *proc_root, struct bl_proc_stat **out, size_t *n);

/* bl_proc_read_all then bl_proc_attribute. Returns as they do. Blocking. */
int bl_proc_usage_of(const char *proc_root, const int *leaders, size_t n_leaders,
		     struct bl_proc_usage *usage);

#endif
