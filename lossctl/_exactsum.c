/*
 * lossctl._exactsum: the binning step of the exact sum (lossctl/accumulators.py)
 * in one pass over the values instead of six NumPy passes.
 *
 * bin_sums(x, bins) sets bins, a writable float64 buffer of 2 * 4096 values,
 * to the sums of the high parts of the float64 values x[i] (their bits with
 * the low 16 cleared: row 0) and of the rest (x[i] - high: row 1), each at
 * the index of x[i]'s sign and exponent bits.  This is the split of the
 * NumPy code, so with at most 2**16 values per call (the caller's job) every
 * bin sum is exact.  Infinities and NaNs propagate into their bins as in
 * NumPy, where the caller finds them.
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

static PyMethodDef methods[] = {
    {"bin_sums", bin_sums, METH_VARARGS,
     "bin_sums(x, bins): set bins[2, 4096] to the sums of the high and low parts of x by exponent."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_exactsum", NULL, -1, methods};

PyMODINIT_FUNC PyInit__exactsum(void) { return PyModule_Create(&module); }
