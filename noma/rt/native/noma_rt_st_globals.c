/* safetensors: every tensor of a file into global slots at once.

   `load_safetensors m = "f.safetensors";` at the top level binds m.NAME for every tensor of the
   file. One call reads the header once and finds the names through a sorted index, so a file of
   n tensors costs O(n log n) instead of n header parses (50,000 tiny tensors: a moment, not
   minutes). Errors (io, shape) are those of noma_st_load, at the statement's span. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "noma_rt_internal.h"

static int st_by_name(const void *a, const void *b) {
    const NomaStEntry *x = *(const NomaStEntry *const *)a, *y = *(const NomaStEntry *const *)b;
    return strcmp(x->name, y->name);
}

/* The problem with entry e (NULL: none) for a tensor of the program's rank `rank`, in msg. */
static int32_t st_check(const char *path, const char *name, const NomaStEntry *e, int64_t rank,
                        char *msg, size_t cap) {
    if (!e) {
        snprintf(msg, cap, "%s: no tensor named '%s'", path, name);
    } else if (e->rank > 4) {
        snprintf(msg, cap, "%s: tensor '%s' has rank %lld (at most 4 supported)", path, name,
                 (long long)e->rank);
    } else if (!noma__st_dtype_size(e->dtype)) {
        snprintf(msg, cap, "%s: tensor '%s' has unsupported dtype %s", path, name, e->dtype);
    } else if (e->rank != rank) {
        snprintf(msg, cap, "%s: tensor '%s' has rank %lld, expected %lld", path, name,
                 (long long)e->rank, (long long)rank);
        return NOMA_ERR_SHAPE;
    } else {
        msg[0] = 0;
    }
    return NOMA_ERR_IO;
}

void noma_st_load_globals(const char *path, int64_t n, const char *names, const int64_t *ranks,
                          const int64_t *slots, int64_t span) {
    char msg[NOMA_ERRMSG];
    NomaStFile sf;
    if (!noma__st_open(path, &sf, msg, sizeof msg)) {
        noma__failf(NOMA_ERR_IO, span, "%s", msg);
        return;
    }
    const NomaStEntry **index = (const NomaStEntry **)malloc((size_t)(sf.n ? sf.n : 1) * sizeof *index);
    if (!index) {
        noma__st_close(&sf);
        noma__failf(NOMA_ERR_RUNTIME, span, "out of memory (safetensors index of %s)", path);
        return;
    }
    for (int64_t i = 0; i < sf.n; i++) index[i] = &sf.entries[i];
    qsort(index, (size_t)sf.n, sizeof *index, st_by_name);
    const char *name = names;
    int32_t kind = NOMA_ERR_IO;
    msg[0] = 0;
    for (int64_t i = 0; i < n && !msg[0]; i++, name += strlen(name) + 1) {
        NomaStEntry key;
        memset(&key, 0, sizeof key);
        key.name = (char *)name;
        const NomaStEntry *kp = &key;
        const NomaStEntry **hit =
            (const NomaStEntry **)bsearch(&kp, index, (size_t)sf.n, sizeof *index, st_by_name);
        const NomaStEntry *e = hit ? *hit : NULL;
        kind = st_check(path, name, e, ranks[i], msg, sizeof msg);
        if (msg[0]) break;
        int64_t count = noma__st_numel(e);
        real *buf = (real *)malloc((size_t)(count ? count : 1) * sizeof(real));
        if (!buf || !noma__st_read(path, sf.data_start, e, buf, 0)) {
            free(buf);
            kind = NOMA_ERR_IO;
            snprintf(msg, sizeof msg, "%s: cannot read the data of tensor '%s'", path, name);
            break;
        }
        NomaTensor t;
        memset(&t, 0, sizeof t);
        t.data = buf;
        t.rank = e->rank;
        for (int64_t a = 0; a < e->rank; a++) t.dims[a] = e->shape[a];
        /* copies; its failure (out of memory) unwinds, leaving this call's index unfreed */
        noma_global_store(slots[i], &t);
        free(buf);
    }
    free(index);
    noma__st_close(&sf);
    if (msg[0]) noma__failf(kind, span, "%s", msg);
}
