/*
 * lossctl.engine._keyindex: the hash index of a key join (--labels FILE --key COL).
 *
 * pyarrow's index_in builds its hash set of the value set on every call, so a
 * lookup per chunk would hash the whole label file again each time; this keeps
 * one open-addressing table (linear probing, a power-of-two number of int32
 * slots holding row + 1, 0 = empty) built once, and probes it chunk by chunk.
 * Integer keys are hashed with splitmix64; string keys (Arrow offsets + data)
 * by 8-byte words, and compared byte for byte on a hash match, so the index is
 * exact.  The first row of a key wins; later rows with it are duplicates.
 *
 * build_int(keys, valid, slots, first) -> duplicates
 * build_str(offsets, data, valid, slots, first) -> duplicates
 *     keys int64 (n,) / offsets int32 or int64 (n + 1,) and data bytes;
 *     valid uint8 (n,) or None (a null key is never inserted); slots zeroed,
 *     a power of two > n of them: int32 (row + 1) for integers, uint64 for
 *     strings (row + 1 below the top 32 bits of the hash, so a probe reads
 *     the row's bytes only on a tag match); first uint8 (n,): set to 1 for a
 *     row holding its key's first occurrence.
 * lookup_int(keys, slots, queries, qvalid, out, hit) -> hits
 * lookup_str(offsets, data, slots, qoffsets, qdata, qvalid, out, hit) -> hits
 *     out int64 (m,): the row of each query's key, -1 if none (or a null
 *     query); hit uint8 (n,): set to 1 for every row found; returns the
 *     number of queries found.
 * The NumPy/pyarrow twin is lossctl.engine.keyindex (same rows, same counts).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 32  /* queries whose memory accesses are prefetched together */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

static inline uint64_t splitmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t hash_bytes(const unsigned char *p, int64_t len)
{
    uint64_t h = (uint64_t)len * 0x9E3779B97F4A7C15ULL;
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 29;
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, (size_t)(len - i));
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
    }
    return splitmix64(h);
}

/* Arrow string offsets of 32 or 64 bits. */
typedef struct {
    const void *offsets;
    int wide;
    const unsigned char *data;
} Strings;

static inline int64_t str_start(const Strings *s, Py_ssize_t i)
{
    return s->wide ? ((const int64_t *)s->offsets)[i] : ((const int32_t *)s->offsets)[i];
}

static int check_strings(Py_buffer *offsets, Py_ssize_t n, Strings *s)
{
    if (offsets->len == (n + 1) * 4)
        s->wide = 0;
    else if (offsets->len == (n + 1) * 8)
        s->wide = 1;
    else
        return -1;
    s->offsets = offsets->buf;
    return 0;
}

/* slots: a power of two > n of `width` bytes each (row + 1 must fit); mask: n bytes. */
static int check_table(Py_buffer *slots, Py_ssize_t width, Py_ssize_t n, Py_buffer *mask)
{
    Py_ssize_t cap = slots->len / width;
    uint64_t rows = width == 4 ? INT32_MAX : UINT32_MAX;
    return (slots->len % width || cap <= n || (cap & (cap - 1)) || (uint64_t)n >= rows ||
            mask->len != n) ? -1 : 0;
}

static PyObject *build_int(PyObject *self, PyObject *args)
{
    Py_buffer keys, valid = {0}, slots, first;
    PyObject *valid_obj;
    if (!PyArg_ParseTuple(args, "y*Ow*w*", &keys, &valid_obj, &slots, &first))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = keys.len / 8;
    if (valid_obj != Py_None && PyObject_GetBuffer(valid_obj, &valid, PyBUF_SIMPLE) < 0)
        goto release;
    if (keys.len % 8 || check_table(&slots, 4, n, &first) || (valid.buf && valid.len != n)) {
        PyErr_SetString(PyExc_ValueError, "build_int: bad buffer sizes");
        goto done;
    }
    const int64_t *k = keys.buf;
    const uint8_t *v = valid.buf;
    int32_t *sl = slots.buf;
    uint8_t *fi = first.buf;
    uint64_t mask = (uint64_t)(slots.len / 4) - 1;
    Py_ssize_t dups = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i % BLOCK == 0)  /* prefetch the next block's slots */
            for (Py_ssize_t j = i; j < i + BLOCK && j < n; j++)
                PREFETCH(&sl[splitmix64((uint64_t)k[j]) & mask]);
        fi[i] = 0;
        if (v && !v[i])
            continue;
        uint64_t h = splitmix64((uint64_t)k[i]) & mask;
        for (;;) {
            int32_t r = sl[h];
            if (r == 0) {
                sl[h] = (int32_t)(i + 1);
                fi[i] = 1;
                break;
            }
            if (k[r - 1] == k[i]) {
                dups++;
                break;
            }
            h = (h + 1) & mask;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(dups);
done:
    if (valid.buf)
        PyBuffer_Release(&valid);
release:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&slots);
    PyBuffer_Release(&first);
    return result;
}

static PyObject *lookup_int(PyObject *self, PyObject *args)
{
    Py_buffer keys, slots, queries, qvalid = {0}, out, hit;
    PyObject *qvalid_obj;
    if (!PyArg_ParseTuple(args, "y*y*y*Ow*w*", &keys, &slots, &queries, &qvalid_obj, &out, &hit))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = keys.len / 8, m = queries.len / 8;
    if (qvalid_obj != Py_None && PyObject_GetBuffer(qvalid_obj, &qvalid, PyBUF_SIMPLE) < 0)
        goto release;
    if (keys.len % 8 || queries.len % 8 || check_table(&slots, 4, n, &hit) || out.len != m * 8 ||
        (qvalid.buf && qvalid.len != m)) {
        PyErr_SetString(PyExc_ValueError, "lookup_int: bad buffer sizes");
        goto done;
    }
    const int64_t *k = keys.buf, *q = queries.buf;
    const uint8_t *v = qvalid.buf;
    const int32_t *sl = slots.buf;
    int64_t *o = out.buf;
    uint8_t *hi = hit.buf;
    uint64_t mask = (uint64_t)(slots.len / 4) - 1;
    Py_ssize_t hits = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t b = 0; b < m; b += BLOCK) {
        Py_ssize_t e = b + BLOCK < m ? b + BLOCK : m;
        uint64_t hb[BLOCK];
        for (Py_ssize_t i = b; i < e; i++) {  /* independent loads in flight: prefetch the slots */
            hb[i - b] = splitmix64((uint64_t)q[i]) & mask;
            PREFETCH(&sl[hb[i - b]]);
        }
        for (Py_ssize_t i = b; i < e; i++)
            if (sl[hb[i - b]])
                PREFETCH(&k[sl[hb[i - b]] - 1]);
        for (Py_ssize_t i = b; i < e; i++) {
            o[i] = -1;
            if (v && !v[i])
                continue;
            for (uint64_t h = hb[i - b];; h = (h + 1) & mask) {
                int32_t r = sl[h];
                if (r == 0)
                    break;
                if (k[r - 1] == q[i]) {
                    o[i] = r - 1;
                    hi[r - 1] = 1;
                    hits++;
                    break;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(hits);
done:
    if (qvalid.buf)
        PyBuffer_Release(&qvalid);
release:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&slots);
    PyBuffer_Release(&queries);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hit);
    return result;
}

static inline int same_string(const Strings *a, Py_ssize_t i, const Strings *b, Py_ssize_t j)
{
    int64_t ai = str_start(a, i), al = str_start(a, i + 1) - ai;
    int64_t bj = str_start(b, j), bl = str_start(b, j + 1) - bj;
    return al == bl && memcmp(a->data + ai, b->data + bj, (size_t)al) == 0;
}


/* A string slot: row + 1 in the low 32 bits (0 = empty), the hash's top 32 bits above. */
#define TAG(h) ((h) >> 32 << 32)

static PyObject *build_str(PyObject *self, PyObject *args)
{
    Py_buffer offsets, data, valid = {0}, slots, first;
    PyObject *valid_obj;
    if (!PyArg_ParseTuple(args, "y*y*Ow*w*", &offsets, &data, &valid_obj, &slots, &first))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = first.len;
    Strings s;
    s.data = data.buf;
    if (valid_obj != Py_None && PyObject_GetBuffer(valid_obj, &valid, PyBUF_SIMPLE) < 0)
        goto release;
    if (check_strings(&offsets, n, &s) || check_table(&slots, 8, n, &first) ||
        (valid.buf && valid.len != n) || (n && str_start(&s, n) > data.len)) {
        PyErr_SetString(PyExc_ValueError, "build_str: bad buffer sizes");
        goto done;
    }
    const uint8_t *v = valid.buf;
    uint64_t *sl = slots.buf;
    uint8_t *fi = first.buf;
    uint64_t mask = (uint64_t)(slots.len / 8) - 1;
    Py_ssize_t dups = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t hb[BLOCK];
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i % BLOCK == 0)  /* hash the next block and prefetch its slots */
            for (Py_ssize_t j = i; j < i + BLOCK && j < n; j++) {
                int64_t start = str_start(&s, j);
                hb[j - i] = hash_bytes(s.data + start, str_start(&s, j + 1) - start);
                PREFETCH(&sl[hb[j - i] & mask]);
            }
        fi[i] = 0;
        if (v && !v[i])
            continue;
        uint64_t hash = hb[i % BLOCK], tag = TAG(hash);
        for (uint64_t h = hash & mask;; h = (h + 1) & mask) {
            uint64_t e = sl[h];
            if (e == 0) {
                sl[h] = tag | (uint64_t)(i + 1);
                fi[i] = 1;
                break;
            }
            if (TAG(e) == tag && same_string(&s, (Py_ssize_t)(uint32_t)e - 1, &s, i)) {
                dups++;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(dups);
done:
    if (valid.buf)
        PyBuffer_Release(&valid);
release:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&slots);
    PyBuffer_Release(&first);
    return result;
}

static PyObject *lookup_str(PyObject *self, PyObject *args)
{
    Py_buffer offsets, data, slots, qoffsets, qdata, qvalid = {0}, out, hit;
    PyObject *qvalid_obj;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*Ow*w*", &offsets, &data, &slots, &qoffsets, &qdata,
                          &qvalid_obj, &out, &hit))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = hit.len, m = out.len / 8;
    Strings s, q;
    s.data = data.buf;
    q.data = qdata.buf;
    if (qvalid_obj != Py_None && PyObject_GetBuffer(qvalid_obj, &qvalid, PyBUF_SIMPLE) < 0)
        goto release;
    if (out.len % 8 || check_strings(&offsets, n, &s) || check_strings(&qoffsets, m, &q) ||
        check_table(&slots, 8, n, &hit) || (qvalid.buf && qvalid.len != m) ||
        (n && str_start(&s, n) > data.len) || (m && str_start(&q, m) > qdata.len)) {
        PyErr_SetString(PyExc_ValueError, "lookup_str: bad buffer sizes");
        goto done;
    }
    const uint8_t *v = qvalid.buf;
    const uint64_t *sl = slots.buf;
    int64_t *o = out.buf;
    uint8_t *hi = hit.buf;
    uint64_t mask = (uint64_t)(slots.len / 8) - 1;
    Py_ssize_t hits = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t b = 0; b < m; b += BLOCK) {
        Py_ssize_t e = b + BLOCK < m ? b + BLOCK : m;
        uint64_t hq[BLOCK];
        for (Py_ssize_t i = b; i < e; i++) {  /* independent loads in flight: prefetch the slots */
            int64_t start = str_start(&q, i);
            hq[i - b] = hash_bytes(q.data + start, str_start(&q, i + 1) - start);
            PREFETCH(&sl[hq[i - b] & mask]);
        }
        for (Py_ssize_t i = b; i < e; i++) {  /* ... then the candidate rows' offsets */
            uint64_t en = sl[hq[i - b] & mask];
            if (en && TAG(en) == TAG(hq[i - b]))
                PREFETCH((const char *)s.offsets + ((uint32_t)en - 1) * (s.wide ? 8 : 4));
        }
        for (Py_ssize_t i = b; i < e; i++) {  /* ... then their bytes */
            uint64_t en = sl[hq[i - b] & mask];
            if (en && TAG(en) == TAG(hq[i - b]))
                PREFETCH(s.data + str_start(&s, (Py_ssize_t)(uint32_t)en - 1));
        }
        for (Py_ssize_t i = b; i < e; i++) {
            o[i] = -1;
            if (v && !v[i])
                continue;
            uint64_t tag = TAG(hq[i - b]);
            for (uint64_t h = hq[i - b] & mask;; h = (h + 1) & mask) {
                uint64_t en = sl[h];
                if (en == 0)
                    break;
                Py_ssize_t r = (Py_ssize_t)(uint32_t)en - 1;
                if (TAG(en) == tag && same_string(&s, r, &q, i)) {
                    o[i] = r;
                    hi[r] = 1;
                    hits++;
                    break;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(hits);
done:
    if (qvalid.buf)
        PyBuffer_Release(&qvalid);
release:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&slots);
    PyBuffer_Release(&qoffsets);
    PyBuffer_Release(&qdata);
    PyBuffer_Release(&out);
    PyBuffer_Release(&hit);
    return result;
}

static PyMethodDef methods[] = {
    {"build_int", build_int, METH_VARARGS,
     "build_int(keys, valid, slots, first) -> duplicates: index int64 keys into zeroed int32 slots."},
    {"lookup_int", lookup_int, METH_VARARGS,
     "lookup_int(keys, slots, queries, qvalid, out, hit) -> hits: the row of each int64 query, or -1."},
    {"build_str", build_str, METH_VARARGS,
     "build_str(offsets, data, valid, slots, first) -> duplicates: index Arrow strings, uint64 slots."},
    {"lookup_str", lookup_str, METH_VARARGS,
     "lookup_str(offsets, data, slots, qoffsets, qdata, qvalid, out, hit) -> hits."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_keyindex", NULL, -1, methods};

PyMODINIT_FUNC PyInit__keyindex(void) { return PyModule_Create(&module); }
