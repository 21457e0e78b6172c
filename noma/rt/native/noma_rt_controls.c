/*
 * noma_rt_controls.c -- live controls: requests from a front end's thread (the kernel's widget
 * panel, `:controls`) that the running training loop applies at its next step boundary.
 *
 * A request is queued under a small spin lock by any thread (noma_ctl_resize_dim,
 * noma_ctl_set_lr, noma_ctl_pause, noma_ctl_stop); the loop's thread takes the queue at the step
 * boundary it is at (noma_check_interrupt calls noma__ctl_step, one atomic load when nothing
 * waits), after the step's optimizer update:
 *  - a dim resize goes through the deferred-resize queue a `realloc` in the body uses
 *    (noma_defer_apply: values, optimizer state and dims remapped; no recompilation), and its
 *    event is marked as coming from the controls (NomaEvent.aux = 1 for NOMA_EV_DIM_RESIZE);
 *  - a learning rate replaces the hyper-parameter `lr` of every parameter with optimizer state
 *    (the running loop's own are among them; the next loop sets its own again), also when
 *    reset_optimizer() in the body begins them again (noma__ctl_lr_override);
 *  - pause holds the loop at the boundary (sleeping 2 ms at a time) until resumed, stopped or
 *    interrupted; stop makes the loop end at its next stop test as if its `until` held
 *    (noma_ctl_take_stop, called by the compiled loop).
 * Each action a loop applies is an event at its step (NOMA_EV_CONTROL: learning rate, pause,
 * resume, stop; a dim resize is the resize's own event, marked with aux = 1), recorded by the
 * loop's thread.
 * Requests queued while no loop runs are applied by noma_ctl_apply_now (a front end calls it
 * when it knows nothing runs) or at the next loop's first boundary.
 */
#include "noma_rt_internal.h"

#include <math.h>
#include <string.h>
#include <time.h>

#define CTL_QUEUE 32

typedef struct {
    int32_t kind; /* 0 dim resize, 1 learning rate */
    int32_t policy;
    int32_t relative; /* size is a change of the dim's size at the boundary (at least 1 stays) */
    int64_t id, size;
    real a, b;
    double lr;
} CtlRequest;

/* One set of controls per process: there is one running loop at a time (the current context's). */
static volatile int32_t g_lock = 0;
static CtlRequest g_queue[CTL_QUEUE];
static int32_t g_len = 0;
static volatile int32_t g_pending = 0;   /* requests wait in g_queue */
static volatile int32_t g_paused = 0;
static volatile int32_t g_stop = 0;
static volatile int32_t g_in_loop = 0;   /* a training loop is between its first and last boundary */
static volatile int64_t g_applied = 0;   /* requests applied so far */
static double g_lr = NAN;                /* the learning rate the controls set for the running loop */

/* An event of the controls at this step boundary (the loop's thread records it). */
static void control_event(NomaCtx *c, int32_t action, double value) {
    noma__event(c, NOMA_EV_CONTROL, action, -1, -1, NULL, -1, NULL, 1);
    if (c->nevents > 0) c->events[c->nevents - 1].value = value;
}

static void lock(void) {
    while (__atomic_exchange_n(&g_lock, 1, __ATOMIC_ACQUIRE)) {
    }
}

static void unlock(void) { __atomic_store_n(&g_lock, 0, __ATOMIC_RELEASE); }

static int32_t push(const CtlRequest *r) {
    lock();
    int32_t ok = g_len < CTL_QUEUE;
    if (ok) {
        g_queue[g_len++] = *r;
        __atomic_store_n(&g_pending, 1, __ATOMIC_RELEASE);
    }
    unlock();
    return ok;
}

/* Queue a resize of dim `dim_id` to `size` (relative: by `size`, keeping at least one unit) with
   a resize policy (NOMA_POLICY_*) and its two parameters. 1 queued, 0 the queue is full. */
int32_t noma_ctl_resize_dim(int64_t dim_id, int64_t size, int32_t relative, int32_t policy, real a,
                            real b) {
    CtlRequest r;
    memset(&r, 0, sizeof r);
    r.kind = 0;
    r.relative = relative;
    r.id = dim_id;
    r.size = size;
    r.policy = policy;
    r.a = a;
    r.b = b;
    return push(&r);
}

/* Queue a learning rate for the running loop (> 0). */
int32_t noma_ctl_set_lr(real lr) {
    CtlRequest r;
    memset(&r, 0, sizeof r);
    r.kind = 1;
    r.lr = (double)lr;
    return push(&r);
}

void noma_ctl_pause(int32_t on) { __atomic_store_n(&g_paused, on ? 1 : 0, __ATOMIC_RELEASE); }
int32_t noma_ctl_paused(void) { return __atomic_load_n(&g_paused, __ATOMIC_ACQUIRE); }
void noma_ctl_stop(void) { __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE); }
int64_t noma_ctl_applied(void) { return __atomic_load_n(&g_applied, __ATOMIC_ACQUIRE); }
int32_t noma_ctl_in_loop(void) { return __atomic_load_n(&g_in_loop, __ATOMIC_ACQUIRE); }

/* Forget every request and the pause/stop/lr state (a new session, a cell that ended). */
void noma_ctl_clear(void) {
    lock();
    g_len = 0;
    __atomic_store_n(&g_pending, 0, __ATOMIC_RELEASE);
    unlock();
    __atomic_store_n(&g_paused, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&g_stop, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&g_in_loop, 0, __ATOMIC_RELEASE);
    g_lr = NAN;
}

/* Called by the compiled loop at its stop test: 1 (once) when stop was asked for. */
int32_t noma_ctl_take_stop(void) {
    if (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) return 0;
    __atomic_store_n(&g_stop, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&g_paused, 0, __ATOMIC_RELEASE);
    control_event(noma__cur(), NOMA_CTL_EV_STOP, NAN);
    return 1;
}

/* The learning rate that replaces a loop's own while it runs (NaN: none). */
double noma__ctl_lr_override(NomaCtx *c) { return c->defer_on ? g_lr : NAN; }

static void set_lr(NomaCtx *c, double lr) {
    control_event(c, NOMA_CTL_EV_LR, lr);
    g_lr = lr;
    for (int64_t s = 0; s < c->nparams; s++) {
        NomaParam *p = c->params[s];
        if (p && p->opt_kind != NOMA_OPT_NONE) p->hyper.lr = (real)lr;
    }
}

/* Apply the queued requests on the current context (its deferred-resize queue). */
static void apply_queue(NomaCtx *c) {
    CtlRequest taken[CTL_QUEUE];
    lock();
    int32_t n = g_len;
    memcpy(taken, g_queue, (size_t)n * sizeof *taken);
    g_len = 0;
    __atomic_store_n(&g_pending, 0, __ATOMIC_RELEASE);
    unlock();
    for (int32_t i = 0; i < n; i++) {
        if (taken[i].kind == 1) {
            set_lr(c, taken[i].lr);
        } else {
            int64_t size = taken[i].size;
            if (taken[i].relative) {
                int64_t now = noma_dim_get(taken[i].id);
                size = now + size < 1 ? 1 : now + size;
            }
            int32_t defer = c->defer_on;
            c->defer_on = 1; /* queue it as a realloc in the body would, then apply the queue */
            noma_dim_resize(taken[i].id, size, taken[i].policy, taken[i].a, taken[i].b, -1);
            c->defer_on = defer;
            c->ctl_origin = 1;
            int64_t fails = c->fail_count;
            noma_defer_apply();
            c->ctl_origin = 0;
            if (c->fail_count != fails) break;
        }
        __atomic_add_fetch(&g_applied, 1, __ATOMIC_RELEASE);
    }
}

/* Apply what is queued now (no loop runs: a front end's thread, with the context active).
   0 when a request failed (its error is the context's; the requests after it are dropped). */
int32_t noma_ctl_apply_now(NomaCtx *c) {
    NomaCtx *cur = noma__ctx_or_cur(c);
    int64_t fails = cur->fail_count;
    if (__atomic_load_n(&g_pending, __ATOMIC_ACQUIRE)) apply_queue(cur);
    return cur->fail_count == fails;
}

/* At a training loop's step boundary (noma_check_interrupt). */
void noma__ctl_step(NomaCtx *c) {
    __atomic_store_n(&g_in_loop, 1, __ATOMIC_RELEASE);
    if (__atomic_load_n(&g_pending, __ATOMIC_ACQUIRE)) apply_queue(c);
    if (!__atomic_load_n(&g_paused, __ATOMIC_ACQUIRE)) return;
    control_event(c, NOMA_CTL_EV_PAUSE, NAN);
    while (__atomic_load_n(&g_paused, __ATOMIC_ACQUIRE) && !__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE) &&
           !noma_poll_interrupt()) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        if (__atomic_load_n(&g_pending, __ATOMIC_ACQUIRE)) apply_queue(c);
    }
    if (!__atomic_load_n(&g_paused, __ATOMIC_ACQUIRE)) control_event(c, NOMA_CTL_EV_RESUME, NAN);
}

/* A training loop ended (noma_defer_end): its learning rate is forgotten. */
void noma__ctl_loop_end(void) {
    __atomic_store_n(&g_in_loop, 0, __ATOMIC_RELEASE);
    g_lr = NAN;
}
