/* The simulator's charts: SVG line charts over the timeseries (replicas,
 * CPU against its band, quota use against the limit, tasks waiting, 429s,
 * latency), one line per policy, and an index.html that shows them with the
 * summary table. Written with stdio only, coordinates at fixed precision, so
 * the same run gives the same bytes. */
#ifndef BALLAST_SIM_CHARTS_H
#define BALLAST_SIM_CHARTS_H

#include <stddef.h>
#include <stdint.h>

#include "scenario.h"
#include "sim.h"

/* Writes DIR/{replicas,cpu,quota,waiting,429s,latency}.svg and
 * DIR/index.html. Returns 0, or -1 after printing why to stderr. */
int bl_sim_write_charts(const char *dir, const struct bl_scenario *sc, uint64_t seed,
			int64_t duration_ns, const struct bl_sim_result *res, size_t n);

#endif
