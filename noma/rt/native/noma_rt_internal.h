/*
 * noma_rt_internal.h -- private declarations shared by the runtime's .c files
 * (noma_rt.c, noma_rt_rng.c, noma_rt_params.c, noma_rt_adam.c, noma_rt_linalg.c,
 * noma_rt_io.c, noma_rt_probe.c, noma_rt_checkpoint.c, noma_rt_history.c).
 * Not part of the ABI; generated code never includes it.
 */
#ifndef NOMA_RT_INTERNAL_H
#define NOMA_RT_INTERNAL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#endif

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "noma_rt.h"

#define NOMA_MAX_SLOT ((int64_t)1 << 24)      /* largest global/param/dim slot id + 1 */
#define NOMA_MAX_DEPTH 10000                  /* noma_enter recursion limit */
#define NOMA_ERRMSG 2048

/* Growable byte buffer (output / warnings capture). Always NUL-terminated. */
typedef struct {
    char *data;
    int64_t len;
    int64_t cap;
} NomaBuf;

typedef struct {
    char *base;    /* 64-byte aligned */
    int64_t size;  /* bytes */
    int64_t used;  /* bytes */
    int64_t start; /* logical position of base (sum of sizes of earlier chunks) */
} NomaChunk;

typedef struct {
    int32_t is_tensor;
    real s;
    NomaTensor t;
} NomaTapeEntry;

typedef struct {
    int32_t defined;
    int64_t cap; /* elements allocated in t.data (>= 1) */
    NomaTensor t;
} NomaGlobal;

/* Optimizer hyper-parameters after defaults were applied. */
/* The bounded loss history (noma_rt_history.c). */
#define NOMA_HIST_LEVELS 64            /* levels of the summary (level l: buckets of 2^l losses) */
#define NOMA_HIST_K 128                /* buckets per level before its two oldest merge */
#define NOMA_HIST_WINDOW 65536         /* exact losses kept by default */
#define NOMA_HIST_MAX_WINDOW ((int64_t)1 << 26)
typedef struct NomaHistory NomaHistory;

/* A copy of the history for the checkpoint writer (arena). */
typedef struct {
    int64_t nlevels, nbuckets, nrecent;
    int64_t counts[NOMA_HIST_LEVELS]; /* buckets per level */
    real *summary;                    /* [nbuckets, 3]: min, max, mean, oldest first */
    real *recent;                     /* [nrecent]: the exact window, oldest first */
} NomaHistoryCopy;

typedef struct {
    real lr, beta1, beta2, eps, wd, momentum, alpha, dampening;
    int32_t nesterov;
} NomaHyper;

/* Memory accounting of one context: every heap block of the runtime (arena chunks, parameter
   values, optimizer state, globals) and the loss history are charged here, and an allocation that
   would take `used` past `limit` is refused before anything is allocated. Separate from the
   context so a block freed after its context (none should be) never touches freed memory. */
#define NOMA_DEFAULT_MEMORY_LIMIT ((int64_t)8 << 30) /* 8 GiB */

typedef struct NomaMem {
    int64_t used;    /* bytes charged */
    int64_t limit;   /* bytes allowed (NOMA_MEMORY_LIMIT, noma_set_memory_limit; default 8 GiB) */
    int64_t refused; /* bytes of the last refused request (0: the last failure was not the limit) */
} NomaMem;

typedef struct {
    int32_t defined;
    int32_t ever_defined;
    char *name;
    NomaTensor t;         /* t.data owned (64-byte aligned), >= 1 element */
    int64_t n;            /* element count (1 for rank 0) */
    int64_t bind[4];      /* dim id per axis or -1 */
    int32_t opt_kind;     /* NOMA_OPT_* of the state below */
    NomaHyper hyper;
    real *m;              /* Adam m / SGD momentum buffer / RMSprop momentum buffer */
    real *v;              /* Adam v / RMSprop square_avg */
    int64_t *steps;       /* per-entry step counts */
    real *pow1, *pow2;    /* per-entry beta1^t, beta2^t; meaningless (read as 1) where steps[i] == 0 */
    int64_t opt_span;     /* the optimize statement that last began training it (errors), or -1 */
} NomaParam;

typedef struct {
    int32_t is_dim;
    int32_t policy;
    int64_t id;
    int64_t rank;
    int64_t dims[4];
    real a, b;
    int64_t span;
    int64_t *keep;        /* a keep (realloc NAME keep idx): the indices (malloc'd), else NULL */
    int64_t nkeep;
    int32_t axis;         /* a single parameter's keep: the axis */
} NomaDeferred;

/* The indices a keep event kept (noma_event_kept). */
typedef struct {
    int64_t event;
    int64_t n;
    int64_t *idx;
} NomaKept;

/* Copies of the globals (noma_rt_probe.c). */
typedef struct {
    struct NomaSavedGlobal *g;
    int64_t n;
} NomaSavedGlobals;

struct NomaCtx {
    /* errors */
    int32_t err_kind;
    int64_t err_span;
    char err_msg[NOMA_ERRMSG];
    jmp_buf *jb;          /* armed by noma_invoke; NULL outside */
    int64_t fail_count;   /* number of failures recorded (lets callers detect a non-jumping fail) */
    int64_t depth;
    /* arena */
    NomaBump bump; /* the current chunk's free space (advanced inline by generated code) */
    NomaChunk *chunks;
    int64_t nchunks, chunks_cap, cur_chunk;
    NomaMem *mem;         /* the memory limit and what is charged against it */
    struct NomaStCache *st_cache; /* the safetensors header noma_st_load read last (noma_rt_io.c) */
    int32_t mem_env_bad;  /* NOMA_MEMORY_LIMIT was set but malformed (the default is used) */
    /* tape */
    NomaTapeEntry *tape;
    int64_t tape_len, tape_cap;
    int64_t train_span;   /* the optimize statement of the training loop last begun (noma_log_begin;
                             its tape's allocation failures are located there), or -1 */
    /* output */
    int32_t capture;
    NomaBuf out, warn;
    /* live output (noma_live_take): prints and warnings in program order, filled by the thread
       running native code and drained by another under live_lock; warnings framed "\0MSG\n" */
    int32_t live_on;
    volatile int32_t live_lock;
    NomaBuf live;
    /* the top-level variable a running training loop's loss is bound to (noma_opt_result_*):
       on an unwind it receives the last loss computed */
    int64_t result_slot;
    int32_t result_set;
    real result_value;
    int64_t *warned;      /* spans noma_warn_once has warned for */
    int64_t nwarned, warned_cap;
    /* rng */
    uint64_t rng[4];
    int32_t has_spare;
    double spare;
    /* globals */
    NomaGlobal **globals;
    int64_t nglobals;
    /* params */
    NomaParam **params;
    int64_t nparams;
    /* dims */
    int64_t *dims;        /* value per dim id; -1 undefined */
    int64_t ndims;
    char **dim_names;     /* name per dim id (NULL: none), for checkpoints */
    int64_t ndim_names;
    /* deferred resizes */
    int32_t defer_on;
    int32_t ctl_origin; /* 1 while the live controls' requests are applied (noma_rt_controls.c) */
    NomaDeferred *dq;
    int64_t dq_len, dq_cap;
    /* training history (noma_rt_history.c; allocated on first use, read by other threads) and events */
    _Atomic(NomaHistory *) hist;
    int64_t step;
    int64_t stop_at; /* a training loop stops (status 2) at the step boundary where step reaches it; -1 never */
    struct NomaMetrics *metrics; /* named metrics (noma_rt_metrics.c), allocated on first report */
    NomaEvent *events;
    int64_t nevents, events_cap;
    NomaKept *kept;       /* per keep event, its indices */
    int64_t nkept, kept_cap;
    /* output change of resizes (noma_rt_probe.c) */
    uint64_t probe_rng[6];
    int64_t probe_ev_from;
    struct NomaProbeVal *probe_vals;
    int64_t probe_n, probe_cap;
    NomaSavedGlobals probe_globals; /* the step's inputs: the globals when pass 0 began */
    double probe_change;
    void (*probe_replay)(int32_t pass); /* forward pass of the last training loop run, or NULL */
    int32_t probe_pending; /* a resize outside a loop was preceded by pass 0; pass 1 is due */
    int32_t probe_off;     /* measuring switched off (noma_probe_enable) */
    /* executables */
    int64_t nspan_texts;
    const char **span_texts;
    int64_t nspan_parents;
    const int64_t *span_parents; /* per span id: the call its code was inlined at, or -1 */
    /* calls (noma_enter / noma_leave): the span of each active call, outermost first, and that
       stack as it was when the last error was recorded (its notes: `called from here`) */
    int64_t err_ncalls;
    int64_t calls[NOMA_MAX_DEPTH];
    int64_t err_calls[NOMA_MAX_DEPTH];
};

/* noma_rt_params.c: the optimizers' names (checkpoints store them), indexed by NOMA_OPT_* kind;
   kinds 1 .. NOMA__OPT_KINDS - 1 are optimizers, 0 is none. */
extern const char *const noma__opt_names[];
extern const int32_t noma__opt_kinds;

/* noma_rt_probe.c */
void noma__probe_free(NomaCtx *c);

/* noma_rt_controls.c */
void noma__ctl_step(NomaCtx *c);
void noma__ctl_loop_end(void);
double noma__ctl_lr_override(NomaCtx *c);

/* noma_rt_metrics.c */
#define NOMA_METRICS_MAX 32
#define NOMA_METRIC_WINDOW 4096
#define NOMA_METRIC_NAME 64
struct NomaMetrics;
void noma__metrics_free(NomaCtx *c);
int32_t noma__metrics_alloc(NomaCtx *c); /* 1 when the metrics table exists (allocated now if needed) */

/* noma_rt_history.c */
void noma__history_free(NomaCtx *c);
int32_t noma__history_alloc(NomaCtx *c); /* 1 when the history exists (allocated now if needed) */
int64_t noma__history_total(int64_t nlevels, const int64_t *counts); /* -1: not a valid summary */
int32_t noma__history_put(NomaCtx *c, int64_t step, int64_t nlevels, const int64_t *counts,
                          const double *bmin, const double *bmax, const double *bsum,
                          int64_t nrecent, const real *recent); /* 0: invalid or out of memory */
void noma__history_replay(NomaCtx *c, int64_t step, int64_t n, const real *losses); /* old logs */
int32_t noma__history_export(NomaCtx *c, NomaHistoryCopy *out);
void noma__defer_clear_keeps(NomaCtx *c); /* frees the queued keeps' indices */
void noma__event_kept(NomaCtx *c, const int64_t *idx, int64_t n); /* the last event's kept units */
void noma__probe_before_resize(NomaCtx *c); /* a resize outside a training loop is about to apply */

/* ---- shared helpers (defined in noma_rt.c) ---- */
NomaCtx *noma__cur(void);
NomaCtx *noma__ctx_or_cur(NomaCtx *c); /* c, or the current context when NULL */
/* Record an error and longjmp to noma_invoke when armed; returns when not armed. */
void noma__failf(int32_t kind, int64_t span, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
real *noma__alloc(NomaCtx *c, int64_t n); /* NULL after a (non-jumping) failure */
real *noma__alloc_at(NomaCtx *c, int64_t n, int64_t span); /* errors located at span */
/* Heap blocks are charged to the current context's NomaMem: NULL (with mem->refused set) when
   the block would pass the memory limit, before anything is allocated. */
void *noma__xmalloc(size_t bytes);        /* 64-byte aligned heap block, NULL on failure */
/* Whether `bytes` more fit under the current context's limit (sets mem->refused when not). */
int noma__mem_admit(NomaCtx *c, uint64_t bytes);
/* Charges bytes the runtime allocates itself (the loss log); the caller admitted them. */
void noma__mem_charge(NomaCtx *c, int64_t bytes);
/* Fails (kind runtime, at span) for a refused or failed allocation of `bytes` for `what`: over the
   memory limit (naming it and how to change it) or out of memory. */
void noma__fail_alloc(NomaCtx *c, int64_t span, uint64_t bytes, const char *what);
void *noma__xcalloc(size_t bytes);        /* zeroed 64-byte aligned heap block (big ones: lazy zero pages) */
void noma__xfree(void *p);
void noma__xprefault(void *p, size_t bytes); /* map a block's pages about to be written (hint) */
/* One Adam/AdamW step over n entries with per-entry step counts t and powers pow1/pow2 (entries
   at step 0 read as powers 1); decay = 1 - lr*wd for AdamW (then wd = 0). noma_rt_adam.c. */
void noma__adam_update(int64_t n, real *restrict p, const real *restrict g, real *restrict m,
                       real *restrict v, real *restrict pow1, real *restrict pow2,
                       int64_t *restrict t, real lr, real b1, real b2, real eps, real wd,
                       real decay);
/* One parameter's buffers for noma__adam_update_many (the parameters of one optimizer step,
   updated one after the other with shared set-up). */
typedef struct {
    int64_t n;
    real *p;
    const real *g;
    real *m, *v, *pow1, *pow2;
    int64_t *t;
} NomaAdamParam;
void noma__adam_update_many(int64_t count, const NomaAdamParam *ps, real lr, real b1, real b2,
                            real eps, real wd, real decay);
int64_t noma__numel(const NomaTensor *t); /* product of dims (1 for rank 0), -1 if invalid */
int noma__check_tensor(const NomaTensor *t, int64_t span, const char *what);
void noma__shape_str(char *buf, size_t cap, int64_t rank, const int64_t *dims);
void noma__event(NomaCtx *c, int32_t kind, int32_t policy, int64_t id, int64_t old_rank,
                 const int64_t *old_dims, int64_t new_rank, const int64_t *new_dims, int64_t aux);
/* ---- the generator (noma_rt_rng.c) ---- */
void noma__rng_seed(NomaCtx *c, double s); /* also drops the spare */
double noma__rand_u53(NomaCtx *c);   /* uniform [0,1) with 53 random bits */
double noma__randn_d(NomaCtx *c);    /* standard normal (Marsaglia polar, cached spare) */
void noma__randn_fill(NomaCtx *c, double *out, int64_t n); /* n draws of noma__randn_d, batched */
void noma__randn_affine(NomaCtx *c, real *out, int64_t n, double mean, double std); /* mean + std z */

/* ---- parameters (noma_rt_params.c) ---- */
void noma__params_free_all(NomaCtx *c);
void noma__defer_clear(NomaCtx *c);
void noma__param_set(NomaCtx *c, int64_t slot, const char *name, const NomaTensor *v, int64_t span,
                     int record); /* record: a re-initialisation is an event */
void noma__dim_names_free(NomaCtx *c); /* noma_rt_checkpoint.c */
void noma__st_cache_free(NomaCtx *c);  /* noma_rt_io.c */

/* ---- safetensors files (defined in noma_rt_io.c; used by noma_rt_checkpoint.c) ---- */
typedef struct {
    char *name;           /* owned */
    char dtype[16];
    int64_t rank;         /* may exceed 4 (shape then holds the first 4 sizes) */
    int64_t shape[4];
    uint64_t begin, end;  /* byte offsets in the data region */
} NomaStEntry;

typedef struct {
    char *path;           /* owned copy */
    uint64_t data_start;  /* 8 + header length */
    uint64_t data_len;
    NomaStEntry *entries; /* in file order */
    int64_t n;
    int64_t *by_name;     /* entry indices sorted by name (names are unique) */
    char **meta;          /* __metadata__ as key, value, key, value, ... (owned) */
    int64_t nmeta;
} NomaStFile;

/* A tensor to write: real (F64/F32 by build) or int64 (I64) data, rank 0..4. */
typedef struct {
    const char *name;
    int64_t rank;
    int64_t dims[4];
    const void *data;
    int is_i64;
} NomaStOut;

/* These never fail through noma__failf: they return 0 with an io message (starting with the
   path) in msg, having released everything, so callers can clean up before failing. */
int noma__st_open(const char *path, NomaStFile *sf, char *msg, size_t cap); /* header validated */
void noma__st_close(NomaStFile *sf);
const NomaStEntry *noma__st_find(const NomaStFile *sf, const char *name); /* NULL if absent */
const char *noma__st_meta(const NomaStFile *sf, const char *key);         /* NULL if absent */
int noma__st_dtype_size(const char *dtype); /* bytes per element; 0 unknown or unsupported */
int64_t noma__st_numel(const NomaStEntry *e); /* -1 for unsupported dtypes */
/* Reads an entry converted to real (as_i64 = 0) or int64 (as_i64 = 1); 1 ok, 0 read error. */
int noma__st_read(const char *path, uint64_t data_start, const NomaStEntry *e, void *dst,
                  int as_i64);
/* Writes tensors (sorted by name when `sorted`, else in the given order; duplicates rejected)
   and nmeta key/value string pairs as __metadata__, to PATH.tmp then renamed over PATH. */
int noma__st_write(const char *path, int64_t n, const NomaStOut *ts, int64_t nmeta,
                   const char *const *meta, int sorted, char *msg, size_t cap);

#endif /* NOMA_RT_INTERNAL_H */
