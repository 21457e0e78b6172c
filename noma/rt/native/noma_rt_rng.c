/*
 * noma_rt_rng.c -- the seeded random generator of the NOMA native runtime: one generator per
 * context (xoshiro256** seeded by splitmix64), uniform and standard normal draws, fills
 * (noma_seed, noma_rand, noma_randn, noma_fill) and the batched draws the parameter code uses
 * (noma__rand_u53, noma__randn_d, noma__randn_fill, noma__randn_affine). The generator's state
 * as data (checkpoints, undo) is read and written by noma_rng_state_get/set (noma_rt_params.c).
 *
 * Exact algorithm (a contract: tests/rt/test_native_runtime.py reproduces it in Python, bit for
 * bit; docs/RUNTIME_ABI.md):
 *  seed key  : s (as double) finite, integral and in [-2^63, 2^63): key = (uint64)(int64) s
 *              (two's complement); otherwise key = the IEEE-754 binary64 bit pattern of s.
 *  state     : splitmix64 from x = key, four times:
 *                x += 0x9E3779B97F4A7C15; z = x;
 *                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *                z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *                s[i] = z ^ (z >> 31)          (all arithmetic mod 2^64)
 *  next()    : xoshiro256**: r = rotl(s1 * 5, 7) * 9; t = s1 << 17;
 *              s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45); return r
 *  uniform   : u = (next() >> 11) * 2^-53 (double in [0,1)). noma_rand returns u in the f64
 *              build and (next() >> 40) * 2^-24 in the f32 build.
 *  normal    : Marsaglia polar on doubles. If a spare is cached, return it (and drop it). Else
 *              repeat { x = 2u-1; y = 2u-1 (two uniform draws, x first); q = x*x + y*y } until
 *              0 < q < 1; f = sqrt(-2 L(q) / q); cache y*f as the spare; return x*f.
 *              noma_seed drops the spare.
 *  L(q)      : NOMA's natural logarithm (noma_log below; fdlibm's e_log.c algorithm on its hfsq
 *              branch, with no fused multiply-add): the runtime does not call libm's log, so
 *              the draws are the same with every libm and on every machine, and the vector
 *              path computes exactly what the scalar path computes. Within 0.81 ulp of ln q.
 *  fill      : kind 0 constant a; 1 a + (b-a)*u; 2 a + b*normal, in index order, computed in
 *              double and rounded to real.
 * Default seed at context creation: 0.
 *
 * Speed: a fill of n normals (noma__randn_fill) gives exactly the values of n noma__randn_d calls
 * and leaves the same state, in three passes over a batch: the raw 64-bit draws (sequential:
 * the generator's state chain), the screening of candidate pairs (0 < q < 1) and the factors
 * sqrt(-2 L(q) / q) of the accepted pairs. With AVX-512 (F + DQ; the runtime is built with
 * -march=native) the last two run 8 pairs at a time -- the same operations as the scalar code,
 * lane by lane, so the results are identical -- and the scalar code does the rest of a batch
 * (and everything elsewhere). A batch draws at most as many candidate pairs as it still needs
 * normals, so it never draws past what n calls would draw.
 */
#include "noma_rt_internal.h"

/* No floating-point contraction (FMA) in this file: every operation of the contract above is
   rounded on its own, whatever -std/-march the file is compiled with. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define RNG_AVX512 1
#endif

/* ======================================================================== */
/* Generator                                                                */
/* ======================================================================== */

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* One xoshiro256** step of the state s[4]. */
static inline uint64_t xoshiro_next(uint64_t *s) {
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* n raw draws into out (the state kept in registers meanwhile). */
static void rng_block(NomaCtx *c, uint64_t *out, int64_t n) {
    uint64_t s[4] = {c->rng[0], c->rng[1], c->rng[2], c->rng[3]};
    for (int64_t i = 0; i < n; i++) out[i] = xoshiro_next(s);
    memcpy(c->rng, s, sizeof s);
}

void noma__rng_seed(NomaCtx *c, double s) {
    uint64_t key;
    if (isfinite(s) && s == floor(s) && s >= -9223372036854775808.0 && s < 9223372036854775808.0) {
        key = (uint64_t)(int64_t)s;
    } else {
        memcpy(&key, &s, sizeof key);
    }
    uint64_t x = key;
    for (int i = 0; i < 4; i++) {
        x += 0x9E3779B97F4A7C15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        c->rng[i] = z ^ (z >> 31);
    }
    c->has_spare = 0;
    c->spare = 0;
}

/* 2u - 1 for the raw draw r (exact: a multiple of 2^-52 in (-1, 1)). */
static inline double polar_coord(uint64_t r) { return 2.0 * ((double)(r >> 11) * 0x1.0p-53) - 1.0; }

double noma__rand_u53(NomaCtx *c) { return (double)(xoshiro_next(c->rng) >> 11) * 0x1.0p-53; }

/* ======================================================================== */
/* NOMA's logarithm and the polar factor                                    */
/*                                                                          */
/* x = 2^k m with m in [sqrt(2)/2, sqrt(2)) (bit arithmetic: OFF is the bit  */
/* pattern of ~sqrt(2)/2); f = m - 1 (exact); s = f / (2 + f);               */
/* log(1 + f) = f - (hfsq - s (hfsq + R(s^2))), hfsq = f^2 / 2, R fdlibm's    */
/* degree-7 polynomial in s^2 (|error| < 2^-58.45 on this range); ln 2 split */
/* in ln2_hi (k ln2_hi exact for |k| < 2^11) + ln2_lo. For positive normal x */
/* (the polar method's q lies in [2^-104, 1)).                               */
/* ======================================================================== */

#define LOG_OFF 0x3fe6a09e667f3bcdull
#define LN2_HI 0x1.62e42feep-1
#define LN2_LO 0x1.a39ef35793c76p-33
#define LG1 0x1.5555555555593p-1
#define LG2 0x1.999999997fa04p-2
#define LG3 0x1.2492494229359p-2
#define LG4 0x1.c71c51d8e78afp-3
#define LG5 0x1.7466496cb03dep-3
#define LG6 0x1.39a09d078c69fp-3
#define LG7 0x1.2f112df3e5244p-3

static inline double noma_log(double x) {
    uint64_t ix;
    memcpy(&ix, &x, sizeof ix);
    uint64_t tmp = ix - LOG_OFF;
    double dk = (double)((int64_t)tmp >> 52);
    uint64_t im = ix - (tmp & (0xfffull << 52));
    double m;
    memcpy(&m, &im, sizeof m);
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double w = z * z;
    double t1 = w * (LG2 + w * (LG4 + w * LG6));
    double t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    double r = t2 + t1;
    double hfsq = 0.5 * f * f;
    return dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f);
}

/* The polar method's factor sqrt(-2 L(q) / q). */
static inline double polar_factor(double q) { return sqrt(-2.0 * noma_log(q) / q); }

#ifdef RNG_AVX512
#define V(x) _mm512_set1_pd(x)
/* noma_log on 8 lanes: the same operations in the same order. */
static inline __m512d noma_log8(__m512d x) {
    __m512i ix = _mm512_castpd_si512(x);
    __m512i tmp = _mm512_sub_epi64(ix, _mm512_set1_epi64((long long)LOG_OFF));
    __m512d dk = _mm512_cvtepi64_pd(_mm512_srai_epi64(tmp, 52));
    __m512i im = _mm512_sub_epi64(ix, _mm512_and_si512(tmp, _mm512_set1_epi64((long long)(0xfffull << 52))));
    __m512d f = _mm512_sub_pd(_mm512_castsi512_pd(im), V(1.0));
    __m512d s = _mm512_div_pd(f, _mm512_add_pd(V(2.0), f));
    __m512d z = _mm512_mul_pd(s, s);
    __m512d w = _mm512_mul_pd(z, z);
#define MA(a, b, cst) _mm512_add_pd(V(cst), _mm512_mul_pd(a, b)) /* cst + a * b, two roundings */
    __m512d t1 = _mm512_mul_pd(w, MA(w, MA(w, V(LG6), LG4), LG2));
    __m512d t2 = _mm512_mul_pd(z, MA(w, MA(w, MA(w, V(LG7), LG5), LG3), LG1));
#undef MA
    __m512d r = _mm512_add_pd(t2, t1);
    __m512d hfsq = _mm512_mul_pd(_mm512_mul_pd(V(0.5), f), f);
    __m512d inner = _mm512_add_pd(_mm512_mul_pd(s, _mm512_add_pd(hfsq, r)), _mm512_mul_pd(dk, V(LN2_LO)));
    return _mm512_sub_pd(_mm512_mul_pd(dk, V(LN2_HI)), _mm512_sub_pd(_mm512_sub_pd(hfsq, inner), f));
}

static inline __m512d polar_factor8(__m512d q) {
    return _mm512_sqrt_pd(_mm512_div_pd(_mm512_mul_pd(V(-2.0), noma_log8(q)), q));
}
#endif

/* ======================================================================== */
/* Normal draws                                                             */
/* ======================================================================== */

double noma__randn_d(NomaCtx *c) {
    if (c->has_spare) {
        c->has_spare = 0;
        return c->spare;
    }
    double x, y, q;
    do {
        x = polar_coord(xoshiro_next(c->rng));
        y = polar_coord(xoshiro_next(c->rng));
        q = x * x + y * y;
    } while (q >= 1.0 || q == 0.0);
    double f = polar_factor(q);
    c->spare = y * f;
    c->has_spare = 1;
    return x * f;
}

enum { BATCH = 256 }; /* candidate pairs per pass */

/* Screens the candidate pairs (raw[2j], raw[2j+1]), j < n: the accepted ones (0 < q < 1) go to
   xs, ys, qs in order (each needs room for n + 8). Returns how many. */
static int64_t screen_pairs(const uint64_t *raw, int64_t n, double *xs, double *ys, double *qs) {
    int64_t a = 0, j = 0;
#ifdef RNG_AVX512
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    for (; j + 8 <= n; j += 8) {
        __m512i lo = _mm512_loadu_si512(raw + 2 * j), hi = _mm512_loadu_si512(raw + 2 * j + 8);
        __m512d x = _mm512_cvtepu64_pd(_mm512_srli_epi64(_mm512_permutex2var_epi64(lo, even, hi), 11));
        __m512d y = _mm512_cvtepu64_pd(_mm512_srli_epi64(_mm512_permutex2var_epi64(lo, odd, hi), 11));
        x = _mm512_sub_pd(_mm512_mul_pd(V(2.0), _mm512_mul_pd(x, V(0x1.0p-53))), V(1.0));
        y = _mm512_sub_pd(_mm512_mul_pd(V(2.0), _mm512_mul_pd(y, V(0x1.0p-53))), V(1.0));
        __m512d q = _mm512_add_pd(_mm512_mul_pd(x, x), _mm512_mul_pd(y, y));
        __mmask8 ok = _mm512_cmp_pd_mask(q, V(1.0), _CMP_LT_OQ) & _mm512_cmp_pd_mask(q, V(0.0), _CMP_NEQ_OQ);
        _mm512_storeu_pd(xs + a, _mm512_maskz_compress_pd(ok, x));
        _mm512_storeu_pd(ys + a, _mm512_maskz_compress_pd(ok, y));
        _mm512_storeu_pd(qs + a, _mm512_maskz_compress_pd(ok, q));
        a += __builtin_popcount((unsigned)ok);
    }
#endif
    for (; j < n; j++) {
        double x = polar_coord(raw[2 * j]), y = polar_coord(raw[2 * j + 1]);
        double q = x * x + y * y;
        xs[a] = x;
        ys[a] = y;
        qs[a] = q;
        a += !(q >= 1.0 || q == 0.0);
    }
    return a;
}

/* The normals of accepted pairs j < a, in order, into out[0 .. 2a): x f, y f. */
static void polar_pairs(const double *xs, const double *ys, const double *qs, int64_t a, double *out) {
    int64_t j = 0;
#ifdef RNG_AVX512
    const __m512i lo_idx = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi_idx = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    for (; j + 8 <= a; j += 8) {
        __m512d f = polar_factor8(_mm512_loadu_pd(qs + j));
        __m512d zx = _mm512_mul_pd(_mm512_loadu_pd(xs + j), f);
        __m512d zy = _mm512_mul_pd(_mm512_loadu_pd(ys + j), f);
        _mm512_storeu_pd(out + 2 * j, _mm512_permutex2var_pd(zx, lo_idx, zy));
        _mm512_storeu_pd(out + 2 * j + 8, _mm512_permutex2var_pd(zx, hi_idx, zy));
    }
#endif
    for (; j < a; j++) {
        double f = polar_factor(qs[j]);
        out[2 * j] = xs[j] * f;
        out[2 * j + 1] = ys[j] * f;
    }
}

/* n standard normals into out: exactly the values (and the generator state after) of n calls of
   noma__randn_d (see the file comment). */
void noma__randn_fill(NomaCtx *c, double *out, int64_t n) {
    int64_t i = 0;
    if (n > 0 && c->has_spare) {
        c->has_spare = 0;
        out[i++] = c->spare;
    }
    uint64_t raw[2 * BATCH];
    double xs[BATCH + 8], ys[BATCH + 8], qs[BATCH + 8], z[2];
    while (i < n) {
        int64_t need = (n - i + 1) / 2; /* pairs still needed; the last one may be half spare */
        int64_t cand = need < BATCH ? need : BATCH;
        rng_block(c, raw, 2 * cand);
        int64_t a = screen_pairs(raw, cand, xs, ys, qs);
        int64_t whole = 2 * a <= n - i ? a : a - 1; /* pairs whose both normals go to out */
        polar_pairs(xs, ys, qs, whole, out + i);
        i += 2 * whole;
        if (whole < a) { /* the last pair: x f ends out, y f is the spare */
            polar_pairs(xs + whole, ys + whole, qs + whole, 1, z);
            out[i++] = z[0];
            c->spare = z[1];
            c->has_spare = 1;
        }
    }
}

/* out[i] = mean + std * z_i for n standard normals z_i drawn as noma__randn_fill draws them. */
void noma__randn_affine(NomaCtx *c, real *out, int64_t n, double mean, double std) {
    enum { CHUNK = 1024 };
    double z[CHUNK];
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        noma__randn_fill(c, z, k);
        for (int64_t j = 0; j < k; j++) out[i + j] = (real)(mean + std * z[j]);
    }
}

/* ======================================================================== */
/* Public entry points                                                      */
/* ======================================================================== */

void noma_seed(real s) { noma__rng_seed(noma__cur(), (double)s); }

real noma_rand(void) {
    NomaCtx *c = noma__cur();
#ifdef NOMA_F32
    return (real)((float)(xoshiro_next(c->rng) >> 40) * 0x1.0p-24f);
#else
    return noma__rand_u53(c);
#endif
}

real noma_randn(void) { return (real)noma__randn_d(noma__cur()); }

void noma_fill(real *out, int64_t n, int32_t kind, real a, real b) {
    NomaCtx *c = noma__cur();
    if (n <= 0) return;
    if (!out) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "fill: missing output buffer");
        return;
    }
    double da = (double)a, db = (double)b;
    switch (kind) {
    case 0:
        for (int64_t i = 0; i < n; i++) out[i] = a;
        break;
    case 1:
        for (int64_t i = 0; i < n; i++) out[i] = (real)(da + (db - da) * noma__rand_u53(c));
        break;
    case 2:
        noma__randn_affine(c, out, n, da, db);
        break;
    default:
        noma__failf(NOMA_ERR_RUNTIME, -1, "fill: unknown kind %d", (int)kind);
    }
}
