/*
 * noma_rt.c -- NOMA native runtime, core part.
 *
 * The runtime is split into several C files compiled together (see
 * noma/rt/native_lib.py: c_sources()):
 *   noma_rt.c         context, errors/invoke, arena, tape, broadcasting, printing,
 *                     globals, events, interrupt, executables,
 *                     test hooks
 *   noma_rt_history.c the loss history in bounded memory (exact window + summary)
 *   noma_rt_rng.c     the seeded generator: uniform and normal draws, fills
 *   noma_rt_params.c  parameter store, dims, resize policies, deferred resizes,
 *                     optimizers
 *   noma_rt_linalg.c  matmul (registered BLAS gemm or a blocked loop)
 *   noma_rt_io.c      CSV and safetensors files
 *
 * Conventions
 *  - Every function that acts on "the current context" uses the process-global
 *    pointer set by noma_ctx_activate / noma_invoke (a default context is created
 *    lazily if none was ever activated, so nothing crashes on a NULL context).
 *  - Failures go through noma__failf: it records kind/span/message in the context
 *    and longjmps to the noma_invoke frame when one is armed. When no jmp_buf is
 *    armed (a direct call from Python via ctypes) it RETURNS, so every fail path
 *    below is followed by a safe return (zeroed output, NULL, 0).
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Small utilities                                                          */
/* ======================================================================== */

static NomaCtx *g_cur = NULL;     /* the current context */
static NomaCtx *g_default = NULL; /* created lazily when nothing was activated */

/* Heap blocks of the runtime (parameter buffers, optimizer state, globals, arena chunks): 64-byte
   aligned, with a 64-byte header in front. Blocks of BIG_BLOCK bytes and more are mapped pages of
   their own (always zero, touched lazily, returned to the system when freed), so a zeroed large
   buffer costs only the entries written into it -- a resize that grows a layer 16 -> 1024 writes
   the old entries and the new random ones, not the megabytes of zeros around them. Smaller blocks
   come from malloc. Always free with noma__xfree. */
#define BLOCK_HEADER 64u
#define BIG_BLOCK ((size_t)256 * 1024)

typedef struct {
    void *base;    /* what malloc returned, or the mapping's start */
    size_t mapped; /* length of the mapping, 0 for a malloc block */
    NomaMem *mem;  /* the accounting it is charged to */
    size_t charged;
} BlockHeader;

int noma__mem_admit(NomaCtx *c, uint64_t bytes) {
    NomaMem *m = c->mem;
    int64_t room = m->limit > m->used ? m->limit - m->used : 0;
    if (bytes > (uint64_t)room) {
        m->refused = bytes > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)bytes;
        return 0;
    }
    return 1;
}

void noma__mem_charge(NomaCtx *c, int64_t bytes) { c->mem->used += bytes; }

static void *block_alloc(size_t bytes, int zero) {
    NomaCtx *c = noma__cur();
    if (bytes == 0) bytes = 1;
    size_t rounded = (bytes + 63u) & ~(size_t)63u;
    if (rounded < bytes || rounded > SIZE_MAX - 2 * BLOCK_HEADER - 4096) {
        c->mem->refused = INT64_MAX;
        return NULL;
    }
    size_t page = 4096;
    size_t charge = rounded >= BIG_BLOCK ? (rounded + BLOCK_HEADER + page - 1) & ~(page - 1)
                                         : rounded + BLOCK_HEADER;
    if (!noma__mem_admit(c, charge)) return NULL; /* over the limit: nothing allocated */
    c->mem->refused = 0;
    char *base;
    size_t mapped = 0;
    if (rounded >= BIG_BLOCK) {
        mapped = charge;
        base = (char *)mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == (char *)MAP_FAILED) return NULL;
    } else {
        base = (char *)aligned_alloc(64, rounded + BLOCK_HEADER);
        if (!base) return NULL;
        if (zero) memset(base + BLOCK_HEADER, 0, rounded);
    }
    BlockHeader *h = (BlockHeader *)base;
    h->base = base;
    h->mapped = mapped;
    h->mem = c->mem;
    h->charged = charge;
    c->mem->used += (int64_t)charge;
    return base + BLOCK_HEADER;
}

/* "8 GiB"-style rendering of a byte count for messages (exact bytes are given too). */
static void fmt_bytes(char *buf, size_t cap, uint64_t b) {
    const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double x = (double)b;
    int u = 0;
    while (x >= 1024 && u < 6) x /= 1024, u++;
    if (u == 0) snprintf(buf, cap, "%llu bytes", (unsigned long long)b);
    else if (x >= 999.5) snprintf(buf, cap, "%.0f %s", x, units[u]); /* 1020 KiB, not 1.02e+03 */
    else snprintf(buf, cap, "%.3g %s", x, units[u]);
}

static void failf_on(NomaCtx *c, int32_t kind, int64_t span, const char *fmt, ...);

/* Records on c (the context whose memory refused, not necessarily the current one). */
void noma__fail_alloc(NomaCtx *c, int64_t span, uint64_t bytes, const char *what) {
    char need[32], lim[32], used[32];
    fmt_bytes(need, sizeof need, bytes);
    if (c->mem->refused) {
        c->mem->refused = 0;
        fmt_bytes(lim, sizeof lim, (uint64_t)c->mem->limit);
        fmt_bytes(used, sizeof used, (uint64_t)(c->mem->used > 0 ? c->mem->used : 0));
        failf_on(c, NOMA_ERR_RUNTIME, span,
                 "cannot allocate %s for %s: over the memory limit of %s (%s in use; set "
                 "NOMA_MEMORY_LIMIT to change it)",
                 need, what, lim, used);
    } else {
        failf_on(c, NOMA_ERR_RUNTIME, span, "cannot allocate %s for %s (out of memory)", need, what);
    }
}

/* The limit NOMA_MEMORY_LIMIT asks for: a whole number of bytes with an optional K, M, G or T
   suffix (powers of 1024, optionally followed by B or iB). -1 when unset, -2 when malformed. */
int64_t noma_parse_memory_limit(const char *text) {
    if (!text) return -1;
    const char *p = text;
    while (*p == ' ') p++;
    if (*p < '0' || *p > '9') return -2;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (uint64_t)INT64_MAX / 10) return -2;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    int shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    default: break;
    }
    if (shift && (*p == 'i' || *p == 'I') && (p[1] == 'b' || p[1] == 'B')) p += 2;
    else if (*p == 'b' || *p == 'B') p++;
    while (*p == ' ') p++;
    if (*p) return -2;
    if (shift && v > ((uint64_t)INT64_MAX >> shift)) return -2;
    return (int64_t)(v << shift);
}

void noma_set_memory_limit(NomaCtx *c, int64_t bytes) {
    c = c ? c : noma__cur();
    c->mem->limit = bytes > 0 ? bytes : 0;
}

int64_t noma_memory_limit(NomaCtx *c) { return (c ? c : noma__cur())->mem->limit; }
int64_t noma_memory_used(NomaCtx *c) { return (c ? c : noma__cur())->mem->used; }

void *noma__xmalloc(size_t bytes) { return block_alloc(bytes, 0); }

void *noma__xcalloc(size_t bytes) { return block_alloc(bytes, 1); }

void noma__xfree(void *p) {
    if (!p) return;
    BlockHeader *h = (BlockHeader *)((char *)p - BLOCK_HEADER);
    if (h->mem) h->mem->used -= (int64_t)h->charged;
    if (h->mapped) munmap(h->base, h->mapped);
    else free(h->base);
}

/* Maps the pages of [p, p + bytes) of a block from noma__xcalloc now, in one system call, for a
   range about to be written densely: a page fault per page costs about twice as much (0.9 vs
   0.43 us per page measured on the dev VM). A hint: nothing happens for malloc blocks, on kernels
   without MADV_POPULATE_WRITE (Linux < 5.14) or on failure. */
void noma__xprefault(void *p, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
    if (!p || bytes == 0) return;
    BlockHeader *h = (BlockHeader *)((char *)p - BLOCK_HEADER);
    if (!h->mapped) return;
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)4095;
    (void)madvise((void *)start, (uintptr_t)p + bytes - start, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)bytes;
#endif
}

int64_t noma__numel(const NomaTensor *t) {
    if (!t || t->rank < 0 || t->rank > 4) return -1;
    int64_t n = 1;
    for (int64_t i = 0; i < t->rank; i++) {
        int64_t d = t->dims[i];
        if (d < 0) return -1;
        if (d != 0 && n > INT64_MAX / d) return -1;
        n *= d;
    }
    return n;
}

void noma__shape_str(char *buf, size_t cap, int64_t rank, const int64_t *dims) {
    size_t len = 0;
    if (cap == 0) return;
    buf[0] = 0;
    len += (size_t)snprintf(buf + len, cap - len, "[");
    for (int64_t i = 0; i < rank && i < 4 && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

int noma__check_tensor(const NomaTensor *t, int64_t span, const char *what) {
    if (!t) {
        noma__failf(NOMA_ERR_RUNTIME, span, "%s: missing tensor", what);
        return 0;
    }
    int64_t n = noma__numel(t);
    int huge_axis = 0; /* an axis past 2^40 (possible with another axis 0): nothing can hold it */
    for (int64_t i = 0; n >= 0 && i < t->rank; i++) huge_axis |= t->dims[i] > ((int64_t)1 << 40);
    if (n < 0 || huge_axis) {
        noma__failf(NOMA_ERR_RUNTIME, span, "%s: invalid tensor descriptor (rank %lld)", what,
                    (long long)t->rank);
        return 0;
    }
    if (n > 0 && !t->data) {
        noma__failf(NOMA_ERR_RUNTIME, span, "%s: tensor has no data", what);
        return 0;
    }
    return 1;
}

static void buf_append(NomaBuf *b, const char *s, int64_t n) {
    if (n <= 0) return;
    if (b->len + n + 1 > b->cap) {
        int64_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) nc *= 2;
        char *p = (char *)realloc(b->data, (size_t)nc);
        if (!p) return; /* out of memory: drop output rather than crash */
        b->data = p;
        b->cap = nc;
    }
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    b->data[b->len] = 0;
}

/* ======================================================================== */
/* Context                                                                  */
/* ======================================================================== */

NomaCtx *noma_ctx_new(void) {
    NomaCtx *c = (NomaCtx *)calloc(1, sizeof(NomaCtx));
    if (!c) return NULL;
    c->err_kind = NOMA_ERR_NONE;
    c->err_span = -1;
    c->cur_chunk = -1;
    c->result_slot = -1;
    c->stop_at = -1;
    c->train_span = -1;
    c->mem = (NomaMem *)calloc(1, sizeof(NomaMem));
    if (!c->mem) {
        free(c);
        return NULL;
    }
    int64_t lim = noma_parse_memory_limit(getenv("NOMA_MEMORY_LIMIT"));
    c->mem->limit = lim >= 0 ? lim : NOMA_DEFAULT_MEMORY_LIMIT;
    if (lim == -2) c->mem_env_bad = 1; /* reported by noma_exe_main; a session checks it itself */
    noma__rng_seed(c, 0.0);
    return c;
}

static void arena_free_all(NomaCtx *c) {
    for (int64_t i = 0; i < c->nchunks; i++) noma__xfree(c->chunks[i].base);
    free(c->chunks);
    c->chunks = NULL;
    c->nchunks = c->chunks_cap = 0;
    c->cur_chunk = -1;
    c->bump.ptr = c->bump.end = NULL;
}

void noma_ctx_free(NomaCtx *c) {
    if (!c) return;
    arena_free_all(c);
    free(c->tape);
    free(c->out.data);
    free(c->warn.data);
    free(c->live.data);
    for (int64_t i = 0; i < c->nglobals; i++) {
        if (c->globals[i]) {
            noma__xfree(c->globals[i]->t.data);
            free(c->globals[i]);
        }
    }
    free(c->globals);
    noma__params_free_all(c);
    free(c->dims);
    noma__dim_names_free(c);
    free(c->dq);
    noma__history_free(c);
    noma__metrics_free(c);
    free(c->events);
    for (int64_t i = 0; i < c->nkept; i++) free(c->kept[i].idx);
    free(c->kept);
    free(c->warned);
    noma__st_cache_free(c);
    noma__probe_free(c);
    /* every block is freed now; a block that outlived its context would still point at c->mem */
    if (c->mem->used == 0) free(c->mem);
    if (g_cur == c) g_cur = NULL;
    if (g_default == c) g_default = NULL;
    free(c);
}

void noma_ctx_activate(NomaCtx *c) { g_cur = c; }

NomaCtx *noma__cur(void) {
    if (g_cur) return g_cur;
    if (!g_default) g_default = noma_ctx_new();
    if (!g_default) abort(); /* cannot even allocate a context */
    g_cur = g_default;
    return g_cur;
}

NomaCtx *noma_ctx_current(void) { return noma__cur(); }

static NomaCtx *ctx_or_cur(NomaCtx *c) { return c ? c : noma__cur(); }
NomaCtx *noma__ctx_or_cur(NomaCtx *c) { return ctx_or_cur(c); }

/* ======================================================================== */
/* Errors and invoke                                                        */
/* ======================================================================== */

static void fail_jump(NomaCtx *c, int value) {
    if (c->jb) longjmp(*c->jb, value);
}

/* Records an error on c and unwinds c's run when one is armed. */
static void vfail(NomaCtx *c, int32_t kind, int64_t span, const char *fmt, va_list ap) {
    char tmp[NOMA_ERRMSG];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    c->err_kind = kind;
    c->err_span = span;
    c->fail_count++;
    memcpy(c->err_msg, tmp, sizeof tmp);
    /* the calls that led here, for the error's notes (later calls overwrite c->calls) */
    int64_t n = c->depth < 0 ? 0 : c->depth > NOMA_MAX_DEPTH ? NOMA_MAX_DEPTH : c->depth;
    memcpy(c->err_calls, c->calls, (size_t)n * sizeof *c->calls);
    c->err_ncalls = n;
    fail_jump(c, 1);
}

void noma__failf(int32_t kind, int64_t span, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(noma__cur(), kind, span, fmt, ap);
    va_end(ap);
}

/* noma__failf on a given context (which need not be the current one). */
static void failf_on(NomaCtx *c, int32_t kind, int64_t span, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(c, kind, span, fmt, ap);
    va_end(ap);
}

void noma_fail(int32_t kind, int64_t span, const char *msg) {
    if (kind < NOMA_ERR_SYNTAX || kind > NOMA_ERR_IO) kind = NOMA_ERR_RUNTIME;
    noma__failf(kind, span, "%s", msg ? msg : "error");
}

void noma_fail_shape(int64_t span, const char *op, const NomaTensor *a, const NomaTensor *b) {
    char sa[128], sb[128];
    int64_t zero[4] = {0, 0, 0, 0};
    noma__shape_str(sa, sizeof sa, a && a->rank >= 0 && a->rank <= 4 ? a->rank : 0,
                    a ? a->dims : zero);
    noma__shape_str(sb, sizeof sb, b && b->rank >= 0 && b->rank <= 4 ? b->rank : 0,
                    b ? b->dims : zero);
    noma__failf(NOMA_ERR_SHAPE, span, "%s: shapes %s and %s do not match", op ? op : "op", sa, sb);
}

void noma_fail_index(int64_t span, int64_t index, int64_t size) {
    noma__failf(NOMA_ERR_RUNTIME, span, "index %lld is out of range for an axis of size %lld",
                (long long)index, (long long)size);
}

static int fmt_real(char *buf, size_t cap, double x);

/* A CHECK op's failure: "MESSAGE (got X)" (a runtime error). */
void noma_fail_check(const char *msg, real x, int64_t span) {
    char v[64];
    fmt_real(v, sizeof v, (double)x);
    noma__failf(NOMA_ERR_RUNTIME, span, "%s (got %s)", msg ? msg : "check failed", v);
}

/* `x as i32|i64`: every element must be a number whose truncation toward zero lies in the type's
   range; the first that is not fails (a runtime error naming it). */
void noma_check_int_cast(const NomaTensor *x, int32_t bits, int64_t span) {
    if (!x) return;
    const double lo = bits == 32 ? -2147483648.0 : -9223372036854775808.0;
    const double hi = bits == 32 ? 2147483648.0 : 9223372036854775808.0;
    int64_t n = x->rank == 0 ? 1 : noma__numel(x);
    for (int64_t i = 0; i < n; i++) {
        double t = trunc((double)x->data[i]);
        if (t >= lo && t < hi) continue;
        char v[64];
        fmt_real(v, sizeof v, (double)x->data[i]);
        noma__failf(NOMA_ERR_RUNTIME, span, "cannot convert %s to i%d%s", v, (int)bits,
                    isnan(t) ? "" : ": out of range");
        return;
    }
}

int32_t noma_error_kind(NomaCtx *c) { return ctx_or_cur(c)->err_kind; }

int64_t noma_error_calls(NomaCtx *c, int64_t *out, int64_t cap) {
    c = ctx_or_cur(c);
    for (int64_t i = 0; out && i < cap && i < c->err_ncalls; i++) out[i] = c->err_calls[c->err_ncalls - 1 - i];
    return c->err_ncalls;
}
int64_t noma_error_span(NomaCtx *c) { return ctx_or_cur(c)->err_span; }
const char *noma_error_message(NomaCtx *c) { return ctx_or_cur(c)->err_msg; }

void noma_error_clear(NomaCtx *c) {
    c = ctx_or_cur(c);
    c->err_kind = NOMA_ERR_NONE;
    c->err_span = -1;
    c->err_msg[0] = 0;
    c->err_ncalls = 0;
}

/* Frame state saved across setjmp lives in a heap struct reached through a
   pointer that is not modified after setjmp, so nothing is clobbered. */
typedef struct {
    jmp_buf jb;
    jmp_buf *prev;
    int64_t depth;
    NomaCtx *ctx;
} InvokeFrame;

static int32_t invoke_frame(InvokeFrame *fr, void (*fn)(void)) {
    int r = setjmp(fr->jb);
    if (r == 0) {
        fn();
        noma_probe_finish(); /* the output change of resizes the cell made outside loops */
        fr->ctx->jb = fr->prev;
        return 0;
    }
    /* a failure longjmp'd here */
    NomaCtx *c = fr->ctx;
    g_cur = c;
    c->jb = fr->prev;
    c->depth = fr->depth;
    if (c->result_slot >= 0 && c->result_set) noma_global_store_s(c->result_slot, c->result_value);
    c->result_slot = -1;
    noma__defer_clear(c);
    noma__probe_free(c);
    return r == 2 ? 2 : 1;
}

int32_t noma_invoke(NomaCtx *c, void (*fn)(void)) {
    if (!c) c = noma__cur();
    g_cur = c;
    noma_error_clear(c);
    if (!fn) return 0;
    InvokeFrame *fr = (InvokeFrame *)malloc(sizeof(InvokeFrame));
    if (!fr) {
        c->err_kind = NOMA_ERR_RUNTIME;
        snprintf(c->err_msg, sizeof c->err_msg, "out of memory");
        return 1;
    }
    fr->prev = c->jb;
    fr->depth = c->depth;
    fr->ctx = c;
    c->jb = &fr->jb;
    int32_t r = invoke_frame(fr, fn);
    if (!fr->prev) noma__st_cache_free(c); /* a cell's safetensors headers are not kept past it */
    free(fr);
    return r;
}

/* noma_invoke with the SIGINT handler installed around the call and the interrupt flag cleared
   after it (a request the code never polled ends with the call): one call from Python per cell. */
int32_t noma_invoke_cell(NomaCtx *c, void (*fn)(void)) {
    noma_sigint_install();
    int32_t r = noma_invoke(c, fn);
    noma_sigint_restore();
    noma_clear_interrupt();
    return r;
}

/* One store besides the depth count: the call's span, for the notes of an error inside it. */
void noma_enter(int64_t span) {
    NomaCtx *c = noma__cur();
    if (c->depth >= NOMA_MAX_DEPTH)
        noma__failf(NOMA_ERR_RUNTIME, span, "recursion deeper than %d calls", NOMA_MAX_DEPTH);
    c->calls[c->depth++] = span;
}

void noma_leave(void) {
    NomaCtx *c = noma__cur();
    if (c->depth > 0) c->depth--;
}

void noma_set_span_texts(int64_t n, const char **texts) {
    NomaCtx *c = noma__cur();
    c->nspan_texts = texts ? n : 0;
    c->span_texts = texts;
}

void noma_set_span_parents(int64_t n, const int64_t *parents) {
    NomaCtx *c = noma__cur();
    c->nspan_parents = parents ? n : 0;
    c->span_parents = parents;
}

/* ---- the notes of an executable's error: noma.diagnostics.call_sites / call_notes, in C ---- */
#define NOMA_CALL_NOTES_INNER 8 /* noma.diagnostics.CALL_NOTES_INNER */

static const char *span_text(const NomaCtx *c, int64_t s) {
    return s >= 0 && s < c->nspan_texts ? c->span_texts[s] : NULL;
}

static void put_text(const char *t) {
    size_t L = strlen(t);
    fputs(t, stderr);
    if (L == 0 || t[L - 1] != '\n') fputc('\n', stderr);
}

/* Call site k of `total` (count only when total < 0): the innermost NOMA_CALL_NOTES_INNER and the
   outermost are printed, one "... N more calls" note stands for those between. */
static int64_t call_note(const NomaCtx *c, int64_t s, int64_t k, int64_t total) {
    if (total < 0) return k + 1;
    if (k < NOMA_CALL_NOTES_INNER || k == total - 1 || total <= NOMA_CALL_NOTES_INNER + 1) {
        fputs("note: called from here\n", stderr);
        put_text(span_text(c, s));
    } else if (k == NOMA_CALL_NOTES_INNER) {
        int64_t hidden = total - NOMA_CALL_NOTES_INNER - 1;
        fprintf(stderr, "note: ... %lld more call%s\n", (long long)hidden, hidden == 1 ? "" : "s");
    }
    return k + 1;
}

/* The calls span s's code was inlined at (span_parents), innermost first. */
static int64_t inlined_notes(const NomaCtx *c, int64_t s, int64_t k, int64_t total) {
    for (int64_t hops = 0; hops < c->nspan_parents && s >= 0 && s < c->nspan_parents; hops++) {
        s = c->span_parents[s];
        if (!span_text(c, s)) break;
        k = call_note(c, s, k, total);
    }
    return k;
}

/* The error's call sites (counted when total < 0, else printed); returns their number. */
static int64_t call_notes(const NomaCtx *c, int64_t total) {
    int64_t k = inlined_notes(c, c->err_span, 0, total);
    for (int64_t i = c->err_ncalls - 1; i >= 0; i--) {
        int64_t s = c->err_calls[i];
        if (!span_text(c, s)) continue; /* a call with no location (the implicit call of main) */
        k = call_note(c, s, k, total);
        k = inlined_notes(c, s, k, total);
    }
    return k;
}

static const char *kind_name(int32_t k) {
    static const char *names[] = {"syntax", "name", "type", "shape", "runtime", "io"};
    return (k >= 0 && k <= 5) ? names[k] : "runtime";
}

/* Entry point for executables: `int main(void){ return noma_exe_main(program); }`.
   Returns the process exit status: 0 ok, 1 error (printed as "error[KIND]: MSG\n"
   followed by the pre-rendered span text), 130 interrupted. */
int32_t noma_exe_main(void (*fn)(void)) {
    /* span texts may have been set on the default context before main ran */
    NomaCtx *prev = g_cur;
    NomaCtx *c = noma_ctx_new();
    if (!c) {
        fputs("error[runtime]: out of memory\n", stderr);
        return 1;
    }
    if (prev) {
        c->nspan_texts = prev->nspan_texts;
        c->span_texts = prev->span_texts;
        c->nspan_parents = prev->nspan_parents;
        c->span_parents = prev->span_parents;
    }
    if (c->mem_env_bad)
        fprintf(stderr, "warning: NOMA_MEMORY_LIMIT='%s' is not a size (a number of bytes, optionally "
                        "with K, M, G or T); using the default limit of 8 GiB\n",
                getenv("NOMA_MEMORY_LIMIT"));
    noma_sigint_install();
    int32_t r = noma_invoke(c, fn);
    fflush(stdout);
    int32_t code = 0;
    if (r == 1) {
        fprintf(stderr, "error[%s]: %s\n", kind_name(c->err_kind), c->err_msg);
        if (span_text(c, c->err_span)) put_text(span_text(c, c->err_span));
        if (c->span_texts) call_notes(c, call_notes(c, -1));
        code = 1;
    } else if (r == 2) {
        /* as `noma run` reports it; the step counts completed training steps */
        fprintf(stderr, "error[runtime]: interrupted at step %lld\n", (long long)c->step);
        code = 130;
    }
    fflush(stderr);
    noma_sigint_restore();
    noma_ctx_free(c);
    g_cur = prev;
    return code;
}

/* ======================================================================== */
/* Arena: chunked bump allocator                                             */
/*                                                                          */
/* Chunks are 64-byte aligned heap blocks; each has a logical start position */
/* (sum of the sizes of the chunks before it), so a mark is one int64: the   */
/* logical position of the bump pointer. Live data never moves. Chunks after */
/* the current one are kept for reuse (freed when too small for a request).  */
/* The cap bounds the bytes reserved up to and including the current chunk.  */
/* ======================================================================== */

#define ARENA_MIN_CHUNK ((int64_t)1 << 20)  /* 1 MiB */
#define ARENA_MAX_GROW ((int64_t)1 << 28)   /* 256 MiB */

/* The current chunk's bump position lives in c->bump, which generated code advances inline
 * (noma_arena_bump); the chunk's `used` is brought up to date from it (bump_in) before the
 * arena code reads it, and c->bump is set from the chunk (bump_out) after the arena code
 * changed the current chunk or its position. */
static void bump_in(NomaCtx *c) {
    if (c->cur_chunk >= 0) c->chunks[c->cur_chunk].used = c->bump.ptr - c->chunks[c->cur_chunk].base;
}

static void bump_out(NomaCtx *c) {
    if (c->cur_chunk < 0) {
        c->bump.ptr = c->bump.end = NULL;
        return;
    }
    NomaChunk *ch = &c->chunks[c->cur_chunk];
    c->bump.ptr = ch->base + ch->used;
    c->bump.end = ch->base + ch->size;
}

NomaBump *noma_arena_bump(void) { return &noma__cur()->bump; }

static real *arena_alloc(NomaCtx *c, int64_t n, int64_t span);

real *noma__alloc(NomaCtx *c, int64_t n) { return noma__alloc_at(c, n, -1); }

real *noma__alloc_at(NomaCtx *c, int64_t n, int64_t span) {
    bump_in(c);
    real *p = arena_alloc(c, n, span);
    bump_out(c);
    return p;
}

static real *arena_alloc(NomaCtx *c, int64_t n, int64_t span) {
    if (n < 0 || n > (INT64_MAX / 2) / (int64_t)sizeof(real)) {
        if (n >= 0) c->mem->refused = INT64_MAX;
        if (n < 0) noma__failf(NOMA_ERR_RUNTIME, span, "cannot allocate %lld elements", (long long)n);
        else noma__fail_alloc(c, span, (uint64_t)n * sizeof(real), "a tensor");
        return NULL;
    }
    int64_t bytes = (n ? n : 1) * (int64_t)sizeof(real);
    bytes = (bytes + 63) & ~(int64_t)63;
    if (c->cur_chunk >= 0) {
        NomaChunk *ch = &c->chunks[c->cur_chunk];
        if (ch->size - ch->used >= bytes) {
            real *p = (real *)(ch->base + ch->used);
            ch->used += bytes;
            return p;
        }
    }
    int64_t next = c->cur_chunk + 1;
    if (next < c->nchunks && c->chunks[next].size >= bytes) {
        c->cur_chunk = next;
        c->chunks[next].used = bytes;
        return (real *)c->chunks[next].base;
    }
    /* drop the (too small) spare chunks, then add a new one within the memory limit */
    for (int64_t i = next; i < c->nchunks; i++) noma__xfree(c->chunks[i].base);
    c->nchunks = next;
    int64_t start = 0;
    if (c->cur_chunk >= 0) start = c->chunks[c->cur_chunk].start + c->chunks[c->cur_chunk].size;
    const int64_t slack = 2 * 4096; /* a chunk's header and page rounding */
    int64_t room = c->mem->limit - c->mem->used - slack;
    if (bytes > room) {
        c->mem->refused = bytes;
        noma__fail_alloc(c, span, (uint64_t)bytes, "a tensor");
        return NULL;
    }
    int64_t size = start < ARENA_MIN_CHUNK ? ARENA_MIN_CHUNK : start; /* ~doubling */
    if (size > ARENA_MAX_GROW) size = ARENA_MAX_GROW;
    if (size < bytes) size = bytes;
    if (size > room) size = room;
    if (c->nchunks == c->chunks_cap) {
        int64_t nc = c->chunks_cap ? c->chunks_cap * 2 : 16;
        NomaChunk *p = (NomaChunk *)realloc(c->chunks, (size_t)nc * sizeof(NomaChunk));
        if (!p) {
            noma__fail_alloc(c, span, (uint64_t)bytes, "a tensor");
            return NULL;
        }
        c->chunks = p;
        c->chunks_cap = nc;
    }
    char *base = (char *)noma__xmalloc((size_t)size);
    if (!base) {
        noma__fail_alloc(c, span, (uint64_t)size, "a tensor");
        return NULL;
    }
    NomaChunk *ch = &c->chunks[c->nchunks++];
    ch->base = base;
    ch->size = size;
    ch->used = bytes;
    ch->start = start;
    c->cur_chunk = c->nchunks - 1;
    return (real *)base;
}

real *noma_alloc(int64_t n) { return noma__alloc(noma__cur(), n); }

real *noma_alloc_at(int64_t n, int64_t span) { return noma__alloc_at(noma__cur(), n, span); }

int64_t noma_arena_mark(void) {
    NomaCtx *c = noma__cur();
    if (c->cur_chunk < 0) return 0;
    bump_in(c);
    return c->chunks[c->cur_chunk].start + c->chunks[c->cur_chunk].used;
}

void noma_arena_release(int64_t mark) {
    NomaCtx *c = noma__cur();
    if (c->cur_chunk < 0) return;
    if (mark < 0) mark = 0;
    if (mark > noma_arena_mark()) return; /* stale mark: nothing to release */
    int64_t i = c->cur_chunk;
    while (i > 0 && c->chunks[i].start > mark) i--;
    for (int64_t j = i + 1; j <= c->cur_chunk; j++) c->chunks[j].used = 0;
    c->chunks[i].used = mark - c->chunks[i].start;
    c->cur_chunk = i;
    bump_out(c);
}

/* Frees the spare chunks after the current one (memory kept from a past peak). */
void noma_arena_trim(NomaCtx *c) {
    c = ctx_or_cur(c);
    for (int64_t i = c->cur_chunk + 1; i < c->nchunks; i++) noma__xfree(c->chunks[i].base);
    c->nchunks = c->cur_chunk + 1;
}

/* The former arena cap: now the one memory limit of the context (noma_set_memory_limit). */
void noma_set_arena_cap(int64_t bytes) { noma_set_memory_limit(NULL, bytes); }

int64_t noma_arena_used(NomaCtx *c) {
    c = ctx_or_cur(c);
    if (c->cur_chunk < 0) return 0;
    bump_in(c);
    return c->chunks[c->cur_chunk].start + c->chunks[c->cur_chunk].used;
}

int64_t noma_arena_reserved(NomaCtx *c) {
    c = ctx_or_cur(c);
    int64_t s = 0;
    for (int64_t i = 0; i < c->nchunks; i++) s += c->chunks[i].size;
    return s;
}

/* ======================================================================== */
/* Tape: growable LIFO of scalars and tensor descriptors (data in the arena) */
/* ======================================================================== */

/* The tape grows by doubling, charged to the memory limit; refused (over the limit or out of
   memory: a training step that never ends, say), a runtime error at the training loop's optimize. */
static NomaTapeEntry *tape_push(NomaCtx *c) {
    if (c->tape_len == c->tape_cap) {
        int64_t nc = c->tape_cap ? c->tape_cap * 2 : 256;
        uint64_t grow = (uint64_t)(nc - c->tape_cap) * sizeof(NomaTapeEntry);
        if (!noma__mem_admit(c, grow)) {
            noma__fail_alloc(c, c->train_span, grow, "the training tape");
            return NULL;
        }
        c->mem->refused = 0;
        NomaTapeEntry *p = (NomaTapeEntry *)realloc(c->tape, (size_t)nc * sizeof(NomaTapeEntry));
        if (!p) {
            noma__fail_alloc(c, c->train_span, grow, "the training tape");
            return NULL;
        }
        noma__mem_charge(c, (int64_t)grow);
        c->tape = p;
        c->tape_cap = nc;
    }
    return &c->tape[c->tape_len++];
}

void noma_tape_push_s(real x) {
    NomaTapeEntry *e = tape_push(noma__cur());
    if (!e) return;
    e->is_tensor = 0;
    e->s = x;
}

real noma_tape_pop_s(void) {
    NomaCtx *c = noma__cur();
    if (c->tape_len == 0) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: tape is empty");
        return 0;
    }
    NomaTapeEntry *e = &c->tape[c->tape_len - 1];
    if (e->is_tensor) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: tape holds a tensor, not a scalar");
        return 0;
    }
    c->tape_len--;
    return e->s;
}

void noma_tape_push_t(const NomaTensor *t) {
    NomaCtx *c = noma__cur();
    if (!t) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: tape push of a missing tensor");
        return;
    }
    NomaTensor copy = *t;
    NomaTapeEntry *e = tape_push(c);
    if (!e) return;
    e->is_tensor = 1;
    e->t = copy;
}

void noma_tape_pop_t(NomaTensor *out) {
    NomaCtx *c = noma__cur();
    if (!out) return;
    if (c->tape_len == 0 || !c->tape[c->tape_len - 1].is_tensor) {
        memset(out, 0, sizeof *out);
        noma__failf(NOMA_ERR_RUNTIME, -1,
                    c->tape_len == 0 ? "internal error: tape is empty"
                                     : "internal error: tape holds a scalar, not a tensor");
        return;
    }
    *out = c->tape[--c->tape_len].t;
}

void noma_tape_reset(void) { noma__cur()->tape_len = 0; }

int64_t noma_tape_len(NomaCtx *c) { return ctx_or_cur(c)->tape_len; }

/* ======================================================================== */
/* Broadcasting                                                             */
/* ======================================================================== */

void noma_broadcast_dims(int64_t span, const char *op, const NomaTensor *a, const NomaTensor *b,
                         NomaTensor *out) {
    int64_t ra = a ? a->rank : 0, rb = b ? b->rank : 0;
    if (!out) return;
    if (ra < 0 || ra > 4 || rb < 0 || rb > 4) {
        out->rank = 0;
        noma__failf(NOMA_ERR_RUNTIME, span, "%s: invalid tensor rank", op ? op : "op");
        return;
    }
    int64_t r = ra > rb ? ra : rb;
    int64_t dims[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < r; i++) {
        int64_t ia = ra - r + i, ib = rb - r + i;
        int64_t da = ia >= 0 ? a->dims[ia] : 1;
        int64_t db = ib >= 0 ? b->dims[ib] : 1;
        if (da == db || db == 1)
            dims[i] = da;
        else if (da == 1)
            dims[i] = db;
        else {
            out->rank = 0;
            noma_fail_shape(span, op, a, b);
            return;
        }
    }
    out->rank = r;
    for (int i = 0; i < 4; i++) out->dims[i] = dims[i];
}

/* out->data (contiguous, out's dims) = src broadcast to out's dims (NumPy rules, which the caller
 * checked): how compiled elementwise loops read an operand that is broadcast other than along
 * leading axes (they then run their one contiguous loop on the copy). */
void noma_expand(const NomaTensor *out, const NomaTensor *src) {
    int64_t od[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    int64_t ro = out->rank, rs = src->rank;
    if (ro < 0 || ro > 4 || rs < 0 || rs > ro) return;
    for (int64_t i = 0; i < ro; i++) od[4 - ro + i] = out->dims[i];
    int64_t stride = 1;
    for (int64_t i = rs - 1; i >= 0; i--) {  /* src's axes align with out's trailing axes */
        st[4 - rs + i] = src->dims[i] == 1 ? 0 : stride;
        stride *= src->dims[i];
    }
    real *o = out->data;
    const real *s = src->data;
    for (int64_t a = 0; a < od[0]; a++)
        for (int64_t b = 0; b < od[1]; b++)
            for (int64_t c = 0; c < od[2]; c++) {
                const real *row = s + a * st[0] + b * st[1] + c * st[2];
                if (st[3] == 1) {
                    memcpy(o, row, (size_t)od[3] * sizeof(real));
                } else {
                    for (int64_t d = 0; d < od[3]; d++) o[d] = row[d * st[3]];
                }
                o += od[3];
            }
}

/* ======================================================================== */
/* Printing and warnings                                                    */
/*                                                                          */
/* Scalars: integers up to 2^53 in full ("1000000"), others "%.6g"; nan / inf  */
/* / -inf spelled so, -0 printed as 0.                                       */
/* Tensors: one line, nested brackets, ", " between elements, whole up to    */
/* NOMA_PRINT_THRESHOLD elements (NumPy's threshold); a larger tensor shows  */
/* each axis longer than 6 as its first 3 elements, "...", its last 3.       */
/* noma/display.py formats values by the same rule.                          */
/* ======================================================================== */

#define NOMA_PRINT_THRESHOLD 1000
#define NOMA_PRINT_EDGE 3

static void live_lock(NomaCtx *c) {
    while (__atomic_exchange_n(&c->live_lock, 1, __ATOMIC_ACQUIRE)) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

static void live_unlock(NomaCtx *c) { __atomic_store_n(&c->live_lock, 0, __ATOMIC_RELEASE); }

/* Appends to the live buffer (another thread may be taking it). */
static void live_append(NomaCtx *c, const char *s, int64_t n) {
    live_lock(c);
    buf_append(&c->live, s, n);
    live_unlock(c);
}

static void emit(NomaCtx *c, const char *s, int64_t n) {
    if (c->capture && c->live_on)
        live_append(c, s, n);
    else if (c->capture)
        buf_append(&c->out, s, n);
    else
        fwrite(s, 1, (size_t)n, stdout);
}

static int fmt_real(char *buf, size_t cap, double x) {
    if (isnan(x)) return snprintf(buf, cap, "nan");
    if (isinf(x)) return snprintf(buf, cap, x > 0 ? "inf" : "-inf");
    if (x == 0) return snprintf(buf, cap, "0");
    if (fabs(x) <= 9007199254740992.0 && x == trunc(x)) return snprintf(buf, cap, "%lld", (long long)x);
    return snprintf(buf, cap, "%.6g", x);
}

static void fmt_tensor_rec(NomaBuf *b, const real *data, int64_t rank, const int64_t *dims,
                           const int64_t *strides, int summarize) {
    char num[64];
    int64_t n = dims[0];
    buf_append(b, "[", 1);
    for (int64_t i = 0; i < n; i++) {
        if (summarize && n > 2 * NOMA_PRINT_EDGE && i == NOMA_PRINT_EDGE) {
            buf_append(b, "..., ", 5);
            i = n - NOMA_PRINT_EDGE;
        }
        if (rank == 1) {
            int L = fmt_real(num, sizeof num, (double)data[i]);
            buf_append(b, num, L);
        } else {
            fmt_tensor_rec(b, data + i * strides[0], rank - 1, dims + 1, strides + 1, summarize);
        }
        if (i + 1 < n) buf_append(b, ", ", 2);
    }
    buf_append(b, "]", 1);
}

void noma_print_str(const char *s) {
    NomaCtx *c = noma__cur();
    if (s) emit(c, s, (int64_t)strlen(s));
}

void noma_print_scalar(real x) {
    char num[64];
    int L = fmt_real(num, sizeof num, (double)x);
    emit(noma__cur(), num, L);
}

void noma_print_tensor(const NomaTensor *t) {
    NomaCtx *c = noma__cur();
    if (!noma__check_tensor(t, -1, "print")) return;
    if (t->rank == 0) {
        noma_print_scalar(t->data[0]);
        return;
    }
    int64_t strides[4];
    int64_t s = 1;
    for (int64_t i = t->rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= t->dims[i];
    }
    NomaBuf b = {0, 0, 0};
    fmt_tensor_rec(&b, t->data, t->rank, t->dims, strides, s > NOMA_PRINT_THRESHOLD);
    if (b.data) emit(c, b.data, b.len);
    free(b.data);
}

void noma_print_sep(void) { emit(noma__cur(), " ", 1); }

void noma_print_end(void) {
    NomaCtx *c = noma__cur();
    emit(c, "\n", 1);
    if (!c->capture) fflush(stdout);
}

void noma_set_capture(NomaCtx *c, int32_t on) {
    c = ctx_or_cur(c);
    if (!c->capture && !on) return;
    if (!on) fflush(stdout);
    c->capture = on ? 1 : 0;
}

int64_t noma_output_len(NomaCtx *c) { return ctx_or_cur(c)->out.len; }
const char *noma_output_data(NomaCtx *c) {
    c = ctx_or_cur(c);
    return c->out.data ? c->out.data : "";
}
void noma_output_clear(NomaCtx *c) {
    c = ctx_or_cur(c);
    c->out.len = 0;
    if (c->out.data) c->out.data[0] = 0;
}

/* A warning located at span (-1: nowhere). Without capture: "warning: MSG\n" and the span's
   pre-rendered text (noma_set_span_texts, as errors show it) to stderr; in capture mode the record
   "warning[SPAN]: MSG\n" ("warning: MSG\n" without a span) goes to the warnings buffer, or with
   live output on, as the frame "\0RECORD\n", to the live buffer. */
void noma_warn(int64_t span, const char *msg) {
    NomaCtx *c = noma__cur();
    if (!msg) msg = "";
    char tag[48];
    if (span >= 0) snprintf(tag, sizeof tag, "warning[%lld]: ", (long long)span);
    else snprintf(tag, sizeof tag, "warning: ");
    if (c->capture && c->live_on) {
        /* the frame: a NUL byte (never part of printed text), the record, a newline */
        live_lock(c);
        buf_append(&c->live, "\0", 1);
        buf_append(&c->live, tag, (int64_t)strlen(tag));
        buf_append(&c->live, msg, (int64_t)strlen(msg));
        buf_append(&c->live, "\n", 1);
        live_unlock(c);
    } else if (c->capture) {
        buf_append(&c->warn, tag, (int64_t)strlen(tag));
        buf_append(&c->warn, msg, (int64_t)strlen(msg));
        buf_append(&c->warn, "\n", 1);
    } else {
        fprintf(stderr, "warning: %s\n", msg);
        if (span >= 0 && span < c->nspan_texts && c->span_texts[span]) {
            const char *t = c->span_texts[span];
            size_t L = strlen(t);
            fputs(t, stderr);
            if (L == 0 || t[L - 1] != '\n') fputc('\n', stderr);
        }
        fflush(stderr);
    }
}

/* Live output: while on (and capturing), prints and warnings go, in program order, to a buffer
   that another thread takes with noma_live_take instead of to the output/warnings buffers. */
void noma_set_live(NomaCtx *c, int32_t on) { ctx_or_cur(c)->live_on = on ? 1 : 0; }

/* Hands over what was printed since the last call (*data: malloc'd, for noma_live_free; NULL
   when empty); returns its length. Printed text as is; each warning as "\0MSG\n". */
int64_t noma_live_take(NomaCtx *c, char **data) {
    c = ctx_or_cur(c);
    live_lock(c);
    int64_t n = c->live.len;
    *data = n ? c->live.data : NULL;
    if (n) c->live.data = NULL, c->live.len = c->live.cap = 0;
    live_unlock(c);
    return n;
}

void noma_live_free(char *data) { free(data); }

/* noma_warn the first time an op (its span) asks; later calls from the same span are silent
   (like Python's default warning filter: once per location). */
void noma_warn_once(int64_t span, const char *msg) {
    NomaCtx *c = noma__cur();
    for (int64_t i = 0; i < c->nwarned; i++)
        if (c->warned[i] == span) return;
    if (c->nwarned == c->warned_cap) {
        int64_t nc = c->warned_cap ? c->warned_cap * 2 : 16;
        int64_t *p = (int64_t *)realloc(c->warned, (size_t)nc * sizeof(int64_t));
        if (!p) {
            noma_warn(span, msg);
            return;
        }
        c->warned = p;
        c->warned_cap = nc;
    }
    c->warned[c->nwarned++] = span;
    noma_warn(span, msg);
}

int64_t noma_warnings_len(NomaCtx *c) { return ctx_or_cur(c)->warn.len; }
const char *noma_warnings_data(NomaCtx *c) {
    c = ctx_or_cur(c);
    return c->warn.data ? c->warn.data : "";
}
void noma_warnings_clear(NomaCtx *c) {
    c = ctx_or_cur(c);
    c->warn.len = 0;
    if (c->warn.data) c->warn.data[0] = 0;
}

/* ======================================================================== */
/* Globals                                                                  */
/* ======================================================================== */

static NomaTensor g_dummy_tensor;
static real g_dummy_data[8];

static NomaTensor *dummy_tensor(void) {
    memset(g_dummy_data, 0, sizeof g_dummy_data);
    memset(&g_dummy_tensor, 0, sizeof g_dummy_tensor);
    g_dummy_tensor.data = g_dummy_data;
    return &g_dummy_tensor;
}

static NomaGlobal *global_get(NomaCtx *c, int64_t slot) {
    if (slot < 0 || slot >= NOMA_MAX_SLOT) {
        noma__failf(NOMA_ERR_RUNTIME, -1, "internal error: global slot %lld out of range",
                    (long long)slot);
        return NULL;
    }
    if (slot >= c->nglobals) {
        int64_t nn = c->nglobals ? c->nglobals : 16;
        while (nn <= slot) nn *= 2;
        NomaGlobal **p = (NomaGlobal **)realloc(c->globals, (size_t)nn * sizeof *p);
        if (!p) {
            noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (globals)");
            return NULL;
        }
        memset(p + c->nglobals, 0, (size_t)(nn - c->nglobals) * sizeof *p);
        c->globals = p;
        c->nglobals = nn;
    }
    NomaGlobal *g = c->globals[slot];
    if (!g) {
        g = (NomaGlobal *)calloc(1, sizeof *g);
        real *d = g ? (real *)noma__xmalloc(sizeof(real)) : NULL;
        if (!d) {
            free(g);
            noma__failf(NOMA_ERR_RUNTIME, -1, "out of memory (globals)");
            return NULL;
        }
        d[0] = 0;
        g->t.data = d;
        g->cap = 1;
        c->globals[slot] = g;
    }
    return g;
}

NomaTensor *noma_global(int64_t slot) {
    NomaGlobal *g = global_get(noma__cur(), slot);
    return g ? &g->t : dummy_tensor();
}

void noma_global_store(int64_t slot, const NomaTensor *v) { noma_global_store_at(slot, v, -1); }

void noma_global_store_at(int64_t slot, const NomaTensor *v, int64_t span) {
    NomaCtx *c = noma__cur();
    if (!noma__check_tensor(v, span, "global store")) return;
    /* copy the descriptor first: v may be the slot's own descriptor */
    NomaTensor src = *v;
    int64_t n = noma__numel(&src);
    NomaGlobal *g = global_get(c, slot);
    if (!g) return;
    int64_t need = n ? n : 1;
    if (need <= g->cap) {
        /* memmove: src.data may point into this very buffer (self assignment) */
        if (n && src.data != g->t.data) memmove(g->t.data, src.data, (size_t)n * sizeof(real));
    } else {
        real *d = (real *)noma__xmalloc((size_t)need * sizeof(real));
        if (!d) {
            noma__fail_alloc(c, span, (uint64_t)need * sizeof(real), "a variable");
            return;
        }
        memcpy(d, src.data, (size_t)n * sizeof(real)); /* before freeing the old buffer */
        noma__xfree(g->t.data);
        g->t.data = d;
        g->cap = need;
    }
    g->t.rank = src.rank;
    for (int i = 0; i < 4; i++) g->t.dims[i] = i < src.rank ? src.dims[i] : 0;
    g->defined = 1;
}

real noma_global_load_s(int64_t slot) {
    NomaGlobal *g = global_get(noma__cur(), slot);
    return g ? g->t.data[0] : 0;
}

void noma_global_store_s(int64_t slot, real x) {
    NomaGlobal *g = global_get(noma__cur(), slot);
    if (!g) return;
    g->t.data[0] = x;
    g->t.rank = 0;
    for (int i = 0; i < 4; i++) g->t.dims[i] = 0;
    g->defined = 1;
}

int32_t noma_global_defined(int64_t slot) {
    NomaCtx *c = noma__cur();
    if (slot < 0 || slot >= c->nglobals || !c->globals[slot]) return 0;
    return c->globals[slot]->defined;
}

/* The slot reads as never stored again (its buffer is kept for the next store). A session calls
   it before running a cell for the slots the cell declares, so that after a failure it can tell
   which declarations ran. */
void noma_global_forget(int64_t slot) {
    NomaCtx *c = noma__cur();
    if (slot >= 0 && slot < c->nglobals && c->globals[slot]) c->globals[slot]->defined = 0;
}

/* ======================================================================== */
/* Training log and events                                                  */
/* ======================================================================== */

/* The loss log itself is noma_rt_history.c. */
int64_t noma_global_step(void) { return noma__cur()->step; }

void noma__event(NomaCtx *c, int32_t kind, int32_t policy, int64_t id, int64_t old_rank,
                 const int64_t *old_dims, int64_t new_rank, const int64_t *new_dims, int64_t aux) {
    if (c->nevents == c->events_cap) {
        int64_t nc = c->events_cap ? c->events_cap * 2 : 64;
        NomaEvent *p = (NomaEvent *)realloc(c->events, (size_t)nc * sizeof(NomaEvent));
        if (!p) return; /* losing an event is better than failing the resize */
        c->events = p;
        c->events_cap = nc;
    }
    NomaEvent *e = &c->events[c->nevents++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->policy = policy;
    e->step = c->step;
    e->id = id;
    e->old_rank = old_rank;
    e->new_rank = new_rank;
    e->aux = aux;
    e->output_change = NAN;
    e->value = NAN;
    for (int64_t i = 0; i < 4; i++) {
        e->old_dims[i] = (old_dims && i < old_rank) ? old_dims[i] : 0;
        e->new_dims[i] = (new_dims && i < new_rank) ? new_dims[i] : 0;
    }
}

/* Remember the indices of the keep event just recorded (copied; losing them is not an error). */
void noma__event_kept(NomaCtx *c, const int64_t *idx, int64_t n) {
    if (c->nevents == 0) return;
    if (c->nkept == c->kept_cap) {
        int64_t nc = c->kept_cap ? c->kept_cap * 2 : 16;
        NomaKept *p = (NomaKept *)realloc(c->kept, (size_t)nc * sizeof(NomaKept));
        if (!p) return;
        c->kept = p;
        c->kept_cap = nc;
    }
    int64_t *copy = (int64_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    if (!copy) return;
    if (n > 0) memcpy(copy, idx, (size_t)n * sizeof(int64_t));
    c->kept[c->nkept++] = (NomaKept){c->nevents - 1, n, copy};
}

int64_t noma_event_kept(NomaCtx *c, int64_t i, int64_t *out, int64_t cap) {
    c = ctx_or_cur(c);
    for (int64_t k = 0; k < c->nkept; k++)
        if (c->kept[k].event == i) {
            for (int64_t j = 0; j < c->kept[k].n && j < cap; j++) out[j] = c->kept[k].idx[j];
            return c->kept[k].n;
        }
    return -1;
}

int64_t noma_event_count(NomaCtx *c) { return ctx_or_cur(c)->nevents; }

int32_t noma_event_get(NomaCtx *c, int64_t i, NomaEvent *out) {
    c = ctx_or_cur(c);
    if (!out) return 0;
    if (i < 0 || i >= c->nevents) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    *out = c->events[i];
    return 1;
}

/* ======================================================================== */
/* Interrupt (SIGINT)                                                       */
/* ======================================================================== */

static volatile sig_atomic_t g_interrupted = 0;
static struct sigaction g_prev_action;
static int g_installed = 0;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

int32_t noma_poll_interrupt(void) { return g_interrupted ? 1 : 0; }
void noma_clear_interrupt(void) { g_interrupted = 0; }

/* Sets the flag as SIGINT would (e.g. a Jupyter kernel's interrupt, from any thread). */
void noma_request_interrupt(void) { g_interrupted = 1; }

/* At a training loop's step boundary: applies the live controls' requests, then unwinds to
   noma_invoke (which returns 2) when SIGINT arrived; clears the flag. */
void noma_check_interrupt(int64_t span) {
    NomaCtx *c = noma__cur();
    noma__ctl_step(c); /* the live controls' requests (noma_rt_controls.c) */
    if (!g_interrupted && (c->stop_at < 0 || c->step < c->stop_at)) return;
    g_interrupted = 0;
    c->err_kind = NOMA_ERR_RUNTIME;
    c->err_span = span;
    snprintf(c->err_msg, sizeof c->err_msg, "interrupted");
    fail_jump(c, 2);
}

/* Called once per iteration of every compiled while/for loop: a SIGINT (or a front end's request)
   unwinds out of a loop that would otherwise never reach a training step boundary (`while 1 { }`
   at top level). Unlike noma_check_interrupt it ignores noma_set_stop_at, which counts steps. */
void noma_check_interrupt_loop(int64_t span) {
    if (!g_interrupted) return;
    g_interrupted = 0;
    NomaCtx *c = noma__cur();
    c->err_kind = NOMA_ERR_RUNTIME;
    c->err_span = span;
    snprintf(c->err_msg, sizeof c->err_msg, "interrupted");
    fail_jump(c, 2);
}

void noma_set_stop_at(NomaCtx *c, int64_t step) { noma__ctx_or_cur(c)->stop_at = step < 0 ? -1 : step; }

/* Unconditionally unwinds to noma_invoke with status 2 (a training loop calls it at a step
   boundary after noma_poll_interrupt() returned 1). */
void noma_stop_interrupted(void) {
    g_interrupted = 1;
    noma_check_interrupt(-1);
}

/* The top-level variable the running training loop's loss is bound to: set before the loop
   (slot), after each logged loss (value) and after the loop (none). An unwind (error, interrupt)
   stores the last value, so the variable holds the last loss computed, as after a normal end. */
void noma_opt_result_begin(int64_t slot) {
    NomaCtx *c = noma__cur();
    c->result_slot = slot;
    c->result_set = 0;
}

void noma_opt_result_set(real loss) {
    NomaCtx *c = noma__cur();
    c->result_value = loss;
    c->result_set = 1;
}

void noma_opt_result_end(void) { noma__cur()->result_slot = -1; }

void noma_sigint_install(void) {
    if (g_installed) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    if (sigaction(SIGINT, &sa, &g_prev_action) == 0) g_installed = 1;
}

void noma_sigint_restore(void) {
    if (!g_installed) return;
    sigaction(SIGINT, &g_prev_action, NULL);
    g_installed = 0;
}

/* ======================================================================== */
/* Introspection and test hooks                                             */
/* ======================================================================== */

int32_t noma_real_size(void) { return (int32_t)sizeof(real); }

#ifndef NOMA_NO_TEST_HOOKS
/* Tiny `void(void)` functions whose addresses tests pass to noma_invoke
   (a longjmp across a ctypes callback frame would not be safe). */
static int64_t g_test_reached = 0;

int64_t noma_test_reached(void) { return g_test_reached; }

void noma_test_fail(void) {
    noma_fail(NOMA_ERR_SHAPE, 42, "test failure");
    g_test_reached++; /* only reached when nothing was armed */
}

static void deep(int64_t d) {
    if (d > 2 * NOMA_MAX_DEPTH) return; /* unreachable when noma_enter fails */
    noma_enter(d);
    deep(d + 1);
    noma_leave();
}

void noma_test_deep_recursion(void) {
    deep(0);
    g_test_reached++;
}

void noma_test_alloc_huge(void) {
    real *p = noma_alloc((int64_t)1 << 50);
    if (p) p[0] = 1;
    g_test_reached++;
}

void noma_test_interrupt(void) {
    raise(SIGINT);
    noma_check_interrupt(7);
    g_test_reached++;
}

void noma_test_print(void) {
    real d[6] = {1, 2, 3, 4, 5.5, -0.0};
    NomaTensor t = {d, 2, {2, 3, 0, 0}};
    noma_print_str("t =");
    noma_print_sep();
    noma_print_tensor(&t);
    noma_print_end();
    real *p = noma_alloc(100);
    if (p) p[99] = 1;
    g_test_reached++;
}
#endif
