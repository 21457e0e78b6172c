/*
 * noma_rt_history.c -- the training history of a context in bounded memory: the loss of every
 * training step goes into
 *   - an exact window: a ring of the last `window` losses (NOMA_HIST_WINDOW by default), and
 *   - a multi-resolution summary of the whole run: levels of buckets, a bucket of level l holding
 *     the min, max and sum of 2^l consecutive losses. Each level keeps at most NOMA_HIST_K
 *     buckets; when a level is full, its two oldest buckets merge into one bucket of the next
 *     level (the way monitoring systems keep series). Level l+1's newest bucket ends where level
 *     l's oldest begins, so the levels from the highest down to 0 cover every logged step once,
 *     oldest first, the most recent steps at the finest resolution.
 * Both are allocated once (on first use) and never grow: logging a loss costs no memory.
 * min/max ignore NaN (fmin/fmax: NaN only when every loss of the bucket is NaN); the sum
 * propagates it.
 *
 * Concurrency: one thread trains (noma_log_loss) while another may read (a live plot, the
 * progress line). Writers bracket every change with a sequence counter (odd while writing); a
 * reader copies, then retries if the counter moved. A reader also raises `pause`, which makes the
 * training thread wait at its next noma_log_loss until the copy is done, so a copy of the whole
 * history finishes even while training logs millions of losses per second.
 * Also owns the global step's relation to the history: step = start + losses summarised.
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double min, max, sum;
} HBucket;

struct NomaHistory {
    _Atomic uint64_t seq;  /* odd while a writer changes the history */
    _Atomic int32_t pause; /* readers copying: the training thread waits in noma_log_loss */
    int32_t nlevels;       /* levels holding buckets */
    int64_t total;         /* losses summarised */
    int64_t head[NOMA_HIST_LEVELS];  /* ring index of each level's oldest bucket */
    int64_t count[NOMA_HIST_LEVELS]; /* buckets held per level */
    HBucket bucket[NOMA_HIST_LEVELS * NOMA_HIST_K];
    int64_t window;        /* capacity of the exact ring */
    int64_t rcount, rnext; /* exact losses held; ring index of the next one */
    real *recent;
    double last;           /* the last loss logged (NaN when none) */
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static NomaHistory *hist_peek(NomaCtx *c) {
    return atomic_load_explicit(&c->hist, memory_order_acquire);
}

static void hist_clear(NomaHistory *h) {
    h->nlevels = 0;
    h->total = 0;
    memset(h->head, 0, sizeof h->head);
    memset(h->count, 0, sizeof h->count);
    h->rcount = h->rnext = 0;
    h->last = NAN;
}

/* Bytes the history's two blocks (the struct and the exact ring) are charged to the memory limit. */
static int64_t hist_charge(int64_t window) {
    return (int64_t)sizeof(NomaHistory) + window * (int64_t)sizeof(real);
}

/* The context's history, allocated on first use and charged to the memory limit; NULL when
   refused (over the limit or out of memory: a runtime error recorded on c, unwinding when c runs
   armed). */
static NomaHistory *hist_get_at(NomaCtx *c, int64_t span) {
    NomaHistory *h = hist_peek(c);
    if (h) return h;
    int64_t bytes = hist_charge(NOMA_HIST_WINDOW);
    if (!noma__mem_admit(c, (uint64_t)bytes)) {
        noma__fail_alloc(c, span, (uint64_t)bytes, "the loss history");
        return NULL;
    }
    c->mem->refused = 0;
    h = (NomaHistory *)calloc(1, sizeof *h);
    real *r = (real *)malloc((size_t)NOMA_HIST_WINDOW * sizeof(real));
    if (!h || !r) {
        free(h);
        free(r);
        noma__fail_alloc(c, span, (uint64_t)bytes, "the loss history");
        return NULL;
    }
    noma__mem_charge(c, bytes);
    h->window = NOMA_HIST_WINDOW;
    h->recent = r;
    hist_clear(h);
    atomic_store_explicit(&c->hist, h, memory_order_release);
    return h;
}

static NomaHistory *hist_get(NomaCtx *c) { return hist_get_at(c, -1); }

int32_t noma__history_alloc(NomaCtx *c) { return hist_get(c) != NULL; }

/* Before a training loop's first step: the history exists (allocated now if need be), so logging
   a step's loss never allocates; refused, a runtime error at the loop's `span` (it unwinds when
   the context runs armed). */
void noma_log_begin(int64_t span) {
    NomaCtx *c = noma__cur();
    c->train_span = span; /* (the tape's allocation failures are located there too) */
    if (!hist_peek(c)) (void)hist_get_at(c, span);
}

static void write_begin(NomaHistory *h) {
    uint64_t s = atomic_load_explicit(&h->seq, memory_order_relaxed);
    atomic_store_explicit(&h->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_end(NomaHistory *h) {
    uint64_t s = atomic_load_explicit(&h->seq, memory_order_relaxed);
    atomic_store_explicit(&h->seq, s + 1, memory_order_release);
}

static HBucket *at(NomaHistory *h, int l, int64_t i) {
    int64_t j = h->head[l] + i;
    if (j >= NOMA_HIST_K) j -= NOMA_HIST_K;
    return &h->bucket[(int64_t)l * NOMA_HIST_K + j];
}

/* Appends a bucket of 2^l losses as level l's newest, merging full levels upwards. */
static void level_push(NomaHistory *h, int l, HBucket b) {
    for (;;) {
        HBucket carry;
        int full = h->count[l] == NOMA_HIST_K && l + 1 < NOMA_HIST_LEVELS;
        if (full) {
            HBucket *o0 = at(h, l, 0), *o1 = at(h, l, 1);
            carry.min = fmin(o0->min, o1->min);
            carry.max = fmax(o0->max, o1->max);
            carry.sum = o0->sum + o1->sum;
            h->head[l] = (h->head[l] + 2) % NOMA_HIST_K;
            h->count[l] -= 2;
        } else if (h->count[l] == NOMA_HIST_K) { /* 2^63 * K losses: unreachable */
            h->head[l] = (h->head[l] + 1) % NOMA_HIST_K;
            h->count[l]--;
        }
        *at(h, l, h->count[l]) = b;
        h->count[l]++;
        if (l + 1 > h->nlevels) h->nlevels = l + 1;
        if (!full) return;
        b = carry;
        l++;
    }
}

static void push(NomaHistory *h, real x) {
    h->recent[h->rnext] = x;
    h->rnext = h->rnext + 1 == h->window ? 0 : h->rnext + 1;
    if (h->rcount < h->window) h->rcount++;
    double d = (double)x;
    h->last = d;
    HBucket b = {d, d, d};
    level_push(h, 0, b);
    h->total++;
}

/* ======================================================================== */
/* Writers                                                                  */
/* ======================================================================== */

void noma_log_loss(real loss) {
    NomaCtx *c = noma__cur();
    NomaHistory *h = hist_peek(c);
    if (!h && !(h = hist_get(c))) return;
    if (atomic_load_explicit(&h->pause, memory_order_relaxed))
        while (atomic_load_explicit(&h->pause, memory_order_acquire)) cpu_relax();
    write_begin(h);
    push(h, loss);
    write_end(h);
    c->step++;
}

void noma_history_reset(NomaCtx *c, int64_t step) {
    c = noma__ctx_or_cur(c);
    NomaHistory *h = hist_peek(c);
    if (h) {
        write_begin(h);
        hist_clear(h);
        write_end(h);
    }
    c->step = step < 0 ? 0 : step;
}

void noma_log_clear(NomaCtx *c) {
    c = noma__ctx_or_cur(c);
    noma_history_reset(c, c->step);
}

/* 1: done; 0: n out of range; -1: refused (over the memory limit or out of memory; a runtime
   error recorded on c). Call while c does not run. */
int32_t noma_history_set_window(NomaCtx *c, int64_t n) {
    c = noma__ctx_or_cur(c);
    if (n < 1 || n > NOMA_HIST_MAX_WINDOW) return 0;
    NomaHistory *h = hist_get(c);
    if (!h) return -1;
    uint64_t bytes = (uint64_t)n * sizeof(real); /* the old ring is freed after the copy */
    if (!noma__mem_admit(c, bytes)) {
        noma__fail_alloc(c, -1, bytes, "the loss history window");
        return -1;
    }
    c->mem->refused = 0;
    real *r = (real *)malloc((size_t)bytes);
    if (!r) {
        noma__fail_alloc(c, -1, bytes, "the loss history window");
        return -1;
    }
    noma__mem_charge(c, (int64_t)bytes);
    int64_t keep = h->rcount < n ? h->rcount : n;
    for (int64_t i = 0; i < keep; i++) { /* the last `keep` values, oldest first */
        int64_t j = h->rnext - keep + i;
        if (j < 0) j += h->window;
        r[i] = h->recent[j];
    }
    write_begin(h);
    real *old = h->recent;
    int64_t old_window = h->window;
    h->recent = r;
    h->window = n;
    h->rcount = keep;
    h->rnext = keep == n ? 0 : keep;
    write_end(h);
    free(old);
    noma__mem_charge(c, -old_window * (int64_t)sizeof(real));
    return 1;
}

/* Checks a summary (levels 0..nlevels-1 with counts[l] buckets each, 2^l losses per bucket) and
   returns the losses it covers, or -1. */
int64_t noma__history_total(int64_t nlevels, const int64_t *counts) {
    if (nlevels < 0 || nlevels > NOMA_HIST_LEVELS || (nlevels && !counts)) return -1;
    int64_t total = 0;
    for (int64_t l = 0; l < nlevels; l++) {
        if (counts[l] < 0 || counts[l] > NOMA_HIST_K) return -1;
        if (counts[l] && l >= 62 - 7) return -1; /* beyond any real run; keeps the sum exact */
        total += counts[l] << l;
    }
    return total;
}

int32_t noma__history_put(NomaCtx *c, int64_t step, int64_t nlevels, const int64_t *counts,
                          const double *bmin, const double *bmax, const double *bsum,
                          int64_t nrecent, const real *recent) {
    int64_t total = noma__history_total(nlevels, counts);
    if (total < 0 || total > step || nrecent < 0 || nrecent > total) return 0;
    NomaHistory *h = hist_get(c);
    if (!h) return 0;
    write_begin(h);
    hist_clear(h);
    int64_t k = 0;
    for (int64_t l = nlevels - 1; l >= 0; l--) { /* oldest first: the highest level first */
        for (int64_t i = 0; i < counts[l]; i++, k++) {
            HBucket b = {bmin[k], bmax[k], bsum[k]};
            h->bucket[l * NOMA_HIST_K + i] = b;
        }
        h->count[l] = counts[l];
        if (counts[l] && l + 1 > h->nlevels) h->nlevels = (int32_t)(l + 1);
    }
    h->total = total;
    int64_t keep = nrecent < h->window ? nrecent : h->window;
    for (int64_t i = 0; i < keep; i++) h->recent[i] = recent[nrecent - keep + i];
    h->rcount = keep;
    h->rnext = keep == h->window ? 0 : keep;
    h->last = keep ? (double)h->recent[keep - 1] : NAN;
    write_end(h);
    c->step = step;
    return 1;
}

int32_t noma_history_set(NomaCtx *c, int64_t step, int64_t nlevels, const int64_t *counts,
                         const double *bmin, const double *bmax, const double *bsum,
                         int64_t nrecent, const real *recent) {
    c = noma__ctx_or_cur(c);
    int64_t total = noma__history_total(nlevels, counts);
    if (total > 0 && (!bmin || !bmax || !bsum)) return 0;
    if (nrecent > 0 && !recent) return 0;
    if (total == 0 && nrecent == 0 && step >= 0 && !hist_peek(c)) {
        c->step = step; /* nothing to hold: the history is allocated at the first loss, as before */
        return 1;
    }
    if (!hist_get(c)) return -1; /* refused: a runtime error recorded on c */
    return noma__history_put(c, step, nlevels, counts, bmin, bmax, bsum, nrecent, recent);
}

void noma__history_replay(NomaCtx *c, int64_t step, int64_t n, const real *losses) {
    NomaHistory *h = hist_get(c);
    if (!h) return;
    if (n > step) { /* more losses than steps: keep the last `step` */
        losses += n - step;
        n = step;
    }
    write_begin(h);
    hist_clear(h);
    for (int64_t i = 0; i < n; i++) push(h, losses[i]);
    write_end(h);
    c->step = step;
}

void noma__history_free(NomaCtx *c) {
    NomaHistory *h = hist_peek(c);
    if (!h) return;
    noma__mem_charge(c, -hist_charge(h->window));
    free(h->recent);
    free(h);
    atomic_store_explicit(&c->hist, NULL, memory_order_relaxed);
}

/* ======================================================================== */
/* Readers                                                                  */
/* ======================================================================== */

/* Copies under the sequence counter, holding the training thread at its next loss meanwhile. */
#define READ_LOCKED(h, body)                                                                       \
    do {                                                                                           \
        atomic_fetch_add_explicit(&(h)->pause, 1, memory_order_acq_rel);                           \
        for (;;) {                                                                                 \
            uint64_t s1_ = atomic_load_explicit(&(h)->seq, memory_order_acquire);                  \
            if (s1_ & 1) {                                                                         \
                cpu_relax();                                                                       \
                continue;                                                                          \
            }                                                                                      \
            body;                                                                                  \
            atomic_thread_fence(memory_order_acquire);                                             \
            if (atomic_load_explicit(&(h)->seq, memory_order_relaxed) == s1_) break;               \
        }                                                                                          \
        atomic_fetch_sub_explicit(&(h)->pause, 1, memory_order_acq_rel);                           \
    } while (0)

static int64_t copy_recent(const NomaHistory *h, real *out, int64_t cap) {
    int64_t n = h->rcount < cap ? h->rcount : cap;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = h->rnext - n + i;
        if (j < 0) j += h->window;
        out[i] = h->recent[j];
    }
    return n;
}

/* Summary buckets oldest first into bmin/bmax/bsum; counts per level; returns the buckets. */
static int64_t copy_summary(NomaHistory *h, int64_t *counts, double *bmin, double *bmax,
                            double *bsum) {
    int64_t k = 0;
    for (int l = h->nlevels - 1; l >= 0; l--) {
        if (counts) counts[l] = h->count[l];
        for (int64_t i = 0; i < h->count[l]; i++, k++) {
            const HBucket *b = at(h, l, i);
            if (bmin) bmin[k] = b->min;
            if (bmax) bmax[k] = b->max;
            if (bsum) bsum[k] = b->sum;
        }
    }
    return k;
}

int32_t noma_history_get(NomaCtx *c, int64_t *info, int64_t *counts, double *bmin, double *bmax,
                         double *bsum, real *recent, int64_t recent_cap) {
    c = noma__ctx_or_cur(c);
    if (!info) return 0;
    NomaHistory *h = hist_peek(c);
    int64_t step = c->step;
    if (!h) {
        info[0] = step;
        info[1] = step;
        info[2] = info[3] = info[4] = 0;
        return 1;
    }
    READ_LOCKED(h, {
        step = c->step;
        info[2] = h->nlevels;
        info[3] = copy_summary(h, counts, bmin, bmax, bsum);
        info[4] = recent && recent_cap > 0 ? copy_recent(h, recent, recent_cap) : 0;
        info[1] = h->total;
    });
    /* step can run ahead of the copy by one loss (it advances after the history's write) */
    info[0] = step < info[1] ? info[1] : step;
    info[1] = info[0] - info[1];
    return 1;
}

int64_t noma_log_len(NomaCtx *c) {
    NomaHistory *h = hist_peek(noma__ctx_or_cur(c));
    return h ? h->rcount : 0;
}

int64_t noma_log_copy(NomaCtx *c, real *out, int64_t cap) {
    NomaHistory *h = hist_peek(noma__ctx_or_cur(c));
    int64_t n = 0;
    if (!h || !out || cap <= 0) return 0;
    READ_LOCKED(h, n = copy_recent(h, out, cap));
    return n;
}

real noma_log_last(NomaCtx *c) {
    NomaHistory *h = hist_peek(noma__ctx_or_cur(c));
    return h ? (real)h->last : (real)NAN;
}

int64_t noma_history_window(NomaCtx *c) {
    NomaHistory *h = hist_peek(noma__ctx_or_cur(c));
    return h ? h->window : NOMA_HIST_WINDOW;
}

int64_t noma_history_bytes(NomaCtx *c) {
    NomaHistory *h = hist_peek(noma__ctx_or_cur(c));
    return h ? hist_charge(h->window) : 0;
}

int64_t noma_history_limit(int32_t which) {
    switch (which) {
    case 0: return NOMA_HIST_LEVELS;
    case 1: return NOMA_HIST_K;
    case 2: return NOMA_HIST_WINDOW;
    case 3: return NOMA_HIST_MAX_WINDOW;
    default: return -1;
    }
}

/* For the checkpoint writer: the history as arrays (arena), oldest first; 0 when out of memory. */
int32_t noma__history_export(NomaCtx *c, NomaHistoryCopy *out) {
    memset(out, 0, sizeof *out);
    int64_t nb = (int64_t)NOMA_HIST_LEVELS * NOMA_HIST_K;
    NomaHistory *h = hist_peek(c);
    int64_t nr = h ? h->rcount : 0;
    out->summary = (real *)noma__alloc(c, nb * 3);
    out->recent = noma__alloc(c, nr);
    double *tmp = (double *)noma__alloc(c, (int64_t)((nb * 3 * sizeof(double) + sizeof(real) - 1) /
                                                     sizeof(real)));
    if (!out->summary || !out->recent || !tmp) return 0;
    int64_t info[5];
    noma_history_get(c, info, out->counts, tmp, tmp + nb, tmp + 2 * nb, out->recent, nr);
    out->nlevels = info[2];
    out->nbuckets = info[3];
    out->nrecent = info[4];
    int64_t k = 0;
    for (int64_t l = out->nlevels - 1; l >= 0; l--) /* rows: min, max, mean */
        for (int64_t i = 0; i < out->counts[l]; i++, k++) {
            out->summary[3 * k] = (real)tmp[k];
            out->summary[3 * k + 1] = (real)tmp[nb + k];
            out->summary[3 * k + 2] = (real)(tmp[2 * nb + k] / (double)((int64_t)1 << l));
        }
    return 1;
}
