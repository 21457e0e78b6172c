/*
 * noma_rt_io.c -- CSV and safetensors files for the NOMA native runtime.
 *
 * All failures are io errors (kind 5) whose message starts with the file's
 * path, except shape/rank mismatches against what the program expects (kind 3).
 * Loaded tensors live in the arena.
 *
 * safetensors layout: 8-byte little-endian header length N, N bytes of JSON
 * (object: name -> {"dtype", "shape", "data_offsets": [begin, end]} plus an
 * optional "__metadata__" object of strings), then the data region; offsets
 * are relative to the start of the data region. The JSON is parsed by a small
 * hand-written parser for exactly this subset (unknown keys inside a tensor
 * entry are skipped). Nothing large is allocated before the header length
 * (<= 100 MB and <= file size - 8) and the requested tensor's dtype, shape and
 * offsets were validated. This file assumes a little-endian host.
 *
 * Only regular files are read and written (open_regular): a directory, a named
 * pipe, a device or a socket at a user's path is an io error naming what it is
 * (a FIFO without a writer would block open() forever, /dev/zero never ends).
 *
 * The header reader (noma__st_open: every entry and the metadata, validated)
 * and the writer (noma__st_write: real and I64 tensors plus metadata) are
 * shared with noma_rt_checkpoint.c through noma_rt_internal.h.
 */
#include "noma_rt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "noma_rt_io.c assumes a little-endian host"
#endif

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

/* What a file that is not a regular file is, for the messages. */
static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a named pipe (FIFO)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

/* path opened for reading ("rb") or writing (created, or truncated: "wb"), only when it is a
   regular file (or, writing, does not exist yet); NULL with "SHOWN: cannot read|write: WHY" in msg.
   The kind is checked before opening (opening a FIFO without a writer blocks) and again on the
   open descriptor (O_NONBLOCK: the path may have changed in between); truncation waits for that. */
static FILE *open_regular(const char *path, const char *shown, int writing, char *msg, size_t cap) {
    const char *verb = writing ? "write" : "read";
    struct stat sb;
    if (!path) {
        snprintf(msg, cap, "missing file name");
        return NULL;
    }
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        snprintf(msg, cap, "%s: cannot %s: it is %s, not a regular file", shown, verb,
                 file_kind(sb.st_mode));
        return NULL;
    }
    int fd = open(path, (writing ? O_WRONLY | O_CREAT : O_RDONLY) | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(msg, cap, "%s: cannot %s: %s", shown, verb, strerror(errno));
        return NULL;
    }
    int known = fstat(fd, &sb) == 0;
    if (known && !S_ISREG(sb.st_mode)) {
        snprintf(msg, cap, "%s: cannot %s: it is %s, not a regular file", shown, verb,
                 file_kind(sb.st_mode));
        close(fd);
        return NULL;
    }
    int flags = known ? fcntl(fd, F_GETFL) : -1;
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        (writing && ftruncate(fd, 0) != 0)) {
        snprintf(msg, cap, "%s: cannot %s: %s", shown, verb, strerror(errno));
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, writing ? "wb" : "rb");
    if (!f) {
        snprintf(msg, cap, "%s: cannot %s: %s", shown, verb, strerror(errno));
        close(fd);
    }
    return f;
}

static FILE *open_or_fail(const char *path, int64_t span, int writing) {
    char msg[NOMA_ERRMSG];
    FILE *f = open_regular(path, path, writing, msg, sizeof msg);
    if (!f) noma__failf(NOMA_ERR_IO, span, "%s", msg);
    return f;
}

static int64_t file_size(FILE *f) {
    if (fseek(f, 0, SEEK_END) != 0) return -1;
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) return -1;
    return (int64_t)sz;
}

static int fmt_num(char *buf, size_t cap, double x) {
    if (isnan(x)) return snprintf(buf, cap, "nan");
    if (isinf(x)) return snprintf(buf, cap, x > 0 ? "inf" : "-inf");
#ifdef NOMA_F32
    return snprintf(buf, cap, "%.9g", x);
#else
    return snprintf(buf, cap, "%.17g", x);
#endif
}

/* ======================================================================== */
/* CSV                                                                      */
/*                                                                          */
/* Numbers separated by commas (spaces/tabs around them allowed), "#" starts */
/* a comment up to the end of the line, blank lines are skipped, the first   */
/* non-blank line is skipped as a header when a field holds text that is   */
/* not a number (an empty field does not make a header). A UTF-8 byte order */
/* mark at the start is skipped. An empty field in a data row, a later       */
/* non-number and a row with another number of values are io errors naming  */
/* the line (and column). Result: rank 2 [rows, cols].                       */
/* ======================================================================== */

static int parse_field(const char *s, const char *e, double *out) {
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    char tmp[128];
    size_t L = (size_t)(e - s);
    if (L == 0 || L >= sizeof tmp) return 0;
    memcpy(tmp, s, L);
    tmp[L] = 0;
    char *end = NULL;
    double v = strtod(tmp, &end);
    if (end != tmp + L) return 0;
    *out = v;
    return 1;
}

/* Whether a field holds nothing but spaces and tabs. */
static int field_blank(const char *s, const char *e) {
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    return s == e;
}

static void field_text(char *buf, size_t cap, const char *s, const char *e) {
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    size_t L = (size_t)(e - s);
    if (L >= cap) L = cap - 1;
    memcpy(buf, s, L);
    buf[L] = 0;
}

/* noma__fail_alloc's error (worded while the blocks still count as in use), then the blocks are
   freed, then it is raised: an armed jump never skips the frees. */
static void fail_alloc_freeing(NomaCtx *c, int64_t span, uint64_t bytes, const char *what, void *a,
                               void *b) {
    jmp_buf *armed = c->jb;
    c->jb = NULL;
    noma__fail_alloc(c, span, bytes, what);
    c->jb = armed;
    noma__xfree(a);
    noma__xfree(b);
    char m[NOMA_ERRMSG];
    snprintf(m, sizeof m, "%s", c->err_msg);
    noma__failf(c->err_kind, span, "%s", m);
}

void noma_load_csv(const char *path, NomaTensor *out, int64_t span) {
    NomaCtx *c = noma__cur();
    if (!out) return;
    memset(out, 0, sizeof *out);
    out->rank = 2;
    FILE *f = open_or_fail(path, span, 0);
    if (!f) return;
    int64_t size = file_size(f);
    /* the text and the values are runtime blocks: they count against the memory limit */
    char *text = size >= 0 ? (char *)noma__xmalloc((size_t)size + 1) : NULL;
    if (!text && size >= 0) {
        fclose(f);
        noma__fail_alloc(c, span, (uint64_t)size + 1, path);
        return;
    }
    if (!text || (size > 0 && fread(text, 1, (size_t)size, f) != (size_t)size)) {
        fclose(f);
        noma__xfree(text);
        noma__failf(NOMA_ERR_IO, span, "%s: cannot read the file", path);
        return;
    }
    fclose(f);
    text[size] = 0;

    double *vals = NULL;
    int64_t nvals = 0, cap = 0, rows = 0, cols = -1, line_no = 0;
    int seen_first = 0;
    const char *p = text, *end = text + size;
    if (size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p += 3; /* a UTF-8 byte order mark */
    char msg_field[64];
    while (p < end) {
        const char *ls = p;
        const char *le = memchr(p, '\n', (size_t)(end - p));
        if (!le) le = end;
        p = le < end ? le + 1 : end;
        line_no++;
        const char *hash = memchr(ls, '#', (size_t)(le - ls));
        if (hash) le = hash;
        while (le > ls && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t')) le--;
        const char *t = ls;
        while (t < le && (*t == ' ' || *t == '\t')) t++;
        if (t == le) continue;
        /* count fields and classify them: numbers, empty fields, other text */
        int64_t nf = 0, bad_col = 0, empty_col = 0;
        const char *bad_s = NULL, *bad_e = NULL;
        for (const char *fs = ls;;) {
            const char *fe = memchr(fs, ',', (size_t)(le - fs));
            if (!fe) fe = le;
            double v;
            nf++;
            if (!parse_field(fs, fe, &v)) {
                if (field_blank(fs, fe)) {
                    if (!empty_col) empty_col = nf;
                } else if (!bad_col) {
                    bad_col = nf;
                    bad_s = fs;
                    bad_e = fe;
                }
            }
            if (fe == le) break;
            fs = fe + 1;
        }
        if (bad_col && !seen_first) { /* a first line with text that is not a number: the header */
            seen_first = 1;
            continue;
        }
        if (bad_col || empty_col) {
            if (bad_col) field_text(msg_field, sizeof msg_field, bad_s, bad_e);
            noma__xfree(vals);
            noma__xfree(text);
            if (empty_col && (!bad_col || empty_col < bad_col)) {
                noma__failf(NOMA_ERR_IO, span, "%s: line %lld, column %lld is empty", path,
                            (long long)line_no, (long long)empty_col);
            } else {
                noma__failf(NOMA_ERR_IO, span, "%s: line %lld, column %lld: cannot read '%s' as a number",
                            path, (long long)line_no, (long long)bad_col, msg_field);
            }
            return;
        }
        seen_first = 1;
        if (cols < 0)
            cols = nf;
        else if (nf != cols) {
            noma__xfree(vals);
            noma__xfree(text);
            noma__failf(NOMA_ERR_IO, span, "%s: line %lld has %lld values, expected %lld", path,
                        (long long)line_no, (long long)nf, (long long)cols);
            return;
        }
        if (nvals + nf > cap) {
            int64_t nc = cap ? cap * 2 : 1024;
            while (nc < nvals + nf) nc *= 2;
            double *q = (double *)noma__xmalloc((size_t)nc * sizeof(double));
            if (!q) {
                fail_alloc_freeing(c, span, (uint64_t)nc * sizeof(double), path, vals, text);
                return;
            }
            if (nvals) memcpy(q, vals, (size_t)nvals * sizeof(double));
            noma__xfree(vals);
            vals = q;
            cap = nc;
        }
        for (const char *fs = ls;;) {
            const char *fe = memchr(fs, ',', (size_t)(le - fs));
            if (!fe) fe = le;
            parse_field(fs, fe, &vals[nvals++]);
            if (fe == le) break;
            fs = fe + 1;
        }
        rows++;
    }
    noma__xfree(text);
    if (rows == 0) {
        noma__xfree(vals);
        noma__failf(NOMA_ERR_IO, span, "%s: no numeric rows", path);
        return;
    }
    /* the arena block must not unwind past vals (a leaked block would stay charged): fail
       without jumping, free vals, then raise the recorded error */
    jmp_buf *armed = c->jb;
    c->jb = NULL;
    real *d = noma__alloc_at(c, nvals, span);
    c->jb = armed;
    if (!d) {
        noma__xfree(vals);
        char m[NOMA_ERRMSG];
        snprintf(m, sizeof m, "%s", c->err_msg);
        noma__failf(c->err_kind, span, "%s", m);
        return;
    }
    for (int64_t i = 0; i < nvals; i++) d[i] = (real)vals[i];
    noma__xfree(vals);
    out->data = d;
    out->dims[0] = rows;
    out->dims[1] = cols;
}

/* rank 0: one value; rank 1: one value per line; rank 2: one row per line. */
void noma_save_csv(const char *path, const NomaTensor *v, int64_t span) {
    if (!noma__check_tensor(v, span, "save_csv")) return;
    if (v->rank > 2) {
        noma__failf(NOMA_ERR_SHAPE, span, "%s: CSV files hold at most 2 axes, got rank %lld",
                    path ? path : "?", (long long)v->rank);
        return;
    }
    FILE *f = open_or_fail(path, span, 1);
    if (!f) return;
    int64_t rows = v->rank == 0 ? 1 : v->dims[0];
    int64_t cols = v->rank == 2 ? v->dims[1] : 1;
    char num[64];
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            int L = fmt_num(num, sizeof num, (double)v->data[i * cols + j]);
            if (j) fputc(',', f);
            fwrite(num, 1, (size_t)L, f);
        }
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) noma__failf(NOMA_ERR_IO, span, "%s: cannot write the file", path);
}

/* ======================================================================== */
/* safetensors: dtypes                                                      */
/* ======================================================================== */

typedef struct {
    const char *name;
    int size;      /* bytes per element */
    int supported; /* converted to real on load */
} StDtype;

static const StDtype ST_DTYPES[] = {
    {"F64", 8, 1}, {"F32", 4, 1},  {"F16", 2, 1},     {"BF16", 2, 1},    {"I64", 8, 1},
    {"I32", 4, 1}, {"I16", 2, 1},  {"I8", 1, 1},      {"U8", 1, 1},      {"U16", 2, 1},
    {"U32", 4, 1}, {"U64", 8, 1},  {"BOOL", 1, 1},    {"F8_E5M2", 1, 0}, {"F8_E4M3", 1, 0},
};

static const StDtype *st_dtype(const char *s) {
    for (size_t i = 0; i < sizeof ST_DTYPES / sizeof ST_DTYPES[0]; i++)
        if (strcmp(ST_DTYPES[i].name, s) == 0) return &ST_DTYPES[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (h >> 15) & 1u, ex = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    float v;
    if (ex == 0)
        v = ldexpf((float)mant, -24);
    else if (ex == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 0x400u), (int)ex - 25);
    return sign ? -v : v;
}

static double st_elem(const unsigned char *b, const char *dt) {
    switch (dt[0]) {
    case 'F':
        if (dt[1] == '6') { double x; memcpy(&x, b, 8); return x; }
        if (dt[1] == '3') { float x; memcpy(&x, b, 4); return x; }
        { uint16_t h; memcpy(&h, b, 2); return half_to_float(h); }
    case 'B':
        if (dt[1] == 'F') {
            uint16_t h;
            memcpy(&h, b, 2);
            uint32_t u = (uint32_t)h << 16;
            float x;
            memcpy(&x, &u, 4);
            return x;
        }
        return b[0] ? 1.0 : 0.0; /* BOOL */
    case 'I':
        if (dt[1] == '6') { int64_t x; memcpy(&x, b, 8); return (double)x; }
        if (dt[1] == '3') { int32_t x; memcpy(&x, b, 4); return x; }
        if (dt[1] == '1') { int16_t x; memcpy(&x, b, 2); return x; }
        return (int8_t)b[0];
    case 'U':
        if (dt[1] == '6') { uint64_t x; memcpy(&x, b, 8); return (double)x; }
        if (dt[1] == '3') { uint32_t x; memcpy(&x, b, 4); return x; }
        if (dt[1] == '1') { uint16_t x; memcpy(&x, b, 2); return x; }
        return b[0];
    }
    return 0;
}

/* ======================================================================== */
/* safetensors: JSON header parser (subset)                                 */
/* ======================================================================== */

typedef struct {
    const char *start, *p, *end;
    char err[160];
} JP;

static int jerr(JP *j, const char *what) {
    if (!j->err[0])
        snprintf(j->err, sizeof j->err, "%s at byte %lld", what, (long long)(j->p - j->start));
    return 0;
}

static void jws(JP *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int jpeek(JP *j, char ch) {
    jws(j);
    return j->p < j->end && *j->p == ch;
}

static int jexpect(JP *j, char ch) {
    if (jpeek(j, ch)) {
        j->p++;
        return 1;
    }
    char what[32];
    snprintf(what, sizeof what, "expected '%c'", ch);
    return jerr(j, what);
}

static int hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = s[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (uint32_t)(ch - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* Parses a JSON string; returns a malloc'd UTF-8 copy (NULL on error). */
static char *jstring(JP *j) {
    if (!jexpect(j, '"')) return NULL;
    /* find the closing quote to size the buffer (unescaped length <= raw length) */
    const char *q = j->p;
    while (q < j->end && *q != '"') q += (*q == '\\' && q + 1 < j->end) ? 2 : 1;
    if (q >= j->end) {
        jerr(j, "unterminated string");
        return NULL;
    }
    char *out = (char *)malloc((size_t)(q - j->p) + 1);
    if (!out) {
        jerr(j, "out of memory");
        return NULL;
    }
    size_t w = 0;
    while (j->p < q) {
        unsigned char ch = (unsigned char)*j->p++;
        if (ch < 0x20) {
            free(out);
            jerr(j, "control character in string");
            return NULL;
        }
        if (ch != '\\') {
            out[w++] = (char)ch;
            continue;
        }
        char e = *j->p++;
        uint32_t cp;
        switch (e) {
        case '"': out[w++] = '"'; break;
        case '\\': out[w++] = '\\'; break;
        case '/': out[w++] = '/'; break;
        case 'b': out[w++] = '\b'; break;
        case 'f': out[w++] = '\f'; break;
        case 'n': out[w++] = '\n'; break;
        case 'r': out[w++] = '\r'; break;
        case 't': out[w++] = '\t'; break;
        case 'u':
            if (q - j->p < 4 || !hex4(j->p, &cp)) goto bad;
            j->p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) goto bad;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (q - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !hex4(j->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    goto bad;
                j->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) {
                out[w++] = (char)cp;
            } else if (cp < 0x800) {
                out[w++] = (char)(0xC0 | (cp >> 6));
                out[w++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[w++] = (char)(0xE0 | (cp >> 12));
                out[w++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[w++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[w++] = (char)(0xF0 | (cp >> 18));
                out[w++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[w++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[w++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        default:
            goto bad;
        }
    }
    j->p = q + 1;
    out[w] = 0;
    return out;
bad:
    free(out);
    jerr(j, "invalid escape in string");
    return NULL;
}

/* Non-negative integer <= 2^53. */
static int juint(JP *j, uint64_t *out) {
    jws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jerr(j, "expected a non-negative integer");
    uint64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        v = v * 10 + (uint64_t)(*j->p - '0');
        if (v > ((uint64_t)1 << 53)) return jerr(j, "integer too large");
        j->p++;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return jerr(j, "expected an integer");
    *out = v;
    return 1;
}

static int jskip(JP *j, int depth) {
    if (depth > 64) return jerr(j, "nesting too deep");
    jws(j);
    if (j->p >= j->end) return jerr(j, "unexpected end");
    char ch = *j->p;
    if (ch == '"') {
        char *s = jstring(j);
        free(s);
        return s != NULL;
    }
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        j->p++;
        if (jpeek(j, close)) {
            j->p++;
            return 1;
        }
        for (;;) {
            if (ch == '{') {
                char *k = jstring(j);
                if (!k) return 0;
                free(k);
                if (!jexpect(j, ':')) return 0;
            }
            if (!jskip(j, depth + 1)) return 0;
            if (jpeek(j, ',')) {
                j->p++;
                continue;
            }
            return jexpect(j, close);
        }
    }
    /* number / true / false / null */
    const char *s = j->p;
    while (j->p < j->end && (strchr("+-.0123456789eE", *j->p) || (*j->p >= 'a' && *j->p <= 'z'))) j->p++;
    if (j->p == s) return jerr(j, "unexpected character");
    return 1;
}

typedef struct {
    char dtype[16];
    int64_t rank;
    uint64_t shape[4];
    uint64_t begin, end;
    int found;
} StEntry;

/* One tensor entry object. Validates what can be checked without the name. */
static int st_entry(JP *j, StEntry *e, int *rank_over) {
    int have_dt = 0, have_shape = 0, have_off = 0;
    memset(e, 0, sizeof *e);
    *rank_over = 0;
    if (!jexpect(j, '{')) return 0;
    if (jpeek(j, '}')) {
        j->p++;
        return jerr(j, "empty tensor entry");
    }
    for (;;) {
        char *k = jstring(j);
        if (!k) return 0;
        if (!jexpect(j, ':')) {
            free(k);
            return 0;
        }
        if (strcmp(k, "dtype") == 0) {
            char *dt = jstring(j);
            if (!dt) {
                free(k);
                return 0;
            }
            snprintf(e->dtype, sizeof e->dtype, "%s", strlen(dt) < sizeof e->dtype ? dt : "?");
            free(dt);
            have_dt = 1;
        } else if (strcmp(k, "shape") == 0) {
            if (!jexpect(j, '[')) {
                free(k);
                return 0;
            }
            int64_t r = 0;
            if (jpeek(j, ']')) {
                j->p++;
            } else {
                for (;;) {
                    uint64_t d;
                    if (!juint(j, &d)) {
                        free(k);
                        return 0;
                    }
                    if (r < 4) e->shape[r] = d;
                    r++;
                    if (r > 64) {
                        free(k);
                        return jerr(j, "shape has too many axes");
                    }
                    if (jpeek(j, ',')) {
                        j->p++;
                        continue;
                    }
                    if (!jexpect(j, ']')) {
                        free(k);
                        return 0;
                    }
                    break;
                }
            }
            e->rank = r;
            *rank_over = r > 4;
            have_shape = 1;
        } else if (strcmp(k, "data_offsets") == 0) {
            if (!jexpect(j, '[') || !juint(j, &e->begin) || !jexpect(j, ',') || !juint(j, &e->end) ||
                !jexpect(j, ']')) {
                free(k);
                return 0;
            }
            have_off = 1;
        } else if (!jskip(j, 1)) {
            free(k);
            return 0;
        }
        free(k);
        if (jpeek(j, ',')) {
            j->p++;
            continue;
        }
        if (!jexpect(j, '}')) return 0;
        break;
    }
    if (!have_dt || !have_shape || !have_off)
        return jerr(j, "tensor entry needs dtype, shape and data_offsets");
    return 1;
}

/* ======================================================================== */
/* safetensors: reading a header (noma_st_load, noma_rt_checkpoint.c)        */
/* ======================================================================== */

static int st_addmeta(NomaStFile *sf, char *k, char *v) {
    char **p = (char **)realloc(sf->meta, (size_t)(sf->nmeta + 1) * 2 * sizeof(char *));
    if (!p) return 0;
    sf->meta = p;
    p[2 * sf->nmeta] = k;
    p[2 * sf->nmeta + 1] = v;
    sf->nmeta++;
    return 1;
}

static int st_addentry(NomaStFile *sf, char *name, const StEntry *e, int64_t *cap) {
    if (sf->n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 16;
        NomaStEntry *p = (NomaStEntry *)realloc(sf->entries, (size_t)nc * sizeof *p);
        if (!p) return 0;
        sf->entries = p;
        *cap = nc;
    }
    NomaStEntry *o = &sf->entries[sf->n++];
    memset(o, 0, sizeof *o);
    o->name = name;
    memcpy(o->dtype, e->dtype, sizeof o->dtype);
    o->rank = e->rank;
    for (int a = 0; a < 4; a++) o->shape[a] = (int64_t)e->shape[a];
    o->begin = e->begin;
    o->end = e->end;
    return 1;
}

/* The checks that hold for every entry; NULL when fine, else the problem (in pb). */
static const char *st_entry_problem(const StEntry *e, int over, uint64_t data_len, char *pb,
                                    size_t cap) {
    const StDtype *dt = st_dtype(e->dtype);
    if (!dt) {
        snprintf(pb, cap, "unknown dtype '%s'", e->dtype);
        return pb;
    }
    if (e->begin > e->end || e->end > data_len) {
        snprintf(pb, cap, "data offsets [%llu, %llu] outside the data region (%llu bytes)",
                 (unsigned long long)e->begin, (unsigned long long)e->end,
                 (unsigned long long)data_len);
        return pb;
    }
    if (over) return NULL;
    /* element count, overflow-safe (bounded by the data region) */
    uint64_t n = 1;
    int zero = 0, huge = 0;
    for (int64_t a = 0; a < e->rank; a++)
        if (e->shape[a] == 0) zero = 1;
    if (!zero)
        for (int64_t a = 0; a < e->rank; a++) {
            if (n > data_len / e->shape[a]) {
                huge = 1;
                break;
            }
            n *= e->shape[a];
        }
    if (zero) n = 0;
    if (huge || n * (uint64_t)dt->size != e->end - e->begin) {
        char sh[128];
        int64_t di[4];
        for (int a = 0; a < 4; a++) di[a] = (int64_t)e->shape[a];
        noma__shape_str(sh, sizeof sh, e->rank, di);
        snprintf(pb, cap, "data offsets [%llu, %llu] (%llu bytes) do not match shape %s of %s",
                 (unsigned long long)e->begin, (unsigned long long)e->end,
                 (unsigned long long)(e->end - e->begin), sh, e->dtype);
        return pb;
    }
    return NULL;
}

/* qsort keys: an entry's name or offsets with its index (no global state: comparators see only
   their arguments). */
typedef struct {
    const char *name;
    uint64_t begin, end;
    int64_t index;
} StKey;

static int by_name_cmp(const void *a, const void *b) {
    return strcmp(((const StKey *)a)->name, ((const StKey *)b)->name);
}

static int by_offset_cmp(const void *a, const void *b) {
    const StKey *x = (const StKey *)a, *y = (const StKey *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The rules of the reference implementation (the Rust safetensors crate): names are unique, and
   the tensors' data, in the order of their offsets, are contiguous and cover the data region
   exactly (no overlap, no gap, nothing after the last). Builds sf->by_name. 0 with msg set. */
static int st_check_layout(NomaStFile *sf, char *msg, size_t cap) {
    int64_t n = sf->n;
    sf->by_name = (int64_t *)malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    StKey *keys = (StKey *)malloc((size_t)(n ? n : 1) * sizeof(StKey));
    if (!sf->by_name || !keys) {
        free(keys);
        snprintf(msg, cap, "%s: out of memory reading the safetensors header", sf->path);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        keys[i].name = sf->entries[i].name;
        keys[i].begin = sf->entries[i].begin;
        keys[i].end = sf->entries[i].end;
        keys[i].index = i;
    }
    qsort(keys, (size_t)n, sizeof(StKey), by_name_cmp);
    for (int64_t i = 0; i < n; i++) sf->by_name[i] = keys[i].index;
    qsort(keys, (size_t)n, sizeof(StKey), by_offset_cmp);
    int ok = 1;
    for (int64_t i = 1; ok && i < n; i++)
        if (strcmp(sf->entries[sf->by_name[i]].name, sf->entries[sf->by_name[i - 1]].name) == 0) {
            snprintf(msg, cap, "%s: invalid safetensors header: tensor '%s' appears twice", sf->path,
                     sf->entries[sf->by_name[i]].name);
            ok = 0;
        }
    uint64_t at = 0;
    for (int64_t i = 0; ok && i < n; i++) {
        const NomaStEntry *e = &sf->entries[keys[i].index];
        if (e->begin != at) {
            snprintf(msg, cap,
                     "%s: invalid safetensors header: tensor '%s': data offsets [%llu, %llu] %s the "
                     "previous tensor's data (which ends at byte %llu)",
                     sf->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                     e->begin < at ? "overlap" : "leave a gap after", (unsigned long long)at);
            ok = 0;
        }
        at = e->end;
    }
    if (ok && at != sf->data_len) {
        snprintf(msg, cap,
                 "%s: invalid safetensors header: the tensors' data ends at byte %llu of a data "
                 "region of %llu bytes",
                 sf->path, (unsigned long long)at, (unsigned long long)sf->data_len);
        ok = 0;
    }
    free(keys);
    return ok;
}

void noma__st_close(NomaStFile *sf) {
    free(sf->by_name);
    for (int64_t i = 0; i < sf->n; i++) free(sf->entries[i].name);
    for (int64_t i = 0; i < 2 * sf->nmeta; i++) free(sf->meta[i]);
    free(sf->entries);
    free(sf->meta);
    free(sf->path);
    memset(sf, 0, sizeof *sf);
}

int noma__st_open(const char *path, NomaStFile *sf, char *msg, size_t cap) {
    memset(sf, 0, sizeof *sf);
    if (!path) {
        snprintf(msg, cap, "missing file name");
        return 0;
    }
    FILE *f = open_regular(path, path, 0, msg, cap);
    if (!f) return 0;
    int64_t fsz = file_size(f);
    unsigned char lenb[8];
    if (fsz < 8 || fread(lenb, 1, 8, f) != 8) {
        fclose(f);
        snprintf(msg, cap, "%s: not a safetensors file (too short)", path);
        return 0;
    }
    uint64_t N = 0;
    for (int i = 7; i >= 0; i--) N = (N << 8) | lenb[i];
    if (N > ST_MAX_HEADER) {
        fclose(f);
        snprintf(msg, cap, "%s: safetensors header length %llu is larger than 100 MB", path,
                 (unsigned long long)N);
        return 0;
    }
    if (N + 8 > (uint64_t)fsz) {
        fclose(f);
        snprintf(msg, cap, "%s: safetensors header length %llu does not fit in the file (%lld bytes)",
                 path, (unsigned long long)N, (long long)fsz);
        return 0;
    }
    uint64_t data_len = (uint64_t)fsz - 8 - N;
    char *hdr = (char *)malloc((size_t)N + 1);
    if (!hdr || fread(hdr, 1, (size_t)N, f) != (size_t)N) {
        free(hdr);
        fclose(f);
        snprintf(msg, cap, "%s: cannot read the safetensors header", path);
        return 0;
    }
    fclose(f);
    hdr[N] = 0;
    sf->path = strdup(path);
    sf->data_start = 8 + N;
    sf->data_len = data_len;

    JP j;
    memset(&j, 0, sizeof j);
    j.start = j.p = hdr;
    j.end = hdr + N;
    int64_t ecap = 0;
    int seen_meta = 0;
    int ok = sf->path != NULL && jexpect(&j, '{');
    if (!sf->path) jerr(&j, "out of memory");
    if (ok && jpeek(&j, '}')) {
        j.p++;
    } else {
        while (ok) {
            char *key = jstring(&j);
            if (!key || !jexpect(&j, ':')) {
                free(key);
                ok = 0;
                break;
            }
            if (strcmp(key, "__metadata__") == 0) {
                free(key);
                if (seen_meta) {
                    ok = jerr(&j, "__metadata__ appears twice");
                    break;
                }
                seen_meta = 1;
                /* object of strings */
                ok = jexpect(&j, '{');
                if (ok && jpeek(&j, '}')) {
                    j.p++;
                } else {
                    while (ok) {
                        char *mk = jstring(&j);
                        char *mv = mk && jexpect(&j, ':') ? jstring(&j) : NULL;
                        ok = mk && mv && st_addmeta(sf, mk, mv);
                        if (!ok) {
                            free(mk);
                            free(mv);
                            break;
                        }
                        if (jpeek(&j, ',')) {
                            j.p++;
                            continue;
                        }
                        ok = jexpect(&j, '}');
                        break;
                    }
                }
            } else {
                StEntry e;
                int over = 0;
                ok = st_entry(&j, &e, &over);
                if (ok) {
                    char pb[200];
                    const char *problem = st_entry_problem(&e, over, data_len, pb, sizeof pb);
                    if (problem) {
                        snprintf(msg, cap, "%s: tensor '%s': %s", path, key, problem);
                        free(key);
                        free(hdr);
                        noma__st_close(sf);
                        return 0;
                    }
                    ok = st_addentry(sf, key, &e, &ecap);
                    if (!ok) jerr(&j, "out of memory");
                }
                if (!ok) free(key);
            }
            if (!ok) break;
            if (jpeek(&j, ',')) {
                j.p++;
                continue;
            }
            ok = jexpect(&j, '}');
            break;
        }
    }
    if (ok) {
        jws(&j);
        if (j.p != j.end) ok = jerr(&j, "trailing characters after the header object");
    }
    free(hdr);
    if (!ok) {
        snprintf(msg, cap, "%s: invalid safetensors header: %s", path, j.err);
        noma__st_close(sf);
        return 0;
    }
    if (!st_check_layout(sf, msg, cap)) {
        noma__st_close(sf);
        return 0;
    }
    return 1;
}

const NomaStEntry *noma__st_find(const NomaStFile *sf, const char *name) {
    int64_t lo = 0, hi = sf->n; /* binary search over by_name */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(sf->entries[sf->by_name[mid]].name, name);
        if (r == 0) return &sf->entries[sf->by_name[mid]];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *noma__st_meta(const NomaStFile *sf, const char *key) {
    for (int64_t i = 0; i < sf->nmeta; i++)
        if (strcmp(sf->meta[2 * i], key) == 0) return sf->meta[2 * i + 1];
    return NULL;
}

int noma__st_dtype_size(const char *dtype) {
    const StDtype *dt = st_dtype(dtype);
    return dt && dt->supported ? dt->size : 0;
}

int64_t noma__st_numel(const NomaStEntry *e) {
    int sz = noma__st_dtype_size(e->dtype);
    return sz ? (int64_t)((e->end - e->begin) / (uint64_t)sz) : -1;
}

int noma__st_read(const char *path, uint64_t data_start, const NomaStEntry *e, void *dst,
                  int as_i64) {
    int sz = noma__st_dtype_size(e->dtype);
    if (!sz || e->rank > 4) return 0;
    uint64_t nbytes = e->end - e->begin;
    int64_t n = (int64_t)(nbytes / (uint64_t)sz);
    const char *same = as_i64 ? "I64" : sizeof(real) == 8 ? "F64" : "F32";
    int direct = strcmp(e->dtype, same) == 0;
    unsigned char *tmp = direct ? (unsigned char *)dst : (unsigned char *)malloc(nbytes ? nbytes : 1);
    char why[NOMA_ERRMSG];
    FILE *f = tmp && path ? open_regular(path, path, 0, why, sizeof why) : NULL;
    int rd = f && fseek(f, (long)(data_start + e->begin), SEEK_SET) == 0 &&
             (nbytes == 0 || fread(tmp, 1, (size_t)nbytes, f) == (size_t)nbytes);
    if (f) fclose(f);
    if (rd && !direct) {
        for (int64_t i = 0; i < n; i++) {
            double x = st_elem(tmp + i * sz, e->dtype);
            if (as_i64) ((int64_t *)dst)[i] = (int64_t)llround(x);
            else ((real *)dst)[i] = (real)x;
        }
    }
    if (!direct) free(tmp);
    return rd;
}

/* ======================================================================== */
/* safetensors: load one tensor                                             */
/* ======================================================================== */

/* The header of the file noma_st_load read last, kept per context with the file's identity
   (device, inode, size, modification time): `load_safetensors m = "f"` loads every tensor of f
   one call at a time, and parsing a header of n entries for each of them cost n^2 (50,000 tiny
   tensors took minutes). A file replaced or rewritten since is read again. */
struct NomaStCache {
    NomaStFile sf;
    int valid;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

void noma__st_cache_free(NomaCtx *c) {
    if (!c->st_cache) return;
    if (c->st_cache->valid) noma__st_close(&c->st_cache->sf);
    free(c->st_cache);
    c->st_cache = NULL;
}

/* The validated header of path (cached), or NULL with an io message in msg. */
static const NomaStFile *st_open_cached(NomaCtx *c, const char *path, char *msg, size_t cap) {
    struct stat sb;
    int known = path && stat(path, &sb) == 0;
    struct NomaStCache *k = c->st_cache;
    if (known && k && k->valid && strcmp(k->sf.path, path) == 0 && k->dev == sb.st_dev &&
        k->ino == sb.st_ino && k->size == sb.st_size && k->mtime.tv_sec == sb.st_mtim.tv_sec &&
        k->mtime.tv_nsec == sb.st_mtim.tv_nsec)
        return &k->sf;
    if (!k && !(k = c->st_cache = (struct NomaStCache *)calloc(1, sizeof *k))) {
        snprintf(msg, cap, "%s: out of memory reading the safetensors header", path ? path : "?");
        return NULL;
    }
    if (k->valid) noma__st_close(&k->sf);
    k->valid = 0;
    if (!noma__st_open(path, &k->sf, msg, cap)) return NULL;
    k->valid = known; /* a file stat could not see is read every time */
    if (known) {
        k->dev = sb.st_dev;
        k->ino = sb.st_ino;
        k->size = sb.st_size;
        k->mtime = sb.st_mtim;
    } else {
        noma__st_close(&k->sf);
        snprintf(msg, cap, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    return &k->sf;
}

void noma_st_load(const char *path, const char *name, int64_t rank, NomaTensor *out, int64_t span) {
    NomaCtx *c = noma__cur();
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!name) name = "";
    char msg[NOMA_ERRMSG];
    const NomaStFile *cached = st_open_cached(c, path, msg, sizeof msg);
    if (!cached) {
        noma__failf(NOMA_ERR_IO, span, "%s", msg);
        return;
    }
    const NomaStFile sf = *cached; /* the cache owns it: never closed here */
    const NomaStEntry *found = noma__st_find(&sf, name);
    NomaStEntry want;
    memset(&want, 0, sizeof want);
    int32_t kind = NOMA_ERR_IO;
    msg[0] = 0;
    if (!found) {
        snprintf(msg, sizeof msg, "%s: no tensor named '%s'", path, name);
    } else {
        want = *found;
        want.name = NULL;
        if (want.rank > 4)
            snprintf(msg, sizeof msg, "%s: tensor '%s' has rank %lld (at most 4 supported)", path,
                     name, (long long)want.rank);
        else if (!noma__st_dtype_size(want.dtype))
            snprintf(msg, sizeof msg, "%s: tensor '%s' has unsupported dtype %s", path, name,
                     want.dtype);
        else if (rank >= 0 && want.rank != rank) {
            kind = NOMA_ERR_SHAPE;
            snprintf(msg, sizeof msg, "%s: tensor '%s' has rank %lld, expected %lld", path, name,
                     (long long)want.rank, (long long)rank);
        }
    }
    if (msg[0]) {
        noma__failf(kind, span, "%s", msg);
        return;
    }
    /* the arena allocation may unwind: the header stays in the cache, nothing else is held */
    uint64_t data_start = sf.data_start;
    int64_t n = noma__st_numel(&want);
    real *d = noma__alloc(c, n);
    if (!d) return;
    if (!noma__st_read(path, data_start, &want, d, 0)) {
        noma__failf(NOMA_ERR_IO, span, "%s: cannot read the data of tensor '%s'", path, name);
        return;
    }
    out->data = d;
    out->rank = want.rank;
    for (int64_t a = 0; a < want.rank; a++) out->dims[a] = want.shape[a];
}

/* ======================================================================== */
/* safetensors: save                                                        */
/* ======================================================================== */

static void json_str(NomaBuf *b, const char *s);

static void nb_add(NomaBuf *b, const char *s, int64_t n) {
    if (n <= 0 || b->len < 0) return;
    if (b->len + n + 1 > b->cap) {
        int64_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) nc *= 2;
        char *p = (char *)realloc(b->data, (size_t)nc);
        if (!p) {
            b->len = -1; /* out of memory marker */
            return;
        }
        b->data = p;
        b->cap = nc;
    }
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    b->data[b->len] = 0;
}

static void nb_str(NomaBuf *b, const char *s) { nb_add(b, s, (int64_t)strlen(s)); }

static void json_str(NomaBuf *b, const char *s) {
    nb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"') nb_add(b, "\\\"", 2);
        else if (*p == '\\') nb_add(b, "\\\\", 2);
        else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            nb_add(b, esc, 6);
        } else nb_add(b, (const char *)p, 1);
    }
    nb_add(b, "\"", 1);
}

static int64_t out_numel(const NomaStOut *t) {
    int64_t n = 1;
    for (int64_t a = 0; a < t->rank; a++) n *= t->dims[a];
    return n;
}

int noma__st_write(const char *path, int64_t n, const NomaStOut *ts, int64_t nmeta,
                   const char *const *meta, int sorted, char *msg, size_t cap) {
    if (!path) {
        snprintf(msg, cap, "missing file name");
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!ts[i].name || !ts[i].name[0] || strcmp(ts[i].name, "__metadata__") == 0) {
            snprintf(msg, cap, "%s: invalid tensor name", path);
            return 0;
        }
    }
    int64_t *ord = (int64_t *)malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!ord) {
        snprintf(msg, cap, "%s: out of memory", path);
        return 0;
    }
    /* insertion sort of indices by name */
    for (int64_t i = 0; i < n; i++) {
        int64_t k = i;
        while (k > 0 && strcmp(ts[ord[k - 1]].name, ts[i].name) > 0) {
            ord[k] = ord[k - 1];
            k--;
        }
        ord[k] = i;
    }
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(ts[ord[i - 1]].name, ts[ord[i]].name) == 0) {
            snprintf(msg, cap, "%s: tensor name '%s' given twice", path, ts[ord[i]].name);
            free(ord);
            return 0;
        }
    }
    if (!sorted) /* header and data in the caller's order (save_safetensors: the statement's) */
        for (int64_t i = 0; i < n; i++) ord[i] = i;
    const char *realname = sizeof(real) == 8 ? "F64" : "F32";
    NomaBuf h = {0, 0, 0};
    nb_add(&h, "{", 1);
    if (nmeta > 0) {
        nb_str(&h, "\"__metadata__\":{");
        for (int64_t i = 0; i < nmeta; i++) {
            if (i) nb_add(&h, ",", 1);
            json_str(&h, meta[2 * i]);
            nb_add(&h, ":", 1);
            json_str(&h, meta[2 * i + 1]);
        }
        nb_add(&h, "}", 1);
    }
    uint64_t off = 0;
    char num[64];
    for (int64_t i = 0; i < n; i++) {
        const NomaStOut *t = &ts[ord[i]];
        uint64_t bytes = (uint64_t)out_numel(t) * (t->is_i64 ? 8u : sizeof(real));
        if (i || nmeta > 0) nb_add(&h, ",", 1);
        json_str(&h, t->name);
        nb_str(&h, ":{\"dtype\":\"");
        nb_str(&h, t->is_i64 ? "I64" : realname);
        nb_str(&h, "\",\"shape\":[");
        for (int64_t a = 0; a < t->rank; a++) {
            snprintf(num, sizeof num, a ? ",%lld" : "%lld", (long long)t->dims[a]);
            nb_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + bytes));
        nb_str(&h, num);
        off += bytes;
    }
    nb_add(&h, "}", 1);
    while (h.len > 0 && h.len % 8 != 0) nb_add(&h, " ", 1);
    size_t pl = strlen(path);
    char *tmp = h.len < 0 ? NULL : (char *)malloc(pl + 5);
    if (!tmp) {
        free(h.data);
        free(ord);
        snprintf(msg, cap, "%s: out of memory", path);
        return 0;
    }
    /* write to PATH.tmp, then rename over PATH (a regular file, or none yet) */
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    struct stat sb;
    FILE *f = NULL;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        snprintf(msg, cap, "%s: cannot write: it is %s, not a regular file", path,
                 file_kind(sb.st_mode));
    else
        f = open_regular(tmp, path, 1, msg, cap);
    if (!f) {
        free(tmp);
        free(h.data);
        free(ord);
        return 0;
    }
    unsigned char lenb[8];
    uint64_t N = (uint64_t)h.len;
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(N >> (8 * i));
    int bad = fwrite(lenb, 1, 8, f) != 8 || fwrite(h.data, 1, (size_t)h.len, f) != (size_t)h.len;
    for (int64_t i = 0; i < n && !bad; i++) {
        const NomaStOut *t = &ts[ord[i]];
        int64_t cnt = out_numel(t);
        size_t esz = t->is_i64 ? 8u : sizeof(real);
        if (cnt > 0) bad = fwrite(t->data, esz, (size_t)cnt, f) != (size_t)cnt;
    }
    bad |= ferror(f);
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) != 0) bad = 1;
    if (bad) remove(tmp);
    free(tmp);
    free(h.data);
    free(ord);
    if (bad) snprintf(msg, cap, "%s: cannot write the file", path);
    return !bad;
}

void noma_st_save(const char *path, int64_t n, const char **names, const NomaTensor **ts,
                  int64_t span) {
    if (!path) {
        noma__failf(NOMA_ERR_IO, span, "missing file name");
        return;
    }
    if (n < 0 || (n > 0 && (!names || !ts))) {
        noma__failf(NOMA_ERR_IO, span, "%s: invalid tensor list", path);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        if (!noma__check_tensor(ts[i], span, "save")) return;
    NomaStOut *outs = (NomaStOut *)calloc((size_t)(n ? n : 1), sizeof *outs);
    if (!outs) {
        noma__failf(NOMA_ERR_IO, span, "%s: out of memory", path);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        outs[i].name = names[i];
        outs[i].rank = ts[i]->rank;
        for (int a = 0; a < 4; a++) outs[i].dims[a] = a < ts[i]->rank ? ts[i]->dims[a] : 0;
        outs[i].data = ts[i]->data;
    }
    char msg[NOMA_ERRMSG];
    int ok = noma__st_write(path, n, outs, 0, NULL, 0, msg, sizeof msg);
    free(outs);
    if (!ok) noma__failf(NOMA_ERR_IO, span, "%s", msg);
}
