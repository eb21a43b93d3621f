/* The simulator's randomness: a seeded PRNG it owns, and the distributions
 * scenarios draw from.
 *
 * xoshiro256** (Blackman and Vigna) seeded through splitmix64. Never rand():
 * a run is a function of its seed alone. Streams are derived from (seed,
 * stream, a, b) by hashing, so "the latency of call 3 of task 17" is the same
 * number under every policy, whatever else each policy drew before.
 *
 * Pure: no globals, no clock, no allocation.
 */
#ifndef BALLAST_SIM_RNG_H
#define BALLAST_SIM_RNG_H

#include <stdbool.h>
#include <stdint.h>

/* A xoshiro256** state. Never all zero. */
struct bl_sim_rng {
	uint64_t s[4];
};

/* splitmix64: advances *x and returns the next output. Also the hash that
 * derives streams. */
static inline uint64_t bl_sim_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static inline uint64_t bl_sim_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* Returns the next 64 random bits. */
static inline uint64_t bl_sim_rng_next(struct bl_sim_rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = bl_sim_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = bl_sim_rotl(s[3], 45);
	return out;
}

/* Returns a uniform double in [0, 1), 53 random bits. */
static inline double bl_sim_rng_uniform(struct bl_sim_rng *r)
{
	return (double)(bl_sim_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Seeds r for the stream named by (seed, stream, a, b): different names give
 * independent-looking streams, the same name the same stream. */
void bl_sim_rng_seed(struct bl_sim_rng *r, uint64_t seed, uint64_t stream, uint64_t a, uint64_t b);

/* Returns an exponential variate of the given mean (> 0). */
double bl_sim_rng_exponential(struct bl_sim_rng *r, double mean);

/* Returns a standard normal variate (Box-Muller; one draw per call, the
 * second value is dropped so that the stream's use does not depend on
 * history). */
double bl_sim_rng_normal(struct bl_sim_rng *r);

/* ---- distributions ------------------------------------------------------- */

enum bl_sim_dist_kind {
	BL_SIM_DIST_CONSTANT = 0,    /* always a */
	BL_SIM_DIST_UNIFORM = 1,     /* uniform in [a, b) */
	BL_SIM_DIST_EXPONENTIAL = 2, /* mean a */
	BL_SIM_DIST_LOGNORMAL = 3,   /* median a, 99th percentile b (b >= a) */
};

/* A distribution of a non-negative quantity, in the caller's unit (ns,
 * tokens, bytes, seconds ...). Samples are clamped to [min, max]. */
struct bl_sim_dist {
	enum bl_sim_dist_kind kind;
	double a;   /* constant value, uniform low, exponential mean, lognormal median */
	double b;   /* uniform high, lognormal 99th percentile; unused otherwise */
	double min; /* samples below are raised to it, >= 0 */
	double max; /* samples above are lowered to it; 0: no cap */
};

/* Returns a constant distribution of value v. */
struct bl_sim_dist bl_sim_dist_constant(double v);

/* Draws one sample from d. */
double bl_sim_dist_sample(const struct bl_sim_dist *d, struct bl_sim_rng *r);

/* Returns d's mean before clamping (the lognormal's exp(mu + sigma^2 / 2)). */
double bl_sim_dist_mean(const struct bl_sim_dist *d);

/* Returns the name of the kind ("constant", "uniform", "exponential",
 * "lognormal"), or "unknown". */
const char *bl_sim_dist_name(enum bl_sim_dist_kind k);

#endif
