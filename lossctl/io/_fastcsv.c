/*
 * lossctl._fastcsv: a fast path for the common CSV block, numbers only.
 *
 * parse_floats(block, delimiter, wanted) reads a block of whole CSV records
 * (no header) and returns the wanted columns as float64 arrays (bytearrays of
 * native doubles), or None when the block holds anything outside the fast
 * path: an empty field, a null marker, nan/inf, a leading '+' or '.', a bare
 * '\r', an empty line, a row with the wrong number of fields, a stray quote.
 * The caller then parses the block with pyarrow, whose values and error
 * messages are the reference, so the fast path only ever accepts input that
 * pyarrow reads to the same doubles.
 *
 * Only the wanted fields are converted; the others are skipped (quoted ones
 * too, with "" escapes and embedded delimiters or newlines).  Numbers are
 * converted exactly (correctly rounded, like pyarrow's fast_float): Clinger's
 * fast path where it is exact, else the Eisel-Lemire algorithm.  The few
 * numbers that Eisel-Lemire cannot decide (about 1 in 1,000 of 17-digit
 * ones, and those of more than 19 digits, subnormal or out of range) are
 * noted and converted afterwards by Python's own correctly rounded parser,
 * which agrees with pyarrow's to the bit, overflow to inf included.  The GIL
 * is released while parsing, so blocks parse in parallel.
 *
 * One field may be wanted as text instead (slot 0xFFFE: the --by column of a
 * slice): its raw bytes are copied out with int32 offsets, for an Arrow string
 * array (of a quoted field without "" escapes, its content); a "" escape gives
 * the block up.
 *
 * record_end(buffer, begin, end, delimiter, first, eof) tells where a block
 * may end: the last (or first) record end outside quoted fields, read by
 * pyarrow's own rules (a quote opens a quoted field only at the start of a
 * field), going from quote to quote in 16-byte SSE2 steps; the unquoted
 * stretches between are searched for line ends only at the end, last first.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <float.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define POW10_MIN (-348)
#define POW10_MAX 347
#define POW10_COUNT (POW10_MAX - POW10_MIN + 1)
#define MAX_COLUMNS 65536
#define SKIP 0xFFFF
#define TEXT 0xFFFE

/* 128-bit approximations (rounded down) of 10**e, e in [POW10_MIN, POW10_MAX],
   as (low, high) 64-bit words with the top bit of high set; set from Python. */
static uint64_t pow10_128[POW10_COUNT][2];
static int pow10_ready = 0;

static const double exact_pow10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Eisel-Lemire: man * 10**exp10 correctly rounded, or 0 when undecided. */
static int eisel_lemire(uint64_t man, int exp10, double *out)
{
    if (exp10 < POW10_MIN || exp10 > POW10_MAX)
        return 0;
    int clz = __builtin_clzll(man);
    man <<= clz;
    uint64_t exp2 = (uint64_t)(((217706 * exp10) >> 16) + 64 + 1023) - (uint64_t)clz;
    const uint64_t *pw = pow10_128[exp10 - POW10_MIN];
    unsigned __int128 x = (unsigned __int128)man * pw[1];
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    if ((hi & 0x1FF) == 0x1FF && lo + man < man) {  /* widen the approximation */
        unsigned __int128 y = (unsigned __int128)man * pw[0];
        uint64_t yhi = (uint64_t)(y >> 64), ylo = (uint64_t)y;
        uint64_t mlo = lo + yhi, mhi = hi + (mlo < lo);
        if ((mhi & 0x1FF) == 0x1FF && mlo + 1 == 0 && ylo + man < man)
            return 0;
        hi = mhi;
        lo = mlo;
    }
    uint64_t msb = hi >> 63;
    uint64_t mant = hi >> (msb + 9);
    exp2 -= 1 ^ msb;
    if (lo == 0 && (hi & 0x1FF) == 0 && (mant & 3) == 1)
        return 0;  /* exactly halfway between two doubles: undecided */
    mant += mant & 1;
    mant >>= 1;
    if (mant >> 53) {
        mant >>= 1;
        exp2 += 1;
    }
    if (exp2 - 1 >= 0x7FF - 1)
        return 0;  /* subnormal or overflow */
    uint64_t bits = exp2 << 52 | (mant & 0x000FFFFFFFFFFFFFULL);
    memcpy(out, &bits, sizeof bits);
    return 1;
}

/* A number Eisel-Lemire left undecided: converted later, with the GIL held. */
typedef struct {
    int slot;
    Py_ssize_t row, start, len;
} Deferred;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR 1
/* Eight ASCII digits at once (little-endian words), as in fast_float. */
static inline uint64_t eight_digits(uint64_t v)
{
    const uint64_t mask = 0x000000FF000000FFULL;
    v -= 0x3030303030303030ULL;
    v = (v * 10) + (v >> 8);
    return (((v & mask) * 0x000F424000000064ULL) + (((v >> 16) & mask) * 0x0000271000000001ULL)) >> 32;
}

/* How many of the eight bytes of v, from the first, are ASCII digits. */
static inline int leading_digits(uint64_t v)
{
    /* a byte is a digit when its high nibble is 3 and adding 6 keeps it 3 */
    uint64_t off = ((v & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL) |
                   (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL);
    uint64_t nonzero = (((off & 0x7F7F7F7F7F7F7F7FULL) + 0x7F7F7F7F7F7F7F7FULL) | off) &
                       0x8080808080808080ULL;
    return nonzero ? __builtin_ctzll(nonzero) >> 3 : 8;
}

static const uint64_t int_pow10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                      100000000};
#else
#define SWAR 0
#endif

/* Read a run of digits into man (leading zeros not counted as digits). */
static inline const char *read_digits(const char *p, const char *end, uint64_t *man, int *digits)
{
    if (*man == 0)
        while (p < end && *p == '0')
            p++;
#if SWAR
    while (end - p >= 8) {  /* up to eight digits per step, no loop over bytes */
        uint64_t v;
        memcpy(&v, p, 8);
        int k = leading_digits(v);
        if (*digits + k > 19)
            break;
        if (k == 8) {
            *man = *man * 100000000 + eight_digits(v);
        } else if (k > 0) {  /* the k digits, after 8 - k zeros */
            int shift = 8 * (8 - k);
            *man = *man * int_pow10[k] + eight_digits((v << shift) | (0x3030303030303030ULL >> (64 - shift)));
        }
        *digits += k;
        p += k;
        if (k < 8)
            return p;
    }
#endif
    for (; p < end && (unsigned)(*p - '0') < 10; p++)
        if (++*digits <= 19)
            *man = *man * 10 + (unsigned)(*p - '0');
    return p;
}

/* Parse -?D+(.D+)?([eE][+-]?D+)? at p; return the end, or NULL if not such a
   number.  *undecided is set when the value must be converted another way. */
static const char *parse_number(const char *p, const char *end, double *out, int *undecided)
{
    int neg = 0, digits = 0, exp10 = 0, many = 0;
    uint64_t man = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    const char *start = p;
    p = read_digits(p, end, &man, &digits);
    if (p == start)
        return NULL;
    if (p < end && *p == '.') {
        const char *frac = ++p;
        p = read_digits(p, end, &man, &digits);
        if (p == frac)
            return NULL;
        exp10 = -(int)(p - frac);
    }
    many = digits > 19;  /* more digits than a uint64 holds */
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0, e = 0;
        p++;
        if (p < end && (*p == '-' || *p == '+')) {
            eneg = *p == '-';
            p++;
        }
        const char *edig = p;
        for (; p < end && (unsigned)(*p - '0') < 10; p++) {
            if (e > 100000)
                many = 1;
            else
                e = e * 10 + (*p - '0');
        }
        if (p == edig)
            return NULL;
        exp10 += eneg ? -e : e;
    }
    double v;
    if (many) {
        *undecided = 1;  /* Python's parser takes it */
        return p;
    } else if (man == 0) {
        v = 0.0;
#if FLT_EVAL_METHOD == 0
    } else if (man <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        /* Clinger: both operands exact, so one correctly rounded operation */
        v = exp10 < 0 ? (double)man / exact_pow10[-exp10] : (double)man * exact_pow10[exp10];
#endif
    } else if (!eisel_lemire(man, exp10, &v)) {
        *undecided = 1;
        return p;
    }
    *out = neg ? -v : v;
    return p;
}

#if SWAR
/* Nonzero where a byte of v is zero (exact for the lowest such byte). */
#define ZERO_BYTE(v) (((v) - 0x0101010101010101ULL) & ~(v) & 0x8080808080808080ULL)
#endif

/* Skip a field at p (not converted); return its end, or NULL to give up. */
static const char *skip_field(const char *p, const char *end, char delim)
{
    if (p < end && *p == '"') {
        for (p++;; p += 2) {  /* to the closing quote; "" is an escaped quote */
            p = memchr(p, '"', (size_t)(end - p));
            if (p == NULL)
                return NULL;
            if (p + 1 >= end || p[1] != '"')
                return p + 1;
        }
    }
#if SWAR
    const uint64_t d = 0x0101010101010101ULL * (unsigned char)delim;
    for (; end - p >= 8; p += 8) {  /* eight bytes at a time to the first special one */
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t hit = ZERO_BYTE(v ^ d) | ZERO_BYTE(v ^ 0x0A0A0A0A0A0A0A0AULL) |
                       ZERO_BYTE(v ^ 0x0D0D0D0D0D0D0D0DULL) | ZERO_BYTE(v ^ 0x2222222222222222ULL);
        if (hit) {
            p += __builtin_ctzll(hit) >> 3;
            return *p == '"' ? NULL : p;
        }
    }
#endif
    for (; p < end; p++) {
        char c = *p;
        if (c == delim || c == '\n' || c == '\r')
            return p;
        if (c == '"')
            return NULL;
    }
    return p;
}

/* The output: one growing float64 array per wanted column, and the numbers
   left for Python's parser. */
typedef struct {
    double **col;
    Py_ssize_t ncols, rows, cap;
    Deferred *later;
    Py_ssize_t nlater, caplater;
    int32_t *toff;  /* the text field: rows + 1 offsets into tdata, or NULL */
    char *tdata;
    Py_ssize_t tlen, tcap;
} Output;

static int grow_rows(Output *o)
{
    Py_ssize_t cap = 2 * o->cap;
    for (Py_ssize_t s = 0; s < o->ncols; s++) {
        double *c = realloc(o->col[s], (size_t)cap * sizeof(double));
        if (c == NULL)
            return 0;
        o->col[s] = c;
    }
    if (o->toff != NULL) {
        int32_t *t = realloc(o->toff, (size_t)(cap + 1) * sizeof(int32_t));
        if (t == NULL)
            return 0;
        o->toff = t;
    }
    o->cap = cap;
    return 1;
}

/* Copy the text field at p; return its end, or NULL to give up. */
static const char *text_field(const char *p, const char *end, char delim, Output *o)
{
    const char *q, *after;
    if (p < end && *p == '"') {  /* quoted, without "" escapes (those are pyarrow's) */
        q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (q == NULL || (q + 1 < end && q[1] == '"'))
            return NULL;
        after = q + 1;
        p++;
    } else {
        q = after = skip_field(p, end, delim);
        if (q == NULL)
            return NULL;
    }
    Py_ssize_t len = q - p;
    if (o->tlen + len > INT32_MAX)
        return NULL;
    if (o->tlen + len > o->tcap) {
        Py_ssize_t cap = 2 * (o->tlen + len) + 4096;
        char *t = realloc(o->tdata, (size_t)cap);
        if (t == NULL)
            return NULL;
        o->tdata = t;
        o->tcap = cap;
    }
    if (len > 0)  /* an empty field: nothing to copy (tdata may still be NULL) */
        memcpy(o->tdata + o->tlen, p, (size_t)len);
    o->tlen += len;
    o->toff[o->rows + 1] = (int32_t)o->tlen;
    return after;
}

static int defer(Output *o, int slot, Py_ssize_t start, Py_ssize_t len)
{
    if (o->nlater == o->caplater) {
        Py_ssize_t cap = o->caplater ? 2 * o->caplater : 64;
        Deferred *items = realloc(o->later, (size_t)cap * sizeof(Deferred));
        if (items == NULL)
            return 0;
        o->later = items;
        o->caplater = cap;
    }
    o->later[o->nlater++] = (Deferred){slot, o->rows, start, len};
    return 1;
}

/* Parse a wanted field at p into its column; return its end, or NULL to give up. */
static const char *wanted_field(const char *base, const char *p, const char *end, int slot,
                                Output *o)
{
    int quoted = p < end && *p == '"', undecided = 0;
    const char *start = p + quoted;
    p = parse_number(start, end, &o->col[slot][o->rows], &undecided);
    if (p == NULL || (undecided && !defer(o, slot, start - base, p - start)))
        return NULL;
    if (quoted) {
        if (p >= end || *p != '"')
            return NULL;
        p++;
    }
    return p;
}

/* Parse rows of `nfields` fields; return 0 to give up. */
static int parse_block(const char *p, const char *end, char delim, Py_ssize_t nfields,
                       const uint16_t *slot, Output *o)
{
    const char *base = p;
    while (p < end) {
        if (*p == '\n' || *p == '\r')
            return 0;  /* an empty line: pyarrow skips it; leave that to pyarrow */
        if (o->rows == o->cap && !grow_rows(o))
            return 0;
        for (Py_ssize_t f = 0; f < nfields; f++) {
            if (slot[f] == SKIP)
                p = skip_field(p, end, delim);
            else if (slot[f] == TEXT)
                p = text_field(p, end, delim, o);
            else
                p = wanted_field(base, p, end, slot[f], o);
            if (p == NULL)
                return 0;
            if (f + 1 < nfields) {
                if (p >= end || *p != delim)
                    return 0;  /* too few fields, or junk after a number */
                p++;
            }
        }
        if (p < end) {  /* the record must end here */
            if (*p == '\r' && p + 1 < end && p[1] == '\n')
                p++;
            if (*p != '\n')
                return 0;
            p++;
        }
        o->rows++;
    }
    return 1;
}

/* Convert the deferred numbers with Python's parser (GIL held); 0 on failure. */
static int convert_later(const char *data, Output *o)
{
    for (Py_ssize_t i = 0; i < o->nlater; i++) {
        const Deferred *d = &o->later[i];
        char text[512], *stop;
        if (d->len >= (Py_ssize_t)sizeof text)
            return 0;
        memcpy(text, data + d->start, (size_t)d->len);
        text[d->len] = '\0';
        o->col[d->slot][d->row] = PyOS_string_to_double(text, &stop, NULL);
        if (stop != text + d->len || PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

static PyObject *parse_floats(PyObject *self, PyObject *args)
{
    Py_buffer block, wanted;
    int delim, ok = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*Cy*", &block, &delim, &wanted))
        return NULL;
    const char *data = block.buf;
    Py_ssize_t nfields = wanted.len / 2;
    const uint16_t *slot = wanted.buf;
    Output o = {NULL, 0, 0, 1024 + block.len / 64, NULL, 0, 0, NULL, NULL, 0, 0};
    int texts = 0;
    if (!pow10_ready || nfields < 1 || nfields > MAX_COLUMNS || wanted.len % 2 || delim > 127) {
        PyErr_SetString(PyExc_ValueError, "parse_floats: bad arguments or powers not set");
        goto done;
    }
    for (Py_ssize_t f = 0; f < nfields; f++) {
        texts += slot[f] == TEXT;
        if (slot[f] != SKIP && slot[f] != TEXT && slot[f] + 1 > o.ncols)
            o.ncols = slot[f] + 1;
    }
    if (texts > 1) {
        PyErr_SetString(PyExc_ValueError, "parse_floats: at most one text column");
        goto done;
    }
    o.col = calloc((size_t)o.ncols + 1, sizeof(double *));
    if (o.col == NULL)
        goto nomem;
    if (texts) {
        if ((o.toff = malloc((size_t)(o.cap + 1) * sizeof(int32_t))) == NULL)
            goto nomem;
        o.toff[0] = 0;
    }
    for (Py_ssize_t s = 0; s < o.ncols; s++)
        if ((o.col[s] = malloc((size_t)o.cap * sizeof(double))) == NULL)
            goto nomem;
    Py_BEGIN_ALLOW_THREADS
    ok = parse_block(data, data + block.len, (char)delim, nfields, slot, &o);
    Py_END_ALLOW_THREADS
    if (!ok || !convert_later(data, &o)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *arrays = PyList_New(o.ncols);
    if (arrays == NULL)
        goto done;
    for (Py_ssize_t s = 0; s < o.ncols; s++) {
        PyObject *a = PyByteArray_FromStringAndSize((const char *)o.col[s],
                                                    o.rows * (Py_ssize_t)sizeof(double));
        if (a == NULL) {
            Py_DECREF(arrays);
            goto done;
        }
        PyList_SET_ITEM(arrays, s, a);
    }
    PyObject *text = Py_None;
    if (texts) {
        text = Py_BuildValue("NN", PyByteArray_FromStringAndSize((const char *)o.toff,
                                                                 (o.rows + 1) * (Py_ssize_t)sizeof(int32_t)),
                             PyByteArray_FromStringAndSize(o.tdata ? o.tdata : "", o.tlen));
        if (text == NULL) {
            Py_DECREF(arrays);
            goto done;
        }
    } else {
        Py_INCREF(text);
    }
    result = Py_BuildValue("nNN", o.rows, arrays, text);
    goto done;
nomem:
    PyErr_NoMemory();
done:
    for (Py_ssize_t s = 0; o.col != NULL && s < o.ncols; s++)
        free(o.col[s]);
    free(o.col);
    free(o.later);
    free(o.toff);
    free(o.tdata);
    PyBuffer_Release(&block);
    PyBuffer_Release(&wanted);
    return result;
}

/* The last byte c in [p, p + n), or NULL (memrchr where the C library has it). */
static const char *last_byte(const char *p, Py_ssize_t n, char c)
{
#ifdef __GLIBC__
    return n > 0 ? memrchr(p, c, (size_t)n) : NULL;
#else
    while (n-- > 0)
        if (p[n] == c)
            return p + n;
    return NULL;
#endif
}

/* The first (or last) record end in [a, b), a stretch outside quoted fields,
   or -1.  A record ends at '\n', or at a '\r' not followed by '\n'; a '\r'
   that is the buffer's last byte is undecided before eof (its '\n' may come
   in the next read). */
static Py_ssize_t stretch_end(const char *base, Py_ssize_t a, Py_ssize_t b, Py_ssize_t end,
                              int first, int eof)
{
    if (a >= b)
        return -1;
    if (first) {
        const char *n = memchr(base + a, '\n', (size_t)(b - a));
        Py_ssize_t limit = n ? n - base : b;
        const char *r = memchr(base + a, '\r', (size_t)(limit - a));
        if (r != NULL) {  /* the first CR: of a CRLF (then n is next) or bare */
            Py_ssize_t i = r - base;
            if (i + 1 < end)
                return base[i + 1] == '\n' ? i + 1 : i;
            if (eof)
                return i;
        }
        return n ? limit : -1;
    }
    const char *n = last_byte(base + a, b - a, '\n');
    Py_ssize_t from = n ? n - base + 1 : a;
    const char *r = last_byte(base + from, b - from, '\r');  /* after the last LF: bare */
    if (r != NULL && r + 1 == base + end && !eof)
        r = last_byte(base + from, r - base - from, '\r');
    if (r != NULL)
        return r - base;
    return n ? n - base : -1;
}

/* record_end(buffer, begin, end, delimiter, first, eof) -> (cut, inside).

   buffer[begin:end] starts on a record boundary.  cut is the index of the
   last (with first: the first) record end outside quoted fields, or -1;
   inside is 1 when the scan ends inside a quoted field (or, before eof, on a
   quote that may be the first of a doubled one).  The rules are those of
   pyarrow's (and Python's) CSV tokenizer: a quote opens a quoted field only
   at the start of a field; elsewhere it is a plain character.  Inside a
   quoted field "" is a quote and a lone quote ends the quoting; the rest of
   the field is unquoted. */
/* The first quote in [p, end), or NULL.  Quotes come often and close
   together in text columns: an inline 16-byte step beats a call to memchr. */
static inline const char *find_quote(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"');
    for (; end - p >= 16; p += 16) {
        int m = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), quote));
        if (m)
            return p + __builtin_ctz((unsigned)m);
    }
#endif
    return memchr(p, '"', (size_t)(end - p));
}

/* The unquoted stretches seen, kept to look for the last record end in only
   once the scan is over (most of them hold none worth finding). */
#define STRETCHES 256
typedef struct {
    Py_ssize_t a[STRETCHES], b[STRETCHES], n;
} Stretches;

/* The last record end in the stretches kept, or -1; then none are kept. */
static Py_ssize_t last_in_stretches(Stretches *st, const char *base, Py_ssize_t end, int eof)
{
    Py_ssize_t c = -1;
    while (st->n > 0 && c < 0) {
        st->n--;
        c = stretch_end(base, st->a[st->n], st->b[st->n], end, 0, eof);
    }
    st->n = 0;
    return c;
}

static PyObject *record_end(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t begin, end, cut = -1;
    int delim, first, eof, inside = 0;
    if (!PyArg_ParseTuple(args, "y*nnCpp", &buf, &begin, &end, &delim, &first, &eof))
        return NULL;
    if (begin < 0 || end > buf.len || begin > end || delim > 127) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "record_end: bad range or delimiter");
        return NULL;
    }
    const char *base = buf.buf, d = (char)delim;
    Stretches *st = first ? NULL : malloc(sizeof(Stretches));
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t out = begin, i = begin;  /* out: where the current unquoted stretch began */
    if (st != NULL)
        st->n = 0;
    for (;;) {
        const char *q = find_quote(base + i, base + end);
        Py_ssize_t stop = q == NULL ? end : q - base;
        if (q != NULL) {
            i = stop;
            char prev = i > begin ? base[i - 1] : '\n';
            if (prev != d && prev != '\n' && prev != '\r') {
                i++;  /* a quote inside an unquoted field: a plain character */
                continue;
            }
        }
        if (st == NULL) {  /* the first record end, or no room to keep stretches */
            Py_ssize_t c = stretch_end(base, out, stop, end, first, eof);
            if (c >= 0) {
                cut = c;
                if (first)
                    break;
            }
        } else if (out < stop) {  /* kept: looked into at the end, last first */
            if (st->n == STRETCHES) {
                Py_ssize_t c = last_in_stretches(st, base, end, eof);
                if (c >= 0)
                    cut = c;
            }
            st->a[st->n] = out;
            st->b[st->n++] = stop;
        }
        if (q == NULL)
            break;
        for (i++;; i += 2) {  /* inside the quoted field, to its closing quote */
            q = find_quote(base + i, base + end);
            if (q == NULL || (q + 1 == base + end && !eof)) {
                inside = 1;
                break;
            }
            i = q - base;
            if (i + 1 >= end || base[i + 1] != '"')
                break;
        }
        if (inside)
            break;
        out = ++i;
    }
    if (st != NULL) {
        Py_ssize_t c = last_in_stretches(st, base, end, eof);
        if (c >= 0)
            cut = c;
    }
    Py_END_ALLOW_THREADS
    free(st);
    PyBuffer_Release(&buf);
    return Py_BuildValue("ni", cut, inside);
}

static PyObject *set_powers(PyObject *self, PyObject *arg)
{
    Py_buffer table;
    if (PyObject_GetBuffer(arg, &table, PyBUF_SIMPLE) < 0)
        return NULL;
    if (table.len != (Py_ssize_t)sizeof pow10_128) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "set_powers: wrong table size");
        return NULL;
    }
    memcpy(pow10_128, table.buf, sizeof pow10_128);
    pow10_ready = 1;
    PyBuffer_Release(&table);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse_floats", parse_floats, METH_VARARGS,
     "parse_floats(block, delimiter, wanted) -> (rows, [bytearray], text) | None\n\n"
     "wanted: one native uint16 per column, the output slot, 0xFFFF to skip or 0xFFFE for the\n"
     "text column; text: (int32 offsets, data) bytearrays of that column, or None."},
    {"record_end", record_end, METH_VARARGS,
     "record_end(buffer, begin, end, delimiter, first, eof) -> (cut, inside): the last (or first)\n"
     "record end outside quoted fields in buffer[begin:end], or -1, and whether the scan ends\n"
     "inside a quoted field."},
    {"set_powers", set_powers, METH_O,
     "set_powers(table): the 128-bit powers of ten, (low, high) uint64 pairs for 1e-348..1e347."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcsv", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastcsv(void) { return PyModule_Create(&module); }
