/*
 * noma_rt_linalg.c -- matrix multiply for the NOMA native runtime.
 *
 * noma_matmul computes C[m,n] = op(A) . op(B) where op transposes when the flag
 * is 1 (A is stored k x m when ta, B is stored n x k when tb). When a BLAS gemm
 * was registered with noma_set_gemm (cblas ABI with 64-bit integers: dgemm in
 * the f64 build, sgemm in the f32 build) and the product is large (use_gemm:
 * m*n*k >= 4096 without AVX-512; with AVX-512 only above 2^20 multiply-adds and
 * more than 2 vectors of columns), it is used; otherwise a register-blocked native
 * kernel (fused multiply-adds, see mm_native; masked tails with AVX-512; B^T packed
 * when tb).
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CBLAS_ROW_MAJOR 101
#define CBLAS_NO_TRANS 111
#define CBLAS_TRANS 112

typedef void (*gemm_fn)(int order, int ta, int tb, int64_t m, int64_t n, int64_t k, real alpha,
                        const real *a, int64_t lda, const real *b, int64_t ldb, real beta, real *c,
                        int64_t ldc);

static gemm_fn g_gemm = NULL; /* process-wide */

void noma_set_gemm(void *fn) {
    /* object pointer -> function pointer through memcpy (ISO C has no direct cast) */
    gemm_fn f = NULL;
    if (fn) memcpy(&f, &fn, sizeof f);
    g_gemm = f;
}

/* ---------------------------------------------------------------------------------------
 * Native kernel (sizes under the BLAS threshold, or no BLAS): register-blocked, MR rows x NR
 * columns of C held in vector accumulators. Every element of C is the fused multiply-add chain
 * c = fma(a[i,p], b[p,j], c) over p = 0..k-1 in order, whatever the vector width or the path
 * (vector block, column tail), so results do not depend on the blocking or on the CPU's vector
 * width (only on whether it has FMA: without it, a*b + c rounds twice).
 * --------------------------------------------------------------------------------------- */

#if defined(__AVX512F__)
#include <immintrin.h>
#define MASKED 1 /* masked loads/stores: mm_masked */
#ifndef NATIVE_MAX_WORK
#define NATIVE_MAX_WORK (1 << 20) /* multiply-adds; see use_gemm */
#endif
#ifdef NOMA_F32
typedef __m512 vreal;
typedef __mmask16 vmask;
#define VL 16
#define VMLOAD(k, p) _mm512_maskz_loadu_ps((k), (p))
#define VMSTORE(p, k, v) _mm512_mask_storeu_ps((p), (k), (v))
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#else
typedef __m512d vreal;
typedef __mmask8 vmask;
#define VL 8
#define VMLOAD(k, p) _mm512_maskz_loadu_pd((k), (p))
#define VMSTORE(p, k, v) _mm512_mask_storeu_pd((p), (k), (v))
#define VSET1(x) _mm512_set1_pd(x)
#define VZERO() _mm512_setzero_pd()
#define VFMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#endif
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#ifdef NOMA_F32
typedef __m256 vreal;
#define VL 8
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#else
typedef __m256d vreal;
#define VL 4
#define VLOAD(p) _mm256_loadu_pd(p)
#define VSTORE(p, v) _mm256_storeu_pd((p), (v))
#define VSET1(x) _mm256_set1_pd(x)
#define VZERO() _mm256_setzero_pd()
#define VFMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#endif
#endif

#if defined(__FMA__) || defined(__ARM_FEATURE_FMA) || defined(FP_FAST_FMA)
#define SFMA(a, b, c) RFMA((a), (b), (c))
#else
#define SFMA(a, b, c) ((a) * (b) + (c))
#endif
#ifdef NOMA_F32
#define RFMA fmaf
#else
#define RFMA fma
#endif

/* a(i, p) of op(A): A is m x k (row stride k) or, when ta, k x m. */
#define AT(i, p) (ta ? A[(p) * m + (i)] : A[(i) * k + (p)])

/* One element of C: the fma chain over p (the column tail and the no-vector path). */
static inline real mm_dot(const real *A, const real *B, int64_t ldb, int64_t m, int64_t k,
                          int ta, int64_t i, int64_t j) {
    real acc = 0;
    for (int64_t p = 0; p < k; p++) acc = SFMA(AT(i, p), B[p * ldb + j], acc);
    return acc;
}

#if defined(VL) && !defined(MASKED)
#define MR 4
#define NV 2 /* vectors per block row: NR = NV * VL columns */

/* C[i0:i0+MR, j0:j0+NV*VL] for a full block. */
static inline void mm_block(const real *A, const real *B, int64_t ldb, real *C, int64_t m,
                            int64_t k, int64_t n, int ta, int64_t i0, int64_t j0) {
    vreal c00 = VZERO(), c01 = VZERO(), c10 = VZERO(), c11 = VZERO();
    vreal c20 = VZERO(), c21 = VZERO(), c30 = VZERO(), c31 = VZERO();
    for (int64_t p = 0; p < k; p++) {
        const real *b = B + p * ldb + j0;
        vreal b0 = VLOAD(b), b1 = VLOAD(b + VL);
        vreal a0 = VSET1(AT(i0, p)), a1 = VSET1(AT(i0 + 1, p));
        vreal a2 = VSET1(AT(i0 + 2, p)), a3 = VSET1(AT(i0 + 3, p));
        c00 = VFMA(a0, b0, c00); c01 = VFMA(a0, b1, c01);
        c10 = VFMA(a1, b0, c10); c11 = VFMA(a1, b1, c11);
        c20 = VFMA(a2, b0, c20); c21 = VFMA(a2, b1, c21);
        c30 = VFMA(a3, b0, c30); c31 = VFMA(a3, b1, c31);
    }
    real *c = C + i0 * n + j0;
    VSTORE(c, c00); VSTORE(c + VL, c01); c += n;
    VSTORE(c, c10); VSTORE(c + VL, c11); c += n;
    VSTORE(c, c20); VSTORE(c + VL, c21); c += n;
    VSTORE(c, c30); VSTORE(c + VL, c31);
}

/* One row of C over nv vectors (nv <= NV) from column j0. */
static inline void mm_row(const real *A, const real *B, int64_t ldb, real *C, int64_t m,
                          int64_t k, int64_t n, int ta, int64_t i, int64_t j0, int nv) {
    vreal c0 = VZERO(), c1 = VZERO();
    if (nv == 2) {
        for (int64_t p = 0; p < k; p++) {
            const real *b = B + p * ldb + j0;
            vreal a = VSET1(AT(i, p));
            c0 = VFMA(a, VLOAD(b), c0);
            c1 = VFMA(a, VLOAD(b + VL), c1);
        }
        VSTORE(C + i * n + j0, c0);
        VSTORE(C + i * n + j0 + VL, c1);
    } else {
        for (int64_t p = 0; p < k; p++) c0 = VFMA(VSET1(AT(i, p)), VLOAD(B + p * ldb + j0), c0);
        VSTORE(C + i * n + j0, c0);
    }
}

/* Four rows of C over one vector from column j0. */
static inline void mm_rows4_1(const real *A, const real *B, int64_t ldb, real *C, int64_t m,
                              int64_t k, int64_t n, int ta, int64_t i0, int64_t j0) {
    vreal c0 = VZERO(), c1 = VZERO(), c2 = VZERO(), c3 = VZERO();
    for (int64_t p = 0; p < k; p++) {
        vreal b = VLOAD(B + p * ldb + j0);
        c0 = VFMA(VSET1(AT(i0, p)), b, c0);
        c1 = VFMA(VSET1(AT(i0 + 1, p)), b, c1);
        c2 = VFMA(VSET1(AT(i0 + 2, p)), b, c2);
        c3 = VFMA(VSET1(AT(i0 + 3, p)), b, c3);
    }
    real *c = C + i0 * n + j0;
    VSTORE(c, c0); VSTORE(c + n, c1); VSTORE(c + 2 * n, c2); VSTORE(c + 3 * n, c3);
}
#endif

#ifdef MASKED
#define INLINE static inline __attribute__((always_inline))

/* C[0:mr, 0:2 VL) (masks k0, k1 on the two column vectors; nv = 1: one vector) of
 * sum_p op(A)[i, p] B[p, j]: mr rows x nv vectors of accumulators; op(A)[i, p] = A[i sa_i +
 * p sa_p]. With mr = 8 and nv = 2, 16 fused multiply-adds per 10 loads. */
INLINE void mm_tile(const real *A, int64_t sa_i, int64_t sa_p, const real *B, int64_t ldb,
                    real *C, int64_t ldc, int64_t k, int mr, int nv, vmask k0, vmask k1) {
    vreal c0[8], c1[8];
    for (int r = 0; r < mr; r++) c0[r] = c1[r] = VZERO();
    for (int64_t p = 0; p < k; p++) {
        vreal b0 = VMLOAD(k0, B + p * ldb);
        vreal b1 = nv > 1 ? VMLOAD(k1, B + p * ldb + VL) : b0;
        const real *a = A + p * sa_p;
        for (int r = 0; r < mr; r++) {
            vreal av = VSET1(a[r * sa_i]);
            c0[r] = VFMA(av, b0, c0[r]);
            if (nv > 1) c1[r] = VFMA(av, b1, c1[r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        VMSTORE(C + r * ldc, k0, c0[r]);
        if (nv > 1) VMSTORE(C + r * ldc + VL, k1, c1[r]);
    }
}

/* Column panels of 2 VL (the last one masked), rows in tiles of 8, 4, 1. */
INLINE void mm_masked(const real *A, const real *B, int64_t ldb, real *C, int64_t m, int64_t k,
                      int64_t n, int ta) {
    const int64_t sa_i = ta ? 1 : k, sa_p = ta ? m : 1;
    const vmask full = (vmask)~(vmask)0;
    for (int64_t j = 0; j < n; j += 2 * VL) {
        const int64_t w = n - j;
        const vmask k0 = w >= VL ? full : (vmask)((1u << w) - 1);
        const vmask k1 = w >= 2 * VL ? full : w > VL ? (vmask)((1u << (w - VL)) - 1) : 0;
        const real *b = B + j;
        real *c = C + j;
        int64_t i = 0;
        if (w > VL) {
            for (; i + 8 <= m; i += 8) mm_tile(A + i * sa_i, sa_i, sa_p, b, ldb, c + i * n, n, k, 8, 2, k0, k1);
            for (; i + 4 <= m; i += 4) mm_tile(A + i * sa_i, sa_i, sa_p, b, ldb, c + i * n, n, k, 4, 2, k0, k1);
            for (; i < m; i++) mm_tile(A + i * sa_i, sa_i, sa_p, b, ldb, c + i * n, n, k, 1, 2, k0, k1);
        } else {
            for (; i + 8 <= m; i += 8) mm_tile(A + i * sa_i, sa_i, sa_p, b, ldb, c + i * n, n, k, 8, 1, k0, k1);
            for (; i + 4 <= m; i += 4) mm_tile(A + i * sa_i, sa_i, sa_p, b, ldb, c + i * n, n, k, 4, 1, k0, k1);
            for (; i < m; i++) mm_tile(A + i * sa_i, sa_i, sa_p, b, ldb, c + i * n, n, k, 1, 1, k0, k1);
        }
    }
}

/* C (m x n) = op(A) . B, B row-major k x n with row stride ldb (one specialisation per ta). */
static void mm_native(const real *A, const real *B, int64_t ldb, real *C, int64_t m, int64_t k,
                      int64_t n, int ta) {
    if (ta) mm_masked(A, B, ldb, C, m, k, n, 1);
    else mm_masked(A, B, ldb, C, m, k, n, 0);
}
#else
/* C (m x n) = op(A) . B, B row-major k x n with row stride ldb. */
static void mm_native(const real *A, const real *B, int64_t ldb, real *C, int64_t m, int64_t k,
                      int64_t n, int ta) {
    int64_t j = 0;
#if defined(VL) && !defined(MASKED)
    for (; j + NV * VL <= n; j += NV * VL) {
        int64_t i = 0;
        for (; i + MR <= m; i += MR) mm_block(A, B, ldb, C, m, k, n, ta, i, j);
        for (; i < m; i++) mm_row(A, B, ldb, C, m, k, n, ta, i, j, NV);
    }
    for (; j + VL <= n; j += VL) {
        int64_t i = 0;
        for (; i + MR <= m; i += MR) mm_rows4_1(A, B, ldb, C, m, k, n, ta, i, j);
        for (; i < m; i++) mm_row(A, B, ldb, C, m, k, n, ta, i, j, 1);
    }
#endif
    /* column tail (a few columns): each element its own fma chain */
    for (int64_t jj = j; jj < n; jj++) {
        int64_t i = 0;
#if defined(VL) && !defined(MASKED)
        if (ta) { /* op(A) columns are contiguous: VL rows at a time */
            for (; i + VL <= m; i += VL) {
                vreal c = VZERO();
                for (int64_t p = 0; p < k; p++) c = VFMA(VLOAD(A + p * m + i), VSET1(B[p * ldb + jj]), c);
                real tmp[VL];
                VSTORE(tmp, c);
                for (int l = 0; l < VL; l++) C[(i + l) * n + jj] = tmp[l];
            }
        }
#endif
        for (; i < m; i++) C[i * n + jj] = mm_dot(A, B, ldb, m, k, ta, i, jj);
    }
}

#endif

/* Whether the registered gemm computes this product rather than the native kernel. The masked
 * AVX-512 kernel beats OpenBLAS's small-matrix paths (measured with OpenBLAS 0.3 on a Sapphire
 * Rapids core: a 64x64x128 product 16 us vs 21 us in f64) up to about 2^20 multiply-adds, and on
 * narrow outputs (n <= 2 VL columns, e.g. a 10-class layer) at any size, where a gemm wastes
 * most of its register tile; the others go to the gemm (cache blocking wins). */
static int use_gemm(int64_t m, int64_t k, int64_t n) {
    double work = (double)m * (double)n * (double)k;
#ifdef MASKED
    return work > (double)NATIVE_MAX_WORK && n > 2 * VL;
#else
    return work >= 4096.0;
#endif
}

void noma_matmul(const real *A, const real *B, real *C, int64_t m, int64_t k, int64_t n, int32_t ta,
                 int32_t tb) {
    if (m < 0 || k < 0 || n < 0) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "matmul: negative size (%lld, %lld, %lld)", (long long)m,
                    (long long)k, (long long)n);
        return;
    }
    if (m == 0 || n == 0) return;
    if (!C || (k > 0 && (!A || !B))) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "matmul: missing operand");
        return;
    }
    if (k == 0) {
        memset(C, 0, (size_t)(m * n) * sizeof(real));
        return;
    }
    if (g_gemm && use_gemm(m, k, n)) {
        g_gemm(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS, tb ? CBLAS_TRANS : CBLAS_NO_TRANS,
               m, n, k, (real)1, A, ta ? m : k, B, tb ? k : n, (real)0, C, n);
        return;
    }
    if (!tb) {
        mm_native(A, B, n, C, m, k, n, ta);
        return;
    }
    /* op(B) = B^T: pack it row-major (k x n) on the stack when small, else on the heap */
    real stackbuf[2048];
    real *Bp = stackbuf;
    if (k * n > (int64_t)(sizeof stackbuf / sizeof stackbuf[0])) {
        Bp = (real *)malloc((size_t)(k * n) * sizeof(real));
        if (!Bp) {
            noma__failf(NOMA_ERR_RUNTIME, -1, "matmul: out of memory");
            return;
        }
    }
    for (int64_t jj = 0; jj < n; jj++)
        for (int64_t p = 0; p < k; p++) Bp[p * n + jj] = B[jj * k + p];
    mm_native(A, Bp, n, C, m, k, n, ta);
    if (Bp != stackbuf) free(Bp);
}
