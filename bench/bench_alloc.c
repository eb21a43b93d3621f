/* bench_alloc: single-thread ns per alloc/free pair for ballast's allocators
 * (slab, arena, heap with each strategy) and the process's malloc, plus the
 * footprint of each on one replayed allocation trace.
 *
 * The same source is built four times (bench/CMakeLists.txt): bench_alloc
 * with glibc's malloc, and bench_alloc_jemalloc, _mimalloc, _tcmalloc linked
 * with that library, whose malloc then replaces glibc's in the whole process.
 * The binary names the library its malloc really comes from (dladdr).
 * bench/bench_alloc.sh runs them all and prints one table.
 *
 *   bench_alloc [--sys-only] [--ms N] [--only TEXT] [--workload NAME]
 *     --sys-only  only the process's malloc (the other binaries use it: our
 *                 allocators do not depend on which malloc is linked)
 *     --ms N      target length of one timed run, default 100 ms
 *     --only TEXT only the allocators whose label contains TEXT ("tlsf",
 *                 "malloc"); the footprint table is skipped unless TEXT is
 *                 "foot", which runs the footprint table alone
 *     --workload NAME  only that workload: lifo64 rand64 lifo256 rand256 randsz
 *
 * Workloads (a pair = one allocation and one free):
 *   lifo64, lifo256   batches of 1000 allocations of 64 / 256 B, then the 1000
 *                     frees in reverse order. Arena: the batch is rolled back
 *                     to a mark taken before it (one rollback per 1000 pairs).
 *   rand64, rand256   a pool of 4096 live objects of 64 / 256 B; each pair
 *                     frees a random slot and allocates it again.
 *   randsz            the same pool of 4096 slots, sizes 16..4095 B
 *                     log-uniform (a power-of-two range 16-31 .. 2048-4095
 *                     picked uniformly, then a size uniform inside it: half
 *                     the objects are under 256 B, mean ~760 B). Arena: the
 *                     batch scheme of lifo with these sizes.
 * Random slots and sizes come from arrays precomputed with a fixed seed, so
 * every allocator sees the same sequence and no RNG is timed. Every object
 * gets its first word written after allocation.
 *
 * Each allocator is called the way a program calls it: malloc and free
 * through the PLT, bl_slab_alloc and bl_slab_free inline from slab.h (as in
 * any caller of the slab), the arena and heap functions out of line from
 * libballast_core. The loops are the same macro for all of them.
 *
 * Method: per cell, a 20000-pair calibration run sets the pairs per timed run
 * so one run takes about --ms; then one untimed warm-up run and 5 timed runs;
 * the median is reported (min and max too). The clock is the thread's CPU
 * time (CLOCK_THREAD_CPUTIME_ID) around whole runs: the benchmark is one
 * thread that never blocks, so that is the time the allocator took, without
 * the time the thread waited for a CPU while other work ran on the machine
 * (on a busy machine wall-clock medians of the same binary moved by 2-3x).
 * Other work still disturbs caches, so compare within one run.
 *
 * Footprint: a trace of 400000 events (allocations with the randsz sizes and
 * frees of a random live object; the live count swings between ~1500 and
 * ~6000 objects in 50000-event phases), generated from a fixed seed, replayed
 * on each heap strategy over a 64 MiB caller region: peak live bytes (sum of
 * requested sizes), peak used bytes (bl_heap_stats high water, headers
 * included), peak extent (highest byte of any block from the region start:
 * the memory a region grown on demand would need), and the failures when the
 * same trace is replayed in a region of only 1.10 x peak live bytes. For
 * malloc: the growth of the peak RSS (getrusage ru_maxrss) across the replay,
 * done first in the process, with every allocated byte written.
 *
 * Output: '#' lines for humans, then tab-separated rows
 *   speed <allocator> <workload> <median ns> <min ns> <max ns> <pairs/run>
 *   foot  <allocator> <peak live B> <peak used B> <peak extent or RSS B> <failed at 1.1x>
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ballast/arena.h"
#include "ballast/heap.h"
#include "ballast/slab.h"

#ifndef BENCH_MALLOC_NAME
#define BENCH_MALLOC_NAME "glibc"
#endif

#define NS_PER_S 1000000000LL
#define SEQ_LEN (1u << 20) /* precomputed random slots and sizes */
#define SEQ_MASK (SEQ_LEN - 1)
#define POOL 4096          /* live slots in the random-order workloads */
#define BATCH 1000         /* allocations per LIFO batch */
#define RUNS 5
#define HEAP_REGION (64u << 20)
#define TRACE_EVENTS 400000u

static uint32_t seq_slot[SEQ_LEN];
static uint32_t seq_size[SEQ_LEN];
static uint32_t cursor; /* position in the sequences, carried across runs */
static void *slots[POOL];
static int64_t target_ns = 100 * 1000000LL;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* 16..4095, log-uniform over the power-of-two ranges. */
static uint32_t skewed_size(uint64_t *s)
{
	uint64_t r = splitmix(s);
	uint32_t e = 4 + (uint32_t)(r & 7);

	return (1u << e) + (uint32_t)((r >> 8) % (1u << e));
}

static void make_sequences(void)
{
	uint64_t s = 42;

	for (uint32_t i = 0; i < SEQ_LEN; i++) {
		seq_slot[i] = (uint32_t)(splitmix(&s) % POOL);
		seq_size[i] = skewed_size(&s);
	}
}

/* One kind of allocator, as the workloads need it. A NULL function means the
 * workload does not apply. */
struct allocator {
	const char *name;
	void *(*setup)(size_t fixed_size); /* fixed_size 0: variable sizes */
	void (*teardown)(void *ctx);
	uint64_t (*lifo)(void *ctx, size_t size, uint64_t pairs);
	uint64_t (*rand)(void *ctx, size_t size, uint64_t pairs);
	uint64_t fails; /* allocations that returned NULL while timing */
};

static uint64_t fails;

/* Workload loops with the allocator's calls written out, so the timed loop
 * makes direct calls. size 0 means: take sizes from seq_size. */
#define DEFINE_LOOPS(NAME, CTX_T, ALLOC, FREE)                                       \
	static uint64_t NAME##_lifo(void *vctx, size_t size, uint64_t pairs)          \
	{                                                                             \
		CTX_T c = vctx;                                                       \
		void *batch[BATCH];                                                   \
		uint32_t k = cursor;                                                  \
		int64_t t0 = now_ns();                                                \
		for (uint64_t done = 0; done < pairs; done += BATCH) {                \
			for (int i = 0; i < BATCH; i++) {                             \
				size_t n = size ? size : seq_size[k++ & SEQ_MASK];    \
				void *p = ALLOC(c, n);                                \
				if (p)                                                \
					*(uint64_t *)p = done;                        \
				else                                                  \
					fails++;                                      \
				batch[i] = p;                                         \
			}                                                             \
			for (int i = BATCH - 1; i >= 0; i--)                          \
				if (batch[i])                                         \
					FREE(c, batch[i]);                            \
		}                                                                     \
		int64_t t1 = now_ns();                                                \
		cursor = k;                                                           \
		return (uint64_t)(t1 - t0);                                           \
	}                                                                             \
	static uint64_t NAME##_rand(void *vctx, size_t size, uint64_t pairs)          \
	{                                                                             \
		CTX_T c = vctx;                                                       \
		uint32_t k = cursor;                                                  \
		int64_t t0 = now_ns();                                                \
		for (uint64_t i = 0; i < pairs; i++, k++) {                           \
			uint32_t s = seq_slot[k & SEQ_MASK];                          \
			size_t n = size ? size : seq_size[k & SEQ_MASK];              \
			if (slots[s])                                                 \
				FREE(c, slots[s]);                                    \
			void *p = ALLOC(c, n);                                        \
			if (p)                                                        \
				*(uint64_t *)p = i;                                   \
			else                                                          \
				fails++;                                              \
			slots[s] = p;                                                 \
		}                                                                     \
		int64_t t1 = now_ns();                                                \
		cursor = k;                                                           \
		return (uint64_t)(t1 - t0);                                           \
	}

/* --- the process's malloc --- */
#define SYS_ALLOC(c, n) ((void)(c), malloc(n))
#define SYS_FREE(c, p) ((void)(c), free(p))
DEFINE_LOOPS(sys, void *, SYS_ALLOC, SYS_FREE)
static void *sys_setup(size_t size) { return (void *)1; }
static void sys_teardown(void *ctx) {}

/* --- slab --- */
#define SLAB_ALLOC(c, n) ((void)(n), bl_slab_alloc(c))
#define SLAB_FREE(c, p) bl_slab_free(c, p)
DEFINE_LOOPS(slab, struct bl_slab *, SLAB_ALLOC, SLAB_FREE)
static void *slab_setup(size_t size)
{
	struct bl_slab_config cfg = {.object_size = size, .objects_per_slab = 1024};
	struct bl_slab *s = NULL;

	if (size == 0 || bl_slab_create(&cfg, &s) != 0)
		return NULL;
	return s;
}
static void slab_teardown(void *ctx) { bl_slab_destroy(ctx); }

/* --- arena: batches rolled back to a mark (LIFO only) --- */
static uint64_t arena_lifo(void *vctx, size_t size, uint64_t pairs)
{
	struct bl_arena *a = vctx;
	uint32_t k = cursor;
	int64_t t0 = now_ns();

	for (uint64_t done = 0; done < pairs; done += BATCH) {
		struct bl_arena_mark m = bl_arena_mark(a);

		for (int i = 0; i < BATCH; i++) {
			size_t n = size ? size : seq_size[k++ & SEQ_MASK];
			void *p = bl_arena_alloc(a, n, 0);

			if (p)
				*(uint64_t *)p = done;
			else
				fails++;
		}
		bl_arena_rollback(a, &m);
	}
	int64_t t1 = now_ns();
	cursor = k;
	return (uint64_t)(t1 - t0);
}
static void *arena_setup(size_t size)
{
	/* 8 MiB blocks: a whole batch fits in the first block, so rollback
	 * never frees a block and the figure is the bump plus the rollback. */
	struct bl_arena_config cfg = {.block_bytes = 8u << 20};
	struct bl_arena *a = NULL;

	return bl_arena_create(&cfg, &a) == 0 ? a : NULL;
}
static void arena_teardown(void *ctx) { bl_arena_destroy(ctx); }

/* --- heap, one allocator entry per strategy --- */
#define HEAP_ALLOC(c, n) bl_heap_alloc(c, n)
#define HEAP_FREE(c, p) bl_heap_free(c, p)
DEFINE_LOOPS(heap, struct bl_heap *, HEAP_ALLOC, HEAP_FREE)
static enum bl_heap_strategy heap_strategy;
static void *heap_setup(size_t size)
{
	struct bl_heap_config cfg = {.region_bytes = HEAP_REGION, .strategy = heap_strategy};
	struct bl_heap *h = NULL;

	return bl_heap_create(&cfg, &h) == 0 ? h : NULL;
}
static void heap_teardown(void *ctx) { bl_heap_destroy(ctx); }

static void free_slots(const char *name, void *ctx)
{
	for (int i = 0; i < POOL; i++) {
		if (slots[i]) {
			if (strcmp(name, "malloc") == 0)
				free(slots[i]);
			else if (strcmp(name, "slab") == 0)
				bl_slab_free(ctx, slots[i]);
			else
				bl_heap_free(ctx, slots[i]);
		}
		slots[i] = NULL;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static const char *only, *only_workload;

static void measure(const char *label, const char *workload, struct allocator *al, size_t size,
		    int random_order)
{
	uint64_t (*run)(void *, size_t, uint64_t) = random_order ? al->rand : al->lifo;

	if (!run || (only && !strstr(label, only)) ||
	    (only_workload && strcmp(workload, only_workload) != 0))
		return;
	void *ctx = al->setup(size);
	if (!ctx) {
		fprintf(stderr, "bench_alloc: %s: setup failed\n", label);
		exit(1);
	}
	fails = 0;
	if (random_order) { /* fill the pool, untimed */
		memset(slots, 0, sizeof(slots));
		run(ctx, size, POOL * 4);
	}
	uint64_t pairs = 20000;
	uint64_t t = run(ctx, size, pairs);
	pairs = (uint64_t)((double)target_ns / ((double)t / (double)pairs));
	pairs = (pairs / BATCH + 1) * BATCH;
	run(ctx, size, pairs); /* warm-up */
	uint64_t ns[RUNS];
	for (int r = 0; r < RUNS; r++)
		ns[r] = run(ctx, size, pairs);
	qsort(ns, RUNS, sizeof(ns[0]), cmp_u64);
	if (random_order)
		free_slots(al->name, ctx);
	al->teardown(ctx);
	double per = (double)pairs;
	printf("speed\t%s\t%s\t%.2f\t%.2f\t%.2f\t%llu\n", label, workload, (double)ns[RUNS / 2] / per,
	       (double)ns[0] / per, (double)ns[RUNS - 1] / per, (unsigned long long)pairs);
	if (fails)
		printf("# %s %s: %llu allocations failed while timing\n", label, workload,
		       (unsigned long long)fails);
	fflush(stdout);
}

/* --- the footprint trace --- */
struct event {
	uint32_t id;   /* allocation number */
	uint32_t size; /* bytes to allocate; 0: free allocation id */
};

static struct event *trace;
static uint32_t trace_len, trace_allocs;
static uint32_t *alloc_size; /* requested bytes of each allocation, by id */

static void make_trace(void)
{
	uint64_t s = 7;
	uint32_t *live = malloc(TRACE_EVENTS * sizeof(*live));
	uint32_t nlive = 0;

	trace = malloc((TRACE_EVENTS + TRACE_EVENTS) * sizeof(*trace));
	alloc_size = malloc(TRACE_EVENTS * sizeof(*alloc_size));
	if (!live || !trace || !alloc_size) {
		fprintf(stderr, "bench_alloc: out of memory\n");
		exit(1);
	}
	for (uint32_t i = 0; i < TRACE_EVENTS; i++) {
		uint32_t target = (i / 50000) % 2 ? 1500 : 6000;
		uint64_t r = splitmix(&s) % 100;
		int alloc = nlive == 0 || (nlive < target ? r < 75 : r < 25);

		if (alloc) {
			alloc_size[trace_allocs] = skewed_size(&s);
			trace[trace_len++] = (struct event){trace_allocs, alloc_size[trace_allocs]};
			live[nlive++] = trace_allocs++;
		} else {
			uint32_t j = (uint32_t)(splitmix(&s) % nlive);

			trace[trace_len++] = (struct event){live[j], 0};
			live[j] = live[--nlive];
		}
	}
	while (nlive) /* free what is left */
		trace[trace_len++] = (struct event){live[--nlive], 0};
	free(live);
}

struct replay {
	size_t peak_live, peak_used, peak_extent;
	uint64_t failed;
};

/* Replays the trace on a heap over the caller region [base, base + bytes). */
static struct replay replay_heap(enum bl_heap_strategy st, void *base, size_t bytes, void **ptr)
{
	struct bl_heap_config cfg = {.region = base, .region_bytes = bytes, .strategy = st};
	struct bl_heap *h = NULL;
	struct replay out = {0};
	size_t live = 0;

	if (bl_heap_create(&cfg, &h) != 0) {
		fprintf(stderr, "bench_alloc: heap create failed\n");
		exit(1);
	}
	for (uint32_t i = 0; i < trace_len; i++) {
		struct event e = trace[i];

		if (e.size) {
			void *p = bl_heap_alloc(h, e.size);

			ptr[e.id] = p;
			live += e.size;
			if (live > out.peak_live)
				out.peak_live = live;
			if (!p) {
				out.failed++;
				continue;
			}
			size_t end = (size_t)((char *)p - (char *)base) + bl_heap_usable_size(h, p);
			if (end > out.peak_extent)
				out.peak_extent = end;
		} else {
			live -= alloc_size[e.id];
			bl_heap_free(h, ptr[e.id]);
			ptr[e.id] = NULL;
		}
	}
	/* live counts requested sizes, failed ones included, so the peak is the
	 * trace's own, the same for every strategy. */
	struct bl_heap_stats sts;
	bl_heap_stats(h, &sts);
	out.peak_used = sts.high_water_bytes;
	bl_heap_destroy(h);
	return out;
}

static void footprint_malloc(void)
{
	void **ptr = calloc(trace_allocs, sizeof(*ptr));
	uint32_t *sz = calloc(trace_allocs, sizeof(*sz));
	struct rusage ru0, ru1;
	size_t live = 0, peak = 0;

	if (!ptr || !sz) {
		fprintf(stderr, "bench_alloc: out of memory\n");
		exit(1);
	}
	memset(ptr, 0, trace_allocs * sizeof(*ptr));
	memset(sz, 0, trace_allocs * sizeof(*sz));
	getrusage(RUSAGE_SELF, &ru0);
	uint64_t failed = 0;
	for (uint32_t i = 0; i < trace_len; i++) {
		struct event e = trace[i];

		if (e.size) {
			void *p = malloc(e.size);

			if (!p) {
				failed++;
				continue;
			}
			memset(p, 0x5a, e.size);
			ptr[e.id] = p;
			sz[e.id] = e.size;
			live += e.size;
			if (live > peak)
				peak = live;
		} else if (ptr[e.id]) {
			live -= sz[e.id];
			free(ptr[e.id]);
			ptr[e.id] = NULL;
		}
	}
	getrusage(RUSAGE_SELF, &ru1);
	printf("foot\tmalloc(%s)\t%zu\t-\t%lld\t%llu\n", BENCH_MALLOC_NAME, peak,
	       (long long)(ru1.ru_maxrss - ru0.ru_maxrss) * 1024, (unsigned long long)failed);
	free(ptr);
	free(sz);
}

static void footprint_heaps(void)
{
	void **ptr = calloc(trace_allocs, sizeof(*ptr));
	void *region = malloc(HEAP_REGION + 64);

	if (!ptr || !region) {
		fprintf(stderr, "bench_alloc: out of memory\n");
		exit(1);
	}
	/* the region 16-aligned (malloc's is), so offsets are exact */
	for (int st = 0; st < BL_HEAP_STRATEGIES; st++) {
		struct replay big = replay_heap((enum bl_heap_strategy)st, region, HEAP_REGION, ptr);
		size_t tight = big.peak_live + big.peak_live / 10;
		struct replay small = replay_heap((enum bl_heap_strategy)st, region, tight, ptr);

		printf("foot\theap %s\t%zu\t%zu\t%zu\t%llu\n",
		       bl_heap_strategy_name((enum bl_heap_strategy)st), big.peak_live, big.peak_used,
		       big.peak_extent, (unsigned long long)small.failed);
		if (big.failed)
			printf("# heap %s: %llu failures even in the 64 MiB region\n",
			       bl_heap_strategy_name((enum bl_heap_strategy)st),
			       (unsigned long long)big.failed);
	}
	free(ptr);
	free(region);
}

static const char *malloc_origin(void)
{
	Dl_info info;
	void *(*m)(size_t) = malloc;
	void *addr;

	memcpy(&addr, &m, sizeof(addr));
	if (dladdr(addr, &info) && info.dli_fname)
		return info.dli_fname;
	return "?";
}

int main(int argc, char **argv)
{
	int sys_only = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sys-only") == 0) {
			sys_only = 1;
		} else if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc) {
			long ms = strtol(argv[++i], NULL, 10);
			if (ms < 1 || ms > 10000) {
				fprintf(stderr, "bench_alloc: --ms 1..10000\n");
				return 2;
			}
			target_ns = ms * 1000000LL;
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			only = argv[++i];
		} else if (strcmp(argv[i], "--workload") == 0 && i + 1 < argc) {
			static const char *const known[] = {"lifo64", "rand64", "lifo256", "rand256",
							    "randsz"};
			size_t k = 0;

			only_workload = argv[++i];
			while (k < sizeof known / sizeof known[0] && strcmp(known[k], only_workload))
				k++;
			if (k == sizeof known / sizeof known[0]) {
				fprintf(stderr, "bench_alloc: --workload '%s' is not one of lifo64, "
						"rand64, lifo256, rand256, randsz\n", only_workload);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: bench_alloc [--sys-only] [--ms N] [--only TEXT] "
					"[--workload NAME]\n");
			return 2;
		}
	}
	char sys_label[64];
	snprintf(sys_label, sizeof(sys_label), "malloc(%s)", BENCH_MALLOC_NAME);
	printf("# bench_alloc: malloc is %s, from %s\n", BENCH_MALLOC_NAME, malloc_origin());
	printf("# median of %d timed runs of ~%lld ms after a warm-up run; ns per alloc+free pair\n",
	       RUNS, (long long)(target_ns / 1000000));

	make_sequences();
	make_trace();
	int foot_only = only && strcmp(only, "foot") == 0, foot = !only || foot_only;
	if (foot)
		footprint_malloc(); /* first, so the peak RSS growth is the trace's */

	struct allocator sys = {"malloc", sys_setup, sys_teardown, sys_lifo, sys_rand, 0};
	struct allocator slab = {"slab", slab_setup, slab_teardown, slab_lifo, slab_rand, 0};
	struct allocator arena = {"arena", arena_setup, arena_teardown, arena_lifo, NULL, 0};
	struct allocator heap = {"heap", heap_setup, heap_teardown, heap_lifo, heap_rand, 0};
	static const struct {
		const char *name;
		size_t size;
		int random_order;
	} wl[] = {{"lifo64", 64, 0}, {"rand64", 64, 1}, {"lifo256", 256, 0},
		  {"rand256", 256, 1}, {"randsz", 0, 1}};

	for (size_t w = 0; w < sizeof(wl) / sizeof(wl[0]) && !foot_only; w++) {
		measure(sys_label, wl[w].name, &sys, wl[w].size, wl[w].random_order);
		if (sys_only)
			continue;
		if (wl[w].size)
			measure("slab", wl[w].name, &slab, wl[w].size, wl[w].random_order);
		/* arena: LIFO batches; for randsz the batch scheme with those sizes */
		if (!wl[w].random_order || wl[w].size == 0)
			measure("arena (batch rollback)", wl[w].name, &arena, wl[w].size, 0);
		for (int st = 0; st < BL_HEAP_STRATEGIES; st++) {
			char label[64];

			heap_strategy = (enum bl_heap_strategy)st;
			snprintf(label, sizeof(label), "heap %s", bl_heap_strategy_name(heap_strategy));
			measure(label, wl[w].name, &heap, wl[w].size, wl[w].random_order);
		}
	}
	if (!sys_only && foot)
		footprint_heaps();
	return 0;
}
