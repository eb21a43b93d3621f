/* Configuration blocks to core configurations. See cfgmap.h. */
#include "cfgmap.h"

#include "ballast/units.h"

void bl_cfg_budget_limits(const struct bl_cfg_budget *cb, struct bl_budget_limits *l)
{
	static const enum bl_dim map[BL_CFG_DIM_COUNT] = {
		[BL_CFG_DIM_REQUESTS] = BL_DIM_REQUESTS,
		[BL_CFG_DIM_TOKENS] = BL_DIM_TOKENS,
		[BL_CFG_DIM_INPUT_TOKENS] = BL_DIM_INPUT_TOKENS,
		[BL_CFG_DIM_OUTPUT_TOKENS] = BL_DIM_OUTPUT_TOKENS,
	};

	bl_budget_limits_default(l);
	for (int i = 0; i < BL_CFG_DIM_COUNT; i++) {
		if (!cb->limits[i].set)
			continue;
		l->rate[map[i]].limit = cb->limits[i].limit;
		l->rate[map[i]].per_ns = cb->limits[i].per_ns;
	}
	l->concurrent = cb->concurrent;
	l->target_utilization = cb->target_utilization;
	l->burst = cb->burst;
	l->adaptive_decrease = cb->adaptive_decrease;
	l->adaptive_increase = cb->adaptive_increase;
	l->adaptive_period_ns = cb->adaptive_period_ns;
}

void bl_cfg_breaker_config(const struct bl_cfg_breaker *cb, struct bl_breaker_config *bc)
{
	bl_breaker_config_default(bc);
	bc->window_is_time = cb->window_is_time;
	bc->window_count = cb->window_count;
	if (cb->window_is_time)
		bc->window_ns = cb->window_ns;
	bc->min_calls = cb->min_calls;
	bc->failure_rate = cb->failure_rate;
	bc->slow_call_ns = cb->slow_call_ns;
	bc->slow_rate = cb->slow_rate;
	bc->consecutive_failures = cb->consecutive_failures;
	bc->open_for_ns = cb->open_for_ns;
	bc->max_open_for_ns = cb->max_open_for_ns;
	bc->half_open_probes = cb->half_open_probes;
	bc->rate_limited_trips = cb->rate_limited_trips;
}

enum bl_balance_strategy bl_cfg_balance_strategy(enum bl_cfg_strategy s)
{
	switch (s) {
	case BL_STRATEGY_ROUND_ROBIN: return BL_BALANCE_ROUND_ROBIN;
	case BL_STRATEGY_WEIGHTED: return BL_BALANCE_WEIGHTED;
	case BL_STRATEGY_RANDOM: return BL_BALANCE_RANDOM;
	case BL_STRATEGY_LEAST_INFLIGHT: return BL_BALANCE_LEAST_INFLIGHT;
	case BL_STRATEGY_P2C: return BL_BALANCE_P2C;
	case BL_STRATEGY_CONSISTENT_HASH: return BL_BALANCE_CONSISTENT_HASH;
	case BL_STRATEGY_PEAK_EWMA:
	default: return BL_BALANCE_PEAK_EWMA;
	}
}

void bl_cfg_planner_config(const struct bl_cfg_autoscaler *a, struct bl_planner_config *pc)
{
	bl_planner_config_default(pc);
	pc->min_replicas = (int32_t)a->min_replicas;
	pc->max_replicas = (int32_t)a->max_replicas;
	pc->scale_up.stabilization_s = (int32_t)(a->scale_up_stabilization_ns / BL_NS_PER_S);
	pc->scale_down.stabilization_s = (int32_t)(a->scale_down_stabilization_ns / BL_NS_PER_S);
	pc->panic.stable_window_ns = a->stable_window_ns;
	pc->panic.panic_window_ns = a->panic_window_ns;
	pc->panic.threshold = a->panic_threshold < 1.1 ? 1.1 : a->panic_threshold;
	pc->panic.granularity_ns = BL_NS_PER_S;
	while (pc->panic.stable_window_ns / pc->panic.granularity_ns > BL_PLANNER_WINDOW_BUCKETS)
		pc->panic.granularity_ns *= 2;
}
