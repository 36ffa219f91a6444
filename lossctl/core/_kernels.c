/*
 * lossctl._kernels: per-row loops whose NumPy form takes many passes or is
 * slow on CPUs without AVX-512 (where NumPy's float64 exp is a scalar libm
 * call, ~10 ns a value).
 *
 * bucket_ids(rows, offset, buckets, out): out[i] = the bucket of row
 * rows[i] for --ci, exactly lossctl.core.intervals.bucket_ids' integer formula
 * (splitmix64 of rows[i] + offset, top 32 bits scaled to [0, buckets)).
 *
 * key_bucket_ids(offsets, data, offset, buckets, out): out[i] = the bucket of
 * the row id data[offsets[i]:offsets[i + 1]] for --ci-key, exactly
 * lossctl.core.intervals.key_bucket_ids' integer formula (the bytes'
 * polynomial hash sum b_j P^j mod 2^64, mixed with the length, then as
 * bucket_ids with the key offset).
 *
 * int_key_bucket_ids(values, offset, buckets, out): the same for integer row
 * ids, hashed as their decimal text (17 as "17", as a CSV file holds it),
 * without making the text.
 *
 * log_softmax(x, log_s, m): for logits x of shape (n, K) whose columns are
 * contiguous (column-major, or row slices of it), set m[i] to the row max and
 * log_s[i] to log(sum_k exp(x[i, k] - m[i])), the formula of
 * lossctl.losses._log_softmax: where the sum S < 1.5 (a confident row),
 * log S is taken as log1p of the terms other than one max (ties add their
 * count), so log(1 + 1e-20) does not round to 0.  exp is evaluated in
 * vectorisable C (Cody-Waite reduction, degree-13 Taylor polynomial, two
 * power-of-two scalings so subnormal results come out right): within about
 * 1 ulp of the correctly rounded value, like libm's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(d) for finite d <= 0 (all a row's shifted logits are). */
static inline double exp_nonpositive(double d)
{
    const double shift = 0x1.8p52;  /* adding it rounds to an integer, kept in the low bits */
    d = d < -1100.0 ? -1100.0 : d;  /* exp is 0 there anyway; keeps k small */
    double t = d * 0x1.71547652b82fep0 + shift;  /* log2(e) */
    double k = t - shift;
    double r = (d - k * 0x1.62e42fee00000p-1) - k * 0x1.a39ef35793c76p-33;  /* ln 2, hi + lo */
    double p = 1.0 / 6227020800.0;  /* exp(r), |r| <= ln2 / 2: Taylor to r**13 / 13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t tbits;
    memcpy(&tbits, &t, sizeof tbits);
    uint64_t minus_k = 0x4338000000000000ULL - tbits;  /* -k >= 0, from the low bits of t */
    int64_t k1 = -(int64_t)(minus_k >> 1), k2 = -(int64_t)minus_k - k1;  /* 2**k = 2**k1 2**k2 */
    uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))  /* AVX2 + FMA */
#else
#define CLONES
#endif

CLONES static void log_softmax_rows(const double *col0, Py_ssize_t n, Py_ssize_t K, Py_ssize_t stride,
                                    double *ls, double *mx, double *others, double *nmax)
{
    memcpy(mx, col0, (size_t)n * sizeof(double));
    for (Py_ssize_t k = 1; k < K; k++) {  /* column passes: contiguous, vectorisable */
        const double *c = col0 + k * stride;
        for (Py_ssize_t i = 0; i < n; i++)
            mx[i] = c[i] > mx[i] ? c[i] : mx[i];
    }
    memset(others, 0, (size_t)(2 * n) * sizeof(double));
    for (Py_ssize_t k = 0; k < K; k++) {
        const double *c = col0 + k * stride;
        for (Py_ssize_t i = 0; i < n; i++) {  /* branch-free, so it vectorises */
            double d = c[i] - mx[i], e = exp_nonpositive(d);
            others[i] += d == 0.0 ? 0.0 : e;
            nmax[i] += d == 0.0 ? 1.0 : 0.0;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        double s = others[i] + nmax[i];
        ls[i] = s < 1.5 ? log1p(others[i] + (nmax[i] - 1.0)) : log(s);
    }
}

static PyObject *log_softmax(PyObject *self, PyObject *args)
{
    PyObject *xo, *lo, *mo;
    Py_buffer x, log_s, m;
    if (!PyArg_ParseTuple(args, "OOO", &xo, &lo, &mo))
        return NULL;
    if (PyObject_GetBuffer(xo, &x, PyBUF_RECORDS_RO) < 0)
        return NULL;
    if (PyObject_GetBuffer(lo, &log_s, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (PyObject_GetBuffer(mo, &m, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&log_s);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = x.ndim == 2 ? x.shape[0] : 0, K = x.ndim == 2 ? x.shape[1] : 0;
    if (x.ndim != 2 || strcmp(x.format, "d") || (x.strides[0] != (Py_ssize_t)sizeof(double) && n > 1) ||
        x.strides[1] % (Py_ssize_t)sizeof(double) || K < 1 ||
        log_s.len != n * (Py_ssize_t)sizeof(double) || m.len != log_s.len) {
        PyErr_SetString(PyExc_ValueError, "log_softmax: x must be float64 (n, K) with contiguous "
                                          "columns, log_s and m float64 (n,)");
        goto done;
    }
    const double *col0 = x.buf;
    Py_ssize_t stride = x.strides[1] / (Py_ssize_t)sizeof(double);
    double *ls = log_s.buf, *mx = m.buf;
    double *others = PyMem_RawMalloc((size_t)(2 * n + 1) * sizeof(double));
    if (others == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *nmax = others + n;
    Py_BEGIN_ALLOW_THREADS
    log_softmax_rows(col0, n, K, stride, ls, mx, others, nmax);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(others);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&log_s);
    PyBuffer_Release(&m);
    return result;
}

static inline uint64_t splitmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static PyObject *bucket_ids(PyObject *self, PyObject *args)
{
    Py_buffer rows, out;
    unsigned long long offset, buckets;
    if (!PyArg_ParseTuple(args, "y*KKw*", &rows, &offset, &buckets, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = rows.len / (Py_ssize_t)sizeof(int64_t);
    if (rows.len % (Py_ssize_t)sizeof(int64_t) || out.len != rows.len || buckets > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError, "bucket_ids: rows and out int64 (n,), buckets < 2**32");
        goto done;
    }
    const uint64_t *r = rows.buf;
    uint64_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        o[i] = ((splitmix64(r[i] + offset) >> 32) * buckets) >> 32;
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
}

static inline uint64_t text_hash(const uint8_t *d, int64_t n)
{
    uint64_t h = 0, power = 1;
    for (int64_t j = 0; j < n; j++) {
        h += (uint64_t)d[j] * power;
        power *= 0x100000001B3ULL;
    }
    return splitmix64(h ^ splitmix64((uint64_t)n));
}

static PyObject *key_bucket_ids(PyObject *self, PyObject *args)
{
    Py_buffer offsets, data, out;
    unsigned long long offset, buckets;
    if (!PyArg_ParseTuple(args, "y*y*KKw*", &offsets, &data, &offset, &buckets, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = out.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *off = offsets.buf;
    if (out.len % (Py_ssize_t)sizeof(int64_t) || offsets.len != (n + 1) * (Py_ssize_t)sizeof(int64_t)
        || buckets > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError,
                        "key_bucket_ids: offsets int64 (n + 1,), out int64 (n,), buckets < 2**32");
        goto done;
    }
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (off[i] < off[0] || off[i] > (int64_t)data.len || (i && off[i] < off[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "key_bucket_ids: offsets out of order or of range");
            goto done;
        }
    }
    const uint8_t *d = data.buf;
    uint64_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t h = text_hash(d + off[i], off[i + 1] - off[i]);
        o[i] = ((splitmix64(h + offset) >> 32) * buckets) >> 32;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *int_key_bucket_ids(PyObject *self, PyObject *args)
{
    Py_buffer values, out;
    unsigned long long offset, buckets;
    if (!PyArg_ParseTuple(args, "y*KKw*", &values, &offset, &buckets, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = values.len / (Py_ssize_t)sizeof(int64_t);
    if (values.len % (Py_ssize_t)sizeof(int64_t) || out.len != values.len || buckets > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError,
                        "int_key_bucket_ids: values and out int64 (n,), buckets < 2**32");
        goto done;
    }
    const int64_t *v = values.buf;
    uint64_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t text[21], *end = text + sizeof text, *p = end;
        uint64_t a = v[i] < 0 ? (uint64_t)0 - (uint64_t)v[i] : (uint64_t)v[i];
        do {
            *--p = (uint8_t)('0' + a % 10);
            a /= 10;
        } while (a);
        if (v[i] < 0)
            *--p = '-';
        uint64_t h = text_hash(p, end - p);
        o[i] = ((splitmix64(h + offset) >> 32) * buckets) >> 32;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&values);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"log_softmax", log_softmax, METH_VARARGS,
     "log_softmax(x, log_s, m): row max m and log sum exp(x - m) of float64 x (n, K), columns contiguous."},
    {"bucket_ids", bucket_ids, METH_VARARGS,
     "bucket_ids(rows, offset, buckets, out): the --ci bucket of each int64 row, into int64 out."},
    {"key_bucket_ids", key_bucket_ids, METH_VARARGS,
     "key_bucket_ids(offsets, data, offset, buckets, out): the --ci-key bucket of each row id."},
    {"int_key_bucket_ids", int_key_bucket_ids, METH_VARARGS,
     "int_key_bucket_ids(values, offset, buckets, out): the --ci-key bucket of each integer id."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
