/*
 * noma_rt.h -- public ABI of the NOMA native runtime.
 *
 * The contract is documented in docs/RUNTIME_ABI.md; this header is its C form.
 * Generated code (JIT and executables) and the Python side (ctypes) use only
 * what is declared here.
 *
 * `real` is double by default and float when compiled with -DNOMA_F32.
 */
#ifndef NOMA_RT_H
#define NOMA_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef NOMA_F32
typedef float real;
#else
typedef double real;
#endif

/* ------------------------------------------------------------------------ */
/* Values                                                                    */
/* ------------------------------------------------------------------------ */

/* Dense row-major tensor descriptor, rank 0..4 (rank 0: scalar in data[0]). 48 bytes. */
typedef struct {
    real *data;
    int64_t rank;
    int64_t dims[4];
} NomaTensor;

/* Opaque runtime context. */
typedef struct NomaCtx NomaCtx;

/* Error kinds. NOMA_ERR_NONE is what noma_error_kind returns when nothing failed. */
enum {
    NOMA_ERR_NONE = -1,
    NOMA_ERR_SYNTAX = 0,
    NOMA_ERR_NAME = 1,
    NOMA_ERR_TYPE = 2,
    NOMA_ERR_SHAPE = 3,
    NOMA_ERR_RUNTIME = 4,
    NOMA_ERR_IO = 5
};

/* Resize policies. */
enum {
    NOMA_POLICY_DEFAULT = 0,
    NOMA_POLICY_ZEROS = 1,
    NOMA_POLICY_NORMAL = 2,
    NOMA_POLICY_UNIFORM = 3,
    NOMA_POLICY_XAVIER = 4,
    NOMA_POLICY_HE = 5,
    NOMA_POLICY_COPY = 6,
    NOMA_POLICY_PRESERVE = 7
};

/* The policy of the resize events of a keep (`realloc NAME keep idx`; the indices:
   noma_event_kept). Not a resize policy. */
enum { NOMA_EVENT_KEEP = 8 };

/* Optimizer kinds. */
enum {
    NOMA_OPT_NONE = 0,
    NOMA_OPT_SGD = 1,
    NOMA_OPT_ADAM = 2,
    NOMA_OPT_RMSPROP = 3,
    NOMA_OPT_ADAMW = 4
};

/* Event kinds (NomaEvent.kind). */
enum {
    NOMA_EV_PARAM_RESIZE = 0, /* id = param slot; old/new shape; policy; aux = dim id or -1 */
    NOMA_EV_DIM_RESIZE = 1,   /* id = dim id; old/new rank 1, dims[0] = size; policy; aux = 1 when
                                 the live controls asked for it (noma_ctl_resize_dim), else 0 */
    NOMA_EV_PARAM_FREE = 2,   /* id = param slot; old shape; new rank -1 */
    NOMA_EV_OPT_CHANGE = 3,   /* id = param slot; policy = new optimizer kind, aux = old kind */
    NOMA_EV_OPT_RESET = 4,    /* id = -1; reset_optimizer() */
    NOMA_EV_PARAM_INIT = 5,   /* id = param slot; `learn` re-initialised a defined parameter:
                                 old shape, new shape */
    NOMA_EV_CONTROL = 6       /* id = -1; an action of the live controls applied by a running loop
                                 (noma_rt_controls.c): policy = NOMA_CTL_EV_*, value = the new
                                 learning rate (NaN for the others); aux = 1 */
};

/* NomaEvent.policy of a NOMA_EV_CONTROL event. */
enum { NOMA_CTL_EV_LR = 0, NOMA_CTL_EV_PAUSE = 1, NOMA_CTL_EV_RESUME = 2, NOMA_CTL_EV_STOP = 3 };

/* One recorded event. 128 bytes. Unused dims are 0. */
typedef struct {
    int32_t kind;        /* NOMA_EV_* */
    int32_t policy;      /* resize policy as applied (0 resolved to 7 for dims); new opt kind */
    int64_t step;        /* global step (noma_global_step) when recorded */
    int64_t id;          /* param slot or dim id (-1: none) */
    int64_t old_rank;    /* -1 when not applicable */
    int64_t old_dims[4];
    int64_t new_rank;    /* -1 when not applicable */
    int64_t new_dims[4];
    int64_t aux;         /* OPT_CHANGE: previous optimizer kind; PARAM_RESIZE: the dim id
                            when done by a dim resize, else -1; otherwise 0 */
    double output_change; /* resizes at a training step's end: the largest change of the step's
                             outputs (noma_rt_probe.c); NaN when not measured */
    double value;         /* NOMA_EV_CONTROL with NOMA_CTL_EV_LR: the learning rate; else NaN */
} NomaEvent;

/* ------------------------------------------------------------------------ */
/* Context, invoke, errors                                                   */
/* ------------------------------------------------------------------------ */
NomaCtx *noma_ctx_new(void);
void noma_ctx_free(NomaCtx *c);
void noma_ctx_activate(NomaCtx *c);
NomaCtx *noma_ctx_current(void);
int32_t noma_invoke(NomaCtx *c, void (*fn)(void));
int32_t noma_invoke_cell(NomaCtx *c, void (*fn)(void)); /* + SIGINT handler, flag cleared */

void noma_fail(int32_t kind, int64_t span, const char *msg);
void noma_fail_shape(int64_t span, const char *op, const NomaTensor *a, const NomaTensor *b);
void noma_fail_index(int64_t span, int64_t index, int64_t size);
void noma_fail_check(const char *msg, real x, int64_t span);
void noma_check_int_cast(const NomaTensor *x, int32_t bits, int64_t span);
int32_t noma_error_kind(NomaCtx *c);
int64_t noma_error_span(NomaCtx *c);
/* the spans of the calls active when the error was recorded, innermost first, into out[0..cap);
   returns how many there were */
int64_t noma_error_calls(NomaCtx *c, int64_t *out, int64_t cap);
const char *noma_error_message(NomaCtx *c);
void noma_error_clear(NomaCtx *c);
void noma_enter(int64_t span);
void noma_leave(void);
void noma_set_span_texts(int64_t n, const char **texts);
void noma_set_span_parents(int64_t n, const int64_t *parents); /* per span id: inlined at, or -1 */
int32_t noma_exe_main(void (*fn)(void));

/* ------------------------------------------------------------------------ */
/* Arena and tape                                                            */
/* ------------------------------------------------------------------------ */
real *noma_alloc(int64_t n);
real *noma_alloc_at(int64_t n, int64_t span); /* errors located at span */
/* The current context's bump window: generated code allocates 64-byte-rounded blocks from
   [ptr, end) itself and calls noma_alloc only when they do not fit. Stable per context. */
typedef struct { char *ptr; char *end; } NomaBump;
NomaBump *noma_arena_bump(void);
int64_t noma_arena_mark(void);
void noma_arena_release(int64_t mark);
void noma_set_arena_cap(int64_t bytes); /* = noma_set_memory_limit(NULL, bytes) */

/* One memory limit per context for every allocation of the runtime (arena, parameters, optimizer
   state, globals, loss history), checked before allocating. Default 8 GiB or NOMA_MEMORY_LIMIT. */
void noma_set_memory_limit(NomaCtx *c, int64_t bytes);
int64_t noma_memory_limit(NomaCtx *c);
int64_t noma_memory_used(NomaCtx *c);
/* NOMA_MEMORY_LIMIT syntax: digits with an optional K/M/G/T suffix (powers of 1024, optionally
   followed by B or iB); bytes, -1 for NULL, -2 when malformed. */
int64_t noma_parse_memory_limit(const char *text);
int64_t noma_arena_used(NomaCtx *c);
int64_t noma_arena_reserved(NomaCtx *c);
void noma_arena_trim(NomaCtx *c);

void noma_tape_push_s(real x);
real noma_tape_pop_s(void);
void noma_tape_push_t(const NomaTensor *t);
void noma_tape_pop_t(NomaTensor *out);
void noma_tape_reset(void);
int64_t noma_tape_len(NomaCtx *c);

/* ------------------------------------------------------------------------ */
/* Broadcasting                                                              */
/* ------------------------------------------------------------------------ */
void noma_broadcast_dims(int64_t span, const char *op, const NomaTensor *a, const NomaTensor *b,
                         NomaTensor *out);
void noma_expand(const NomaTensor *out, const NomaTensor *src);

/* ------------------------------------------------------------------------ */
/* Printing and warnings                                                     */
/* ------------------------------------------------------------------------ */
void noma_print_str(const char *s);
void noma_print_scalar(real x);
void noma_print_tensor(const NomaTensor *t);
void noma_print_sep(void);
void noma_print_end(void);
void noma_set_capture(NomaCtx *c, int32_t on);
int64_t noma_output_len(NomaCtx *c);
const char *noma_output_data(NomaCtx *c);
void noma_output_clear(NomaCtx *c);
void noma_warn(int64_t span, const char *msg); /* located at span (-1: nowhere) */
void noma_warn_once(int64_t span, const char *msg); /* once per span and context */
int64_t noma_warnings_len(NomaCtx *c);
const char *noma_warnings_data(NomaCtx *c);
void noma_warnings_clear(NomaCtx *c);
void noma_set_live(NomaCtx *c, int32_t on);
int64_t noma_live_take(NomaCtx *c, char **data);
void noma_live_free(char *data);

/* ------------------------------------------------------------------------ */
/* RNG                                                                       */
/* ------------------------------------------------------------------------ */
void noma_seed(real s);
real noma_rand(void);
real noma_randn(void);
void noma_fill(real *out, int64_t n, int32_t kind, real a, real b);
void noma_rng_state_get(NomaCtx *c, uint64_t *out);      /* 6 words */
void noma_rng_state_set(NomaCtx *c, const uint64_t *in);

/* ------------------------------------------------------------------------ */
/* Globals                                                                   */
/* ------------------------------------------------------------------------ */
NomaTensor *noma_global(int64_t slot);
void noma_global_store(int64_t slot, const NomaTensor *v);
void noma_global_store_at(int64_t slot, const NomaTensor *v, int64_t span);
real noma_global_load_s(int64_t slot);
void noma_global_store_s(int64_t slot, real x);
int32_t noma_global_defined(int64_t slot);
void noma_global_forget(int64_t slot);

/* ------------------------------------------------------------------------ */
/* Parameters, dims, optimizers                                              */
/* ------------------------------------------------------------------------ */
void noma_param_set(int64_t slot, const char *name, const NomaTensor *v);
void noma_param_set_at(int64_t slot, const char *name, const NomaTensor *v, int64_t span);
NomaTensor *noma_param(int64_t slot);
NomaTensor *noma_param_at(int64_t slot, const char *name, int64_t span); /* errors name it, at span */
void noma_param_free(int64_t slot);
int32_t noma_param_defined(int64_t slot);
const char *noma_param_name(int64_t slot);
int64_t noma_param_slot_count(NomaCtx *c);
void noma_param_bind_dim(int64_t slot, int32_t axis, int64_t dim_id);
int64_t noma_param_bound_dim(int64_t slot, int32_t axis);
void noma_param_resize(int64_t slot, int64_t rank, const int64_t *dims, int32_t policy, real a,
                       real b, int64_t span);
void noma_dim_resize(int64_t dim_id, int64_t size, int32_t policy, real a, real b, int64_t span);
/* `realloc dim keep idx;` / `realloc w keep idx axis A;`: keep the units whose indices idx (a
   vector of whole numbers, each in range once) lists, in that order, with optimizer state. */
void noma_dim_keep(int64_t dim_id, const NomaTensor *idx, int64_t span);
void noma_param_keep(int64_t slot, int32_t axis, const NomaTensor *idx, int64_t span);
int64_t noma_dim_get(int64_t dim_id);
void noma_dim_set(int64_t dim_id, int64_t v);
void noma_defer_begin(void);
void noma_defer_apply(void);
/* Output change of resizes (noma_rt_probe.c): at a training step's end ... */
int32_t noma_probe_wanted(void);
void noma_probe_begin(int32_t pass);
void noma_probe_value(int32_t pass, int64_t index, const NomaTensor *t);
void noma_probe_end(int32_t pass);
/* ... and of resizes outside a training loop: each loop registers its forward pass (or NULL). */
void noma_probe_replay(void (*replay)(int32_t pass));
void noma_probe_finish(void);
void *noma_probe_replay_get(NomaCtx *c);
void noma_probe_replay_put(NomaCtx *c, void *replay);
void noma_probe_enable(NomaCtx *c, int32_t on);
void noma_defer_end(void);
void noma_opt_begin(int64_t slot, int32_t kind, const real *hyper);
/* + the optimize statement's span, where failures of the parameter's later steps point */
void noma_opt_begin_at(int64_t slot, int32_t kind, const real *hyper, int64_t span);
void noma_opt_step(int64_t slot, const NomaTensor *grad);
/* The updates of one training step: count parameters (slots) with their gradients (an array of
   descriptors). All are checked before any is updated; equal Adam/AdamW settings share one
   kernel call. Same results as noma_opt_step on each in order. */
void noma_opt_steps(int64_t count, const int64_t *slots, const NomaTensor *grads);
void noma_opt_reset_all(void);
int32_t noma_param_opt_kind(int64_t slot);
void noma_param_state(int64_t slot, int32_t which, NomaTensor *out);
void noma_param_state_set(int64_t slot, int32_t which, const NomaTensor *v);

/* ------------------------------------------------------------------------ */
/* Training log, events, interrupt                                           */
/* ------------------------------------------------------------------------ */
/* The loss history in bounded memory (noma_rt_history.c): an exact window of the last losses and
   a min/max/sum summary of the whole run in levels of buckets (2^l losses per bucket of level l).
   Readers may run on another thread while one thread trains. */
void noma_log_begin(int64_t span); /* a training loop's start: the history exists (or an error at span) */
void noma_log_loss(real loss);
int64_t noma_global_step(void);
int64_t noma_log_len(NomaCtx *c);                          /* exact losses held (<= window) */
int64_t noma_log_copy(NomaCtx *c, real *out, int64_t cap); /* the last <= cap, oldest first */
real noma_log_last(NomaCtx *c);                            /* NaN when none */
void noma_log_clear(NomaCtx *c);                           /* forget the losses, keep the step */
void noma_history_reset(NomaCtx *c, int64_t step);         /* empty history at global step `step` */
int32_t noma_history_get(NomaCtx *c, int64_t *info, int64_t *counts, double *bmin, double *bmax,
                         double *bsum, real *recent, int64_t recent_cap);
/* noma_history_set, noma_history_set_window: 1 done, 0 invalid arguments, -1 refused (over the
   memory limit or out of memory: a runtime error recorded on c) */
int32_t noma_history_set(NomaCtx *c, int64_t step, int64_t nlevels, const int64_t *counts,
                         const double *bmin, const double *bmax, const double *bsum,
                         int64_t nrecent, const real *recent);
int32_t noma_history_set_window(NomaCtx *c, int64_t n);
int64_t noma_history_window(NomaCtx *c);
int64_t noma_history_bytes(NomaCtx *c);
int64_t noma_history_limit(int32_t which); /* 0 levels, 1 buckets per level, 2 default window,
                                              3 largest window */
int64_t noma_event_count(NomaCtx *c);
int32_t noma_event_get(NomaCtx *c, int64_t i, NomaEvent *out);
/* The indices event i (a keep) kept, into out[0..cap); returns their count, -1 when none. */
int64_t noma_event_kept(NomaCtx *c, int64_t i, int64_t *out, int64_t cap);
int32_t noma_poll_interrupt(void);
void noma_clear_interrupt(void);
void noma_request_interrupt(void);
void noma_check_interrupt(int64_t span);

/* Live controls (noma_rt_controls.c): requests from any thread, applied by the running training
   loop at its next step boundary (or by noma_ctl_apply_now when no loop runs). */
int32_t noma_ctl_resize_dim(int64_t dim_id, int64_t size, int32_t relative, int32_t policy, real a,
                            real b);
int32_t noma_ctl_set_lr(real lr);
void noma_ctl_pause(int32_t on);
int32_t noma_ctl_paused(void);
void noma_ctl_stop(void);
int32_t noma_ctl_take_stop(void); /* the compiled loop's stop test: 1 once after noma_ctl_stop */
int64_t noma_ctl_applied(void);
int32_t noma_ctl_in_loop(void);
void noma_ctl_clear(void);
int32_t noma_ctl_apply_now(NomaCtx *c);
void noma_check_interrupt_loop(int64_t span); /* every while/for iteration; ignores stop_at */
void noma_stop_interrupted(void);
/* A training loop of context c stops at the step boundary where the global step reaches `step`
   (status 2, as an interrupt; -1: never): noma.tune advances training by a number of steps. */
void noma_set_stop_at(NomaCtx *c, int64_t step);
/* Named metrics (noma_rt_metrics.c): `report("name", value);` records a value at the global step. */
void noma_report(const char *name, real value, int64_t span);
int32_t noma_metric_count(NomaCtx *c);
int64_t noma_metric_get(NomaCtx *c, int32_t i, char *name, double *summary, int64_t *steps,
                        double *values, int64_t cap);
int32_t noma_metric_set(NomaCtx *c, const char *name, const double *summary, int64_t n,
                        const int64_t *steps, const double *values);
void noma_metrics_clear(NomaCtx *c);
int64_t noma_metric_limit(int32_t which); /* 0 names, 1 samples held per name, 2 name bytes */
void noma_opt_result_begin(int64_t slot);
void noma_opt_result_set(real loss);
void noma_opt_result_end(void);
void noma_sigint_install(void);
void noma_sigint_restore(void);

/* ------------------------------------------------------------------------ */
/* Linear algebra                                                            */
/* ------------------------------------------------------------------------ */
void noma_set_gemm(void *fn);
void noma_matmul(const real *A, const real *B, real *C, int64_t m, int64_t k, int64_t n, int32_t ta,
                 int32_t tb);
/* 2-D convolution and pooling, NCHW (noma_rt_conv.c): fresh arena results in *out, errors at span. */
void noma_conv2d(const NomaTensor *x, const NomaTensor *w, real stride, real pad, NomaTensor *out,
                 int64_t span);
void noma_conv2d_grad_x(const NomaTensor *g, const NomaTensor *x, const NomaTensor *w, real stride,
                        real pad, NomaTensor *out, int64_t span);
void noma_conv2d_grad_w(const NomaTensor *g, const NomaTensor *x, const NomaTensor *w, real stride,
                        real pad, NomaTensor *out, int64_t span);
void noma_pool2d(const NomaTensor *x, real k, real stride, int32_t kind, NomaTensor *out, int64_t span);
void noma_pool2d_grad(const NomaTensor *g, const NomaTensor *x, real k, real stride, int32_t kind,
                      NomaTensor *out, int64_t span);
/* Ranking of a vector (noma_rt_rank.c): indices as reals in a fresh arena vector *out. */
void noma_argsort(const NomaTensor *x, NomaTensor *out, int64_t span);
void noma_topk(const NomaTensor *x, real k, NomaTensor *out, int64_t span);

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */
void noma_load_csv(const char *path, NomaTensor *out, int64_t span);
void noma_save_csv(const char *path, const NomaTensor *v, int64_t span);
void noma_st_load(const char *path, const char *name, int64_t rank, NomaTensor *out, int64_t span);
void noma_st_load_globals(const char *path, int64_t n, const char *names, const int64_t *ranks,
                          const int64_t *slots, int64_t span);
void noma_st_save(const char *path, int64_t n, const char **names, const NomaTensor **ts,
                  int64_t span);

/* Checkpoints (noma_rt_checkpoint.c): every live parameter with its optimizer state, the dims
   (by name), the loss log, the global step and the RNG state, as one safetensors file. Save may
   add extra real tensors (a session's globals); load ignores them. Load flag 1: every live
   parameter must be in the checkpoint. Dims are named with noma_dim_set_name (generated code
   names every dim it declares). */
void noma_dim_set_name(int64_t dim_id, const char *name);
const char *noma_dim_name(int64_t dim_id); /* "" when unnamed */
void noma_checkpoint_save(const char *path, int64_t nextra, const char **extra_names,
                          const NomaTensor **extras, int64_t span);
void noma_checkpoint_load(const char *path, int32_t flags, int64_t span);

/* ------------------------------------------------------------------------ */
/* Introspection and test hooks (not used by generated code)                 */
/* ------------------------------------------------------------------------ */
int32_t noma_real_size(void);
#ifndef NOMA_NO_TEST_HOOKS
void noma_test_fail(void);
void noma_test_deep_recursion(void);
void noma_test_alloc_huge(void);
void noma_test_interrupt(void);
void noma_test_print(void);
int64_t noma_test_reached(void);
#endif

#ifdef __cplusplus
}
#endif

#endif /* NOMA_RT_H */
