/*
 * Plain C peers of the NOMA benchmark (bench/bench.py): hand-written forward, backward and Adam
 * (NOMA's formulas, see bench/wl.py), straightforward loops the compiler vectorizes.
 * Built by bench/peer_c.py with `gcc -O3 -march=native` (and a `-ffast-math` variant), as a
 * shared library called once per run through ctypes (the whole training loop runs in C).
 * -DREAL_F32 builds the float version. set_gemm() optionally routes products through a cblas
 * gemm (the "C + OpenBLAS" peer of the matmul-bound workload).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef REAL_F32
typedef float real;
#define EXP expf
#define LOG logf
#define TANH tanhf
#define SQRT sqrtf
#else
typedef double real;
#define EXP exp
#define LOG log
#define TANH tanh
#define SQRT sqrt
#endif

#define B1 ((real)0.9)
#define B2 ((real)0.999)
#define EPS ((real)1e-8)

typedef void (*gemm_fn)(int order, int ta, int tb, int64_t m, int64_t n, int64_t k, real alpha,
                        const real *a, int64_t lda, const real *b, int64_t ldb, real beta, real *c,
                        int64_t ldc);
static gemm_fn g_gemm = NULL;

void set_gemm(void *f) { memcpy(&g_gemm, &f, sizeof g_gemm); }

/* C[m,n] = op(A) op(B), row-major; A is m x k (k x m when ta), B is k x n (n x k when tb). */
static void mm(const real *restrict A, const real *restrict B, real *restrict C, int m, int k,
               int n, int ta, int tb) {
    if (g_gemm) {
        g_gemm(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, 1, A, ta ? m : k, B, tb ? k : n, 0, C,
               n);
        return;
    }
    if (!tb) {
        memset(C, 0, sizeof(real) * (size_t)m * (size_t)n);
        for (int i = 0; i < m; i++) {
            real *restrict c = C + (size_t)i * n;
            for (int p = 0; p < k; p++) {
                real a = ta ? A[(size_t)p * m + i] : A[(size_t)i * k + p];
                const real *restrict b = B + (size_t)p * n;
                for (int j = 0; j < n; j++) c[j] += a * b[j];
            }
        }
    } else {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                real s = 0;
                const real *restrict b = B + (size_t)j * k;
                if (ta)
                    for (int p = 0; p < k; p++) s += A[(size_t)p * m + i] * b[p];
                else
                    for (int p = 0; p < k; p++) s += A[(size_t)i * k + p] * b[p];
                C[(size_t)i * n + j] = s;
            }
    }
}

static void adam(real *restrict p, const real *restrict g, real *restrict m, real *restrict v,
                 int n, real step, real c2) {
    for (int i = 0; i < n; i++) {
        real mi = B1 * m[i] + (1 - B1) * g[i];
        real vi = B2 * v[i] + (1 - B2) * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        real denom = SQRT(vi) / c2 + EPS;
        p[i] -= step * (mi / denom);
    }
}

/* Adam with per-entry powers (entries added by a resize start at step 0). */
static void adam_pe(real *restrict p, const real *restrict g, real *restrict m, real *restrict v,
                    real *restrict q1, real *restrict q2, int n, real lr) {
    for (int i = 0; i < n; i++) {
        real mi = B1 * m[i] + (1 - B1) * g[i];
        real vi = B2 * v[i] + (1 - B2) * g[i] * g[i];
        real a = q1[i] * B1, b = q2[i] * B2;
        m[i] = mi;
        v[i] = vi;
        q1[i] = a;
        q2[i] = b;
        real denom = SQRT(vi) / SQRT(1 - b) + EPS;
        p[i] -= (lr / (1 - a)) * (mi / denom);
    }
}

/* ------------------------------------------------------------------ MLP, softmax CE */

#define MAXL 4

/* L layers (sizes[0..L]); W[l] is sizes[l] x sizes[l+1], b[l] sizes[l+1] (updated in place).
 * Minibatch s uses rows [(s mod (rows/batch)) * batch, + batch). Returns the last step's loss. */
double mlp_train(int L, const int *sizes, real **W, real **b, const real *X, const real *Y,
                 int rows, int batch, int steps, double lr_d) {
    if (L < 1 || L > MAXL) return NAN;
    int B = batch, nb = rows / batch;
    real *h[MAXL + 1], *gW[MAXL], *gb[MAXL], *mW[MAXL], *vW[MAXL], *mb[MAXL], *vb[MAXL];
    int wmax = 0;
    for (int l = 0; l <= L; l++) if (sizes[l] > wmax) wmax = sizes[l];
    for (int l = 1; l <= L; l++) h[l] = malloc(sizeof(real) * (size_t)B * sizes[l]);
    real *dz = malloc(sizeof(real) * (size_t)B * wmax), *dh = malloc(sizeof(real) * (size_t)B * wmax);
    for (int l = 0; l < L; l++) {
        size_t nw = (size_t)sizes[l] * sizes[l + 1];
        gW[l] = malloc(sizeof(real) * nw);
        mW[l] = calloc(nw, sizeof(real));
        vW[l] = calloc(nw, sizeof(real));
        gb[l] = malloc(sizeof(real) * sizes[l + 1]);
        mb[l] = calloc(sizes[l + 1], sizeof(real));
        vb[l] = calloc(sizes[l + 1], sizeof(real));
    }
    real lr = (real)lr_d, q1 = 1, q2 = 1;
    double loss = NAN;
    int nout = sizes[L];
    for (int s = 0; s < steps; s++) {
        int start = (s % nb) * B;
        const real *x = X + (size_t)start * sizes[0], *y = Y + (size_t)start * nout;
        h[0] = (real *)x;
        for (int l = 0; l < L; l++) {
            int n = sizes[l + 1];
            mm(h[l], W[l], h[l + 1], B, sizes[l], n, 0, 0);
            real *z = h[l + 1];
            for (int i = 0; i < B; i++)
                for (int j = 0; j < n; j++) z[(size_t)i * n + j] += b[l][j];
            if (l < L - 1)
                for (size_t i = 0; i < (size_t)B * n; i++) z[i] = TANH(z[i]);
        }
        real *z = h[L], total = 0;
        for (int i = 0; i < B; i++) {
            real *zi = z + (size_t)i * nout;
            const real *yi = y + (size_t)i * nout;
            real mx = zi[0];
            for (int j = 1; j < nout; j++) mx = zi[j] > mx ? zi[j] : mx;
            real se = 0;
            for (int j = 0; j < nout; j++) se += EXP(zi[j] - mx);
            real lse = LOG(se);
            real *d = dz + (size_t)i * nout;
            for (int j = 0; j < nout; j++) {
                real lp = zi[j] - mx - lse;
                total += yi[j] * lp;
                d[j] = (EXP(lp) - yi[j]) / (real)B;
            }
        }
        loss = -(double)total / B;
        for (int l = L - 1; l >= 0; l--) {
            int n = sizes[l + 1], k = sizes[l];
            mm(h[l], dz, gW[l], k, B, n, 1, 0);
            for (int j = 0; j < n; j++) gb[l][j] = 0;
            for (int i = 0; i < B; i++)
                for (int j = 0; j < n; j++) gb[l][j] += dz[(size_t)i * n + j];
            if (l > 0) {
                mm(dz, W[l], dh, B, n, k, 0, 1);
                real *hl = h[l];
                for (size_t i = 0; i < (size_t)B * k; i++) dz[i] = dh[i] * (1 - hl[i] * hl[i]);
            }
        }
        q1 *= B1;
        q2 *= B2;
        real step = lr / (1 - q1), c2 = SQRT(1 - q2);
        for (int l = 0; l < L; l++) {
            adam(W[l], gW[l], mW[l], vW[l], sizes[l] * sizes[l + 1], step, c2);
            adam(b[l], gb[l], mb[l], vb[l], sizes[l + 1], step, c2);
        }
    }
    for (int l = 1; l <= L; l++) free(h[l]);
    free(dz);
    free(dh);
    for (int l = 0; l < L; l++) {
        free(gW[l]); free(mW[l]); free(vW[l]); free(gb[l]); free(mb[l]); free(vb[l]);
    }
    return loss;
}

/* ------------------------------------------------------------------ growing XOR */

/* One step of 2 -> H -> 1 sigmoid, MSE on the 4 XOR rows; returns the loss, fills grads. */
static real xor_step(int H, const real *X, const real *Y, const real *W1, const real *b1,
                     const real *W2, const real *b2, real *gW1, real *gb1, real *gW2, real *gb2) {
    real h[4 * 16], out[4], dz2[4], loss = 0;
    for (int i = 0; i < 4; i++) {
        real o = b2[0];
        for (int j = 0; j < H; j++) {
            real z = X[2 * i] * W1[j] + X[2 * i + 1] * W1[H + j] + b1[j];
            real s = 1 / (1 + EXP(-z));
            h[i * H + j] = s;
            o += s * W2[j];
        }
        out[i] = 1 / (1 + EXP(-o));
        real d = out[i] - Y[i];
        loss += d * d;
        dz2[i] = 2 * d / 4 * out[i] * (1 - out[i]);
    }
    gb2[0] = 0;
    for (int i = 0; i < 4; i++) gb2[0] += dz2[i];
    for (int j = 0; j < H; j++) {
        real gw2 = 0, g0 = 0, g1 = 0, gb = 0;
        for (int i = 0; i < 4; i++) {
            real hij = h[i * H + j];
            gw2 += hij * dz2[i];
            real dz1 = dz2[i] * W2[j] * hij * (1 - hij);
            g0 += X[2 * i] * dz1;
            g1 += X[2 * i + 1] * dz1;
            gb += dz1;
        }
        gW2[j] = gw2;
        gW1[j] = g0;
        gW1[H + j] = g1;
        gb1[j] = gb;
    }
    return loss / 4;
}

/* init: W1 [2,H0], b1 [H0], W2 [H0,1], b2 [1]; grown: W1 [2,H], b1 [H], W2 [H,1] (NOMA's draws;
 * the old entries are overwritten with the trained values). Returns the last loss; *steps_out. */
double xor_grow_train(int H0, int H, const real *X, const real *Y, const real *W1_0,
                      const real *b1_0, const real *W2_0, const real *b2_0, const real *W1_g,
                      const real *b1_g, const real *W2_g, double lr1, int steps1, double lr2,
                      double target, int max2, int *steps_out) {
    /* state for the grown size; phase 1 uses the first H0 hidden units of a [2, H0] layout */
    real W1[32], b1[16], W2[16], b2[1], g1[32], gb1[16], g2[16], gb2[1];
    real m[4][32], v[4][32], q1[4][32], q2[4][32];
    if (H > 16 || H0 > H) return NAN;
    memcpy(W1, W1_0, sizeof(real) * 2 * H0);
    memcpy(b1, b1_0, sizeof(real) * H0);
    memcpy(W2, W2_0, sizeof(real) * H0);
    b2[0] = b2_0[0];
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 32; i++) m[t][i] = v[t][i] = 0, q1[t][i] = q2[t][i] = 1;
    int n[4] = {2 * H0, H0, H0, 1};
    real *P[4] = {W1, b1, W2, b2}, *G[4] = {g1, gb1, g2, gb2};
    real loss = NAN;
    int steps = 0;
    for (int s = 0; s < steps1; s++, steps++) {
        loss = xor_step(H0, X, Y, W1, b1, W2, b2, g1, gb1, g2, gb2);
        for (int t = 0; t < 4; t++) adam_pe(P[t], G[t], m[t], v[t], q1[t], q2[t], n[t], (real)lr1);
    }
    /* grow W1 [2,H0] -> [2,H] (row-major: move row 1), b1, W2; new entries from NOMA's draws */
    real nW1[32], nb1[16], nW2[16];
    memcpy(nW1, W1_g, sizeof(real) * 2 * H);
    memcpy(nb1, b1_g, sizeof(real) * H);
    memcpy(nW2, W2_g, sizeof(real) * H);
    real sm[32], sv[32], s1[32], s2[32];
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < H0; j++) nW1[r * H + j] = W1[r * H0 + j];
    for (int j = 0; j < H0; j++) nb1[j] = b1[j], nW2[j] = W2[j];
    for (int i = 0; i < 2 * H; i++) sm[i] = sv[i] = 0, s1[i] = s2[i] = 1;
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < H0; j++) {
            sm[r * H + j] = m[0][r * H0 + j];
            sv[r * H + j] = v[0][r * H0 + j];
            s1[r * H + j] = q1[0][r * H0 + j];
            s2[r * H + j] = q2[0][r * H0 + j];
        }
    memcpy(m[0], sm, sizeof sm);
    memcpy(v[0], sv, sizeof sv);
    memcpy(q1[0], s1, sizeof s1);
    memcpy(q2[0], s2, sizeof s2);
    memcpy(W1, nW1, sizeof(real) * 2 * H);
    memcpy(b1, nb1, sizeof(real) * H);
    memcpy(W2, nW2, sizeof(real) * H);
    n[0] = 2 * H;
    n[1] = n[2] = H;
    for (int s = 0; s < max2; s++) {
        loss = xor_step(H, X, Y, W1, b1, W2, b2, g1, gb1, g2, gb2);
        steps++;
        if (loss < (real)target) break;
        for (int t = 0; t < 4; t++) adam_pe(P[t], G[t], m[t], v[t], q1[t], q2[t], n[t], (real)lr2);
    }
    *steps_out = steps;
    return loss;
}

/* ------------------------------------------------------------------ growing MLP (W3) */

#ifdef REAL_F32
#define REAL_MIN 1.17549435e-38f
#else
#define REAL_MIN 2.2250738585072014e-308
#endif

/* running power q *= b; below the smallest normal number the exact value no longer matters
 * (1 - q == 1 long before), so it is left there: no subnormal arithmetic in a long run */
static inline real pow_step(real q, real b) { return q >= REAL_MIN ? q * b : q; }

/* W3: D -> H -> O tanh MLP, softmax CE, minibatches in order; H starts at h0 and grows by hstep
 * after every seg_steps steps up to hmax (NOMA's default dim policy, preserve: W1's new columns
 * are std(W1) * z with z NOMA's standard normal draws consumed in order, the new b1 entries and
 * W2 rows 0). Adam with per-unit powers (entries added by a resize start at step 0; every entry
 * of hidden unit j shares its step count, b2 never grows). Returns the last step's loss. */
double grow_mlp_train(int D, int O, int h0, int hmax, int hstep, int seg_steps, const real *X,
                      const real *Y, int rows, int batch, const real *W1_0, const real *b1_0,
                      const real *W2_0, const real *b2_0, const double *z, double lr_d) {
    if (O > 64 || h0 < 1 || hmax < h0) return NAN;
    int B = batch, nb = rows / batch, wmax = hmax > O ? hmax : O;
    real *W1 = calloc((size_t)D * hmax, sizeof(real)), *mW1 = calloc((size_t)D * hmax, sizeof(real));
    real *vW1 = calloc((size_t)D * hmax, sizeof(real)), *gW1 = calloc((size_t)D * hmax, sizeof(real));
    real *W2 = calloc((size_t)hmax * O, sizeof(real)), *mW2 = calloc((size_t)hmax * O, sizeof(real));
    real *vW2 = calloc((size_t)hmax * O, sizeof(real)), *gW2 = calloc((size_t)hmax * O, sizeof(real));
    real *b1 = calloc(hmax, sizeof(real)), *mb1 = calloc(hmax, sizeof(real));
    real *vb1 = calloc(hmax, sizeof(real)), *gb1 = calloc(hmax, sizeof(real));
    real *q1 = malloc(sizeof(real) * hmax), *q2 = malloc(sizeof(real) * hmax);
    real *sh = malloc(sizeof(real) * hmax), *ch = malloc(sizeof(real) * hmax);
    real b2[64], mb2[64] = {0}, vb2[64] = {0}, gb2[64];
    real *h = malloc(sizeof(real) * (size_t)B * hmax), *zo = malloc(sizeof(real) * (size_t)B * O);
    real *dz = malloc(sizeof(real) * (size_t)B * wmax), *dh = malloc(sizeof(real) * (size_t)B * hmax);
    int H = h0;
    memcpy(W1, W1_0, sizeof(real) * (size_t)D * H);
    memcpy(b1, b1_0, sizeof(real) * H);
    memcpy(W2, W2_0, sizeof(real) * (size_t)H * O);
    memcpy(b2, b2_0, sizeof(real) * O);
    for (int j = 0; j < hmax; j++) q1[j] = q2[j] = 1;
    real lr = (real)lr_d, qo1 = 1, qo2 = 1;
    double loss = NAN;
    size_t zi = 0;
    for (int seg = 0; H <= hmax; seg++, H += hstep) {
        if (seg) {
            int Ho = H - hstep;
            double mean = 0, ss = 0, n = (double)D * Ho, sd;
            for (size_t i = 0; i < (size_t)D * Ho; i++) mean += (double)W1[i];
            mean /= n;
            for (size_t i = 0; i < (size_t)D * Ho; i++) ss += ((double)W1[i] - mean) * ((double)W1[i] - mean);
            sd = sqrt(ss / n);
            if (!(sd > 0) || !isfinite(sd)) sd = 0.1;
            /* [D, Ho] -> [D, H] row-major, last row first (rows only move forward) */
            for (int r = D - 1; r >= 0; r--) {
                memmove(W1 + (size_t)r * H, W1 + (size_t)r * Ho, sizeof(real) * Ho);
                memmove(mW1 + (size_t)r * H, mW1 + (size_t)r * Ho, sizeof(real) * Ho);
                memmove(vW1 + (size_t)r * H, vW1 + (size_t)r * Ho, sizeof(real) * Ho);
                for (int j = Ho; j < H; j++) mW1[(size_t)r * H + j] = vW1[(size_t)r * H + j] = 0;
            }
            for (int r = 0; r < D; r++)
                for (int j = Ho; j < H; j++) W1[(size_t)r * H + j] = (real)(sd * z[zi++]);
            /* b1 and W2's new rows (at the end of the row-major [H, O]) are still 0 */
        }
        for (int s = 0; s < seg_steps; s++) {
            int start = (s % nb) * B;
            const real *x = X + (size_t)start * D, *y = Y + (size_t)start * O;
            mm(x, W1, h, B, D, H, 0, 0);
            for (int i = 0; i < B; i++)
                for (int j = 0; j < H; j++) h[(size_t)i * H + j] = TANH(h[(size_t)i * H + j] + b1[j]);
            mm(h, W2, zo, B, H, O, 0, 0);
            real total = 0;
            for (int i = 0; i < B; i++) {
                real *zi_ = zo + (size_t)i * O;
                const real *yi = y + (size_t)i * O;
                for (int j = 0; j < O; j++) zi_[j] += b2[j];
                real mx = zi_[0];
                for (int j = 1; j < O; j++) mx = zi_[j] > mx ? zi_[j] : mx;
                real se = 0;
                for (int j = 0; j < O; j++) se += EXP(zi_[j] - mx);
                real lse = LOG(se);
                real *d = dz + (size_t)i * O;
                for (int j = 0; j < O; j++) {
                    real lp = zi_[j] - mx - lse;
                    total += yi[j] * lp;
                    d[j] = (EXP(lp) - yi[j]) / (real)B;
                }
            }
            loss = -(double)total / B;
            mm(h, dz, gW2, H, B, O, 1, 0);
            for (int j = 0; j < O; j++) gb2[j] = 0;
            for (int i = 0; i < B; i++)
                for (int j = 0; j < O; j++) gb2[j] += dz[(size_t)i * O + j];
            mm(dz, W2, dh, B, O, H, 0, 1);
            for (size_t i = 0; i < (size_t)B * H; i++) dh[i] *= 1 - h[i] * h[i];
            mm(x, dh, gW1, D, B, H, 1, 0);
            for (int j = 0; j < H; j++) gb1[j] = 0;
            for (int i = 0; i < B; i++)
                for (int j = 0; j < H; j++) gb1[j] += dh[(size_t)i * H + j];
            for (int j = 0; j < H; j++) {
                q1[j] = pow_step(q1[j], B1);
                q2[j] = pow_step(q2[j], B2);
                sh[j] = lr / (1 - q1[j]);
                ch[j] = SQRT(1 - q2[j]);
            }
            qo1 = pow_step(qo1, B1);
            qo2 = pow_step(qo2, B2);
            for (int r = 0; r < D; r++) {
                real *p = W1 + (size_t)r * H, *m = mW1 + (size_t)r * H, *v = vW1 + (size_t)r * H;
                const real *g = gW1 + (size_t)r * H;
                for (int j = 0; j < H; j++) {
                    real mi = B1 * m[j] + (1 - B1) * g[j], vi = B2 * v[j] + (1 - B2) * g[j] * g[j];
                    m[j] = mi;
                    v[j] = vi;
                    p[j] -= sh[j] * (mi / (SQRT(vi) / ch[j] + EPS));
                }
            }
            for (int j = 0; j < H; j++) {
                adam(b1 + j, gb1 + j, mb1 + j, vb1 + j, 1, sh[j], ch[j]);
                adam(W2 + (size_t)j * O, gW2 + (size_t)j * O, mW2 + (size_t)j * O, vW2 + (size_t)j * O, O,
                     sh[j], ch[j]);
            }
            adam(b2, gb2, mb2, vb2, O, lr / (1 - qo1), SQRT(1 - qo2));
        }
    }
    free(W1); free(mW1); free(vW1); free(gW1); free(W2); free(mW2); free(vW2); free(gW2);
    free(b1); free(mb1); free(vb1); free(gb1); free(q1); free(q2); free(sh); free(ch);
    free(h); free(zo); free(dz); free(dh);
    return loss;
}
