/*
 * noma_rt_conv.c -- 2-D convolution and pooling kernels of the NOMA native runtime (NCHW).
 *
 * noma_conv2d (x [N,C,H,W], w [O,C,KH,KW]) -> [N,O,OH,OW] with OH = (H + 2p - KH) / s + 1, as
 * im2col (rows (n, oy, ox), columns (c, ky, kx), zero padding) times w^T through noma_matmul;
 * noma_conv2d_grad_x / _grad_w are its vector-Jacobian products (col2im of G.w, G^T.col).
 * noma_pool2d (kind 0 max, 1 average; window k, stride s, no padding) and noma_pool2d_grad:
 * the max passes the gradient to the first largest entry of each window (a NaN counts as
 * largest), the average spreads g / k^2 over the window.
 * Every function checks its operands (rank 4, channels, whole-number stride / padding / window,
 * the input at least as large as the window), fails located at `span`, and writes a fresh arena
 * tensor into *out. Scratch blocks (im2col) are heap blocks charged to the memory limit.
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <string.h>

typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW, s, p;
} ConvGeom;

/* A whole number in [lo, 2^31), else a runtime error naming `what`; -1 after a failure. */
static int64_t whole_arg(real v, int64_t lo, const char *what, const char *op, int64_t span) {
    double d = (double)v;
    if (!(d >= (double)lo) || d >= 2147483648.0 || floor(d) != d) {
        noma__failf(NOMA_ERR_RUNTIME, span, "%s: %s must be a whole number >= %lld, got %g", op, what,
                    (long long)lo, d);
        return -1;
    }
    return (int64_t)d;
}

static int rank4(const NomaTensor *t, const NomaTensor *other, const char *op, int64_t span) {
    if (t->rank == 4) return 1;
    noma_fail_shape(span, op, t, other);
    return 0;
}

/* Scratch (im2col) in the arena: released with the step's other temporaries, so a training loop
   reuses the same pages every step instead of mapping fresh heap blocks (page faults). */
static real *scratch(int64_t n, const char *op, int64_t span) {
    (void)op;
    return noma_alloc_at(n > 0 ? n : 1, span);
}

static real *fresh(NomaTensor *out, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t span) {
    memset(out, 0, sizeof *out);
    out->rank = 4;
    out->dims[0] = d0;
    out->dims[1] = d1;
    out->dims[2] = d2;
    out->dims[3] = d3;
    out->data = noma_alloc_at(d0 * d1 * d2 * d3, span);
    return out->data;
}

static int conv_geom(const NomaTensor *x, const NomaTensor *w, real stride, real pad, int64_t span,
                     ConvGeom *g) {
    if (!rank4(x, w, "conv2d", span) || !rank4(w, x, "conv2d", span)) return 0;
    if (x->dims[1] != w->dims[1] || w->dims[2] < 1 || w->dims[3] < 1) {
        noma_fail_shape(span, "conv2d", x, w);
        return 0;
    }
    g->s = whole_arg(stride, 1, "the stride", "conv2d", span);
    if (g->s < 0) return 0;
    g->p = whole_arg(pad, 0, "the padding", "conv2d", span);
    if (g->p < 0) return 0;
    g->N = x->dims[0], g->C = x->dims[1], g->H = x->dims[2], g->W = x->dims[3];
    g->O = w->dims[0], g->KH = w->dims[2], g->KW = w->dims[3];
    if (g->H + 2 * g->p < g->KH || g->W + 2 * g->p < g->KW) {
        noma_fail_shape(span, "conv2d (the padded input is smaller than the kernel)", x, w);
        return 0;
    }
    g->OH = (g->H + 2 * g->p - g->KH) / g->s + 1;
    g->OW = (g->W + 2 * g->p - g->KW) / g->s + 1;
    /* the result and the im2col scratch must be countable (the allocation then checks the limit) */
    int64_t n;
    if (__builtin_mul_overflow(g->N, g->OH, &n) || __builtin_mul_overflow(n, g->OW, &n) ||
        __builtin_mul_overflow(n, g->C * g->KH * g->KW + g->O, &n) || n > ((int64_t)1 << 50)) {
        noma__failf(NOMA_ERR_RUNTIME, span, "conv2d: the result would be too large (%lld x %lld positions)",
                    (long long)g->OH, (long long)g->OW);
        return 0;
    }
    return 1;
}

/* col[(n, oy, ox), (c, ky, kx)] = x[n, c, oy*s - p + ky, ox*s - p + kx] (0 outside). */
static void im2col(const real *x, const ConvGeom *g, real *col) {
    int64_t ckk = g->C * g->KH * g->KW;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t oy = 0; oy < g->OH; oy++)
            for (int64_t ox = 0; ox < g->OW; ox++) {
                real *row = col + ((n * g->OH + oy) * g->OW + ox) * ckk;
                for (int64_t c = 0; c < g->C; c++) {
                    const real *plane = x + (n * g->C + c) * g->H * g->W;
                    for (int64_t ky = 0; ky < g->KH; ky++) {
                        int64_t iy = oy * g->s - g->p + ky;
                        for (int64_t kx = 0; kx < g->KW; kx++) {
                            int64_t ix = ox * g->s - g->p + kx;
                            int in = iy >= 0 && iy < g->H && ix >= 0 && ix < g->W;
                            *row++ = in ? plane[iy * g->W + ix] : (real)0;
                        }
                    }
                }
            }
}

/* dx[n, c, iy, ix] += dcol[(n, oy, ox), (c, ky, kx)] (the transpose of im2col; dx zeroed). */
static void col2im(const real *dcol, const ConvGeom *g, real *dx) {
    int64_t ckk = g->C * g->KH * g->KW;
    memset(dx, 0, (size_t)(g->N * g->C * g->H * g->W) * sizeof(real));
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t oy = 0; oy < g->OH; oy++)
            for (int64_t ox = 0; ox < g->OW; ox++) {
                const real *row = dcol + ((n * g->OH + oy) * g->OW + ox) * ckk;
                for (int64_t c = 0; c < g->C; c++) {
                    real *plane = dx + (n * g->C + c) * g->H * g->W;
                    for (int64_t ky = 0; ky < g->KH; ky++) {
                        int64_t iy = oy * g->s - g->p + ky;
                        for (int64_t kx = 0; kx < g->KW; kx++, row++) {
                            int64_t ix = ox * g->s - g->p + kx;
                            if (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W) plane[iy * g->W + ix] += *row;
                        }
                    }
                }
            }
}

void noma_conv2d(const NomaTensor *x, const NomaTensor *w, real stride, real pad, NomaTensor *out,
                 int64_t span) {
    ConvGeom g;
    if (!conv_geom(x, w, stride, pad, span, &g)) return;
    int64_t P = g.OH * g.OW, NP = g.N * P, ckk = g.C * g.KH * g.KW;
    real *y = fresh(out, g.N, g.O, g.OH, g.OW, span);
    if (!y) return;
    real *col = scratch(NP * ckk, "conv2d", span);
    if (!col) return;
    real *ym = scratch(NP * g.O, "conv2d", span);
    if (!ym) return;
    im2col(x->data, &g, col);
    noma_matmul(col, w->data, ym, NP, ckk, g.O, 0, 1); /* [NP, O] = col . w^T */
    for (int64_t n = 0; n < g.N; n++)
        for (int64_t o = 0; o < g.O; o++)
            for (int64_t q = 0; q < P; q++) y[(n * g.O + o) * P + q] = ym[(n * P + q) * g.O + o];
}

/* G as a [N*OH*OW, O] matrix (rows (n, oy, ox)), after checking g's shape. */
static real *grad_rows(const NomaTensor *gt, const NomaTensor *x, const ConvGeom *g, int64_t span) {
    if (gt->rank != 4 || gt->dims[0] != g->N || gt->dims[1] != g->O || gt->dims[2] != g->OH ||
        gt->dims[3] != g->OW) {
        noma_fail_shape(span, "conv2d gradient", gt, x);
        return NULL;
    }
    int64_t P = g->OH * g->OW;
    real *gm = scratch(g->N * P * g->O, "conv2d gradient", span);
    if (!gm) return NULL;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t q = 0; q < P; q++) gm[(n * P + q) * g->O + o] = gt->data[(n * g->O + o) * P + q];
    return gm;
}

void noma_conv2d_grad_x(const NomaTensor *gt, const NomaTensor *x, const NomaTensor *w, real stride,
                        real pad, NomaTensor *out, int64_t span) {
    ConvGeom g;
    if (!conv_geom(x, w, stride, pad, span, &g)) return;
    int64_t NP = g.N * g.OH * g.OW, ckk = g.C * g.KH * g.KW;
    real *dx = fresh(out, g.N, g.C, g.H, g.W, span);
    if (!dx) return;
    real *gm = grad_rows(gt, x, &g, span);
    if (!gm) return;
    real *dcol = scratch(NP * ckk, "conv2d gradient", span);
    if (!dcol) return;
    noma_matmul(gm, w->data, dcol, NP, g.O, ckk, 0, 0); /* [NP, CKK] = G . w */
    col2im(dcol, &g, dx);
}

void noma_conv2d_grad_w(const NomaTensor *gt, const NomaTensor *x, const NomaTensor *w, real stride,
                        real pad, NomaTensor *out, int64_t span) {
    ConvGeom g;
    if (!conv_geom(x, w, stride, pad, span, &g)) return;
    int64_t NP = g.N * g.OH * g.OW, ckk = g.C * g.KH * g.KW;
    real *dw = fresh(out, g.O, g.C, g.KH, g.KW, span);
    if (!dw) return;
    real *gm = grad_rows(gt, x, &g, span);
    if (!gm) return;
    real *col = scratch(NP * ckk, "conv2d gradient", span);
    if (!col) return;
    im2col(x->data, &g, col);
    noma_matmul(gm, col, dw, g.O, NP, ckk, 1, 0); /* [O, CKK] = G^T . col */
}

/* ----------------------------------------------------------------------------------- pooling */

static const char *pool_name(int32_t kind) { return kind == 0 ? "max_pool2d" : "avg_pool2d"; }

/* window k and stride s of a pool over x (rank 4, H and W >= k); 0 after a failure. */
static int pool_geom(const NomaTensor *x, real k, real stride, int32_t kind, int64_t span, int64_t *kk,
                     int64_t *ss, int64_t *oh, int64_t *ow) {
    const char *op = pool_name(kind);
    if (!rank4(x, x, op, span)) return 0;
    *kk = whole_arg(k, 1, "the window", op, span);
    if (*kk < 0) return 0;
    *ss = whole_arg(stride, 1, "the stride", op, span);
    if (*ss < 0) return 0;
    if (x->dims[2] < *kk || x->dims[3] < *kk) {
        noma__failf(NOMA_ERR_SHAPE, span, "%s: a window of %lld does not fit an input of %lld x %lld", op,
                    (long long)*kk, (long long)x->dims[2], (long long)x->dims[3]);
        return 0;
    }
    *oh = (x->dims[2] - *kk) / *ss + 1;
    *ow = (x->dims[3] - *kk) / *ss + 1;
    return 1;
}

/* Offset (within the plane) of the first largest entry of the window at (oy, ox). */
static int64_t window_argmax(const real *plane, int64_t W, int64_t y0, int64_t x0, int64_t k) {
    int64_t best = y0 * W + x0;
    real m = plane[best];
    for (int64_t ky = 0; ky < k; ky++)
        for (int64_t kx = 0; kx < k; kx++) {
            int64_t at = (y0 + ky) * W + x0 + kx;
            real v = plane[at];
            if (v > m || (isnan(v) && !isnan(m))) m = v, best = at;
        }
    return best;
}

void noma_pool2d(const NomaTensor *x, real k, real stride, int32_t kind, NomaTensor *out, int64_t span) {
    int64_t kk, s, OH, OW;
    if (!pool_geom(x, k, stride, kind, span, &kk, &s, &OH, &OW)) return;
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    real *y = fresh(out, N, C, OH, OW, span);
    if (!y) return;
    real scale = (real)1 / (real)(kk * kk);
    for (int64_t nc = 0; nc < N * C; nc++) {
        const real *plane = x->data + nc * H * W;
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                real v;
                if (kind == 0) {
                    v = plane[window_argmax(plane, W, oy * s, ox * s, kk)];
                } else {
                    v = 0;
                    for (int64_t ky = 0; ky < kk; ky++)
                        for (int64_t kx = 0; kx < kk; kx++) v += plane[(oy * s + ky) * W + ox * s + kx];
                    v *= scale;
                }
                y[(nc * OH + oy) * OW + ox] = v;
            }
    }
}

void noma_pool2d_grad(const NomaTensor *gt, const NomaTensor *x, real k, real stride, int32_t kind,
                      NomaTensor *out, int64_t span) {
    int64_t kk, s, OH, OW;
    if (!pool_geom(x, k, stride, kind, span, &kk, &s, &OH, &OW)) return;
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    if (gt->rank != 4 || gt->dims[0] != N || gt->dims[1] != C || gt->dims[2] != OH || gt->dims[3] != OW) {
        noma_fail_shape(span, pool_name(kind), gt, x);
        return;
    }
    real *dx = fresh(out, N, C, H, W, span);
    if (!dx) return;
    memset(dx, 0, (size_t)(N * C * H * W) * sizeof(real));
    real scale = (real)1 / (real)(kk * kk);
    for (int64_t nc = 0; nc < N * C; nc++) {
        const real *plane = x->data + nc * H * W;
        real *dplane = dx + nc * H * W;
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                real gv = gt->data[(nc * OH + oy) * OW + ox];
                if (kind == 0) {
                    dplane[window_argmax(plane, W, oy * s, ox * s, kk)] += gv;
                } else {
                    for (int64_t ky = 0; ky < kk; ky++)
                        for (int64_t kx = 0; kx < kk; kx++) dplane[(oy * s + ky) * W + ox * s + kx] += gv * scale;
                }
            }
    }
}
