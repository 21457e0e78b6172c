/*
 * noma_rt_checkpoint.c -- checkpoints of the NOMA native runtime: the state a
 * program trains, as one safetensors file written and read by this code only
 * (generated code calls it for the save_checkpoint / load_checkpoint statements,
 * in the JIT and in executables; the session calls it through ctypes).
 * Also owns the names of dims (the runtime knows dims by id; checkpoints match
 * them by name, as they match parameters).
 *
 * Format "noma-checkpoint-3" (docs/LANGUAGE.md has the user's view):
 *   __metadata__ (strings): "format", "dtype" ("f64" / "f32"), "step" (global step),
 *     "rng" (6 decimal words: the xoshiro256** state, has_spare, the spare's bits),
 *     "dim/D" (size of dim D), "opt/P" (sgd / adam / rmsprop / adamw),
 *     "bind/P/AXIS" (the dim that sizes that axis of parameter P),
 *     "history/levels" (decimal words: the summary's buckets per level, level 0 first),
 *     "metric/M" (the named metric M of `report`: count, min, max, sum, as %.17g words);
 *   tensors: "param/P" (values, the parameter's shape; a scalar has shape []),
 *     "opt/P/m", "opt/P/v", "opt/P/pow1", "opt/P/pow2" (like the parameter),
 *     "opt/P/step" (I64 per-entry step counts), "history/losses" ([n]: the exact
 *     window, the last n losses), "history/summary" ([buckets, 3]: min, max, mean
 *     per bucket, oldest first: the highest level's buckets first),
 *     "metric/M/steps" (I64 [n]: global steps of the held samples, oldest first) and
 *     "metric/M/values" ([n]: their values), all real
 *     tensors F64 (F32 in an f32 build). Other tensors (a session's "global/G")
 *     and metadata keys are ignored by the loader.
 * Format "noma-checkpoint-2" (the previous one: the same without the summary, and
 * "history/losses" the whole log) still loads: its losses are summarised again.
 *
 * Loading is all or nothing: the file is parsed, checked against the live
 * program (names, ranks, dims, dtype) and every tensor is read into the arena
 * before anything changes; only then are values, shapes, optimizer state, dims,
 * the loss log, the named metrics (a file without them clears the program's),
 * the global step and the RNG state replaced.
 */
#include "noma_rt_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_FORMAT "noma-checkpoint-3"
#define CKPT_FORMAT_V2 "noma-checkpoint-2" /* still loaded */
#define LOAD_COMPLETE 1 /* flag: every live parameter must be in the checkpoint */
#define NSTATE 5
#define STEP_STATE 2

static const char *const STATE_KEYS[NSTATE] = {"m", "v", "step", "pow1", "pow2"};

#ifdef NOMA_F32
#define REAL_DTYPE "F32"
#define REAL_NAME "f32"
#define OTHER_NAME "f64"
#else
#define REAL_DTYPE "F64"
#define REAL_NAME "f64"
#define OTHER_NAME "f32"
#endif

/* ======================================================================== */
/* Dim names                                                                */
/* ======================================================================== */

void noma_dim_set_name(int64_t dim_id, const char *name) {
    NomaCtx *c = noma__cur();
    if (!name || dim_id < 0 || dim_id >= NOMA_MAX_SLOT) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: dim id %lld out of range",
                    (long long)dim_id);
        return;
    }
    if (dim_id >= c->ndim_names) {
        int64_t nn = c->ndim_names ? c->ndim_names : 16;
        while (nn <= dim_id) nn *= 2;
        char **p = (char **)realloc(c->dim_names, (size_t)nn * sizeof *p);
        if (!p) {
            noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (dims)");
            return;
        }
        memset(p + c->ndim_names, 0, (size_t)(nn - c->ndim_names) * sizeof *p);
        c->dim_names = p;
        c->ndim_names = nn;
    }
    if (c->dim_names[dim_id] && strcmp(c->dim_names[dim_id], name) == 0) return;
    char *copy = strdup(name);
    if (!copy) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (dims)");
        return;
    }
    free(c->dim_names[dim_id]);
    c->dim_names[dim_id] = copy;
}

const char *noma_dim_name(int64_t dim_id) {
    NomaCtx *c = noma__cur();
    if (dim_id < 0 || dim_id >= c->ndim_names || !c->dim_names[dim_id]) return "";
    return c->dim_names[dim_id];
}

void noma__dim_names_free(NomaCtx *c) {
    for (int64_t i = 0; i < c->ndim_names; i++) free(c->dim_names[i]);
    free(c->dim_names);
    c->dim_names = NULL;
    c->ndim_names = 0;
}

static int64_t dim_by_name(NomaCtx *c, const char *name) {
    for (int64_t i = 0; i < c->ndim_names; i++)
        if (c->dim_names[i] && strcmp(c->dim_names[i], name) == 0) return i;
    return -1;
}

static NomaParam *live(NomaCtx *c, int64_t slot) {
    NomaParam *p = c->params[slot];
    return p && p->defined ? p : NULL;
}

static int64_t param_by_name(NomaCtx *c, const char *name) {
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = live(c, s);
        if (p && p->name && strcmp(p->name, name) == 0) return s;
    }
    return -1;
}

/* ======================================================================== */
/* Arena helpers (nothing malloc'd survives a failure that unwinds)         */
/* ======================================================================== */

static void *arena_bytes(NomaCtx *c, size_t bytes) {
    return noma__alloc(c, (int64_t)((bytes + sizeof(real) - 1) / sizeof(real)));
}

static const char *arena_fmt(NomaCtx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static const char *arena_fmt(NomaCtx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : (char *)arena_bytes(c, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ======================================================================== */
/* Save                                                                     */
/* ======================================================================== */

static void out_tensor(NomaStOut *o, const char *name, const NomaTensor *t, const void *data,
                       int is_i64) {
    o->name = name;
    o->rank = t->rank;
    for (int a = 0; a < 4; a++) o->dims[a] = a < t->rank ? t->dims[a] : 0;
    o->data = data;
    o->is_i64 = is_i64;
}

/* The named metrics as "metric/M" metadata (the summary) and "metric/M/steps", "metric/M/values"
   tensors (the held samples), appended at ts[*k] and meta[2 * *m]. 0 after a failed allocation. */
static int save_metrics(NomaCtx *c, int32_t nmetrics, NomaStOut *ts, int64_t *k, const char **meta,
                        int64_t *m) {
    int64_t window = noma_metric_limit(1);
    for (int32_t i = 0; i < nmetrics; i++) {
        char *name = (char *)arena_bytes(c, NOMA_METRIC_NAME);
        double summary[4];
        int64_t *steps = (int64_t *)arena_bytes(c, (size_t)window * 8u);
        double *values = (double *)arena_bytes(c, (size_t)window * sizeof(double));
        real *held = noma__alloc(c, window);
        if (!name || !steps || !values || !held) return 0;
        int64_t n = noma_metric_get(c, i, name, summary, steps, values, window);
        if (n < 0) return 0;
        for (int64_t j = 0; j < n; j++) held[j] = (real)values[j];
        const char *key = arena_fmt(c, "metric/%s", name);
        const char *words = arena_fmt(c, "%.17g %.17g %.17g %.17g", summary[0], summary[1],
                                      summary[2], summary[3]);
        const char *sname = arena_fmt(c, "metric/%s/steps", name);
        const char *vname = arena_fmt(c, "metric/%s/values", name);
        if (!key || !words || !sname || !vname) return 0;
        meta[2 * *m] = key;
        meta[2 * *m + 1] = words;
        (*m)++;
        NomaTensor shape = {held, 1, {n, 0, 0, 0}};
        out_tensor(&ts[(*k)++], sname, &shape, steps, 1);
        out_tensor(&ts[(*k)++], vname, &shape, held, 0);
    }
    return 1;
}

void noma_checkpoint_save(const char *path, int64_t nextra, const char **extra_names,
                          const NomaTensor **extras, int64_t span) {
    NomaCtx *c = noma__cur();
    if (!path) {
        noma__failf(NOMA_ERR_IO, span, "missing file name");
        return;
    }
    if (nextra < 0 || (nextra > 0 && (!extra_names || !extras))) {
        noma__failf(NOMA_ERR_IO, span, "%s: invalid list of extra tensors", path);
        return;
    }
    for (int64_t i = 0; i < nextra; i++)
        if (!noma__check_tensor(extras[i], span, "checkpoint")) return;
    int64_t ntens = 2 + nextra, nmeta = 5;
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = live(c, s);
        if (!p) continue;
        if (!p->name || !p->name[0] || strchr(p->name, '/')) {
            noma__failf(NOMA_ERR_RUNTIME, span, "%s: parameter slot %lld has no usable name", path,
                        (long long)s);
            return;
        }
        ntens += 1 + (p->opt_kind ? NSTATE : 0);
        nmeta += p->opt_kind ? 1 : 0;
        for (int a = 0; a < p->t.rank; a++) {
            if (p->bind[a] < 0) continue;
            if (!noma_dim_name(p->bind[a])[0]) {
                noma__failf(NOMA_ERR_RUNTIME, span,
                            "%s: axis %d of parameter '%s' is bound to a dim without a name", path,
                            a, p->name);
                return;
            }
            nmeta++;
        }
    }
    for (int64_t d = 0; d < c->ndim_names && d < c->ndims; d++)
        if (c->dim_names[d] && c->dims[d] >= 0) nmeta++;
    int32_t nmetrics = noma_metric_count(c);
    ntens += 2 * (int64_t)nmetrics;
    nmeta += nmetrics;

    NomaStOut *ts = (NomaStOut *)arena_bytes(c, (size_t)ntens * sizeof *ts);
    const char **meta = (const char **)arena_bytes(c, (size_t)nmeta * 2 * sizeof *meta);
    uint64_t rng[6];
    noma_rng_state_get(c, rng);
    const char *step = arena_fmt(c, "%" PRId64, c->step);
    const char *rngs = arena_fmt(c, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                                    " %" PRIu64, rng[0], rng[1], rng[2], rng[3], rng[4], rng[5]);
    NomaHistoryCopy hc;
    if (!ts || !meta || !step || !rngs || !noma__history_export(c, &hc)) return;
    char *levels = (char *)arena_bytes(c, (size_t)hc.nlevels * 24u + 1);
    if (!levels) return;
    levels[0] = 0;
    for (int64_t l = 0, at = 0; l < hc.nlevels; l++)
        at += snprintf(levels + at, 24, l ? " %" PRId64 : "%" PRId64, hc.counts[l]);
    int64_t k = 0, m = 0;
#define META(K, V)                                                                                 \
    do {                                                                                           \
        meta[2 * m] = (K);                                                                         \
        meta[2 * m + 1] = (V);                                                                     \
        if (!meta[2 * m] || !meta[2 * m + 1]) return;                                              \
        m++;                                                                                       \
    } while (0)
    META("format", CKPT_FORMAT);
    META("dtype", REAL_NAME);
    META("step", step);
    META("rng", rngs);
    META("history/levels", levels);
    for (int64_t d = 0; d < c->ndim_names && d < c->ndims; d++)
        if (c->dim_names[d] && c->dims[d] >= 0)
            META(arena_fmt(c, "dim/%s", c->dim_names[d]), arena_fmt(c, "%" PRId64, c->dims[d]));
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = live(c, s);
        if (!p) continue;
        const char *tname = arena_fmt(c, "param/%s", p->name);
        if (!tname) return;
        out_tensor(&ts[k++], tname, &p->t, p->t.data, 0);
        for (int a = 0; a < p->t.rank; a++)
            if (p->bind[a] >= 0)
                META(arena_fmt(c, "bind/%s/%d", p->name, a), noma_dim_name(p->bind[a]));
        if (!p->opt_kind) continue;
        META(arena_fmt(c, "opt/%s", p->name), noma__opt_names[p->opt_kind]);
        for (int w = 0; w < NSTATE; w++) {
            const char *sname = arena_fmt(c, "opt/%s/%s", p->name, STATE_KEYS[w]);
            if (!sname) return;
            if (w == STEP_STATE) {
                int64_t *steps = (int64_t *)arena_bytes(c, (size_t)(p->n ? p->n : 1) * 8u);
                if (!steps) return;
                for (int64_t i = 0; i < p->n; i++) steps[i] = p->steps ? p->steps[i] : 0;
                out_tensor(&ts[k++], sname, &p->t, steps, 1);
            } else {
                NomaTensor st;
                noma_param_state(s, w, &st);
                if (!st.data) return;
                out_tensor(&ts[k++], sname, &p->t, st.data, 0);
            }
        }
    }
    if (!save_metrics(c, nmetrics, ts, &k, meta, &m)) return;
#undef META
    NomaTensor losses = {hc.recent, 1, {hc.nrecent, 0, 0, 0}};
    out_tensor(&ts[k++], "history/losses", &losses, hc.recent, 0);
    NomaTensor summary = {hc.summary, 2, {hc.nbuckets, 3, 0, 0}};
    out_tensor(&ts[k++], "history/summary", &summary, hc.summary, 0);
    for (int64_t i = 0; i < nextra; i++) {
        if (!extra_names[i]) {
            noma__failf(NOMA_ERR_IO, span, "%s: invalid tensor name", path);
            return;
        }
        out_tensor(&ts[k++], extra_names[i], extras[i], extras[i]->data, 0);
    }
    char msg[NOMA_ERRMSG];
    if (!noma__st_write(path, k, ts, m, meta, 1, msg, sizeof msg)) noma__failf(NOMA_ERR_IO, span, "%s", msg);
}

/* ======================================================================== */
/* Load                                                                     */
/* ======================================================================== */

typedef struct {
    int64_t slot;
    const NomaStEntry *entry;
    const NomaStEntry *state[NSTATE];
    int32_t opt_kind;
    int64_t bind[4];
    NomaTensor value;         /* arena */
    NomaTensor st[NSTATE];    /* arena; st[STEP_STATE].data is unused */
    int64_t *steps;           /* arena */
} CkParam;

typedef struct {
    const char *name;
    double summary[4]; /* count, min, max, sum */
    int64_t n;         /* samples held */
    int64_t *steps;    /* arena */
    double *values;    /* arena */
} CkMetric;

typedef struct {
    CkParam *params;
    int64_t nparams;
    int64_t *dim_ids, *dim_sizes;
    int64_t ndims;
    NomaTensor losses;  /* the exact window (v3) or the whole log (v2) */
    int32_t version;
    int64_t nlevels, counts[NOMA_HIST_LEVELS];
    double *bmin, *bmax, *bsum; /* v3 summary (arena) */
    CkMetric *metrics;
    int32_t nmetrics;
    int64_t step;
    uint64_t rng[6];
} CkPlan;

typedef struct {
    char *msg;
    size_t cap;
    int32_t kind;
} CkErr;

static int ck_fail(CkErr *e, int32_t kind, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int ck_fail(CkErr *e, int32_t kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, e->cap, fmt, ap);
    va_end(ap);
    e->kind = kind;
    return 0;
}

/* A non-negative decimal integer filling the whole string. */
static int parse_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return 0;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end) return 0;
    *out = (uint64_t)v;
    return 1;
}

static int same_shape(const NomaStEntry *e, const NomaStEntry *p) {
    if (e->rank != p->rank) return 0;
    for (int64_t a = 0; a < e->rank && a < 4; a++)
        if (e->shape[a] != p->shape[a]) return 0;
    return 1;
}

static int find_param(const CkPlan *pl, const char *name, int64_t len) {
    for (int64_t i = 0; i < pl->nparams; i++) {
        const char *n = pl->params[i].entry->name + 6;
        if ((int64_t)strlen(n) == len && strncmp(n, name, (size_t)len) == 0) return (int)i;
    }
    return -1;
}

/* The named metrics of the file ("metric/M" and its two tensors), read into the arena; the
   table is allocated now so that applying the plan cannot fail. */
static int plan_metrics(NomaCtx *c, const char *path, const NomaStFile *sf, CkPlan *pl, CkErr *err) {
    int64_t nm = 0;
    for (int64_t i = 0; i < sf->nmeta; i++) nm += strncmp(sf->meta[2 * i], "metric/", 7) == 0;
    if (nm == 0) return 1;
    if (nm > noma_metric_limit(0))
        return ck_fail(err, NOMA_ERR_IO, "%s: malformed checkpoint: more than %lld named metrics",
                       path, (long long)noma_metric_limit(0));
    pl->metrics = (CkMetric *)arena_bytes(c, (size_t)nm * sizeof(CkMetric));
    if (!pl->metrics || !noma__metrics_alloc(c)) return 0;
    for (int64_t i = 0; i < sf->nmeta; i++) {
        const char *k = sf->meta[2 * i], *v = sf->meta[2 * i + 1];
        if (strncmp(k, "metric/", 7) != 0) continue;
        CkMetric *cm = &pl->metrics[pl->nmetrics];
        cm->name = arena_fmt(c, "%s", k + 7); /* the header is released before the plan applies */
        if (!cm->name) return 0;
        const char *sname = arena_fmt(c, "metric/%s/steps", cm->name);
        const char *vname = arena_fmt(c, "metric/%s/values", cm->name);
        if (!sname || !vname) return 0;
        const NomaStEntry *se = noma__st_find(sf, sname), *ve = noma__st_find(sf, vname);
        int ok = strlen(cm->name) < (size_t)noma_metric_limit(2) && se && ve && se->rank == 1 &&
                 ve->rank == 1 && se->shape[0] == ve->shape[0] && strcmp(se->dtype, "I64") == 0 &&
                 strcmp(ve->dtype, REAL_DTYPE) == 0;
        const char *w = v;
        for (int j = 0; ok && j < 4; j++) {
            char *end = NULL;
            errno = 0;
            cm->summary[j] = strtod(w, &end);
            ok = end != w && !errno && (*end == ' ' || *end == 0);
            w = end;
        }
        cm->n = ok ? se->shape[0] : 0;
        if (!ok || *w || cm->summary[0] < (double)cm->n)
            return ck_fail(err, NOMA_ERR_IO,
                           "%s: malformed checkpoint: the named metric '%s' ('%s', its steps and "
                           "values) does not fit together", path, cm->name, k);
        cm->steps = (int64_t *)arena_bytes(c, (size_t)(cm->n ? cm->n : 1) * 8u);
        real *held = noma__alloc(c, cm->n);
        cm->values = (double *)arena_bytes(c, (size_t)(cm->n ? cm->n : 1) * sizeof(double));
        if (!cm->steps || !held || !cm->values) return 0;
        if (!noma__st_read(sf->path, sf->data_start, se, cm->steps, 1) ||
            !noma__st_read(sf->path, sf->data_start, ve, held, 0))
            return ck_fail(err, NOMA_ERR_IO, "%s: cannot read the samples of the named metric '%s'",
                           path, cm->name);
        for (int64_t j = 0; j < cm->n; j++) cm->values[j] = (double)held[j];
        pl->nmetrics++;
    }
    return 1;
}

/* The checks of the file's own consistency and against the program; fills the plan's
   structure (no tensor data yet). Arena allocations only. */
static int ck_plan(NomaCtx *c, const char *path, const NomaStFile *sf, int32_t flags, CkPlan *pl,
                   CkErr *err) {
    const char *fmt = noma__st_meta(sf, "format");
    if (!fmt)
        return ck_fail(err, NOMA_ERR_IO, "%s: not a NOMA checkpoint (no \"format\" in its metadata)",
                       path);
    if (strcmp(fmt, CKPT_FORMAT) != 0 && strcmp(fmt, CKPT_FORMAT_V2) != 0)
        return ck_fail(err, NOMA_ERR_IO,
                       "%s: checkpoint format '%s' is not " CKPT_FORMAT " (or " CKPT_FORMAT_V2 ")",
                       path, fmt);
    pl->version = strcmp(fmt, CKPT_FORMAT) == 0 ? 3 : 2;
    const char *dt = noma__st_meta(sf, "dtype");
    if (dt && strcmp(dt, OTHER_NAME) == 0)
        return ck_fail(err, NOMA_ERR_TYPE,
                       "%s: the checkpoint holds %s values; this program computes in " REAL_NAME,
                       path, dt);
    if (!dt || strcmp(dt, REAL_NAME) != 0)
        return ck_fail(err, NOMA_ERR_IO, "%s: the checkpoint's dtype is missing or unknown", path);
    uint64_t step = 0;
    if (!parse_u64(noma__st_meta(sf, "step"), &step) || step > (uint64_t)INT64_MAX)
        return ck_fail(err, NOMA_ERR_IO, "%s: the checkpoint's global step is missing or malformed",
                       path);
    pl->step = (int64_t)step;
    const char *r = noma__st_meta(sf, "rng");
    int rng_ok = r != NULL;
    for (int i = 0; rng_ok && i < 6; i++) {
        while (*r == ' ') r++;
        char *end = NULL;
        errno = 0;
        pl->rng[i] = (uint64_t)strtoull(r, &end, 10);
        rng_ok = *r >= '0' && *r <= '9' && !errno && (*end == ' ' || *end == 0);
        r = end;
    }
    while (rng_ok && *r == ' ') r++;
    if (!rng_ok || *r)
        return ck_fail(err, NOMA_ERR_IO, "%s: the checkpoint's generator state is malformed", path);

    /* parameters */
    int64_t np = 0;
    for (int64_t i = 0; i < sf->n; i++)
        if (strncmp(sf->entries[i].name, "param/", 6) == 0) np++;
    pl->params = (CkParam *)arena_bytes(c, (size_t)(np ? np : 1) * sizeof(CkParam));
    if (!pl->params) return 0;
    memset(pl->params, 0, (size_t)(np ? np : 1) * sizeof(CkParam));
    for (int64_t i = 0; i < sf->n; i++) {
        const NomaStEntry *e = &sf->entries[i];
        if (strncmp(e->name, "param/", 6) != 0) continue;
        const char *name = e->name + 6;
        if (!name[0] || strchr(name, '/') || noma__st_find(sf, e->name) != e)
            return ck_fail(err, NOMA_ERR_IO, "%s: malformed checkpoint: tensor '%s'", path, e->name);
        if (strcmp(e->dtype, REAL_DTYPE) != 0 || e->rank > 4)
            return ck_fail(err, NOMA_ERR_IO, "%s: malformed checkpoint: '%s' is %s of rank %lld",
                           path, e->name, e->dtype, (long long)e->rank);
        int64_t slot = param_by_name(c, name);
        if (slot < 0)
            return ck_fail(err, NOMA_ERR_NAME,
                           "%s: the checkpoint's parameter '%s' is not declared by the program "
                           "(declare it with `learn` before loading)", path, name);
        if (c->params[slot]->t.rank != e->rank)
            return ck_fail(err, NOMA_ERR_SHAPE,
                           "%s: parameter '%s' has rank %lld in the checkpoint but rank %lld in "
                           "the program", path, name, (long long)e->rank,
                           (long long)c->params[slot]->t.rank);
        CkParam *cp = &pl->params[pl->nparams++];
        cp->slot = slot;
        cp->entry = e;
        for (int a = 0; a < 4; a++) cp->bind[a] = -1;
        const char *okey = arena_fmt(c, "opt/%s", name);
        if (!okey) return 0;
        const char *kind = noma__st_meta(sf, okey);
        if (!kind) continue;
        for (int32_t k = 1; k < noma__opt_kinds; k++)
            if (strcmp(kind, noma__opt_names[k]) == 0) cp->opt_kind = k;
        if (!cp->opt_kind)
            return ck_fail(err, NOMA_ERR_IO, "%s: malformed checkpoint: unknown optimizer '%s' of '%s'",
                           path, kind, name);
        for (int w = 0; w < NSTATE; w++) {
            const char *sn = arena_fmt(c, "opt/%s/%s", name, STATE_KEYS[w]);
            const NomaStEntry *se = sn ? noma__st_find(sf, sn) : NULL;
            if (!sn) return 0;
            if (!se || !same_shape(se, e) || strcmp(se->dtype, w == STEP_STATE ? "I64" : REAL_DTYPE))
                return ck_fail(err, NOMA_ERR_IO,
                               "%s: malformed checkpoint: optimizer state '%s' is missing or does "
                               "not match the parameter", path, sn);
            cp->state[w] = se;
        }
    }
    /* optimizer tensors must belong to a parameter with optimizer state */
    for (int64_t i = 0; i < sf->n; i++) {
        const char *n = sf->entries[i].name;
        if (strncmp(n, "opt/", 4) != 0) continue;
        const char *slash = strchr(n + 4, '/');
        int j = slash ? find_param(pl, n + 4, slash - (n + 4)) : -1;
        int ok = 0;
        for (int w = 0; j >= 0 && w < NSTATE; w++) ok |= pl->params[j].state[w] == &sf->entries[i];
        if (!ok)
            return ck_fail(err, NOMA_ERR_IO, "%s: malformed checkpoint: unexpected tensor '%s'",
                           path, n);
    }
    /* dims */
    int64_t nd = 0;
    for (int64_t i = 0; i < sf->nmeta; i++) nd += strncmp(sf->meta[2 * i], "dim/", 4) == 0;
    pl->dim_ids = (int64_t *)arena_bytes(c, (size_t)(nd ? nd : 1) * 8u);
    pl->dim_sizes = (int64_t *)arena_bytes(c, (size_t)(nd ? nd : 1) * 8u);
    if (!pl->dim_ids || !pl->dim_sizes) return 0;
    for (int64_t i = 0; i < sf->nmeta; i++) {
        const char *k = sf->meta[2 * i], *v = sf->meta[2 * i + 1];
        if (strncmp(k, "dim/", 4) != 0) continue;
        uint64_t size;
        if (!parse_u64(v, &size) || size > ((uint64_t)1 << 53))
            return ck_fail(err, NOMA_ERR_IO, "%s: malformed checkpoint: dim '%s' has size '%s'", path,
                           k + 4, v);
        int64_t id = dim_by_name(c, k + 4);
        if (id < 0 || id >= c->ndims || c->dims[id] < 0)
            return ck_fail(err, NOMA_ERR_NAME,
                           "%s: the checkpoint's dim '%s' is not declared by the program "
                           "(declare it with `dim` before loading)", path, k + 4);
        pl->dim_ids[pl->ndims] = id;
        pl->dim_sizes[pl->ndims++] = (int64_t)size;
    }
    /* axis bindings */
    for (int64_t i = 0; i < sf->nmeta; i++) {
        const char *k = sf->meta[2 * i], *v = sf->meta[2 * i + 1];
        if (strncmp(k, "bind/", 5) != 0) continue;
        const char *slash = strrchr(k + 5, '/');
        int j = slash ? find_param(pl, k + 5, slash - (k + 5)) : -1;
        uint64_t axis = 0;
        const char *dk = arena_fmt(c, "dim/%s", v);
        const char *dv = dk ? noma__st_meta(sf, dk) : NULL;
        uint64_t size = 0;
        if (!dk) return 0;
        if (j < 0 || !parse_u64(slash + 1, &axis) || axis >= (uint64_t)pl->params[j].entry->rank ||
            !dv || !parse_u64(dv, &size) || (int64_t)size != pl->params[j].entry->shape[axis])
            return ck_fail(err, NOMA_ERR_IO,
                           "%s: malformed checkpoint: binding '%s' -> '%s' does not match", path, k,
                           v);
        pl->params[j].bind[axis] = dim_by_name(c, v);
    }
    /* the loss log */
    const NomaStEntry *le = noma__st_find(sf, "history/losses");
    if (!le || le->rank != 1 || strcmp(le->dtype, REAL_DTYPE) != 0)
        return ck_fail(err, NOMA_ERR_IO, "%s: malformed checkpoint: no loss log 'history/losses'",
                       path);
    const NomaStEntry *se = NULL;
    if (!noma__history_alloc(c)) return 0; /* so that applying the plan cannot fail */
    if (pl->version == 3) {
        const char *lv = noma__st_meta(sf, "history/levels");
        int lv_ok = lv != NULL;
        while (lv_ok && *lv) {
            while (*lv == ' ') lv++;
            if (!*lv) break;
            char *end = NULL;
            errno = 0;
            uint64_t cnt = strtoull(lv, &end, 10);
            lv_ok = *lv >= '0' && *lv <= '9' && !errno && (*end == ' ' || *end == 0) &&
                    pl->nlevels < NOMA_HIST_LEVELS && cnt <= (uint64_t)NOMA_HIST_K;
            if (lv_ok) pl->counts[pl->nlevels++] = (int64_t)cnt;
            lv = end;
        }
        int64_t total = lv_ok ? noma__history_total(pl->nlevels, pl->counts) : -1, nb = 0;
        for (int64_t l = 0; l < pl->nlevels; l++) nb += pl->counts[l];
        se = noma__st_find(sf, "history/summary");
        if (total < 0 || total > pl->step || le->shape[0] > total || !se || se->rank != 2 ||
            se->shape[0] != nb || se->shape[1] != 3 || strcmp(se->dtype, REAL_DTYPE) != 0)
            return ck_fail(err, NOMA_ERR_IO,
                           "%s: malformed checkpoint: the loss history ('history/summary', "
                           "'history/levels', 'history/losses') does not fit together", path);
    }
    if ((flags & LOAD_COMPLETE))
        for (int64_t s = 0; s < c->nparams; s++) {
            NomaParam *p = live(c, s);
            int found = 0;
            for (int64_t i = 0; p && i < pl->nparams; i++) found |= pl->params[i].slot == s;
            if (p && !found)
                return ck_fail(err, NOMA_ERR_IO, "%s: parameter '%s' is not in the checkpoint", path,
                               p->name ? p->name : "?");
        }
    if (!plan_metrics(c, path, sf, pl, err)) return 0;
    /* every tensor's data, into the arena */
    int64_t n = le->shape[0];
    pl->losses.rank = 1;
    pl->losses.dims[0] = n;
    pl->losses.data = noma__alloc(c, n);
    if (!pl->losses.data) return 0;
    if (!noma__st_read(sf->path, sf->data_start, le, pl->losses.data, 0))
        return ck_fail(err, NOMA_ERR_IO, "%s: cannot read the data of tensor '%s'", path, le->name);
    if (se) {
        int64_t nb = se->shape[0];
        real *rows = noma__alloc(c, nb * 3);
        int64_t dn = (int64_t)((nb * sizeof(double) + sizeof(real) - 1) / sizeof(real));
        pl->bmin = (double *)noma__alloc(c, dn);
        pl->bmax = (double *)noma__alloc(c, dn);
        pl->bsum = (double *)noma__alloc(c, dn);
        if (!rows || !pl->bmin || !pl->bmax || !pl->bsum) return 0;
        if (!noma__st_read(sf->path, sf->data_start, se, rows, 0))
            return ck_fail(err, NOMA_ERR_IO, "%s: cannot read the data of tensor '%s'", path,
                           se->name);
        int64_t k = 0;
        for (int64_t l = pl->nlevels - 1; l >= 0; l--)
            for (int64_t i = 0; i < pl->counts[l]; i++, k++) {
                pl->bmin[k] = (double)rows[3 * k];
                pl->bmax[k] = (double)rows[3 * k + 1];
                pl->bsum[k] = (double)rows[3 * k + 2] * (double)((int64_t)1 << l);
            }
    }
    for (int64_t i = 0; i < pl->nparams; i++) {
        CkParam *cp = &pl->params[i];
        const NomaStEntry *e = cp->entry;
        int64_t cnt = noma__st_numel(e);
        cp->value.rank = e->rank;
        for (int64_t a = 0; a < e->rank; a++) cp->value.dims[a] = e->shape[a];
        for (int w = 0; w < NSTATE; w++) cp->st[w] = cp->value;
        const NomaStEntry *todo[1 + NSTATE] = {e};
        void *dst[1 + NSTATE] = {cp->value.data = noma__alloc(c, cnt)};
        for (int w = 0; cp->opt_kind && w < NSTATE; w++) {
            todo[1 + w] = cp->state[w];
            if (w == STEP_STATE)
                dst[1 + w] = cp->steps = (int64_t *)arena_bytes(c, (size_t)(cnt ? cnt : 1) * 8u);
            else
                dst[1 + w] = cp->st[w].data = noma__alloc(c, cnt);
        }
        for (int w = 0; w < 1 + NSTATE; w++) {
            if (!todo[w]) continue;
            if (!dst[w]) return 0;
            if (!noma__st_read(sf->path, sf->data_start, todo[w], dst[w], w == 1 + STEP_STATE))
                return ck_fail(err, NOMA_ERR_IO, "%s: cannot read the data of tensor '%s'", path,
                               todo[w]->name);
        }
    }
    return 1;
}

/* Swaps the planned state in (after every check passed). */
static void ck_apply(NomaCtx *c, const CkPlan *pl, int64_t span) {
    for (int64_t i = 0; i < pl->ndims; i++) noma_dim_set(pl->dim_ids[i], pl->dim_sizes[i]);
    for (int64_t i = 0; i < pl->nparams; i++) {
        const CkParam *cp = &pl->params[i];
        noma__param_set(c, cp->slot, NULL, &cp->value, span, 0);
        for (int a = 0; a < cp->value.rank; a++)
            if (cp->bind[a] >= 0) noma_param_bind_dim(cp->slot, a, cp->bind[a]);
        if (!cp->opt_kind) continue;
        noma_opt_begin(cp->slot, cp->opt_kind, NULL);
        for (int w = 0; w < NSTATE; w++)
            if (w != STEP_STATE) noma_param_state_set(cp->slot, w, &cp->st[w]);
        NomaParam *p = c->params[cp->slot];
        if (!p->steps) p->steps = (int64_t *)noma__xmalloc((size_t)(p->n ? p->n : 1) * 8u);
        if (!p->steps) {
            noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (optimizer state of %s)", p->name);
            return;
        }
        if (p->n) memcpy(p->steps, cp->steps, (size_t)p->n * 8u);
    }
    if (pl->version == 3)
        noma__history_put(c, pl->step, pl->nlevels, pl->counts, pl->bmin, pl->bmax, pl->bsum,
                          pl->losses.dims[0], pl->losses.data);
    else
        noma__history_replay(c, pl->step, pl->losses.dims[0], pl->losses.data);
    noma_metrics_clear(c);
    for (int32_t i = 0; i < pl->nmetrics; i++) {
        const CkMetric *cm = &pl->metrics[i];
        noma_metric_set(c, cm->name, cm->summary, cm->n, cm->steps, cm->values);
    }
    c->step = pl->step;
    noma_rng_state_set(c, pl->rng);
}

void noma_checkpoint_load(const char *path, int32_t flags, int64_t span) {
    NomaCtx *c = noma__cur();
    if (c->defer_on) {
        noma__failf(NOMA_ERR_RUNTIME, span,
                    "load_checkpoint cannot run inside an optimize body (load before training)");
        return;
    }
    /* Checks and reads run without unwinding (failing helpers return), so the parsed header is
       always released; a failure is then reported (and unwinds) from here. */
    char msg[NOMA_ERRMSG];
    CkErr err = {msg, sizeof msg, NOMA_ERR_IO};
    msg[0] = 0;
    jmp_buf *jb = c->jb;
    int64_t fails = c->fail_count;
    c->jb = NULL;
    CkPlan plan;
    memset(&plan, 0, sizeof plan);
    NomaStFile sf;
    int ok = noma__st_open(path, &sf, msg, sizeof msg);
    if (ok) {
        ok = ck_plan(c, path, &sf, flags, &plan, &err);
        noma__st_close(&sf);
    }
    c->jb = jb;
    if (!ok && !msg[0] && c->fail_count != fails) { /* an allocation failed: report it */
        snprintf(msg, sizeof msg, "%s", c->err_msg);
        err.kind = c->err_kind;
    }
    if (!ok) {
        noma__failf(err.kind, span, "%s", msg[0] ? msg : "cannot load the checkpoint");
        return;
    }
    ck_apply(c, &plan, span);
}
