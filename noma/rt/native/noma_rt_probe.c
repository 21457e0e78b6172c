/* NOMA native runtime: the output change of a resize.
 *
 * Owns: measuring how much a resize changes what the last training step's forward pass computes.
 * Inside a training loop: When a step queued resizes, the compiled loop runs the forward pass of
 * its body twice more (a probe: effects such as print, files and resizes are left out of that
 * code; the globals and the random generator are put back after each pass, so the run continues
 * exactly as without the probe): once before the queued resizes are applied and once after.
 * Both passes start from the globals the step left, so they compare on the same batch. Each pass
 * hands the step's outputs here (the loss and the other parameter-dependent values the body
 * computes at its top level); values that keep their shape across the resize are compared, and
 * the largest absolute difference is stored in the resize events as `output_change` (0 for a
 * function-preserving resize such as `preserve` or `copy`).
 *
 * A resize outside a training loop (a cell or a script's top level) is measured against the
 * last training loop that ran: each loop registers a compiled copy of its body's forward pass
 * (noma_probe_replay; NULL when the body reads values of its enclosing function, which are gone
 * once it returns). Before the first such resize, pass 0 runs that copy on the current globals;
 * when the cell or program ends, or the next training loop starts, pass 1 runs it again on the
 * same globals, and the resize events in between get the largest change. A pass that fails (the
 * forward pass does not fit the resized parameters) leaves them "not measured" and the program
 * goes on. noma_probe_enable(ctx, 0) switches measuring off.
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A copy of the globals (the step's inputs), put back after a probe pass. */
typedef struct NomaSavedGlobal {
    int32_t defined;
    NomaTensor t; /* t.data: a copy (NULL when the slot holds nothing) */
} SavedGlobal;
typedef NomaSavedGlobals SavedGlobals;

static void globals_forget(SavedGlobals *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->g[i].t.data);
    free(s->g);
    s->g = NULL;
    s->n = 0;
}

static void globals_save(NomaCtx *c, SavedGlobals *s) {
    globals_forget(s);
    if (!c->nglobals) return;
    SavedGlobal *g_saved = (SavedGlobal *)calloc((size_t)c->nglobals, sizeof *g_saved);
    if (!g_saved) return;
    s->g = g_saved;
    s->n = c->nglobals;
    for (int64_t i = 0; i < c->nglobals; i++) {
        NomaGlobal *g = c->globals[i];
        if (!g || !g->t.data) continue;
        int64_t n = noma__numel(&g->t);
        if (n < 1) n = 1;
        SavedGlobal *one = &g_saved[i];
        one->t = g->t;
        one->defined = g->defined;
        one->t.data = (real *)malloc((size_t)n * sizeof(real));
        if (one->t.data) memcpy(one->t.data, g->t.data, (size_t)n * sizeof(real));
    }
}

/* Back to the saved values (a slot's buffer only grows, so it holds them). */
static void globals_restore(NomaCtx *c, const SavedGlobals *s) {
    for (int64_t i = 0; i < s->n && i < c->nglobals; i++) {
        NomaGlobal *g = c->globals[i];
        const SavedGlobal *one = &s->g[i];
        if (!g || !one->t.data) continue;
        int64_t n = noma__numel(&one->t);
        if (n < 1) n = 1;
        if (n > g->cap) continue;
        memcpy(g->t.data, one->t.data, (size_t)n * sizeof(real));
        g->t.rank = one->t.rank;
        memcpy(g->t.dims, one->t.dims, sizeof g->t.dims);
        g->defined = one->defined;
    }
}

struct NomaProbeVal {
    int64_t rank, dims[4], n;
    double *data; /* NULL: no value recorded at this index */
};


void noma__probe_free(NomaCtx *c) {
    globals_forget(&c->probe_globals);
    c->probe_pending = 0;
    for (int64_t i = 0; i < c->probe_n; i++) free(c->probe_vals[i].data);
    free(c->probe_vals);
    c->probe_vals = NULL;
    c->probe_n = c->probe_cap = 0;
}

/* 1 when the step queued resizes (the loop then probes before applying them). */
int32_t noma_probe_wanted(void) {
    NomaCtx *c = noma__cur();
    return c->dq_len > 0 && !c->probe_off;
}

void noma_probe_begin(int32_t pass) {
    NomaCtx *c = noma__cur();
    noma_rng_state_get(c, c->probe_rng);
    if (pass == 0) {
        noma__probe_free(c);
        c->probe_change = 0.0;
        globals_save(c, &c->probe_globals);
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
    globals_restore(c, &c->probe_globals);
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

/* ------------------------------------------------------------------------ */
/* Resizes outside a training loop (between cells, or a script's top level) */
/* ------------------------------------------------------------------------ */

/* Runs one pass of the registered replay (the last training loop's forward pass, compiled as
   `void replay(int32_t pass)`), as noma_probe_begin/end bracket the in-loop passes, but without
   applying resizes. A failure inside it (the forward pass no longer fits the parameters, say
   after resizing one of two connected layers) is caught here and only means "not measured":
   the error is cleared and nothing unwinds past this frame. Returns 1 when the pass completed. */
static int replay_pass(NomaCtx *c, int32_t pass) {
    jmp_buf jb;
    jmp_buf *prev = c->jb;
    int64_t depth = c->depth, fails = c->fail_count, mark = noma_arena_mark();
    volatile int ok = 0;
    noma_rng_state_get(c, c->probe_rng);
    c->jb = &jb;
    if (setjmp(jb) == 0) {
        c->probe_replay(pass);
        ok = 1;
    }
    c = noma__cur();
    c->jb = prev;
    c->depth = depth;
    noma_arena_release(mark);
    noma_rng_state_set(c, c->probe_rng);
    if (!ok) {
        c->fail_count = fails;
        noma_error_clear(c);
    }
    return ok;
}

/* Called just before a resize outside a training loop applies: when the last training loop
   can be replayed and no measurement is under way, pass 0 records its outputs. The resizes that
   follow, up to noma_probe_finish, are measured together. */
void noma__probe_before_resize(NomaCtx *c) {
    if (c->probe_pending || !c->probe_replay || c->probe_off || c->defer_on) return;
    noma__probe_free(c);
    c->probe_change = 0.0;
    globals_save(c, &c->probe_globals);
    int ok = replay_pass(c, 0);
    globals_restore(c, &c->probe_globals);
    if (!ok) {
        noma__probe_free(c);
        return;
    }
    c->probe_pending = 1;
    c->probe_ev_from = c->nevents;
}

/* Ends a measurement begun by noma__probe_before_resize: pass 1 runs on the same inputs (the
   globals as pass 0 saw them; the current ones are put back afterwards) and the resize events
   recorded since pass 0 get the largest change. Runs when the cell or program that resized
   ends (noma_invoke) and before a training loop starts (noma_probe_replay). */
void noma_probe_finish(void) {
    NomaCtx *c = noma__cur();
    if (!c->probe_pending) return;
    c->probe_pending = 0;
    NomaSavedGlobals now = {NULL, 0};
    globals_save(c, &now);
    globals_restore(c, &c->probe_globals);
    int ok = c->probe_replay && replay_pass(c, 1);
    globals_restore(c, &now);
    globals_forget(&now);
    if (ok)
        for (int64_t i = c->probe_ev_from; i < c->nevents; i++)
            if (c->events[i].kind == NOMA_EV_DIM_RESIZE || c->events[i].kind == NOMA_EV_PARAM_RESIZE)
                c->events[i].output_change = c->probe_change;
    noma__probe_free(c);
}

/* A training loop is starting: a measurement under way ends (with the previous loop's forward
   pass, before this loop trains), and `replay` becomes the forward pass resizes are measured
   against (NULL: this loop's body cannot run on its own, so later resizes are not measured). */
void noma_probe_replay(void (*replay)(int32_t pass)) {
    NomaCtx *c = noma__cur();
    noma_probe_finish();
    c->probe_replay = replay;
}

/* The session's view of the registration (undo puts an earlier one back). */
void *noma_probe_replay_get(NomaCtx *c) { return c ? (void *)c->probe_replay : NULL; }

void noma_probe_replay_put(NomaCtx *c, void *replay) {
    if (!c) return;
    noma__probe_free(c);
    c->probe_replay = (void (*)(int32_t))replay;
}

/* Measuring on (1, the default) or off (0): off, resizes record no output change and cost no
   extra forward passes (the benchmark's figure for a bare resize). */
void noma_probe_enable(NomaCtx *c, int32_t on) {
    if (c) c->probe_off = !on;
}
