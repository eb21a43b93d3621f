/* The simulator's PRNG and distributions. See rng.h. */
#include "rng.h"

#include <math.h>

/* z of the standard normal's 99th percentile. */
#define Z99 2.3263478740408408
#define TWO_PI 6.283185307179586476925

void bl_sim_rng_seed(struct bl_sim_rng *r, uint64_t seed, uint64_t stream, uint64_t a, uint64_t b)
{
	uint64_t x = seed;

	/* Fold the name into one 64-bit state, each part through the mixer. */
	x = bl_sim_splitmix64(&x) ^ stream;
	x = bl_sim_splitmix64(&x) ^ a;
	x = bl_sim_splitmix64(&x) ^ b;
	for (int i = 0; i < 4; i++)
		r->s[i] = bl_sim_splitmix64(&x);
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = 1;
}

double bl_sim_rng_exponential(struct bl_sim_rng *r, double mean)
{
	/* 1 - u is in (0, 1]: log never sees 0. */
	return -mean * log(1.0 - bl_sim_rng_uniform(r));
}

double bl_sim_rng_normal(struct bl_sim_rng *r)
{
	double u1 = 1.0 - bl_sim_rng_uniform(r), u2 = bl_sim_rng_uniform(r);

	return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

struct bl_sim_dist bl_sim_dist_constant(double v)
{
	return (struct bl_sim_dist){.kind = BL_SIM_DIST_CONSTANT, .a = v};
}

double bl_sim_dist_sample(const struct bl_sim_dist *d, struct bl_sim_rng *r)
{
	double v;

	switch (d->kind) {
	case BL_SIM_DIST_UNIFORM:
		v = d->a + (d->b - d->a) * bl_sim_rng_uniform(r);
		break;
	case BL_SIM_DIST_EXPONENTIAL:
		v = bl_sim_rng_exponential(r, d->a);
		break;
	case BL_SIM_DIST_LOGNORMAL: {
		double sigma = d->b > d->a && d->a > 0 ? log(d->b / d->a) / Z99 : 0;

		v = d->a * exp(sigma * bl_sim_rng_normal(r));
		break;
	}
	case BL_SIM_DIST_CONSTANT:
	default:
		v = d->a;
		break;
	}
	if (v < d->min)
		v = d->min;
	if (d->max > 0 && v > d->max)
		v = d->max;
	return v;
}

double bl_sim_dist_mean(const struct bl_sim_dist *d)
{
	switch (d->kind) {
	case BL_SIM_DIST_UNIFORM:
		return (d->a + d->b) / 2;
	case BL_SIM_DIST_LOGNORMAL: {
		double sigma = d->b > d->a && d->a > 0 ? log(d->b / d->a) / Z99 : 0;

		return d->a * exp(sigma * sigma / 2);
	}
	case BL_SIM_DIST_EXPONENTIAL:
	case BL_SIM_DIST_CONSTANT:
	default:
		return d->a;
	}
}

const char *bl_sim_dist_name(enum bl_sim_dist_kind k)
{
	static const char *const names[] = {"constant", "uniform", "exponential", "lognormal"};

	return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}
