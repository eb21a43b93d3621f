/* The daemon's two clocks. Decisions run on the monotonic clock (the loop's
 * uv_hrtime); snapshots and answers speak wall-clock time. */
#ifndef BALLAST_CLOCK_H
#define BALLAST_CLOCK_H

#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "ballast/units.h"

/* Monotonic nanoseconds: what the core modules take as `now`. */
static inline bl_time_ns bl_mono_now(void)
{
	return (bl_time_ns)uv_hrtime();
}

/* Wall-clock nanoseconds since the epoch. */
static inline int64_t bl_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * BL_NS_PER_S + ts.tv_nsec;
}

/* uv_timer_start, counting the timeout from now. libuv counts it from the
 * loop's cached time, taken when this loop iteration began, so a timer
 * started late in a busy iteration would fire early by however long the
 * iteration has run: a grace, a wait_ms or a hook's timeout cut short. */
static inline int bl_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t timeout_ms,
				 uint64_t repeat_ms)
{
	uv_update_time(t->loop);
	return uv_timer_start(t, cb, timeout_ms, repeat_ms);
}

#endif
