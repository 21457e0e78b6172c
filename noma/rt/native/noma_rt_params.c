/*
 * noma_rt_params.c -- parameter store, named dims, resize policies, deferred
 * resizes and optimizers of the NOMA native runtime (the Adam/AdamW update
 * kernel itself: noma_rt_adam.c).
 *
 * Storage: a growable table of slots (pointer per slot, so descriptors returned
 * by noma_param() never move); each parameter owns a 64-byte aligned buffer and
 * its optimizer state (moment buffers, int64 per-entry step counts, per-entry
 * running powers beta1^t and beta2^t).
 *
 * Resize semantics (the core promise): values keep their (i, j, ...) index;
 * entries outside the new shape are dropped; new entries are produced by the
 * policy. Optimizer state is remapped by index in the same way; new entries get
 * moments 0, step count 0 and powers 1.0.
 *
 * New entries are generated in row-major order of the NEW shape (this fixes the
 * order in which the RNG is consumed). For a dim resize the bound parameters are
 * processed in increasing slot order.
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef NOMA_F32
#define RSQRT sqrtf
#else
#define RSQRT sqrt
#endif

#define MAX_PARAM_ELEMS ((int64_t)1 << 40)

/* ======================================================================== */
/* Slots                                                                    */
/* ======================================================================== */

static NomaTensor g_pdummy;
static real g_pdummy_data[8];

static NomaTensor *pdummy(void) {
    memset(g_pdummy_data, 0, sizeof g_pdummy_data);
    memset(&g_pdummy, 0, sizeof g_pdummy);
    g_pdummy.data = g_pdummy_data;
    return &g_pdummy;
}

static void state_free(NomaParam *p) {
    noma__xfree(p->m);
    noma__xfree(p->v);
    noma__xfree(p->steps);
    noma__xfree(p->pow1);
    noma__xfree(p->pow2);
    p->m = p->v = p->pow1 = p->pow2 = NULL;
    p->steps = NULL;
}

void noma__params_free_all(NomaCtx *c) {
    for (int64_t i = 0; i < c->nparams; i++) {
        NomaParam *p = c->params[i];
        if (!p) continue;
        state_free(p);
        noma__xfree(p->t.data);
        free(p->name);
        free(p);
    }
    free(c->params);
    c->params = NULL;
    c->nparams = 0;
}

static NomaParam *param_slot(NomaCtx *c, int64_t slot, int create) {
    if (slot < 0 || slot >= NOMA_MAX_SLOT) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: parameter slot %lld out of range",
                    (long long)slot);
        return NULL;
    }
    if (slot >= c->nparams) {
        if (!create) return NULL;
        int64_t nn = c->nparams ? c->nparams : 16;
        while (nn <= slot) nn *= 2;
        NomaParam **p = (NomaParam **)realloc(c->params, (size_t)nn * sizeof *p);
        if (!p) {
            noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (parameters)");
            return NULL;
        }
        memset(p + c->nparams, 0, (size_t)(nn - c->nparams) * sizeof *p);
        c->params = p;
        c->nparams = nn;
    }
    if (!c->params[slot] && create) {
        NomaParam *p = (NomaParam *)calloc(1, sizeof *p);
        if (!p) {
            noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (parameters)");
            return NULL;
        }
        for (int i = 0; i < 4; i++) p->bind[i] = -1;
        p->opt_span = -1;
        c->params[slot] = p;
    }
    return c->params[slot];
}

/* A defined parameter, or a name error (NULL when not jumping). */
static NomaParam *param_live(NomaCtx *c, int64_t slot, int64_t span) {
    NomaParam *p = (slot >= 0 && slot < c->nparams) ? c->params[slot] : NULL;
    if (p && p->defined) return p;
    if (slot < 0 || slot >= NOMA_MAX_SLOT) {
        param_slot(c, slot, 0); /* range error */
        return NULL;
    }
    if (p && p->ever_defined && p->name)
        noma__failf(NOMA_ERR_NAME, span, "parameter '%s' was freed", p->name);
    else
        noma__failf(NOMA_ERR_NAME, span, "undefined parameter (slot %lld)", (long long)slot);
    return NULL;
}

void noma_param_set(int64_t slot, const char *name, const NomaTensor *v) {
    noma_param_set_at(slot, name, v, -1);
}

void noma_param_set_at(int64_t slot, const char *name, const NomaTensor *v, int64_t span) {
    noma__param_set(noma__cur(), slot, name, v, span, 1);
}

/* Defines or re-initialises a parameter; errors are located at `span`; `record`: a
   re-initialisation is an event (the history starts a new run segment there). Checkpoint loading
   does not record. */
void noma__param_set(NomaCtx *c, int64_t slot, const char *name, const NomaTensor *v, int64_t span,
                     int record) {
    if (!noma__check_tensor(v, span, "parameter")) return;
    NomaTensor src = *v; /* v may be this parameter's own descriptor */
    int64_t n = noma__numel(&src);
    const char *what = name ? name : "a parameter";
    if (n > MAX_PARAM_ELEMS) {
        c->mem->refused = INT64_MAX;
        noma__fail_alloc(c, span, (uint64_t)n * sizeof(real), what);
        return;
    }
    NomaParam *p = param_slot(c, slot, 1);
    if (!p) return;
    real *d = (real *)noma__xmalloc((size_t)(n ? n : 1) * sizeof(real));
    char *nm = name ? strdup(name) : NULL;
    if (!d || (name && !nm)) {
        noma__xfree(d);
        free(nm);
        noma__fail_alloc(c, span, (uint64_t)(n ? n : 1) * sizeof(real), what);
        return;
    }
    if (n) memcpy(d, src.data, (size_t)n * sizeof(real));
    else d[0] = 0;
    if (record && p->defined)
        noma__event(c, NOMA_EV_PARAM_INIT, 0, slot, p->t.rank, p->t.dims, src.rank, src.dims, 0);
    noma__xfree(p->t.data);
    p->t.data = d;
    p->t.rank = src.rank;
    for (int i = 0; i < 4; i++) p->t.dims[i] = i < src.rank ? src.dims[i] : 0;
    p->n = n ? n : (src.rank == 0 ? 1 : 0);
    if (nm) {
        free(p->name);
        p->name = nm;
    }
    state_free(p);
    p->opt_kind = NOMA_OPT_NONE;
    for (int i = 0; i < 4; i++) p->bind[i] = -1;
    p->defined = 1;
    p->ever_defined = 1;
}

NomaTensor *noma_param_at(int64_t slot, const char *name, int64_t span) {
    NomaCtx *c = noma__cur();
    NomaParam *p = (slot >= 0 && slot < c->nparams) ? c->params[slot] : NULL;
    if (p && p->defined) return &p->t;
    if (name && !(p && p->ever_defined) && slot >= 0 && slot < NOMA_MAX_SLOT) {
        /* never defined here: its `learn` did not run (a branch not taken) */
        noma__failf(NOMA_ERR_NAME, span, "the parameter '%s' is not defined", name);
        return pdummy();
    }
    p = param_live(c, slot, span);
    return p ? &p->t : pdummy();
}

NomaTensor *noma_param(int64_t slot) {
    return noma_param_at(slot, NULL, -1);
}

void noma_param_free(int64_t slot) {
    NomaCtx *c = noma__cur();
    NomaParam *p = param_live(c, slot, -1);
    if (!p) return;
    noma__event(c, NOMA_EV_PARAM_FREE, 0, slot, p->t.rank, p->t.dims, -1, NULL, 0);
    state_free(p);
    noma__xfree(p->t.data);
    p->t.data = NULL;
    p->t.rank = 0;
    p->n = 0;
    p->opt_kind = NOMA_OPT_NONE;
    for (int i = 0; i < 4; i++) p->bind[i] = -1;
    p->defined = 0;
}

int32_t noma_param_defined(int64_t slot) {
    NomaCtx *c = noma__cur();
    if (slot < 0 || slot >= c->nparams || !c->params[slot]) return 0;
    return c->params[slot]->defined;
}

const char *noma_param_name(int64_t slot) {
    NomaCtx *c = noma__cur();
    if (slot < 0 || slot >= c->nparams || !c->params[slot] || !c->params[slot]->name) return "";
    return c->params[slot]->name;
}

int64_t noma_param_slot_count(NomaCtx *c) {
    if (!c) c = noma__cur();
    int64_t n = c->nparams;
    while (n > 0 && !c->params[n - 1]) n--;
    return n;
}

static const char *pname(const NomaParam *p) { return p->name ? p->name : "parameter"; }

/* ======================================================================== */
/* Dims                                                                     */
/* ======================================================================== */

static int dim_ensure(NomaCtx *c, int64_t id) {
    if (id < 0 || id >= NOMA_MAX_SLOT) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: dim id %lld out of range",
                    (long long)id);
        return 0;
    }
    if (id >= c->ndims) {
        int64_t nn = c->ndims ? c->ndims : 16;
        while (nn <= id) nn *= 2;
        int64_t *p = (int64_t *)realloc(c->dims, (size_t)nn * sizeof *p);
        if (!p) {
            noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (dims)");
            return 0;
        }
        for (int64_t i = c->ndims; i < nn; i++) p[i] = -1;
        c->dims = p;
        c->ndims = nn;
    }
    return 1;
}

/* Current size of a dim, -1 when never declared. */
int64_t noma_dim_get(int64_t dim_id) {
    NomaCtx *c = noma__cur();
    if (dim_id < 0 || dim_id >= NOMA_MAX_SLOT) {
        dim_ensure(c, dim_id); /* range error */
        return -1;
    }
    return dim_id < c->ndims ? c->dims[dim_id] : -1;
}

/* Declaration (no resizing). Parameters still bound to the dim with another size
   lose that binding (they are about to be re-initialised by the program). */
void noma_dim_set(int64_t dim_id, int64_t v) {
    NomaCtx *c = noma__cur();
    if (!dim_ensure(c, dim_id)) return;
    if (v < 0) {
        noma__failf(NOMA_ERR_SHAPE, -1, "a dim must not be negative (got %lld)", (long long)v);
        return;
    }
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = c->params[s];
        if (!p || !p->defined) continue;
        for (int a = 0; a < 4; a++)
            if (p->bind[a] == dim_id && p->t.dims[a] != v) p->bind[a] = -1;
    }
    c->dims[dim_id] = v;
}

void noma_param_bind_dim(int64_t slot, int32_t axis, int64_t dim_id) {
    NomaCtx *c = noma__cur();
    NomaParam *p = param_live(c, slot, -1);
    if (!p) return;
    if (axis < 0 || axis >= p->t.rank) {
        noma__failf(NOMA_ERR_SHAPE, -1, "cannot bind axis %d of %s: it has rank %lld", (int)axis,
                    pname(p), (long long)p->t.rank);
        return;
    }
    if (!dim_ensure(c, dim_id)) return;
    int64_t size = p->t.dims[axis];
    if (c->dims[dim_id] < 0)
        c->dims[dim_id] = size;
    else if (c->dims[dim_id] != size) {
        noma__failf(NOMA_ERR_SHAPE, -1, "cannot bind axis %d of %s (size %lld) to a dim of size %lld",
                    (int)axis, pname(p), (long long)size, (long long)c->dims[dim_id]);
        return;
    }
    p->bind[axis] = dim_id;
}

int64_t noma_param_bound_dim(int64_t slot, int32_t axis) {
    NomaCtx *c = noma__cur();
    if (slot < 0 || slot >= c->nparams || !c->params[slot] || axis < 0 || axis > 3) return -1;
    return c->params[slot]->bind[axis];
}

/* ======================================================================== */
/* Resize machinery                                                         */
/*                                                                          */
/* Shapes are padded to 4 axes with leading 1s; padded axis 3 is always the  */
/* parameter's last axis. For each axis a, map[a][i] (i < new size) is the   */
/* source index along a, or -1 when the entry is new and has no source; a    */
/* NULL map means identity (i < old size) / new (i >= old size). div[a][i]   */
/* (axes 0..2 only) divides copied values (Net2Net outgoing weights).        */
/* ======================================================================== */

enum { FILL_ZERO, FILL_NORMAL, FILL_UNIFORM, FILL_PRESERVE };

typedef struct {
    int64_t rank;         /* real rank */
    int64_t od[4], nd[4]; /* padded old / new shape */
    int64_t *map[4];
    double *div[4];
    int fill;             /* FILL_* for entries without a source */
    double a, b;          /* normal(a, b) / uniform [a, b) / preserve: b = std */
    double noise;         /* copy: std of noise on entries new along the last axis only */
} RemapSpec;

typedef struct {
    NomaParam *p;
    int64_t slot;
    int64_t rank, dims[4]; /* new real shape */
    int64_t n;
    real *data, *m, *v, *pow1, *pow2;
    int64_t *steps;
    uint64_t need; /* bytes of the whole set (for the error when it could not be allocated) */
} Pending;

static void pad4(int64_t rank, const int64_t *dims, int64_t out[4]) {
    for (int i = 0; i < 4; i++) out[i] = 1;
    for (int64_t i = 0; i < rank; i++) out[4 - rank + i] = dims[i];
}

static double std_of(const real *x, int64_t n) {
    if (n < 2) return 0.1;
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += (double)x[i];
    mean /= (double)n;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - mean;
        ss += d * d;
    }
    double s = sqrt(ss / (double)n);
    if (!(s > 0) || !isfinite(s)) return 0.1;
    return s;
}

static double fill_value(NomaCtx *c, const RemapSpec *sp, int new_other, int new_last) {
    switch (sp->fill) {
    case FILL_NORMAL:
        return sp->a + sp->b * noma__randn_d(c);
    case FILL_UNIFORM:
        return sp->a + (sp->b - sp->a) * noma__rand_u53(c);
    case FILL_PRESERVE:
        /* incoming weights of new units: normal(0, std); everything else 0 */
        if (sp->rank >= 2 && sp->rank < 4 && new_last && !new_other) return sp->b * noma__randn_d(c);
        return 0.0; /* rank 4 (conv filters): see preserve_filters */
    default:
        return 0.0;
    }
}

/* n consecutive new entries along the last axis (new_other: new along an outer axis too), drawn
   in the order fill_value would draw them. */
static void fill_run(NomaCtx *c, const RemapSpec *sp, real *dst, int64_t n, int new_other) {
    if (n <= 0 || sp->fill == FILL_ZERO) return;
    if (sp->fill == FILL_UNIFORM) {
        for (int64_t i = 0; i < n; i++) dst[i] = (real)fill_value(c, sp, new_other, 1);
        return;
    }
    if (sp->fill == FILL_PRESERVE && (sp->rank < 2 || sp->rank == 4 || new_other)) return; /* zeros */
    noma__randn_affine(c, dst, n, sp->fill == FILL_NORMAL ? sp->a : 0.0, sp->b);
}

/* Whether every entry of a row without a source (new along an outer axis) is 0 under the spec. */
static int new_rows_zero(const RemapSpec *sp) {
    return sp->fill == FILL_ZERO || sp->fill == FILL_PRESERVE;
}

/* dst (new shape, zero-filled) from src (old shape) following the spec. Zero entries are not
   written, so rows that are new along an outer axis and stay zero cost nothing. */
static void remap_values(NomaCtx *c, const RemapSpec *sp, const real *src, real *dst) {
    const int64_t *od = sp->od, *nd = sp->nd;
    int64_t os[4];
    os[3] = 1;
    for (int a = 2; a >= 0; a--) os[a] = os[a + 1] * od[a + 1];
    const int skip_new_rows = new_rows_zero(sp);
    int64_t w = 0;
    for (int64_t i0 = 0; i0 < nd[0]; i0++) {
        int64_t j0 = sp->map[0] ? sp->map[0][i0] : (i0 < od[0] ? i0 : -1);
        double d0 = sp->div[0] ? sp->div[0][i0] : 1.0;
        for (int64_t i1 = 0; i1 < nd[1]; i1++) {
            int64_t j1 = sp->map[1] ? sp->map[1][i1] : (i1 < od[1] ? i1 : -1);
            double d1 = sp->div[1] ? sp->div[1][i1] : 1.0;
            for (int64_t i2 = 0; i2 < nd[2]; i2++) {
                int64_t j2 = sp->map[2] ? sp->map[2][i2] : (i2 < od[2] ? i2 : -1);
                double d2 = sp->div[2] ? sp->div[2][i2] : 1.0;
                int ok = j0 >= 0 && j1 >= 0 && j2 >= 0;
                int new_other = i0 >= od[0] || i1 >= od[1] || i2 >= od[2];
                if (!ok && skip_new_rows) {
                    w += nd[3];
                    continue;
                }
                int64_t base = ok ? j0 * os[0] + j1 * os[1] + j2 * os[2] : 0;
                double dv = d0 * d1 * d2;
                if (!sp->map[3] && sp->noise == 0 && (ok || sp->fill != FILL_PRESERVE)) {
                    /* the common layout: old entries, then a run of new ones along the last axis */
                    int64_t i3 = 0;
                    if (ok)
                        for (; i3 < od[3] && i3 < nd[3]; i3++)
                            dst[w + i3] = dv != 1.0 ? (real)((double)src[base + i3] / dv) : src[base + i3];
                    fill_run(c, sp, dst + w + i3, nd[3] - i3, new_other);
                    w += nd[3];
                    continue;
                }
                for (int64_t i3 = 0; i3 < nd[3]; i3++, w++) {
                    int64_t j3 = sp->map[3] ? sp->map[3][i3] : (i3 < od[3] ? i3 : -1);
                    int new_last = i3 >= od[3];
                    if (ok && j3 >= 0) {
                        double x = (double)src[base + j3];
                        if (dv != 1.0) x /= dv;
                        if (sp->noise > 0 && new_last && !new_other && sp->rank >= 2)
                            x += sp->noise * noma__randn_d(c);
                        dst[w] = (real)x;
                    } else if (sp->fill != FILL_ZERO) {
                        dst[w] = (real)fill_value(c, sp, new_other, new_last);
                    }
                }
            }
        }
    }
}

/* Index-preserving remap of optimizer state into a zero-filled buffer: old entries keep their
   index, new entries stay 0 (0 moments, step 0; the Adam powers of step-0 entries read as 1). */
#define DEFINE_REMAP(NAME, T)                                                                      \
    static void NAME(const T *src, const int64_t od[4], T *dst, const int64_t nd[4]) {             \
        int64_t os[4];                                                                             \
        os[3] = 1;                                                                                 \
        for (int a = 2; a >= 0; a--) os[a] = os[a + 1] * od[a + 1];                                \
        int64_t k3 = nd[3] < od[3] ? nd[3] : od[3];                                                \
        int64_t e0 = nd[0] < od[0] ? nd[0] : od[0], e1 = nd[1] < od[1] ? nd[1] : od[1];            \
        int64_t e2 = nd[2] < od[2] ? nd[2] : od[2];                                                \
        for (int64_t i0 = 0; i0 < e0; i0++)                                                        \
            for (int64_t i1 = 0; i1 < e1; i1++)                                                    \
                for (int64_t i2 = 0; i2 < e2; i2++) {                                              \
                    const T *s = src + i0 * os[0] + i1 * os[1] + i2 * os[2];                       \
                    T *d = dst + ((i0 * nd[1] + i1) * nd[2] + i2) * nd[3];                         \
                    memcpy(d, s, (size_t)k3 * sizeof(T));                                          \
                }                                                                                  \
    }
DEFINE_REMAP(remap_state_real, real)
DEFINE_REMAP(remap_state_i64, int64_t)

static void pending_discard(Pending *q) {
    noma__xfree(q->data);
    noma__xfree(q->m);
    noma__xfree(q->v);
    noma__xfree(q->pow1);
    noma__xfree(q->pow2);
    noma__xfree(q->steps);
    memset(q, 0, sizeof *q);
}

/* Allocate the new buffers (values + the state buffers the parameter has). */
static int pending_alloc(Pending *q, NomaParam *p, int64_t slot, int64_t rank, const int64_t *dims) {
    memset(q, 0, sizeof *q);
    q->p = p;
    q->slot = slot;
    q->rank = rank;
    int64_t n = 1;
    for (int64_t i = 0; i < rank; i++) {
        q->dims[i] = dims[i];
        n *= dims[i];
    }
    q->n = n;
    size_t rb = (size_t)n * sizeof(real);
    uint64_t total = (uint64_t)rb * (uint64_t)(1 + !!p->m + !!p->v + !!p->pow1 + !!p->pow2) +
                     (p->steps ? (uint64_t)n * sizeof(int64_t) : 0);
    if (!noma__mem_admit(noma__cur(), total)) { /* the whole set, before any is allocated */
        q->need = total;
        return 0;
    }
    int okk = 1;
    okk &= (q->data = (real *)noma__xcalloc(rb)) != NULL;
    if (p->m) okk &= (q->m = (real *)noma__xcalloc(rb)) != NULL;
    if (p->v) okk &= (q->v = (real *)noma__xcalloc(rb)) != NULL;
    if (p->pow1) okk &= (q->pow1 = (real *)noma__xcalloc(rb)) != NULL;
    if (p->pow2) okk &= (q->pow2 = (real *)noma__xcalloc(rb)) != NULL;
    if (p->steps) okk &= (q->steps = (int64_t *)noma__xcalloc((size_t)n * sizeof(int64_t))) != NULL;
    if (!okk) {
        pending_discard(q);
        q->need = total;
    }
    return okk;
}

/* Bytes at the start of the new values buffer that remap_values writes entry by entry: the rows
   (along the last axis) with a source along every outer axis, when they are the buffer's first
   rows and each is written whole (its old entries and new ones the policy draws); 0 otherwise.
   Those pages are mapped in one go (noma__xprefault); the state remaps write only the old entries
   of each row (a page of each row in a 16 -> 1024 grow) and leave their pages to fault in. */
static size_t dense_prefix_bytes(const RemapSpec *sp) {
    int draws_new = sp->fill == FILL_NORMAL || sp->fill == FILL_UNIFORM ||
                    (sp->fill == FILL_PRESERVE && sp->rank >= 2 && sp->rank < 4);
    if (sp->map[0] || sp->map[1] || sp->map[2] || sp->map[3] || (sp->nd[3] > sp->od[3] && !draws_new))
        return 0;
    int64_t rows = 1;
    int inner_whole = 1; /* the axes inside this one keep all their rows */
    for (int a = 2; a >= 0; a--) {
        int64_t e = sp->od[a] < sp->nd[a] ? sp->od[a] : sp->nd[a];
        if (!inner_whole && e > 1) return 0; /* the rows with a source are not contiguous */
        rows *= e;
        inner_whole = inner_whole && e == sp->nd[a];
    }
    return (size_t)rows * (size_t)sp->nd[3] * sizeof(real);
}

static void preserve_filters(NomaCtx *c, const RemapSpec *sp, real *dst);

static void pending_fill(NomaCtx *c, Pending *q, const RemapSpec *sp) {
    NomaParam *p = q->p;
    noma__xprefault(q->data, dense_prefix_bytes(sp));
    remap_values(c, sp, p->t.data, q->data);
    preserve_filters(c, sp, q->data);
    if (q->m) remap_state_real(p->m, sp->od, q->m, sp->nd);
    if (q->v) remap_state_real(p->v, sp->od, q->v, sp->nd);
    if (q->pow1) remap_state_real(p->pow1, sp->od, q->pow1, sp->nd);
    if (q->pow2) remap_state_real(p->pow2, sp->od, q->pow2, sp->nd);
    if (q->steps) remap_state_i64(p->steps, sp->od, q->steps, sp->nd);
}

/* preserve on a rank-4 parameter (conv filters [out, in, kh, kw], whose units are along axis 0):
   the entries new only along axis 0 (the filters of new output channels) are normal(0, std), drawn
   in row-major order after remap_values wrote the rest (0 for every other new entry). */
static void preserve_filters(NomaCtx *c, const RemapSpec *sp, real *dst) {
    if (sp->fill != FILL_PRESERVE || sp->rank != 4 || sp->nd[0] <= sp->od[0]) return;
    int64_t e1 = sp->od[1] < sp->nd[1] ? sp->od[1] : sp->nd[1], e2 = sp->od[2] < sp->nd[2] ? sp->od[2] : sp->nd[2];
    int64_t e3 = sp->od[3] < sp->nd[3] ? sp->od[3] : sp->nd[3];
    for (int64_t i0 = sp->od[0]; i0 < sp->nd[0]; i0++)
        for (int64_t i1 = 0; i1 < e1; i1++)
            for (int64_t i2 = 0; i2 < e2; i2++)
                noma__randn_affine(c, dst + ((i0 * sp->nd[1] + i1) * sp->nd[2] + i2) * sp->nd[3], e3, 0.0, sp->b);
}

static void pending_commit(Pending *q) {
    NomaParam *p = q->p;
    noma__xfree(p->t.data);
    p->t.data = q->data;
    if (q->m) { noma__xfree(p->m); p->m = q->m; }
    if (q->v) { noma__xfree(p->v); p->v = q->v; }
    if (q->pow1) { noma__xfree(p->pow1); p->pow1 = q->pow1; }
    if (q->pow2) { noma__xfree(p->pow2); p->pow2 = q->pow2; }
    if (q->steps) { noma__xfree(p->steps); p->steps = q->steps; }
    for (int i = 0; i < 4; i++) p->t.dims[i] = i < q->rank ? q->dims[i] : 0;
    p->n = q->n;
    memset(q, 0, sizeof *q);
}

static double nan_or(double x, double d) { return isnan(x) ? d : x; }

/* Fill settings of the "fill every new entry alike" policies for one parameter
   with NEW real shape (rank, dims). Returns 0 for an unknown policy. */
static int simple_fill(RemapSpec *sp, int32_t policy, double a, double b, const NomaParam *p,
                       int64_t rank, const int64_t *dims) {
    double fan_in = rank >= 1 ? (double)dims[0] : 1.0;
    double fan_out = rank >= 1 ? (double)dims[rank - 1] : 1.0;
    switch (policy) {
    case NOMA_POLICY_DEFAULT:
        sp->fill = FILL_NORMAL;
        sp->a = 0;
        sp->b = std_of(p->t.data, p->n);
        return 1;
    case NOMA_POLICY_ZEROS:
        sp->fill = FILL_ZERO;
        return 1;
    case NOMA_POLICY_NORMAL:
        sp->fill = FILL_NORMAL;
        sp->a = nan_or(a, 0.0);
        sp->b = nan_or(b, 1.0);
        return 1;
    case NOMA_POLICY_UNIFORM:
        sp->fill = FILL_UNIFORM;
        sp->a = nan_or(a, 0.0);
        sp->b = nan_or(b, 1.0);
        return 1;
    case NOMA_POLICY_XAVIER: {
        double lim = sqrt(6.0 / (fan_in + fan_out));
        sp->fill = FILL_UNIFORM;
        sp->a = -lim;
        sp->b = lim;
        return 1;
    }
    case NOMA_POLICY_HE:
        sp->fill = FILL_NORMAL;
        sp->a = 0;
        sp->b = sqrt(2.0 / fan_in);
        return 1;
    case NOMA_POLICY_PRESERVE:
        sp->fill = FILL_PRESERVE;
        sp->b = std_of(p->t.data, p->n);
        return 1;
    default:
        return 0;
    }
}

/* n *= d when d is a valid size (0 <= d) and the product stays within MAX_PARAM_ELEMS; 0 otherwise
   (n unchanged). Never divides by a zero size. */
static int numel_step(int64_t *n, int64_t d) {
    if (d < 0 || d > MAX_PARAM_ELEMS) return 0;
    if (d != 0 && *n > MAX_PARAM_ELEMS / d) return 0;
    *n *= d;
    return 1;
}

/* Source choice for Net2Net growth: g(u) = floor(u53 * old) for u = old..new-1. */
static int64_t *copy_choice(NomaCtx *c, int64_t old, int64_t nw) {
    int64_t *map = (int64_t *)malloc((size_t)nw * sizeof(int64_t));
    if (!map) return NULL;
    for (int64_t i = 0; i < nw; i++) {
        if (i < old) {
            map[i] = i;
        } else {
            int64_t g = (int64_t)(noma__rand_u53(c) * (double)old);
            map[i] = g >= old ? old - 1 : g;
        }
    }
    return map;
}

/* ======================================================================== */
/* Single-parameter resize                                                  */
/* ======================================================================== */

static void apply_param_resize(NomaCtx *c, int64_t slot, int64_t rank, const int64_t *dims,
                               int32_t policy, real a, real b, int64_t span) {
    NomaParam *p = param_live(c, slot, span);
    if (!p) return;
    if (rank != p->t.rank) {
        noma__failf(NOMA_ERR_SHAPE, span, "cannot resize %s from rank %lld to rank %lld", pname(p),
                    (long long)p->t.rank, (long long)rank);
        return;
    }
    int64_t n = 1;
    for (int64_t i = 0; i < rank; i++) {
        if (!numel_step(&n, dims[i])) {
            noma__failf(NOMA_ERR_SHAPE, span, "cannot resize %s to size %lld along axis %lld",
                        pname(p), (long long)dims[i], (long long)i);
            return;
        }
        if (p->bind[i] >= 0 && dims[i] != p->t.dims[i]) {
            noma__failf(NOMA_ERR_SHAPE, span,
                        "cannot resize axis %lld of %s alone: it is sized by a dim (resize the dim)",
                        (long long)i, pname(p));
            return;
        }
    }
    if (policy < 0 || policy > NOMA_POLICY_PRESERVE) {
        noma__failf(NOMA_ERR_RUNTIME, span, "unknown resize policy %d", (int)policy);
        return;
    }
    int same = 1;
    for (int64_t i = 0; i < rank; i++) same &= dims[i] == p->t.dims[i];
    if (same) return;

    RemapSpec sp;
    memset(&sp, 0, sizeof sp);
    sp.rank = rank;
    pad4(rank, p->t.dims, sp.od);
    pad4(rank, dims, sp.nd);
    int ok = 1;
    if (policy == NOMA_POLICY_COPY) {
        for (int64_t i = 0; i < rank; i++)
            if (dims[i] > p->t.dims[i] && p->t.dims[i] == 0) {
                noma__failf(NOMA_ERR_SHAPE, span,
                            "cannot grow axis %lld of %s by copying: it has no entries to copy",
                            (long long)i, pname(p));
                return;
            }
        /* each grown axis (in axis order) copies uniformly chosen old indices; no rescaling */
        sp.fill = FILL_ZERO;
        double nb = (double)b;
        sp.noise = (isfinite(nb) && nb > 0) ? nb : 0.0;
        for (int ax = 0; ax < 4; ax++)
            if (sp.nd[ax] > sp.od[ax] && !(sp.map[ax] = copy_choice(c, sp.od[ax], sp.nd[ax])))
                ok = 0;
    } else {
        simple_fill(&sp, policy, (double)a, (double)b, p, rank, dims);
    }
    Pending q;
    if (!ok || !pending_alloc(&q, p, slot, rank, dims)) {
        for (int ax = 0; ax < 4; ax++) free(sp.map[ax]);
        noma__fail_alloc(c, span, ok ? q.need : (uint64_t)n * sizeof(real), pname(p));
        return;
    }
    pending_fill(c, &q, &sp);
    for (int ax = 0; ax < 4; ax++) free(sp.map[ax]);
    int64_t old_rank = p->t.rank, old_dims[4];
    memcpy(old_dims, p->t.dims, sizeof old_dims);
    pending_commit(&q);
    noma__event(c, NOMA_EV_PARAM_RESIZE, policy, slot, old_rank, old_dims, rank, dims, -1);
}

/* ======================================================================== */
/* Dim resize: every parameter bound to the dim, one coherent step           */
/*                                                                          */
/* preserve (7, also the default 0): for each bound rank>=2 parameter, new   */
/*   entries that are new only along its LAST axis (incoming weights of new  */
/*   units) are normal(0, std of the parameter's existing entries; 0.1 when  */
/*   undefined); entries new along any other axis (outgoing weights) are 0;  */
/*   rank-1 parameters (biases) get 0.                                       */
/* copy (6, Net2Net widening): g(u) for each new unit u >= old is drawn once */
/*   (u ascending) as floor(u53 * old), shared by all bound parameters.      */
/*   Entry value = old value at the index with every bound new index u       */
/*   replaced by g(u); along bound non-last axes of rank>=2 parameters the   */
/*   value is divided by c_j = 1 + #{u : g(u) = j} of its source unit j, so  */
/*   old unit j and its copies each carry row_j / c_j and the network's      */
/*   function is kept exactly. Biases (rank 1) copy the source's bias.       */
/*   Noise: when b is finite and > 0, entries new only along the last axis   */
/*   (incoming weights of new units) get + normal(0, b); otherwise (the      */
/*   default) no noise is added and copies are exact.                        */
/* others: every new entry of every resized parameter is filled alike       */
/*   (xavier / he fans from each parameter's own new shape).                 */
/* Shrinking drops trailing slices with every policy.                        */
/* ======================================================================== */

static void apply_dim_resize(NomaCtx *c, int64_t dim_id, int64_t size, int32_t policy, real a,
                             real b, int64_t span) {
    if (!dim_ensure(c, dim_id)) return;
    if (size < 0 || size > MAX_PARAM_ELEMS) {
        noma__failf(NOMA_ERR_SHAPE, span, "cannot resize a dim to %lld", (long long)size);
        return;
    }
    if (policy < 0 || policy > NOMA_POLICY_PRESERVE) {
        noma__failf(NOMA_ERR_RUNTIME, span, "unknown resize policy %d", (int)policy);
        return;
    }
    int64_t old = c->dims[dim_id];
    if (old < 0) { /* never declared: nothing can be bound */
        c->dims[dim_id] = size;
        return;
    }
    if (old == size) return;
    int32_t pol = policy == NOMA_POLICY_DEFAULT ? NOMA_POLICY_PRESERVE : policy;
    if (pol == NOMA_POLICY_COPY && old == 0 && size > 0) {
        noma__failf(NOMA_ERR_SHAPE, span, "cannot grow a dim of size 0 by copying: it has no units to copy");
        return;
    }

    /* collect and check the bound parameters */
    int64_t nb = 0;
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = c->params[s];
        if (!p || !p->defined) continue;
        int bound = 0;
        int64_t n = 1;
        for (int ax = 0; ax < p->t.rank; ax++) {
            int64_t d = p->t.dims[ax];
            if (p->bind[ax] == dim_id) {
                bound = 1;
                if (d != old) {
                    noma__failf(NOMA_ERR_SHAPE, span,
                                "internal error: axis %d of %s has size %lld, its dim %lld",
                                ax, pname(p), (long long)d, (long long)old);
                    return;
                }
                d = size;
            }
            if (!numel_step(&n, d)) {
                noma__failf(NOMA_ERR_SHAPE, span, "resizing %s would make it too large", pname(p));
                return;
            }
        }
        nb += bound;
    }
    Pending *pend = nb ? (Pending *)calloc((size_t)nb, sizeof(Pending)) : NULL;
    int64_t *gmap = NULL;
    double *cdiv = NULL;
    int ok = !nb || pend;
    if (ok && pol == NOMA_POLICY_COPY && size > old) {
        gmap = copy_choice(c, old, size);
        cdiv = (double *)malloc((size_t)size * sizeof(double));
        ok = gmap && cdiv;
        if (ok) {
            double *cnt = cdiv; /* c_j counts for j < old, then per-index divisors */
            for (int64_t j = 0; j < old; j++) cnt[j] = 1.0;
            for (int64_t u = old; u < size; u++) cnt[gmap[u]] += 1.0;
            for (int64_t u = size - 1; u >= old; u--) cnt[u] = cnt[gmap[u]];
        }
    }
    double noise = isfinite((double)b) && (double)b > 0 ? (double)b : 0.0;
    uint64_t need = 0;          /* a failed allocation: its bytes and what it was for */
    const char *what = "a dim resize";

    int64_t k = 0;
    for (int64_t s = 0; ok && s < c->nparams; s++) {
        NomaParam *p = c->params[s];
        if (!p || !p->defined) continue;
        int bound = 0;
        int64_t ndims[4] = {0, 0, 0, 0};
        for (int ax = 0; ax < p->t.rank; ax++) {
            ndims[ax] = p->t.dims[ax];
            if (p->bind[ax] == dim_id) {
                bound = 1;
                ndims[ax] = size;
            }
        }
        if (!bound) continue;
        int64_t r = p->t.rank;
        RemapSpec sp;
        memset(&sp, 0, sizeof sp);
        sp.rank = r;
        pad4(r, p->t.dims, sp.od);
        pad4(r, ndims, sp.nd);
        if (pol == NOMA_POLICY_COPY) {
            sp.fill = FILL_ZERO;
            sp.noise = noise;
            if (gmap) {
                for (int ax = 0; ax < r; ax++) {
                    if (p->bind[ax] != dim_id) continue;
                    int pa = (int)(4 - r + ax);
                    sp.map[pa] = gmap;
                    if (r >= 2 && ax != r - 1) sp.div[pa] = cdiv;
                }
            }
        } else if (pol == NOMA_POLICY_PRESERVE) {
            sp.fill = FILL_PRESERVE;
            sp.b = size > old ? std_of(p->t.data, p->n) : 0.0; /* a shrink draws nothing */
        } else {
            simple_fill(&sp, pol, (double)a, (double)b, p, r, ndims);
        }
        if (!pending_alloc(&pend[k], p, s, r, ndims)) {
            need = pend[k].need;
            what = pname(p);
            ok = 0;
            break;
        }
        pending_fill(c, &pend[k], &sp);
        k++;
    }
    if (!ok) {
        for (int64_t i = 0; i < nb; i++) pending_discard(&pend[i]);
        free(pend);
        free(gmap);
        free(cdiv);
        noma__fail_alloc(c, span, need, what);
        return;
    }
    int64_t od1[1] = {old}, nd1[1] = {size};
    noma__event(c, NOMA_EV_DIM_RESIZE, pol, dim_id, 1, od1, 1, nd1, c->ctl_origin);
    for (int64_t i = 0; i < k; i++) {
        NomaParam *p = pend[i].p;
        int64_t old_rank = p->t.rank, old_dims[4];
        memcpy(old_dims, p->t.dims, sizeof old_dims);
        int64_t slot = pend[i].slot, nr = pend[i].rank, ndims[4];
        memcpy(ndims, pend[i].dims, sizeof ndims);
        pending_commit(&pend[i]);
        noma__event(c, NOMA_EV_PARAM_RESIZE, pol, slot, old_rank, old_dims, nr, ndims, dim_id);
    }
    c->dims[dim_id] = size;
    free(pend);
    free(gmap);
    free(cdiv);
}

/* ======================================================================== */
/* Deferred resizes                                                         */
/* ======================================================================== */

static void defer_push(NomaCtx *c, const NomaDeferred *d) {
    if (c->dq_len == c->dq_cap) {
        int64_t nc = c->dq_cap ? c->dq_cap * 2 : 16;
        NomaDeferred *p = (NomaDeferred *)realloc(c->dq, (size_t)nc * sizeof *p);
        if (!p) {
            noma__failf(NOMA_ERR_RUNTIME, d->span, "out of memory (deferred resizes)");
            return;
        }
        c->dq = p;
        c->dq_cap = nc;
    }
    c->dq[c->dq_len++] = *d;
}

void noma__defer_clear_keeps(NomaCtx *c) {
    for (int64_t i = 0; i < c->dq_len; i++) {
        free(c->dq[i].keep);
        c->dq[i].keep = NULL;
    }
}

void noma__defer_clear(NomaCtx *c) {
    noma__defer_clear_keeps(c);
    c->dq_len = 0;
    c->defer_on = 0;
}

void noma_param_resize(int64_t slot, int64_t rank, const int64_t *dims, int32_t policy, real a,
                       real b, int64_t span) {
    NomaCtx *c = noma__cur();
    if (rank < 0 || rank > 4 || (rank > 0 && !dims)) {
        noma__failf(NOMA_ERR_SHAPE, span, "cannot resize to a shape of rank %lld", (long long)rank);
        return;
    }
    if (c->defer_on) {
        NomaDeferred d;
        memset(&d, 0, sizeof d);
        d.is_dim = 0;
        d.id = slot;
        d.rank = rank;
        for (int64_t i = 0; i < rank; i++) d.dims[i] = dims[i];
        d.policy = policy;
        d.a = a;
        d.b = b;
        d.span = span;
        if (param_live(c, slot, span)) defer_push(c, &d);
        return;
    }
    noma__probe_before_resize(c);
    apply_param_resize(c, slot, rank, dims, policy, a, b, span);
}

void noma_dim_resize(int64_t dim_id, int64_t size, int32_t policy, real a, real b, int64_t span) {
    NomaCtx *c = noma__cur();
    if (c->defer_on) {
        NomaDeferred d;
        memset(&d, 0, sizeof d);
        d.is_dim = 1;
        d.id = dim_id;
        d.rank = 1;
        d.dims[0] = size;
        d.policy = policy;
        d.a = a;
        d.b = b;
        d.span = span;
        if (dim_ensure(c, dim_id)) defer_push(c, &d);
        return;
    }
    noma__probe_before_resize(c);
    apply_dim_resize(c, dim_id, size, policy, a, b, span);
}

/* ======================================================================== */
/* Keep: `realloc dim keep idx;` / `realloc w keep idx axis A;`              */
/* Unit i of the result is old unit idx[i] along every axis the keep acts on */
/* (all axes bound to the dim / axis A): values and optimizer state (moments,*/
/* powers, per-entry steps) are gathered alike, so every kept entry carries  */
/* on exactly. idx holds whole numbers in [0, old size), each at most once.  */
/* ======================================================================== */

/* dst[i0..i3] = src[m0(i0), .., m3(i3)] (padded shapes; a NULL map is the identity). */
#define DEFINE_GATHER(NAME, T)                                                                     \
    static void NAME(const T *src, const int64_t od[4], T *dst, const int64_t nd[4],               \
                     int64_t *const map[4]) {                                                      \
        int64_t w = 0;                                                                             \
        for (int64_t i0 = 0; i0 < nd[0]; i0++)                                                     \
            for (int64_t i1 = 0; i1 < nd[1]; i1++)                                                 \
                for (int64_t i2 = 0; i2 < nd[2]; i2++) {                                           \
                    int64_t j0 = map[0] ? map[0][i0] : i0, j1 = map[1] ? map[1][i1] : i1;          \
                    int64_t j2 = map[2] ? map[2][i2] : i2;                                         \
                    const T *s = src + ((j0 * od[1] + j1) * od[2] + j2) * od[3];                   \
                    for (int64_t i3 = 0; i3 < nd[3]; i3++) dst[w++] = s[map[3] ? map[3][i3] : i3]; \
                }                                                                                  \
    }
DEFINE_GATHER(gather_real, real)
DEFINE_GATHER(gather_i64, int64_t)

/* idx as checked unit indices (malloc'd; *k their count), or NULL after a located error. */
static int64_t *keep_indices(NomaCtx *c, const NomaTensor *idx, int64_t old, const char *what,
                             int64_t span, int64_t *k) {
    if (!idx || idx->rank != 1) {
        noma__failf(NOMA_ERR_TYPE, span, "keep needs a vector of unit indices");
        return NULL;
    }
    int64_t n = idx->dims[0];
    int64_t *out = (int64_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    unsigned char *seen = (unsigned char *)calloc((size_t)(old > 0 ? old : 1), 1);
    if (!out || !seen) {
        free(out);
        free(seen);
        noma__fail_alloc(c, span, (uint64_t)n * sizeof(int64_t) + (uint64_t)old, "keep");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = (double)idx->data[i];
        const char *bad = NULL;
        if (!(v >= 0) || v >= (double)old || floor(v) != v)
            bad = "is not a unit of";
        else if (seen[(int64_t)v]++)
            bad = "is kept twice in";
        if (bad) {
            noma__failf(NOMA_ERR_RUNTIME, span, "keep: index %g (entry %lld) %s %s (size %lld)", v,
                        (long long)i, bad, what, (long long)old);
            free(out);
            free(seen);
            return NULL;
        }
        out[i] = (int64_t)v;
    }
    free(seen);
    *k = n;
    return out;
}

/* Gather parameter p along the axes of `mask` (bit = axis) into a pending set. */
static int keep_pending(NomaCtx *c, Pending *q, NomaParam *p, int64_t slot, int mask, int64_t *keep,
                        int64_t k) {
    int64_t r = p->t.rank, ndims[4] = {0, 0, 0, 0}, od[4], nd[4];
    int64_t *map[4] = {NULL, NULL, NULL, NULL};
    for (int ax = 0; ax < r; ax++) {
        ndims[ax] = (mask >> ax) & 1 ? k : p->t.dims[ax];
        if ((mask >> ax) & 1) map[4 - r + ax] = keep;
    }
    if (!pending_alloc(q, p, slot, r, ndims)) return 0;
    pad4(r, p->t.dims, od);
    pad4(r, ndims, nd);
    (void)c;
    gather_real(p->t.data, od, q->data, nd, map);
    if (q->m) gather_real(p->m, od, q->m, nd, map);
    if (q->v) gather_real(p->v, od, q->v, nd, map);
    if (q->pow1) gather_real(p->pow1, od, q->pow1, nd, map);
    if (q->pow2) gather_real(p->pow2, od, q->pow2, nd, map);
    if (q->steps) gather_i64(p->steps, od, q->steps, nd, map);
    return 1;
}

static void commit_keep(NomaCtx *c, Pending *q, int64_t aux, const int64_t *keep, int64_t k) {
    NomaParam *p = q->p;
    int64_t old_rank = p->t.rank, old_dims[4], slot = q->slot, nr = q->rank, ndims[4];
    memcpy(old_dims, p->t.dims, sizeof old_dims);
    memcpy(ndims, q->dims, sizeof ndims);
    pending_commit(q);
    noma__event(c, NOMA_EV_PARAM_RESIZE, NOMA_EVENT_KEEP, slot, old_rank, old_dims, nr, ndims, aux);
    noma__event_kept(c, keep, k);
}

static void apply_param_keep(NomaCtx *c, int64_t slot, int32_t axis, const NomaTensor *idx,
                             int64_t *given, int64_t ngiven, int64_t span) {
    NomaParam *p = param_live(c, slot, span);
    if (!p) return;
    if (axis < 0 || axis >= p->t.rank) {
        noma__failf(NOMA_ERR_SHAPE, span, "axis %d is out of range for %s (rank %lld)", (int)axis,
                    pname(p), (long long)p->t.rank);
        return;
    }
    if (p->bind[axis] >= 0) {
        noma__failf(NOMA_ERR_SHAPE, span,
                    "cannot keep units along axis %d of %s alone: it is sized by a dim (keep along the dim)",
                    (int)axis, pname(p));
        return;
    }
    int64_t k = ngiven, *keep = given ? given : keep_indices(c, idx, p->t.dims[axis], pname(p), span, &k);
    if (!keep) return;
    for (int64_t i = 0; i < k; i++)
        if (keep[i] >= p->t.dims[axis]) { /* checked when queued against an earlier size */
            noma__failf(NOMA_ERR_RUNTIME, span, "keep: index %lld is not a unit of %s (size %lld)",
                        (long long)keep[i], pname(p), (long long)p->t.dims[axis]);
            if (!given) free(keep);
            return;
        }
    Pending q;
    if (!keep_pending(c, &q, p, slot, 1 << axis, keep, k)) {
        if (!given) free(keep);
        noma__fail_alloc(c, span, q.need, pname(p));
        return;
    }
    commit_keep(c, &q, -1, keep, k);
    if (!given) free(keep);
}

static void apply_dim_keep(NomaCtx *c, int64_t dim_id, const NomaTensor *idx, int64_t *given,
                           int64_t ngiven, int64_t span) {
    if (!dim_ensure(c, dim_id)) return;
    int64_t old = c->dims[dim_id];
    const char *name = dim_id < c->ndim_names && c->dim_names[dim_id] ? c->dim_names[dim_id] : "the dim";
    if (old < 0) {
        noma__failf(NOMA_ERR_NAME, span, "keep: %s has no size yet", name);
        return;
    }
    int64_t k = ngiven, *keep = given ? given : keep_indices(c, idx, old, name, span, &k);
    if (!keep) return;
    for (int64_t i = 0; i < k; i++)
        if (keep[i] >= old) {
            noma__failf(NOMA_ERR_RUNTIME, span, "keep: index %lld is not a unit of %s (size %lld)",
                        (long long)keep[i], name, (long long)old);
            if (!given) free(keep);
            return;
        }
    int64_t nb = 0;
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = c->params[s];
        if (!p || !p->defined) continue;
        for (int ax = 0; ax < p->t.rank; ax++)
            if (p->bind[ax] == dim_id) {
                nb++;
                break;
            }
    }
    Pending *pend = nb ? (Pending *)calloc((size_t)nb, sizeof(Pending)) : NULL;
    int ok = !nb || pend;
    int64_t n = 0;
    uint64_t need = 0;
    for (int64_t s = 0; ok && s < c->nparams; s++) {
        NomaParam *p = c->params[s];
        if (!p || !p->defined) continue;
        int mask = 0;
        for (int ax = 0; ax < p->t.rank; ax++) mask |= (p->bind[ax] == dim_id) << ax;
        if (!mask) continue;
        if (!keep_pending(c, &pend[n], p, s, mask, keep, k)) {
            need = pend[n].need;
            ok = 0;
            break;
        }
        n++;
    }
    if (!ok) {
        for (int64_t i = 0; i < nb; i++) pending_discard(&pend[i]);
        free(pend);
        if (!given) free(keep);
        noma__fail_alloc(c, span, need, name);
        return;
    }
    int64_t od1[1] = {old}, nd1[1] = {k};
    noma__event(c, NOMA_EV_DIM_RESIZE, NOMA_EVENT_KEEP, dim_id, 1, od1, 1, nd1, 0);
    noma__event_kept(c, keep, k);
    for (int64_t i = 0; i < n; i++) commit_keep(c, &pend[i], dim_id, keep, k);
    c->dims[dim_id] = k;
    free(pend);
    if (!given) free(keep);
}

/* Queue a keep (inside a training step): the indices are checked and copied now. */
static void defer_keep(NomaCtx *c, int is_dim, int64_t id, int32_t axis, const NomaTensor *idx,
                       int64_t size, const char *what, int64_t span) {
    NomaDeferred d;
    memset(&d, 0, sizeof d);
    d.is_dim = is_dim;
    d.id = id;
    d.axis = axis;
    d.span = span;
    d.keep = keep_indices(c, idx, size, what, span, &d.nkeep);
    if (d.keep) defer_push(c, &d);
}

void noma_dim_keep(int64_t dim_id, const NomaTensor *idx, int64_t span) {
    NomaCtx *c = noma__cur();
    if (c->defer_on) {
        if (!dim_ensure(c, dim_id)) return;
        const char *name = dim_id < c->ndim_names && c->dim_names[dim_id] ? c->dim_names[dim_id] : "the dim";
        defer_keep(c, 1, dim_id, 0, idx, c->dims[dim_id], name, span);
        return;
    }
    noma__probe_before_resize(c);
    apply_dim_keep(c, dim_id, idx, NULL, 0, span);
}

void noma_param_keep(int64_t slot, int32_t axis, const NomaTensor *idx, int64_t span) {
    NomaCtx *c = noma__cur();
    if (c->defer_on) {
        NomaParam *p = param_live(c, slot, span);
        if (!p) return;
        if (axis < 0 || axis >= p->t.rank) {
            noma__failf(NOMA_ERR_SHAPE, span, "axis %d is out of range for %s (rank %lld)", (int)axis,
                        pname(p), (long long)p->t.rank);
            return;
        }
        defer_keep(c, 0, slot, axis, idx, p->t.dims[axis], pname(p), span);
        return;
    }
    noma__probe_before_resize(c);
    apply_param_keep(c, slot, axis, idx, NULL, 0, span);
}

void noma_defer_begin(void) { noma__cur()->defer_on = 1; }

/* Applies the queued resizes in order (deferred mode stays on). */
void noma_defer_apply(void) {
    NomaCtx *c = noma__cur();
    int64_t i = 0;
    while (i < c->dq_len) {
        NomaDeferred d = c->dq[i++];
        int64_t fails = c->fail_count;
        c->dq[i - 1].keep = NULL; /* owned here now: freed below, also when the apply jumps */
        if (d.keep && d.is_dim)
            apply_dim_keep(c, d.id, NULL, d.keep, d.nkeep, d.span);
        else if (d.keep)
            apply_param_keep(c, d.id, d.axis, NULL, d.keep, d.nkeep, d.span);
        else if (d.is_dim)
            apply_dim_resize(c, d.id, d.dims[0], d.policy, d.a, d.b, d.span);
        else
            apply_param_resize(c, d.id, d.rank, d.dims, d.policy, d.a, d.b, d.span);
        free(d.keep);
        if (c->fail_count != fails) break; /* failed without a jump: drop the rest */
    }
    noma__defer_clear_keeps(c);
    c->dq_len = 0;
}

/* Applies anything still queued, then leaves deferred mode. */
void noma_defer_end(void) {
    NomaCtx *c = noma__cur();
    noma_defer_apply();
    c->defer_on = 0;
    noma__ctl_loop_end();
}

/* ======================================================================== */
/* Optimizers (PyTorch's formulas)                                          */
/*                                                                          */
/* hyper = [lr, beta1, beta2, eps, weight_decay, momentum, alpha, dampening, */
/*          nesterov, ...] (16 reals); NaN means "default":                  */
/*   lr 0.01 (SGD, RMSprop) / 0.001 (Adam, AdamW), betas (0.9, 0.999),       */
/*   eps 1e-8, weight_decay 0 (AdamW 0.01), momentum 0, alpha 0.99,          */
/*   dampening 0, nesterov 0.                                                */
/* SGD    : g += wd p; if mu: buf = (t == 0 ? g : mu buf + (1-damp) g);      */
/*          g = nesterov ? g + mu buf : buf;  p -= lr g                      */
/* Adam   : g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g g;           */
/*          pow1 *= b1; pow2 *= b2; denom = sqrt(v) / sqrt(1-pow2) + eps;    */
/*          p -= (lr / (1-pow1)) * (m / denom)                               */
/* AdamW  : p *= 1 - lr wd, then Adam without the wd term                    */
/* RMSprop: g += wd p; sq = a sq + (1-a) g g; avg = sqrt(sq) + eps;          */
/*          mu ? (buf = mu buf + g / avg; p -= lr buf) : p -= lr (g / avg)   */
/* Every kind increments the per-entry step counts t.                        */
/* ======================================================================== */

/* Each kind's name (noma/optimizers.py is the registry; tests check the names agree). */
const char *const noma__opt_names[] = {"none", "sgd", "adam", "rmsprop", "adamw"};
const int32_t noma__opt_kinds = (int32_t)(sizeof noma__opt_names / sizeof noma__opt_names[0]);

static void resolve_hyper(int32_t kind, const real *h, NomaHyper *o) {
#define HV(i, d) ((h && !isnan((double)h[i])) ? h[i] : (real)(d))
    int adam = kind == NOMA_OPT_ADAM || kind == NOMA_OPT_ADAMW;
    o->lr = HV(0, adam ? 0.001 : 0.01);
    o->beta1 = HV(1, 0.9);
    o->beta2 = HV(2, 0.999);
    o->eps = HV(3, 1e-8);
    o->wd = HV(4, kind == NOMA_OPT_ADAMW ? 0.01 : 0.0);
    o->momentum = HV(5, 0.0);
    o->alpha = HV(6, 0.99);
    o->dampening = HV(7, 0.0);
    o->nesterov = HV(8, 0.0) != 0;
#undef HV
}

void noma_opt_begin(int64_t slot, int32_t kind, const real *hyper) {
    noma_opt_begin_at(slot, kind, hyper, -1);
}

void noma_opt_begin_at(int64_t slot, int32_t kind, const real *hyper, int64_t span) {
    NomaCtx *c = noma__cur();
    NomaParam *p = param_live(c, slot, span);
    if (!p) return;
    p->opt_span = span;
    if (kind < NOMA_OPT_SGD || kind >= noma__opt_kinds) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "unknown optimizer kind %d", (int)kind);
        return;
    }
    if (p->opt_kind != kind) {
        if (p->opt_kind != NOMA_OPT_NONE)
            noma__event(c, NOMA_EV_OPT_CHANGE, kind, slot, p->t.rank, p->t.dims, p->t.rank,
                        p->t.dims, p->opt_kind);
        state_free(p);
        p->opt_kind = kind;
    }
    resolve_hyper(kind, hyper, &p->hyper);
    double lr = noma__ctl_lr_override(c); /* the live controls set the running loop's */
    if (!isnan(lr)) p->hyper.lr = (real)lr;
}

static void sgd_kernel(int64_t n, real *restrict p, const real *restrict g, real *restrict buf,
                       const int64_t *restrict t, real lr, real wd, real mu, real damp,
                       int nesterov) {
    if (mu == 0) {
        for (int64_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
    } else if (nesterov) {
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i] + wd * p[i];
            real b = t[i] == 0 ? gi : mu * buf[i] + (1 - damp) * gi;
            buf[i] = b;
            p[i] -= lr * (gi + mu * b);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i] + wd * p[i];
            real b = t[i] == 0 ? gi : mu * buf[i] + (1 - damp) * gi;
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

/* Adam / AdamW: noma__adam_update (noma_rt_adam.c). */

static void rmsprop_kernel(int64_t n, real *restrict p, const real *restrict g,
                           real *restrict sq, real *restrict buf, real lr, real alpha, real eps,
                           real wd, real mu) {
    if (mu == 0) {
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i] + wd * p[i];
            real s = alpha * sq[i] + (1 - alpha) * gi * gi;
            sq[i] = s;
            p[i] -= lr * (gi / (RSQRT(s) + eps));
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            real gi = g[i] + wd * p[i];
            real s = alpha * sq[i] + (1 - alpha) * gi * gi;
            sq[i] = s;
            real b = mu * buf[i] + gi / (RSQRT(s) + eps);
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

static int state_zero(real **buf, int64_t n) {
    if (*buf) return 1;
    *buf = (real *)noma__xcalloc((size_t)n * sizeof(real));
    return *buf != NULL;
}

/* Bytes of the optimizer state p still lacks for its kind (the set opt_prepare allocates). */
static uint64_t state_missing(const NomaParam *p) {
    uint64_t n = (uint64_t)p->n, r = n * sizeof(real), b = p->steps ? 0 : n * sizeof(int64_t);
    int mom = p->hyper.momentum != 0;
    switch (p->opt_kind) {
    case NOMA_OPT_SGD: return b + (mom && !p->m ? r : 0);
    case NOMA_OPT_ADAM:
    case NOMA_OPT_ADAMW: return b + r * (uint64_t)(!p->m + !p->v + !p->pow1 + !p->pow2);
    case NOMA_OPT_RMSPROP: return b + (!p->v ? r : 0) + (mom && !p->m ? r : 0);
    default: return b;
    }
}

/* Checks one optimizer step's gradient against its parameter and allocates the state it needs;
   the parameter, or NULL when it failed (not jumping) or has no entries. */
static NomaParam *opt_prepare(NomaCtx *c, int64_t slot, const NomaTensor *grad) {
    NomaParam *p = param_live(c, slot, -1);
    if (!p) return NULL;
    if (p->opt_kind == NOMA_OPT_NONE) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: optimizer step on %s before opt_begin",
                    pname(p));
        return NULL;
    }
    if (!noma__check_tensor(grad, -1, "optimizer step")) return NULL;
    int same = grad->rank == p->t.rank;
    for (int64_t i = 0; same && i < grad->rank; i++) same = grad->dims[i] == p->t.dims[i];
    if (!same) {
        noma_fail_shape(-1, "optimizer step (gradient vs parameter)", grad, &p->t);
        return NULL;
    }
    int64_t n = p->n;
    if (n == 0) return NULL;
    const NomaHyper *h = &p->hyper;
    uint64_t need = state_missing(p);
    if (need && !noma__mem_admit(c, need)) { /* the whole state, before any is allocated */
        char what[300];
        snprintf(what, sizeof what, "the optimizer state of %s", pname(p));
        noma__fail_alloc(c, p->opt_span, need, what);
        return NULL;
    }
    int ok = 1;
    if (!p->steps) {
        p->steps = (int64_t *)noma__xcalloc((size_t)n * sizeof(int64_t));
        ok = p->steps != NULL;
    }
    switch (p->opt_kind) {
    case NOMA_OPT_SGD:
        if (h->momentum != 0) ok = ok && state_zero(&p->m, n);
        break;
    case NOMA_OPT_ADAM:
    case NOMA_OPT_ADAMW:
        ok = ok && state_zero(&p->m, n) && state_zero(&p->v, n) &&
             state_zero(&p->pow1, n) && state_zero(&p->pow2, n);
        break;
    case NOMA_OPT_RMSPROP:
        ok = ok && state_zero(&p->v, n);
        if (h->momentum != 0) ok = ok && state_zero(&p->m, n);
        break;
    }
    if (!ok) {
        char what[300];
        snprintf(what, sizeof what, "the optimizer state of %s", pname(p));
        noma__fail_alloc(c, p->opt_span, need, what);
        return NULL;
    }
    return p;
}

static int is_adam(const NomaParam *p) {
    return p->opt_kind == NOMA_OPT_ADAM || p->opt_kind == NOMA_OPT_ADAMW;
}

#define NOMA_OPT_BATCH 16 /* parameters checked, then updated, together by noma_opt_steps */

/* Adam / AdamW of parameters ps[0..k) with ps[0]'s kind and hyper-parameters (all alike). */
static void adam_steps(NomaParam *const *ps, const real *const *grads, int64_t k) {
    NomaAdamParam buf[NOMA_OPT_BATCH];
    for (int64_t j = 0; j < k; j++) {
        const NomaParam *p = ps[j];
        buf[j] = (NomaAdamParam){p->n, p->t.data, grads[j], p->m, p->v, p->pow1, p->pow2, p->steps};
    }
    const NomaHyper *h = &ps[0]->hyper;
    if (ps[0]->opt_kind == NOMA_OPT_ADAM)
        noma__adam_update_many(k, buf, h->lr, h->beta1, h->beta2, h->eps, h->wd, (real)1);
    else
        noma__adam_update_many(k, buf, h->lr, h->beta1, h->beta2, h->eps, (real)0,
                               (real)1 - h->lr * h->wd);
}

/* One update of a prepared parameter in place. */
static void opt_apply(NomaParam *p, const real *grad) {
    const NomaHyper *h = &p->hyper;
    const int64_t n = p->n;
    switch (p->opt_kind) {
    case NOMA_OPT_SGD:
        sgd_kernel(n, p->t.data, grad, p->m, p->steps, h->lr, h->wd, h->momentum, h->dampening,
                   h->nesterov);
        break;
    case NOMA_OPT_ADAM:
    case NOMA_OPT_ADAMW:
        adam_steps(&p, &grad, 1);
        return; /* the kernel counted the step */
    case NOMA_OPT_RMSPROP:
        rmsprop_kernel(n, p->t.data, grad, p->v, p->m, h->lr, h->alpha, h->eps, h->wd,
                       h->momentum);
        break;
    }
    int64_t *restrict t = p->steps;
    for (int64_t i = 0; i < n; i++) t[i] += 1;
}

void noma_opt_step(int64_t slot, const NomaTensor *grad) {
    NomaParam *p = opt_prepare(noma__cur(), slot, grad);
    if (p) opt_apply(p, grad->data);
}

static int same_adam(const NomaParam *a, const NomaParam *b) {
    const NomaHyper *x = &a->hyper, *y = &b->hyper;
    return a->opt_kind == b->opt_kind && x->lr == y->lr && x->beta1 == y->beta1 &&
           x->beta2 == y->beta2 && x->eps == y->eps && x->wd == y->wd;
}

/* The updates of one training step: every parameter is checked first (an error leaves all of
   them as they were), then they are updated in order; runs of Adam / AdamW parameters with
   equal hyper-parameters share one call of the kernel (noma__adam_update_many). */
void noma_opt_steps(int64_t count, const int64_t *slots, const NomaTensor *grads) {
    NomaCtx *c = noma__cur();
    NomaParam *ps[NOMA_OPT_BATCH];
    const real *gs[NOMA_OPT_BATCH];
    for (int64_t start = 0; start < count; start += NOMA_OPT_BATCH) {
        int64_t k = count - start < NOMA_OPT_BATCH ? count - start : NOMA_OPT_BATCH;
        int64_t live = 0;
        for (int64_t j = 0; j < k; j++) {
            const int64_t fails = c->fail_count;
            NomaParam *p = opt_prepare(c, slots[start + j], &grads[start + j]);
            if (c->fail_count != fails) return; /* failed without jumping */
            if (p) ps[live] = p, gs[live++] = grads[start + j].data;
        }
        for (int64_t j = 0; j < live;) {
            int64_t e = j + 1;
            if (is_adam(ps[j]))
                while (e < live && is_adam(ps[e]) && same_adam(ps[j], ps[e])) e++;
            if (is_adam(ps[j])) adam_steps(ps + j, gs + j, e - j);
            else opt_apply(ps[j], gs[j]);
            j = e;
        }
    }
}

void noma_opt_reset_all(void) {
    NomaCtx *c = noma__cur();
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = c->params[s];
        if (!p) continue;
        state_free(p);
        p->opt_kind = NOMA_OPT_NONE;
    }
    noma__event(c, NOMA_EV_OPT_RESET, 0, -1, -1, NULL, -1, NULL, 0);
}

int32_t noma_param_opt_kind(int64_t slot) {
    NomaCtx *c = noma__cur();
    if (slot < 0 || slot >= c->nparams || !c->params[slot] || !c->params[slot]->defined) return 0;
    return c->params[slot]->opt_kind;
}

/* Copy of one state buffer into the arena, shaped like the parameter:
   which 0 m / momentum buffer, 1 v / square_avg, 2 step counts, 3 pow1, 4 pow2.
   Buffers not allocated yet read as their initial values (0, 0, 0, 1, 1). */
void noma_param_state(int64_t slot, int32_t which, NomaTensor *out) {
    NomaCtx *c = noma__cur();
    if (!out) return;
    memset(out, 0, sizeof *out);
    NomaParam *p = param_live(c, slot, -1);
    if (!p) return;
    if (which < 0 || which > 4) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "unknown optimizer state %d", (int)which);
        return;
    }
    int64_t n = p->n;
    real *d = noma__alloc(c, n);
    if (!d) return;
    const real *src = which == 0 ? p->m : which == 1 ? p->v : which == 3 ? p->pow1 : which == 4 ? p->pow2 : NULL;
    if (which == 2) {
        for (int64_t i = 0; i < n; i++) d[i] = p->steps ? (real)p->steps[i] : 0;
    } else if (src && which >= 3) { /* powers of entries at step 0 are 1 */
        for (int64_t i = 0; i < n; i++) d[i] = (p->steps && p->steps[i]) ? src[i] : 1;
    } else if (src) {
        memcpy(d, src, (size_t)n * sizeof(real));
    } else {
        for (int64_t i = 0; i < n; i++) d[i] = which >= 3 ? 1 : 0;
    }
    out->data = d;
    out->rank = p->t.rank;
    memcpy(out->dims, p->t.dims, sizeof out->dims);
}

/* Restores one state buffer (checkpoints). The slot must have an optimizer kind. */
void noma_param_state_set(int64_t slot, int32_t which, const NomaTensor *v) {
    NomaCtx *c = noma__cur();
    NomaParam *p = param_live(c, slot, -1);
    if (!p) return;
    if (!noma__check_tensor(v, -1, "optimizer state")) return;
    if (which < 0 || which > 4) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "unknown optimizer state %d", (int)which);
        return;
    }
    if (p->opt_kind == NOMA_OPT_NONE) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "%s has no optimizer state to restore", pname(p));
        return;
    }
    if (noma__numel(v) != p->n) {
        noma_fail_shape(-1, "optimizer state", v, &p->t);
        return;
    }
    int64_t n = p->n;
    if (which == 2) {
        if (!p->steps) p->steps = (int64_t *)noma__xmalloc((size_t)(n ? n : 1) * sizeof(int64_t));
        if (!p->steps) goto oom;
        for (int64_t i = 0; i < n; i++) p->steps[i] = (int64_t)llround((double)v->data[i]);
        return;
    }
    real **dst = which == 0 ? &p->m : which == 1 ? &p->v : which == 3 ? &p->pow1 : &p->pow2;
    if (!*dst) *dst = (real *)noma__xmalloc((size_t)(n ? n : 1) * sizeof(real));
    if (!*dst) goto oom;
    if (n) memmove(*dst, v->data, (size_t)n * sizeof(real));
    return;
oom:
    noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (optimizer state of %s)", pname(p));
}

/* ======================================================================== */
/* RNG state as data (checkpoints and undo restore it with the parameters,   */
/* so draws after a reload -- e.g. a `realloc` -- are the ones the session    */
/* would have made). 6 words: the 4 xoshiro256** words, has_spare, and the   */
/* bit pattern of the cached normal spare (a double).                        */
/* ======================================================================== */

void noma_rng_state_get(NomaCtx *c, uint64_t *out) {
    if (!c) c = noma__cur();
    if (!out) return;
    for (int i = 0; i < 4; i++) out[i] = c->rng[i];
    out[4] = (uint64_t)(c->has_spare != 0);
    memcpy(&out[5], &c->spare, sizeof(double));
}

/* An all-zero xoshiro state is invalid (it would stay zero): ignored. */
void noma_rng_state_set(NomaCtx *c, const uint64_t *in) {
    if (!c) c = noma__cur();
    if (!in || !(in[0] | in[1] | in[2] | in[3])) return;
    for (int i = 0; i < 4; i++) c->rng[i] = in[i];
    c->has_spare = in[4] != 0;
    memcpy(&c->spare, &in[5], sizeof(double));
}
