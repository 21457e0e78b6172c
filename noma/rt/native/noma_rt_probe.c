/* NOMA native runtime: the output change of a resize inside a training loop.
 *
 * Owns: measuring how much a resize applied at a training step's end changes what the step's
 * forward pass computes. When a step queued resizes, the compiled loop runs the forward pass of
 * its body twice more (a probe: effects such as print, files and resizes are left out of that
 * code; the globals and the random generator are put back after each pass, so the run continues
 * exactly as without the probe): once before the queued resizes are applied and once after.
 * Both passes start from the globals the step left, so they compare on the same batch. Each pass
 * hands the step's outputs here (the loss and the other parameter-dependent values the body
 * computes at its top level); values that keep their shape across the resize are compared, and
 * the largest absolute difference is stored in the resize events as `output_change` (0 for a
 * function-preserving resize such as `preserve` or `copy`).
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The globals as the step left them, put back after each probe pass. */
typedef struct NomaSavedGlobal {
    int32_t defined;
    NomaTensor t; /* t.data: a copy (NULL when the slot holds nothing) */
} SavedGlobal;

static void globals_forget(NomaCtx *c) {
    for (int64_t i = 0; i < c->probe_nglobals; i++) free(c->probe_globals[i].t.data);
    free(c->probe_globals);
    c->probe_globals = NULL;
    c->probe_nglobals = 0;
}

static void globals_save(NomaCtx *c) {
    globals_forget(c);
    if (!c->nglobals) return;
    SavedGlobal *g_saved = (SavedGlobal *)calloc((size_t)c->nglobals, sizeof *g_saved);
    if (!g_saved) return;
    c->probe_globals = g_saved;
    c->probe_nglobals = c->nglobals;
    for (int64_t i = 0; i < c->nglobals; i++) {
        NomaGlobal *g = c->globals[i];
        if (!g || !g->t.data) continue;
        int64_t n = noma__numel(&g->t);
        if (n < 1) n = 1;
        SavedGlobal *s = &g_saved[i];
        s->t = g->t;
        s->defined = g->defined;
        s->t.data = (real *)malloc((size_t)n * sizeof(real));
        if (s->t.data) memcpy(s->t.data, g->t.data, (size_t)n * sizeof(real));
    }
}

/* Back to the saved values (a slot's buffer only grows, so it holds them). */
static void globals_restore(NomaCtx *c) {
    for (int64_t i = 0; i < c->probe_nglobals && i < c->nglobals; i++) {
        NomaGlobal *g = c->globals[i];
        SavedGlobal *s = &c->probe_globals[i];
        if (!g || !s->t.data) continue;
        int64_t n = noma__numel(&s->t);
        if (n < 1) n = 1;
        if (n > g->cap) continue;
        memcpy(g->t.data, s->t.data, (size_t)n * sizeof(real));
        g->t.rank = s->t.rank;
        memcpy(g->t.dims, s->t.dims, sizeof g->t.dims);
        g->defined = s->defined;
    }
}

struct NomaProbeVal {
    int64_t rank, dims[4], n;
    double *data; /* NULL: no value recorded at this index */
};


void noma__probe_free(NomaCtx *c) {
    globals_forget(c);
    for (int64_t i = 0; i < c->probe_n; i++) free(c->probe_vals[i].data);
    free(c->probe_vals);
    c->probe_vals = NULL;
    c->probe_n = c->probe_cap = 0;
}

/* 1 when the step queued resizes (the loop then probes before applying them). */
int32_t noma_probe_wanted(void) { return noma__cur()->dq_len > 0; }

void noma_probe_begin(int32_t pass) {
    NomaCtx *c = noma__cur();
    noma_rng_state_get(c, c->probe_rng);
    if (pass == 0) {
        noma__probe_free(c);
        c->probe_change = 0.0;
        globals_save(c);
    }
}

static void probe_record(NomaCtx *c, int64_t index, int64_t rank, const int64_t *dims,
                         const real *data) {
    if (index < 0) return;
    if (index >= c->probe_cap) {
        int64_t nc = index + 16;
        struct NomaProbeVal *p = (struct NomaProbeVal *)realloc(c->probe_vals, (size_t)nc * sizeof *p);
        if (!p) return; /* not measured rather than failing the step */
        memset(p + c->probe_cap, 0, (size_t)(nc - c->probe_cap) * sizeof *p);
        c->probe_vals = p;
        c->probe_cap = nc;
    }
    if (index >= c->probe_n) c->probe_n = index + 1;
    struct NomaProbeVal *v = &c->probe_vals[index];
    int64_t n = 1;
    for (int64_t i = 0; i < rank; i++) n *= dims[i];
    free(v->data);
    v->data = (double *)malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!v->data) return;
    v->rank = rank;
    v->n = n;
    for (int64_t i = 0; i < 4; i++) v->dims[i] = i < rank ? dims[i] : 0;
    for (int64_t i = 0; i < n; i++) v->data[i] = (double)data[i];
}

static void probe_compare(NomaCtx *c, int64_t index, int64_t rank, const int64_t *dims,
                          const real *data) {
    if (index < 0 || index >= c->probe_n) return;
    const struct NomaProbeVal *v = &c->probe_vals[index];
    if (!v->data || v->rank != rank) return;
    for (int64_t i = 0; i < rank; i++)
        if (v->dims[i] != dims[i]) return; /* the value changed shape: not comparable */
    for (int64_t i = 0; i < v->n; i++) {
        double d = fabs((double)data[i] - v->data[i]);
        if (d > c->probe_change) c->probe_change = d;
    }
}

/* One output of a probe pass (a scalar comes as a rank-0 tensor): recorded in pass 0, compared
   with that record in pass 1. */
void noma_probe_value(int32_t pass, int64_t index, const NomaTensor *t) {
    NomaCtx *c = noma__cur();
    if (!t || !t->data || t->rank < 0 || t->rank > 4) return;
    if (pass == 0) probe_record(c, index, t->rank, t->dims, t->data);
    else probe_compare(c, index, t->rank, t->dims, t->data);
}


/* Ends a pass: the generator goes back to where the pass began and the globals to what the
   step left. After pass 0 the queued resizes are applied; after pass 1 their events get the
   measured change. */
void noma_probe_end(int32_t pass) {
    NomaCtx *c = noma__cur();
    noma_rng_state_set(c, c->probe_rng);
    globals_restore(c);
    if (pass == 0) {
        c->probe_ev_from = c->nevents;
        noma_defer_apply();
        return;
    }
    for (int64_t i = c->probe_ev_from; i < c->nevents; i++)
        if (c->events[i].kind == NOMA_EV_DIM_RESIZE || c->events[i].kind == NOMA_EV_PARAM_RESIZE)
            c->events[i].output_change = c->probe_change;
    noma__probe_free(c);
}
