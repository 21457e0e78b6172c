/*
 * noma_rt_metrics.c -- named metrics of a context (the `report("name", value);` statement), in
 * bounded memory: at most NOMA_METRICS_MAX names; per name the count, min, max and sum of every
 * value reported, and a ring of the last NOMA_METRIC_WINDOW (global step, value) samples. The
 * table is allocated on first use, charged to the context's memory limit, and never grows. A report records the value at the current
 * global step (the number of training steps logged so far), next to the loss history
 * (noma_rt_history.c). Readers (Session.metrics, a checkpoint) run while no code runs; a live
 * plot may copy while training runs (a new name is published after it is written; a sample being
 * written at that moment may be copied half-old: the plot is a frame behind, never out of bounds).
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[NOMA_METRIC_NAME];
    int64_t count, head; /* values reported; ring index of the next sample */
    double min, max, sum;
    int64_t steps[NOMA_METRIC_WINDOW];
    double values[NOMA_METRIC_WINDOW];
} NomaMetric;

struct NomaMetrics {
    int32_t n;
    NomaMetric m[NOMA_METRICS_MAX];
};

void noma__metrics_free(NomaCtx *c) {
    if (c->metrics) noma__mem_charge(c, -(int64_t)sizeof *c->metrics);
    free(c->metrics);
    c->metrics = NULL;
}

/* The context's table, allocated (and charged to the memory limit) on first use; NULL after a
   failure located at span. */
static struct NomaMetrics *table(NomaCtx *c, int64_t span) {
    if (c->metrics) return c->metrics;
    /* NOMA_METRICS_MAX rings of NOMA_METRIC_WINDOW samples, charged like every other block */
    uint64_t bytes = sizeof *c->metrics;
    c->metrics = noma__mem_admit(c, bytes) ? (struct NomaMetrics *)calloc(1, bytes) : NULL;
    if (!c->metrics) {
        noma__fail_alloc(c, span, bytes, "the table of named metrics (report)");
        return NULL;
    }
    noma__mem_charge(c, (int64_t)bytes);
    return c->metrics;
}

int32_t noma__metrics_alloc(NomaCtx *c) {
    jmp_buf *jb = c->jb; /* a refusal is a failed call here, never an unwind */
    c->jb = NULL;
    struct NomaMetrics *t = table(c, -1);
    c->jb = jb;
    return t != NULL;
}

static NomaMetric *find(NomaCtx *c, const char *name, int create, int64_t span) {
    if (!c->metrics && (!create || !table(c, span))) return NULL;
    struct NomaMetrics *t = c->metrics;
    for (int32_t i = 0; i < t->n; i++)
        if (strncmp(t->m[i].name, name, NOMA_METRIC_NAME - 1) == 0) return &t->m[i];
    if (!create) return NULL;
    if (t->n == NOMA_METRICS_MAX) {
        noma__failf(NOMA_ERR_RUNTIME, span, "report: more than %d metric names", NOMA_METRICS_MAX);
        return NULL;
    }
    NomaMetric *m = &t->m[t->n];
    memset(m, 0, sizeof *m);
    strncpy(m->name, name, NOMA_METRIC_NAME - 1);
    m->min = INFINITY;
    m->max = -INFINITY;
    __atomic_store_n(&t->n, t->n + 1, __ATOMIC_RELEASE); /* a reader sees the name written */
    return m;
}

static void put(NomaMetric *m, int64_t step, double value) {
    m->steps[m->head] = step;
    m->values[m->head] = value;
    m->head = (m->head + 1) % NOMA_METRIC_WINDOW;
    m->count++;
    m->min = fmin(m->min, value);
    m->max = fmax(m->max, value);
    m->sum += value;
}

/* `report("name", value);`: the value at the current global step (span: the statement's, for the
   error of a 33rd name). */
void noma_report(const char *name, real value, int64_t span) {
    NomaCtx *c = noma__cur();
    NomaMetric *m = find(c, name, 1, span);
    if (m) put(m, c->step, (double)value);
}

int32_t noma_metric_count(NomaCtx *c) {
    c = noma__ctx_or_cur(c);
    return c->metrics ? c->metrics->n : 0;
}

/* Metric i: its name (NUL-terminated, NOMA_METRIC_NAME bytes), summary[4] = count as a double,
   min, max, sum, and its held samples oldest first (at most cap); returns the samples copied. */
int64_t noma_metric_get(NomaCtx *c, int32_t i, char *name, double *summary, int64_t *steps,
                        double *values, int64_t cap) {
    c = noma__ctx_or_cur(c);
    if (!c->metrics || i < 0 || i >= c->metrics->n) return -1;
    NomaMetric *m = &c->metrics->m[i];
    memcpy(name, m->name, NOMA_METRIC_NAME);
    summary[0] = (double)m->count;
    summary[1] = m->min;
    summary[2] = m->max;
    summary[3] = m->sum;
    int64_t held = m->count < NOMA_METRIC_WINDOW ? m->count : NOMA_METRIC_WINDOW;
    int64_t n = held < cap ? held : cap;
    int64_t first = (m->head - n + NOMA_METRIC_WINDOW) % NOMA_METRIC_WINDOW;
    for (int64_t k = 0; k < n; k++) {
        steps[k] = m->steps[(first + k) % NOMA_METRIC_WINDOW];
        values[k] = m->values[(first + k) % NOMA_METRIC_WINDOW];
    }
    return n;
}

/* Restores a metric (a checkpoint): its summary (count, min, max, sum) and samples oldest first
   (the last NOMA_METRIC_WINDOW of them are kept). 0 when the table is full or the input is bad. */
int32_t noma_metric_set(NomaCtx *c, const char *name, const double *summary, int64_t n,
                        const int64_t *steps, const double *values) {
    c = noma__ctx_or_cur(c);
    if (n < 0 || summary[0] < (double)n) return 0;
    NomaMetric *m = find(c, name, 1, -1);
    if (!m) return 0;
    m->count = m->head = 0;
    for (int64_t k = n > NOMA_METRIC_WINDOW ? n - NOMA_METRIC_WINDOW : 0; k < n; k++) put(m, steps[k], values[k]);
    m->count = (int64_t)summary[0];
    m->min = summary[1];
    m->max = summary[2];
    m->sum = summary[3];
    return 1;
}

/* Forgets every metric (a reset, or a checkpoint's metrics replacing the session's). */
void noma_metrics_clear(NomaCtx *c) {
    c = noma__ctx_or_cur(c);
    if (c->metrics) c->metrics->n = 0;
}

int64_t noma_metric_limit(int32_t which) {
    return which == 0 ? NOMA_METRICS_MAX : which == 1 ? NOMA_METRIC_WINDOW : NOMA_METRIC_NAME;
}
