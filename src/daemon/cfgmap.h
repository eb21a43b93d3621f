/* The configuration's blocks as the pure core's configurations: one mapping,
 * used by the daemon and by the simulator, so that a scenario's `budgets`,
 * `pools` and `autoscaler` mean exactly what they mean to `ballast serve`. */
#ifndef BALLAST_CFGMAP_H
#define BALLAST_CFGMAP_H

#include "ballast/balancer.h"
#include "ballast/breaker.h"
#include "ballast/budget.h"
#include "ballast/planner.h"
#include "config.h"

/* A budget's limits (defaults where the block says nothing). */
void bl_cfg_budget_limits(const struct bl_cfg_budget *cb, struct bl_budget_limits *l);

/* A pool's breaker settings. */
void bl_cfg_breaker_config(const struct bl_cfg_breaker *cb, struct bl_breaker_config *bc);

/* A pool's strategy. */
enum bl_balance_strategy bl_cfg_balance_strategy(enum bl_cfg_strategy s);

/* The autoscaler's planner settings: bounds, stabilization windows and burst
 * mode, with demand buckets of 1 s (coarser for long stable windows). */
void bl_cfg_planner_config(const struct bl_cfg_autoscaler *a, struct bl_planner_config *pc);

#endif
