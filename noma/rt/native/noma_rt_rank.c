/*
 * noma_rt_rank.c -- ranking builtins of the NOMA native runtime: argsort and topk of a vector.
 *
 * noma_argsort: the indices that sort x ascending, stable (equal values keep their order), NaN
 * after every number. noma_topk: the indices of the k largest entries, largest first, equal
 * values by lower index, NaN before every number (as the largest). Results are fresh arena
 * vectors of indices (as reals) in *out; a k that is not a whole number in 0..n fails at span.
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <string.h>

/* Whether entry a comes before entry b (a != b as indices): by value, then by index. */
static int before(const real *x, int64_t a, int64_t b, int desc) {
    real va = x[a], vb = x[b];
    int na = isnan(va), nb = isnan(vb);
    if (na || nb) {
        if (na && nb) return a < b;
        return desc ? na : nb; /* NaN first when descending, last when ascending */
    }
    if (va != vb) return desc ? va > vb : va < vb;
    return a < b;
}

/* Stable merge sort of the index array idx[0..n) (tmp: n scratch entries). */
static void merge_sort(const real *x, int64_t *idx, int64_t *tmp, int64_t n, int desc) {
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = before(x, idx[j], idx[i], desc) ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

static void ranked(const NomaTensor *x, int64_t k, int desc, NomaTensor *out, int64_t span) {
    int64_t n = x->dims[0];
    memset(out, 0, sizeof *out);
    out->rank = 1;
    out->dims[0] = k;
    out->data = noma_alloc_at(k, span);
    if (!out->data) return;
    size_t bytes = (size_t)(n > 0 ? 2 * n : 1) * sizeof(int64_t);
    int64_t *idx = (int64_t *)noma__xmalloc(bytes);
    if (!idx) {
        noma__fail_alloc(noma__cur(), span, (uint64_t)bytes, desc ? "topk" : "argsort");
        return;
    }
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    merge_sort(x->data, idx, idx + n, n, desc);
    for (int64_t i = 0; i < k; i++) out->data[i] = (real)idx[i];
    noma__xfree(idx);
}

void noma_argsort(const NomaTensor *x, NomaTensor *out, int64_t span) {
    ranked(x, x->dims[0], 0, out, span);
}

void noma_topk(const NomaTensor *x, real k, NomaTensor *out, int64_t span) {
    double d = (double)k;
    if (!(d >= 0) || d > (double)x->dims[0] || floor(d) != d) {
        noma__failf(NOMA_ERR_RUNTIME, span, "topk: k must be a whole number from 0 to %lld, got %g",
                    (long long)x->dims[0], d);
        return;
    }
    ranked(x, (int64_t)d, 1, out, span);
}
