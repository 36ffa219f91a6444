/*
 * lossctl.core._exactsum: the binning step of the exact sum (lossctl/core/exact.py)
 * in one pass over the values instead of six NumPy passes.
 *
 * bin_sums(x, bins) sets bins, a writable float64 buffer of 2 * 4096 values,
 * to the sums of the high parts of the float64 values x[i] (their bits with
 * the low 16 cleared: row 0) and of the rest (x[i] - high: row 1), each at
 * the index of x[i]'s sign and exponent bits.  This is the split of the
 * NumPy code, so with at most 2**16 values per call (the caller's job) every
 * bin sum is exact.  Infinities and NaNs propagate into their bins as in
 * NumPy, where the caller finds them.
 *
 * group_sums(x, groups, base, hi, lo, mask) is the same split for per-group
 * sums (GroupedSum, for --by and --ci): with k = base[sign and exponent bits
 * of x[i]] + groups[i], x[i] & mask is added to hi[k] and the rest to lo[k],
 * in place of several NumPy passes and two np.bincount calls.  It adds
 * nothing and returns False when some x[i] has no bin row yet (base < 0: a
 * new exponent, or a value the caller adds another way).  The caller keeps
 * the bins within their exact range.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NBINS 4096
#define HI_MASK 0xFFFFFFFFFFFF0000ULL

static PyObject *bin_sums(PyObject *self, PyObject *args)
{
    Py_buffer x, bins;
    if (!PyArg_ParseTuple(args, "y*w*", &x, &bins))
        return NULL;
    if (x.len % (Py_ssize_t)sizeof(double) || bins.len != 2 * NBINS * (Py_ssize_t)sizeof(double)) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&bins);
        PyErr_SetString(PyExc_ValueError, "bin_sums: x must hold float64 values, bins 2 * 4096");
        return NULL;
    }
    const double *v = x.buf;
    double *hi = bins.buf, *lo = hi + NBINS;
    Py_ssize_t n = x.len / (Py_ssize_t)sizeof(double);
    Py_BEGIN_ALLOW_THREADS
    memset(hi, 0, 2 * NBINS * sizeof(double));
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t bits, hbits;
        double h;
        memcpy(&bits, &v[i], sizeof bits);
        hbits = bits & HI_MASK;
        memcpy(&h, &hbits, sizeof h);
        hi[bits >> 52] += h;
        lo[bits >> 52] += v[i] - h;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyBuffer_Release(&bins);
    Py_RETURN_NONE;
}

static PyObject *group_sums(PyObject *self, PyObject *args)
{
    Py_buffer x, groups, base, hi, lo;
    unsigned long long mask;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*K", &x, &groups, &base, &hi, &lo, &mask))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = x.len / (Py_ssize_t)sizeof(double), size = hi.len / (Py_ssize_t)sizeof(double);
    if (x.len % (Py_ssize_t)sizeof(double) || groups.len != n * (Py_ssize_t)sizeof(int64_t) ||
        base.len != NBINS * (Py_ssize_t)sizeof(int64_t) || hi.len != lo.len ||
        hi.len % (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "group_sums: x float64 (n,), groups int64 (n,), base int64 "
                                          "(4096,), hi and lo float64");
        goto done;
    }
    const double *v = x.buf;
    const int64_t *g = groups.buf, *row = base.buf;
    double *h = hi.buf, *l = lo.buf;
    int ready = 1, bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && ready && !bad; i++) {  /* nothing is added unless all fit */
        uint64_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        int64_t r = row[bits >> 52];
        ready = r >= 0;
        bad = ready && (g[i] < 0 || r + g[i] >= size);
    }
    for (Py_ssize_t i = 0; i < n && ready && !bad; i++) {
        uint64_t bits, hbits;
        double part;
        memcpy(&bits, &v[i], sizeof bits);
        hbits = bits & mask;
        memcpy(&part, &hbits, sizeof part);
        int64_t k = row[bits >> 52] + g[i];
        h[k] += part;
        l[k] += v[i] - part;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "group_sums: a group code is out of range");
        goto done;
    }
    result = PyBool_FromLong(ready);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&groups);
    PyBuffer_Release(&base);
    PyBuffer_Release(&hi);
    PyBuffer_Release(&lo);
    return result;
}

static PyMethodDef methods[] = {
    {"bin_sums", bin_sums, METH_VARARGS,
     "bin_sums(x, bins): set bins[2, 4096] to the sums of the high and low parts of x by exponent."},
    {"group_sums", group_sums, METH_VARARGS,
     "group_sums(x, groups, base, hi, lo, mask) -> bool: add x & mask to hi[base[exp] + group], "
     "the rest to lo; False (nothing added) where base is negative."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_exactsum", NULL, -1, methods};

PyMODINIT_FUNC PyInit__exactsum(void) { return PyModule_Create(&module); }
