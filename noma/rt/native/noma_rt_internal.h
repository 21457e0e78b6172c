/*
 * noma_rt_internal.h -- private declarations shared by the runtime's .c files
 * (noma_rt.c, noma_rt_params.c, noma_rt_linalg.c, noma_rt_io.c).
 * Not part of the ABI; generated code never includes it.
 */
#ifndef NOMA_RT_INTERNAL_H
#define NOMA_RT_INTERNAL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
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
typedef struct {
    real lr, beta1, beta2, eps, wd, momentum, alpha, dampening;
    int32_t nesterov;
} NomaHyper;

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
    real *pow1, *pow2;    /* per-entry beta1^t, beta2^t */
} NomaParam;

typedef struct {
    int32_t is_dim;
    int32_t policy;
    int64_t id;
    int64_t rank;
    int64_t dims[4];
    real a, b;
    int64_t span;
} NomaDeferred;

struct NomaCtx {
    /* errors */
    int32_t err_kind;
    int64_t err_span;
    char err_msg[NOMA_ERRMSG];
    jmp_buf *jb;          /* armed by noma_invoke; NULL outside */
    int64_t fail_count;   /* number of failures recorded (lets callers detect a non-jumping fail) */
    int64_t depth;
    /* arena */
    NomaChunk *chunks;
    int64_t nchunks, chunks_cap, cur_chunk;
    int64_t arena_cap;
    /* tape */
    NomaTapeEntry *tape;
    int64_t tape_len, tape_cap;
    /* output */
    int32_t capture;
    NomaBuf out, warn;
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
    /* deferred resizes */
    int32_t defer_on;
    NomaDeferred *dq;
    int64_t dq_len, dq_cap;
    /* training log and events */
    real *log;
    int64_t log_len, log_cap;
    void **log_retired; /* grown-out log buffers, kept so a concurrent reader never sees freed memory */
    int64_t log_nretired;
    int64_t step;
    NomaEvent *events;
    int64_t nevents, events_cap;
    /* executables */
    int64_t nspan_texts;
    const char **span_texts;
};

/* ---- shared helpers (defined in noma_rt.c) ---- */
NomaCtx *noma__cur(void);
/* Record an error and longjmp to noma_invoke when armed; returns when not armed. */
void noma__failf(int32_t kind, int64_t span, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
real *noma__alloc(NomaCtx *c, int64_t n); /* NULL after a (non-jumping) failure */
void *noma__xmalloc(size_t bytes);        /* 64-byte aligned heap block, NULL on failure */
void noma__xfree(void *p);
int64_t noma__numel(const NomaTensor *t); /* product of dims (1 for rank 0), -1 if invalid */
int noma__check_tensor(const NomaTensor *t, int64_t span, const char *what);
void noma__shape_str(char *buf, size_t cap, int64_t rank, const int64_t *dims);
void noma__event(NomaCtx *c, int32_t kind, int32_t policy, int64_t id, int64_t old_rank,
                 const int64_t *old_dims, int64_t new_rank, const int64_t *new_dims, int64_t aux);
double noma__rand_u53(NomaCtx *c);   /* uniform [0,1) with 53 random bits */
double noma__randn_d(NomaCtx *c);    /* standard normal (Marsaglia polar, cached spare) */
void noma__params_free_all(NomaCtx *c);
void noma__defer_clear(NomaCtx *c);

#endif /* NOMA_RT_INTERNAL_H */
