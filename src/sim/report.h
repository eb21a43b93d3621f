/* The simulator's reports and its command line: the table on stdout,
 * DIR/summary.json and DIR/timeseries.csv. Every number is printed with a
 * fixed precision, so the same seed gives byte-identical files. */
#ifndef BALLAST_SIM_REPORT_H
#define BALLAST_SIM_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "scenario.h"
#include "sim.h"

/* Writes the summary JSON of n results (in policy order). */
void bl_sim_write_summary(FILE *f, const struct bl_scenario *sc, uint64_t seed,
			  int64_t duration_ns, const struct bl_sim_result *res, size_t n);

/* Writes the timeseries CSV of n results: one header, then each policy's rows. */
void bl_sim_write_timeseries(FILE *f, const struct bl_sim_result *res, size_t n);

/* Prints one row per result for a person. */
void bl_sim_print_table(FILE *f, const struct bl_scenario *sc, uint64_t seed,
			int64_t duration_ns, const struct bl_sim_result *res, size_t n);

/* `ballast sim SCENARIO.yaml [--out DIR] [--seed N] [--duration D] [--policy NAME]...`:
 * argv holds the arguments after "sim". Returns the exit code: 0 ok, 1 the
 * scenario or a run failed, 2 usage. */
int bl_sim_main(int argc, char **argv);

#endif
