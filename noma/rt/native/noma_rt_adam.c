/*
 * noma_rt_adam.c -- the Adam / AdamW update of the NOMA native runtime (called by
 * noma_opt_step in noma_rt_params.c, which owns the parameter and its state buffers).
 *
 * Formula (PyTorch's, per entry i with its own step count t[i]):
 *   p *= decay (AdamW: 1 - lr wd, Adam: 1);  g += wd p (Adam's wd; AdamW passes wd = 0)
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g g;  pow1 *= b1;  pow2 *= b2;  t += 1
 *   denom = sqrt(v) / sqrt(1-pow2) + eps;  p -= (lr / (1-pow1)) * (m / denom)
 * Entries at step 0 have powers 1 whatever pow1/pow2 hold (a resize may leave them 0).
 *
 * Bias corrections are per entry but equal within runs of entries (one run unless a resize
 * added entries), so they are computed once per run (adam_run) and shared.
 *
 * Two implementations of the same formula:
 * - AVX-512 (the runtime is built with -march=native): one pass over the entries, 8 (f64) or 16
 *   (f32) lanes at a time, masked loads for the tail (every entry goes through the same
 *   arithmetic whatever n is). Each block checks its step counts / powers against the current
 *   run (new constants only where a run starts). The square root and the two divisions, which
 *   bound a plain loop on the divider (~7 cycles per f64 entry), become the 14-bit hardware
 *   estimates (vrsqrt14 / vrcp14) refined by Newton steps with fused multiply-adds:
 *   sqrt(v) = v y (y ~ 1/sqrt(v) after one Newton step, then one residual correction of the
 *   square root; f32: the residual step only), m / d = m q (q ~ 1/d after two Newton steps;
 *   f32: one), and the division by sqrt(1-pow2) a multiplication by its reciprocal, computed
 *   once per run. The update is within a few ulp of the correctly rounded formula (1e-14
 *   relative in f64, tests/rt/test_adam_kernel.py). v outside [2^-960, inf) (0, subnormals,
 *   inf, NaN; f32: [2^-96, inf)) takes the exact square root, and when that happened or eps is
 *   outside [2^-900, 2^900] (f32: [2^-100, 2^100]) a denominator outside [2^-1000, 2^1000]
 *   (f32: [2^-120, 2^120]) takes the exact division, so IEEE edge cases are the formula's.
 * - Portable C (other CPUs): the formula as written, per run of equal powers.
 * The moments m and v are computed with the formula's exact operations in both, and with
 * weight_decay 0 the gradient is used as it is (PyTorch skips the term; 0 * inf would be NaN).
 */
#include "noma_rt_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

#ifdef NOMA_F32
#define RSQRT sqrtf
#else
#define RSQRT sqrt
#endif

/* q * b for a running power q = beta^t in [0, 1] and b = beta in [0, 1]: exactly the IEEE
 * product, but without subnormal arithmetic. Once beta^t underflows it sticks at the smallest
 * subnormals (0.9 * 2^-1074 rounds back to 2^-1074), and every multiply with a subnormal
 * operand costs a microcode assist (~150 cycles) on x86 -- at every step of a long run. A
 * subnormal q is k * 2^-UNIT with an integer k, so q * b = RNE(k * b) * 2^-UNIT: k * b is
 * formed exactly (hi + lo, with an fma), rounded to an integer with ties to even, and the
 * integer is the subnormal's bit pattern. */
#ifdef NOMA_F32
static real pow_mul(real q, real b) {
    if (!(q > 0) || q >= FLT_MIN || !(b >= 0 && b <= 1)) return q * b;
    uint32_t bits;
    memcpy(&bits, &q, sizeof bits);
    double x = (double)bits * (double)b; /* exact: 23 + 24 bits */
    double r = nearbyint(x);             /* ties to even (default rounding mode) */
    uint32_t out = (uint32_t)r;
    real res;
    memcpy(&res, &out, sizeof res);
    return res;
}
/* 1 - x for x in [0, 1]; exactly 1 below 2^-25 (so no subnormal operand reaches the FPU) */
#define ONE_MINUS(x) ((x) < 0x1p-25f ? (real)1 : 1 - (x))
#else
static real pow_mul(real q, real b) {
    if (!(q > 0) || q >= DBL_MIN || !(b >= 0 && b <= 1)) return q * b;
    uint64_t bits;
    memcpy(&bits, &q, sizeof bits);
    double k = (double)bits; /* exact: < 2^52 */
    double hi = k * b;
    double lo = fma(k, b, -hi); /* k * b = hi + lo exactly */
    double r = nearbyint(hi);
    double d = hi - r; /* exact */
    if (d == 0.5 || d == -0.5) {
        /* hi is a tie: the exact product lies on one side of it unless lo == 0 */
        if (lo > 0) r = d > 0 ? r + 1 : r;
        else if (lo < 0) r = d > 0 ? r : r - 1;
    }
    uint64_t out = (uint64_t)r;
    real res;
    memcpy(&res, &out, sizeof res);
    return res;
}
#define ONE_MINUS(x) ((x) < 0x1p-54 ? (real)1 : 1 - (x))
#endif

/* The constants of one run of entries whose powers before this step are (q1, q2). */
typedef struct {
    real nq1, nq2; /* the powers after this step */
    real c2;       /* sqrt(1 - pow2) */
    real ic2;      /* 1 / sqrt(1 - pow2) (vector path) */
    real step;     /* lr / (1 - pow1) */
} AdamRun;

static AdamRun adam_run_compute(real q1, real q2, real lr, real b1, real b2) {
    AdamRun r;
    r.nq1 = pow_mul(q1, b1);
    r.nq2 = pow_mul(q2, b2);
    r.c2 = RSQRT(ONE_MINUS(r.nq2));
    r.ic2 = 1 / r.c2;
    r.step = lr / ONE_MINUS(r.nq1);
    return r;
}

/* The last run's inputs and constants: every parameter of a training step usually has the same
 * powers, so the square root and divisions are computed once per step, not once per parameter
 * -- for tiny parameters they cost more than the update itself. A pure function of its inputs,
 * so the cache never changes a result. Process-wide like the current context (noma__cur): the
 * runtime runs one context at a time. */
static struct {
    real key[5];
    AdamRun r;
    int valid;
} g_last_run;

static AdamRun adam_run(real q1, real q2, real lr, real b1, real b2) {
    const real key[5] = {q1, q2, lr, b1, b2};
    if (g_last_run.valid && memcmp(key, g_last_run.key, sizeof key) == 0) return g_last_run.r;
    AdamRun r = adam_run_compute(q1, q2, lr, b1, b2);
    memcpy(g_last_run.key, key, sizeof key);
    g_last_run.r = r;
    g_last_run.valid = 1;
    return r;
}

#if defined(__AVX512F__)
#include <immintrin.h>

#ifndef NOMA_F32
/* ---------------------------------------------------------------- AVX-512, f64: 8 lanes */

#define LANES 8
typedef __mmask8 lmask;
#define ALL_LANES ((lmask)0xFF)
#define VSET1 _mm512_set1_pd
#define EPS_SAFE_LO 0x1p-900 /* eps in [2^-900, 2^900]: see Hyper.eps_safe */
#define EPS_SAFE_HI 0x1p900
#define INLINE static inline __attribute__((always_inline))

/* sqrt(v) for v outside `odd` (exact sqrt there): estimate y ~ 1/sqrt(v), one Newton step
   (28 bits), s = v y, one residual step (v - s s must not be subnormal: v >= 2^-960) */
INLINE __m512d vsqrt_fast(__m512d v, lmask odd) {
    const __m512d half = _mm512_set1_pd(0.5), three_halves = _mm512_set1_pd(1.5);
    __m512d y = _mm512_rsqrt14_pd(v);
    y = _mm512_mul_pd(y, _mm512_fnmadd_pd(_mm512_mul_pd(_mm512_mul_pd(half, v), y), y, three_halves));
    __m512d s = _mm512_mul_pd(v, y);
    s = _mm512_fmadd_pd(_mm512_fnmadd_pd(s, s, v), _mm512_mul_pd(half, y), s);
    if (odd) s = _mm512_mask_sqrt_pd(s, odd, v);
    return s;
}

/* m / d: estimate q ~ 1/d, two Newton steps (28, then 53 bits), u = m q. `check`: |d| may lie
   outside [2^-1000, 2^1000] (exact division there) */
INLINE __m512d vdiv_fast(__m512d m, __m512d d, int check) {
    const __m512d one = _mm512_set1_pd(1.0);
    __m512d q = _mm512_rcp14_pd(d);
    q = _mm512_fmadd_pd(q, _mm512_fnmadd_pd(d, q, one), q);
    q = _mm512_fmadd_pd(q, _mm512_fnmadd_pd(d, q, one), q);
    __m512d u = _mm512_mul_pd(m, q);
    if (check) {
        __m512d ad = _mm512_abs_pd(d);
        lmask odd = _mm512_cmp_pd_mask(ad, _mm512_set1_pd(0x1p-1000), _CMP_NGE_UQ) |
                    _mm512_cmp_pd_mask(ad, _mm512_set1_pd(0x1p1000), _CMP_NLE_UQ);
        if (odd) u = _mm512_mask_div_pd(u, odd, m, d);
    }
    return u;
}

typedef struct {
    __m512d b1, b2, ob1, ob2, eps, wd, decay;
    int eps_safe; /* eps in [2^-900, 2^900]: d = sqrt(v) ic2 + eps is in range for finite v */
    int has_wd;   /* wd != 0 (else g is used as it is, as PyTorch does) */
} Hyper;

/* the current run: powers before the step (q1, q2; NaN: none yet) and its constants */
typedef struct {
    __m512d q1, q2, nq1, nq2, ic2, step;
    int wild; /* 1/sqrt(1-pow2) not finite or huge (beta2 = 1): check every denominator */
} Run;

#else
/* ---------------------------------------------------------------- AVX-512, f32: 16 lanes */

#define LANES 16
typedef __mmask16 lmask;
#define ALL_LANES ((lmask)0xFFFF)
#define VSET1 _mm512_set1_ps
#define EPS_SAFE_LO 0x1p-100f
#define EPS_SAFE_HI 0x1p100f
#define INLINE static inline __attribute__((always_inline))

/* sqrt(v) for v outside `odd` (exact sqrt there): estimate y ~ 1/sqrt(v) (14 bits), s = v y,
   one residual step (28 bits; v - s s must not be subnormal: v >= 2^-96) */
INLINE __m512 vsqrt_fast(__m512 v, lmask odd) {
    __m512 y = _mm512_rsqrt14_ps(v);
    __m512 s = _mm512_mul_ps(v, y);
    s = _mm512_fmadd_ps(_mm512_fnmadd_ps(s, s, v), _mm512_mul_ps(_mm512_set1_ps(0.5f), y), s);
    if (odd) s = _mm512_mask_sqrt_ps(s, odd, v);
    return s;
}

/* m / d: estimate q ~ 1/d (14 bits), one Newton step (28 bits), u = m q. `check`: |d| may lie
   outside [2^-120, 2^120] (exact division there) */
INLINE __m512 vdiv_fast(__m512 m, __m512 d, int check) {
    __m512 q = _mm512_rcp14_ps(d);
    q = _mm512_fmadd_ps(q, _mm512_fnmadd_ps(d, q, _mm512_set1_ps(1.0f)), q);
    __m512 u = _mm512_mul_ps(m, q);
    if (check) {
        __m512 ad = _mm512_abs_ps(d);
        lmask odd = _mm512_cmp_ps_mask(ad, _mm512_set1_ps(0x1p-120f), _CMP_NGE_UQ) |
                    _mm512_cmp_ps_mask(ad, _mm512_set1_ps(0x1p120f), _CMP_NLE_UQ);
        if (odd) u = _mm512_mask_div_ps(u, odd, m, d);
    }
    return u;
}

typedef struct {
    __m512 b1, b2, ob1, ob2, eps, wd, decay;
    int eps_safe; /* eps in [2^-100, 2^100] */
    int has_wd;   /* wd != 0 */
} Hyper;

typedef struct {
    __m512 q1, q2, nq1, nq2, ic2, step;
    int wild; /* 1/sqrt(1-pow2) not finite or huge (beta2 = 1) */
} Run;

#endif

/* (Both precisions.) The run the previous update ended with (and the hyper-parameters its constants depend on):
 * the parameters of one training step share their powers, so the next parameter's update starts
 * in that run instead of recomputing its constants (run_start) on its first block. The constants
 * are a pure function of (powers, lr, b1, b2), so this changes no result. Process-wide, like
 * g_last_run. */
static struct {
    Run r;
    real lr, b1, b2;
    int valid;
} g_run_cache;

static int run_cached(Run *r, real lr, real b1, real b2) {
    if (!g_run_cache.valid || g_run_cache.lr != lr || g_run_cache.b1 != b1 || g_run_cache.b2 != b2)
        return 0;
    *r = g_run_cache.r;
    return 1;
}

static void run_keep(const Run *r, real lr, real b1, real b2) {
    g_run_cache.r = *r;
    g_run_cache.lr = lr, g_run_cache.b1 = b1, g_run_cache.b2 = b2;
    g_run_cache.valid = 1;
}

#ifndef NOMA_F32

/* Makes `r` the run of the block's effective powers P1, P2 (lanes in k), per lane if they
   differ (then the next block looks again). */
static void run_start(Run *r, __m512d P1, __m512d P2, lmask k, real lr, real b1, real b2) {
    real a1[LANES], a2[LANES];
    _mm512_storeu_pd(a1, P1);
    _mm512_storeu_pd(a2, P2);
    r->q1 = _mm512_set1_pd(a1[0]);
    r->q2 = _mm512_set1_pd(a2[0]);
    lmask same = _mm512_cmp_pd_mask(P1, r->q1, _CMP_EQ_OQ) & _mm512_cmp_pd_mask(P2, r->q2, _CMP_EQ_OQ);
    if ((same & k) == k) {
        AdamRun c = adam_run(a1[0], a2[0], lr, b1, b2);
        r->nq1 = _mm512_set1_pd(c.nq1);
        r->nq2 = _mm512_set1_pd(c.nq2);
        r->ic2 = _mm512_set1_pd(c.ic2);
        r->step = _mm512_set1_pd(c.step);
        r->wild = !(c.ic2 <= 0x1p100);
        return;
    }
    real c1[LANES], c2[LANES], ci[LANES], cs[LANES];
    r->wild = 0;
    for (int l = 0; l < LANES; l++) {
        AdamRun c = adam_run(a1[l], a2[l], lr, b1, b2);
        c1[l] = c.nq1, c2[l] = c.nq2, ci[l] = c.ic2, cs[l] = c.step;
        r->wild |= !(c.ic2 <= 0x1p100);
    }
    r->nq1 = _mm512_loadu_pd(c1);
    r->nq2 = _mm512_loadu_pd(c2);
    r->ic2 = _mm512_loadu_pd(ci);
    r->step = _mm512_loadu_pd(cs);
    r->q1 = r->q2 = _mm512_set1_pd(NAN);
}

/* Entries [i, i + popcount(k)). `plain`: Adam without weight decay (g and p used as they are,
   as PyTorch does when weight_decay is 0). */
INLINE void block(int64_t i, lmask k, int plain, const Hyper *h, Run *r, real *restrict p,
                  const real *restrict g, real *restrict m, real *restrict v,
                  real *restrict pow1, real *restrict pow2, int64_t *restrict t, real lr,
                  real b1, real b2) {
    const __m512d one = _mm512_set1_pd(1.0);
    __m512i T = _mm512_maskz_loadu_epi64(k, t + i);
    lmask fresh = _mm512_cmpeq_epi64_mask(T, _mm512_setzero_si512());
    __m512d P1 = _mm512_mask_mov_pd(_mm512_maskz_loadu_pd(k, pow1 + i), fresh, one);
    __m512d P2 = _mm512_mask_mov_pd(_mm512_maskz_loadu_pd(k, pow2 + i), fresh, one);
    lmask same = _mm512_cmp_pd_mask(P1, r->q1, _CMP_EQ_OQ) & _mm512_cmp_pd_mask(P2, r->q2, _CMP_EQ_OQ);
    if ((same & k) != k) run_start(r, P1, P2, k, lr, b1, b2);
    __m512d P = _mm512_maskz_loadu_pd(k, p + i), G = _mm512_maskz_loadu_pd(k, g + i);
    if (!plain) {
        P = _mm512_mul_pd(P, h->decay);
        if (h->has_wd) G = _mm512_add_pd(G, _mm512_mul_pd(h->wd, P));
    }
    /* the moments with the formula's own roundings (no fused multiply-add) */
    __m512d M = _mm512_add_pd(_mm512_mul_pd(h->b1, _mm512_maskz_loadu_pd(k, m + i)), _mm512_mul_pd(h->ob1, G));
    __m512d V = _mm512_add_pd(_mm512_mul_pd(h->b2, _mm512_maskz_loadu_pd(k, v + i)),
                             _mm512_mul_pd(_mm512_mul_pd(h->ob2, G), G));
    _mm512_mask_storeu_pd(m + i, k, M);
    _mm512_mask_storeu_pd(v + i, k, V);
    _mm512_mask_storeu_pd(pow1 + i, k, r->nq1);
    _mm512_mask_storeu_pd(pow2 + i, k, r->nq2);
    _mm512_mask_storeu_epi64(t + i, k, _mm512_add_epi64(T, _mm512_set1_epi64(1)));
    /* below 2^-960 (0, subnormal, negative), NaN or +inf (0x08) */
    lmask odd = (_mm512_cmp_pd_mask(V, _mm512_set1_pd(0x1p-960), _CMP_NGE_UQ) |
                 _mm512_fpclass_pd_mask(V, 0x08)) & k;
    __m512d D = _mm512_fmadd_pd(vsqrt_fast(V, odd), r->ic2, h->eps);
    __m512d U = vdiv_fast(M, D, odd || !h->eps_safe || r->wild);
    _mm512_mask_storeu_pd(p + i, k, _mm512_fnmadd_pd(r->step, U, P));
}

#else

static void run_start(Run *r, __m512 P1, __m512 P2, lmask k, real lr, real b1, real b2) {
    real a1[LANES], a2[LANES];
    _mm512_storeu_ps(a1, P1);
    _mm512_storeu_ps(a2, P2);
    r->q1 = _mm512_set1_ps(a1[0]);
    r->q2 = _mm512_set1_ps(a2[0]);
    lmask same = _mm512_cmp_ps_mask(P1, r->q1, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(P2, r->q2, _CMP_EQ_OQ);
    if ((same & k) == k) {
        AdamRun c = adam_run(a1[0], a2[0], lr, b1, b2);
        r->nq1 = _mm512_set1_ps(c.nq1);
        r->nq2 = _mm512_set1_ps(c.nq2);
        r->ic2 = _mm512_set1_ps(c.ic2);
        r->step = _mm512_set1_ps(c.step);
        r->wild = !(c.ic2 <= 0x1p30f);
        return;
    }
    real c1[LANES], c2[LANES], ci[LANES], cs[LANES];
    r->wild = 0;
    for (int l = 0; l < LANES; l++) {
        AdamRun c = adam_run(a1[l], a2[l], lr, b1, b2);
        c1[l] = c.nq1, c2[l] = c.nq2, ci[l] = c.ic2, cs[l] = c.step;
        r->wild |= !(c.ic2 <= 0x1p30f);
    }
    r->nq1 = _mm512_loadu_ps(c1);
    r->nq2 = _mm512_loadu_ps(c2);
    r->ic2 = _mm512_loadu_ps(ci);
    r->step = _mm512_loadu_ps(cs);
    r->q1 = r->q2 = _mm512_set1_ps(NAN);
}

INLINE void block(int64_t i, lmask k, int plain, const Hyper *h, Run *r, real *restrict p,
                  const real *restrict g, real *restrict m, real *restrict v,
                  real *restrict pow1, real *restrict pow2, int64_t *restrict t, real lr,
                  real b1, real b2) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i zero = _mm512_setzero_si512(), inc = _mm512_set1_epi64(1);
    const __mmask8 k0 = (__mmask8)k, k1 = (__mmask8)(k >> 8);
    __m512i T0 = _mm512_maskz_loadu_epi64(k0, t + i), T1 = _mm512_maskz_loadu_epi64(k1, t + i + 8);
    lmask fresh = (lmask)(_mm512_cmpeq_epi64_mask(T0, zero) | (_mm512_cmpeq_epi64_mask(T1, zero) << 8));
    __m512 P1 = _mm512_mask_mov_ps(_mm512_maskz_loadu_ps(k, pow1 + i), fresh, one);
    __m512 P2 = _mm512_mask_mov_ps(_mm512_maskz_loadu_ps(k, pow2 + i), fresh, one);
    lmask same = _mm512_cmp_ps_mask(P1, r->q1, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(P2, r->q2, _CMP_EQ_OQ);
    if ((same & k) != k) run_start(r, P1, P2, k, lr, b1, b2);
    __m512 P = _mm512_maskz_loadu_ps(k, p + i), G = _mm512_maskz_loadu_ps(k, g + i);
    if (!plain) {
        P = _mm512_mul_ps(P, h->decay);
        if (h->has_wd) G = _mm512_add_ps(G, _mm512_mul_ps(h->wd, P));
    }
    /* the moments with the formula's own roundings (no fused multiply-add) */
    __m512 M = _mm512_add_ps(_mm512_mul_ps(h->b1, _mm512_maskz_loadu_ps(k, m + i)), _mm512_mul_ps(h->ob1, G));
    __m512 V = _mm512_add_ps(_mm512_mul_ps(h->b2, _mm512_maskz_loadu_ps(k, v + i)),
                             _mm512_mul_ps(_mm512_mul_ps(h->ob2, G), G));
    _mm512_mask_storeu_ps(m + i, k, M);
    _mm512_mask_storeu_ps(v + i, k, V);
    _mm512_mask_storeu_ps(pow1 + i, k, r->nq1);
    _mm512_mask_storeu_ps(pow2 + i, k, r->nq2);
    _mm512_mask_storeu_epi64(t + i, k0, _mm512_add_epi64(T0, inc));
    _mm512_mask_storeu_epi64(t + i + 8, k1, _mm512_add_epi64(T1, inc));
    /* below 2^-96 (0, subnormal, negative), NaN or +inf (0x08) */
    lmask odd = (_mm512_cmp_ps_mask(V, _mm512_set1_ps(0x1p-96f), _CMP_NGE_UQ) |
                 _mm512_fpclass_ps_mask(V, 0x08)) & k;
    __m512 D = _mm512_fmadd_ps(vsqrt_fast(V, odd), r->ic2, h->eps);
    __m512 U = vdiv_fast(M, D, odd || !h->eps_safe || r->wild);
    _mm512_mask_storeu_ps(p + i, k, _mm512_fnmadd_ps(r->step, U, P));
}

#endif

/* (Both precisions.) One fused Adam step over every parameter of a training step. */
void noma__adam_update_many(int64_t count, const NomaAdamParam *ps, real lr, real b1, real b2,
                            real eps, real wd, real decay) {
    Hyper h;
    h.b1 = VSET1(b1), h.b2 = VSET1(b2);
    h.ob1 = VSET1(1 - b1), h.ob2 = VSET1(1 - b2);
    h.eps = VSET1(eps), h.wd = VSET1(wd), h.decay = VSET1(decay);
    h.eps_safe = eps >= EPS_SAFE_LO && eps <= EPS_SAFE_HI;
    h.has_wd = wd != 0;
    Run r;
    if (!run_cached(&r, lr, b1, b2)) {
        r.q1 = r.q2 = r.nq1 = r.nq2 = r.ic2 = r.step = VSET1(NAN);
        r.wild = 1;
    }
    const int plain = wd == 0 && decay == 1;
    for (int64_t j = 0; j < count; j++) {
        const int64_t n = ps[j].n;
        real *restrict p = ps[j].p, *restrict m = ps[j].m, *restrict v = ps[j].v;
        real *restrict pow1 = ps[j].pow1, *restrict pow2 = ps[j].pow2;
        const real *restrict g = ps[j].g;
        int64_t *restrict t = ps[j].t;
        int64_t i = 0;
        if (plain)
            for (; i + LANES <= n; i += LANES) block(i, ALL_LANES, 1, &h, &r, p, g, m, v, pow1, pow2, t, lr, b1, b2);
        else
            for (; i + LANES <= n; i += LANES) block(i, ALL_LANES, 0, &h, &r, p, g, m, v, pow1, pow2, t, lr, b1, b2);
        if (i < n) block(i, (lmask)((1u << (n - i)) - 1), plain, &h, &r, p, g, m, v, pow1, pow2, t, lr, b1, b2);
    }
    run_keep(&r, lr, b1, b2);
}

#else
/* ---------------------------------------------------------------- portable C */

/* Entries [0, n) whose powers before the step are all (q1, q2). */
static void adam_uniform(int64_t n, real *restrict p, const real *restrict g, real *restrict m,
                         real *restrict v, real *restrict pow1, real *restrict pow2,
                         int64_t *restrict t, real q1, real q2, real lr, real b1, real b2,
                         real eps, real wd, real decay) {
    const AdamRun r = adam_run(q1, q2, lr, b1, b2);
    const real ob1 = 1 - b1, ob2 = 1 - b2;
    for (int64_t i = 0; i < n; i++) {
        real pi = p[i] * decay;
        real gi = wd != 0 ? g[i] + wd * pi : g[i]; /* as PyTorch: no term when wd is 0 */
        real mi = b1 * m[i] + ob1 * gi;
        real vi = b2 * v[i] + ob2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        pow1[i] = r.nq1;
        pow2[i] = r.nq2;
        t[i] += 1;
        real denom = RSQRT(vi) / r.c2 + eps;
        p[i] = pi - r.step * (mi / denom);
    }
}

/* Splits the entries into runs of equal powers, split by (step == 0, pow1, pow2). */
static void adam_one(int64_t n, real *restrict p, const real *restrict g, real *restrict m,
                     real *restrict v, real *restrict pow1, real *restrict pow2,
                     int64_t *restrict t, real lr, real b1, real b2, real eps, real wd,
                     real decay) {
    int64_t i = 0;
    while (i < n) {
        const int fresh = t[i] == 0;
        const real q1 = fresh ? (real)1 : pow1[i], q2 = fresh ? (real)1 : pow2[i];
        int64_t j = i + 1;
        /* extend the run by whole blocks (a branch-free check the compiler vectorizes), then
         * element by element inside the first block that differs */
        for (;;) {
            int64_t e = j + 256 < n ? j + 256 : n;
            int same = 1;
            if (fresh)
                for (int64_t k = j; k < e; k++) same &= t[k] == 0;
            else
                for (int64_t k = j; k < e; k++)
                    same &= (t[k] != 0) & (pow1[k] == q1) & (pow2[k] == q2);
            if (!same || e == n) break;
            j = e;
        }
        if (fresh)
            while (j < n && t[j] == 0) j++;
        else
            while (j < n && t[j] != 0 && pow1[j] == q1 && pow2[j] == q2) j++;
        adam_uniform(j - i, p + i, g + i, m + i, v + i, pow1 + i, pow2 + i, t + i, q1, q2, lr,
                     b1, b2, eps, wd, decay);
        i = j;
    }
}

void noma__adam_update_many(int64_t count, const NomaAdamParam *ps, real lr, real b1, real b2,
                            real eps, real wd, real decay) {
    for (int64_t j = 0; j < count; j++)
        adam_one(ps[j].n, ps[j].p, ps[j].g, ps[j].m, ps[j].v, ps[j].pow1, ps[j].pow2, ps[j].t, lr,
                 b1, b2, eps, wd, decay);
}
#endif

void noma__adam_update(int64_t n, real *p, const real *g, real *m, real *v, real *pow1,
                       real *pow2, int64_t *t, real lr, real b1, real b2, real eps, real wd,
                       real decay) {
    const NomaAdamParam one = {n, p, g, m, v, pow1, pow2, t};
    noma__adam_update_many(1, &one, lr, b1, b2, eps, wd, decay);
}
