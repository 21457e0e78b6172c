/*
 * noma_rt_linalg.c -- matrix multiply for the NOMA native runtime.
 *
 * noma_matmul computes C[m,n] = op(A) . op(B) where op transposes when the flag
 * is 1 (A is stored k x m when ta, B is stored n x k when tb). When a BLAS gemm
 * was registered with noma_set_gemm (cblas ABI with 64-bit integers: dgemm in
 * the f64 build, sgemm in the f32 build) and m*n*k >= 4096, it is used;
 * otherwise a blocked i-k-j loop (4 rows of C at a time, B packed row-major
 * when tb) that the compiler vectorizes along j.
 */
#include "noma_rt_internal.h"

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

#define KB 256
#define NB 512

/* C (m x n, zeroed) += op(A) * Bp, Bp row-major k x n. */
static void mm_blocked(const real *A, const real *Bp, real *C, int64_t m, int64_t k, int64_t n,
                       int ta) {
    for (int64_t j0 = 0; j0 < n; j0 += NB) {
        int64_t j1 = j0 + NB < n ? j0 + NB : n;
        for (int64_t p0 = 0; p0 < k; p0 += KB) {
            int64_t p1 = p0 + KB < k ? p0 + KB : k;
            int64_t i = 0;
            for (; i + 4 <= m; i += 4) {
                real *restrict c0 = C + i * n;
                real *restrict c1 = c0 + n;
                real *restrict c2 = c1 + n;
                real *restrict c3 = c2 + n;
                for (int64_t p = p0; p < p1; p++) {
                    real a0, a1, a2, a3;
                    if (ta) {
                        const real *ap = A + p * m + i;
                        a0 = ap[0]; a1 = ap[1]; a2 = ap[2]; a3 = ap[3];
                    } else {
                        const real *ap = A + i * k + p;
                        a0 = ap[0]; a1 = ap[k]; a2 = ap[2 * k]; a3 = ap[3 * k];
                    }
                    const real *restrict b = Bp + p * n;
                    for (int64_t j = j0; j < j1; j++) {
                        real bj = b[j];
                        c0[j] += a0 * bj;
                        c1[j] += a1 * bj;
                        c2[j] += a2 * bj;
                        c3[j] += a3 * bj;
                    }
                }
            }
            for (; i < m; i++) {
                real *restrict c0 = C + i * n;
                for (int64_t p = p0; p < p1; p++) {
                    real a0 = ta ? A[p * m + i] : A[i * k + p];
                    const real *restrict b = Bp + p * n;
                    for (int64_t j = j0; j < j1; j++) c0[j] += a0 * b[j];
                }
            }
        }
    }
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
    if (g_gemm && (double)m * (double)n * (double)k >= 4096.0) {
        g_gemm(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS, tb ? CBLAS_TRANS : CBLAS_NO_TRANS,
               m, n, k, (real)1, A, ta ? m : k, B, tb ? k : n, (real)0, C, n);
        return;
    }
    const real *Bp = B;
    real *tmp = NULL;
    if (tb) {
        tmp = (real *)malloc((size_t)(k * n) * sizeof(real));
        if (!tmp) {
            /* out of memory for packing: plain strided loop */
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    real s = 0;
                    for (int64_t p = 0; p < k; p++)
                        s += (ta ? A[p * m + i] : A[i * k + p]) * B[j * k + p];
                    C[i * n + j] = s;
                }
            return;
        }
        for (int64_t j = 0; j < n; j++)
            for (int64_t p = 0; p < k; p++) tmp[p * n + j] = B[j * k + p];
        Bp = tmp;
    }
    memset(C, 0, (size_t)(m * n) * sizeof(real));
    mm_blocked(A, Bp, C, m, k, n, ta);
    free(tmp);
}
