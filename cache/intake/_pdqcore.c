/* PDQ's luma, Jarosz filter and 64x64 decimation as two passes of small weighted sums,
 * and the reference's quality metric: the part of `pdq_linear` that numpy could not do
 * in less than about 110 us at 182x182 (a dozen array operations, each a pass over
 * memory, with the GIL held between them). Here it is one pass over the pixel rows the
 * decimation reads, with the GIL released for all of it.
 *
 * Arithmetic as the reference's (ThreatExchange pdq/cpp/hashing/pdqhashing.cpp):
 * - luma = 0.299f * R + 0.587f * G + 0.114f * B in float, left to right (build with
 *   -ffp-contract=off so no fused multiply-add changes a rounding);
 * - `pdqImageDomainQualityMetric`: int d = ((u - v) * 100) / 255 in float, truncated.
 * The filter and decimation are `pdq_linear.taps`: output sample s of one direction is
 * sum_k weights[s][k] * input[inputs[s][k]], accumulated in float in k order, rows first.
 *
 * Contract (checked by `downsample` before the GIL is released):
 *   rows, cols: 1..65536;
 *   pixels: C-contiguous bytes, rows * cols * stride (stride 1: grey, luma from the one
 *           value as if it were repeated in R, G and B; stride 3..8: R, G, B first);
 *   row_inputs / col_inputs: int32, 64 * K indices (< rows / < cols), row-major;
 *   row_weights / col_weights: float32, the same shapes;
 *   out: writable float32, 64 * 64.
 * Returns the quality (0..100).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIDE 64
#define MAX_SIDE 65536

/* The Arrow C data interface (a stable ABI: arrow.apache.org/docs/format/CDataInterface),
 * through which Pillow exports an image's own pixel memory without a copy. */
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

static const float LUMA_R = 0.299f, LUMA_G = 0.587f, LUMA_B = 0.114f;

typedef struct {
    const int32_t *inputs;
    const float *weights;
    Py_ssize_t width; /* taps per sample */
} Taps;

/* One pixel row's luma into `line` (cols floats). The stride is a constant in each loop,
 * so that the compiler can vectorise the de-interleaving. */
#define LUMA_LOOP(STRIDE)                                                                  \
    for (Py_ssize_t c = 0; c < cols; c++) {                                                \
        const uint8_t *p = row + c * (STRIDE);                                             \
        line[c] = LUMA_R * p[0] + LUMA_G * p[1] + LUMA_B * p[2];                           \
    }

static void luma_row(const uint8_t *restrict row, Py_ssize_t cols, Py_ssize_t stride,
                     float *restrict line)
{
    if (stride == 1) {
        for (Py_ssize_t c = 0; c < cols; c++) {
            float v = row[c];
            line[c] = LUMA_R * v + LUMA_G * v + LUMA_B * v;
        }
    } else if (stride == 3) {
        LUMA_LOOP(3)
    } else if (stride == 4) {
        LUMA_LOOP(4)
    } else {
        LUMA_LOOP(stride)
    }
}

static int quality_metric(const float *image)
{
    int sum = 0;
    for (int i = 0; i < SIDE - 1; i++) {
        for (int j = 0; j < SIDE; j++) {
            int d = (int)(((image[i * SIDE + j] - image[(i + 1) * SIDE + j]) * 100) / 255);
            sum += abs(d);
        }
    }
    for (int i = 0; i < SIDE; i++) {
        for (int j = 0; j < SIDE - 1; j++) {
            int d = (int)(((image[i * SIDE + j] - image[i * SIDE + j + 1]) * 100) / 255);
            sum += abs(d);
        }
    }
    int quality = sum / 90;
    return quality > 100 ? 100 : quality;
}

/* across[s][c] = sum_k rw[s][k] * luma(row ri[s][k], c); then
 * out[s][t] = sum_k cw[t][k] * across[s][ci[t][k]].  `work` holds 64 * cols + cols. */
static void downsample_into(const uint8_t *pixels, Py_ssize_t cols, Py_ssize_t stride,
                            Taps rows_taps, Taps cols_taps, float *work, float *out)
{
    float *across = work, *line = work + SIDE * cols;
    for (int s = 0; s < SIDE; s++) {
        float *acc = across + s * cols;
        for (Py_ssize_t k = 0; k < rows_taps.width; k++) {
            Py_ssize_t r = rows_taps.inputs[s * rows_taps.width + k];
            float w = rows_taps.weights[s * rows_taps.width + k];
            luma_row(pixels + r * cols * stride, cols, stride, line);
            if (k == 0) {
                for (Py_ssize_t c = 0; c < cols; c++) acc[c] = w * line[c];
            } else {
                for (Py_ssize_t c = 0; c < cols; c++) acc[c] += w * line[c];
            }
        }
    }
    for (int s = 0; s < SIDE; s++) {
        const float *acc = across + s * cols;
        for (int t = 0; t < SIDE; t++) {
            const int32_t *in = cols_taps.inputs + t * cols_taps.width;
            const float *w = cols_taps.weights + t * cols_taps.width;
            float sum = w[0] * acc[in[0]];
            for (Py_ssize_t k = 1; k < cols_taps.width; k++) sum += w[k] * acc[in[k]];
            out[s * SIDE + t] = sum;
        }
    }
}

/* Taps from two buffers: int32 inputs and float32 weights of 64 * K, each index < limit. */
static int taps_from(Py_buffer *inputs, Py_buffer *weights, Py_ssize_t limit, Taps *taps)
{
    if (inputs->len != weights->len || inputs->len == 0 ||
        inputs->len % (SIDE * (Py_ssize_t)sizeof(int32_t)) != 0) {
        PyErr_SetString(PyExc_ValueError, "taps: 64 x K int32 inputs and float32 weights");
        return -1;
    }
    taps->inputs = inputs->buf;
    taps->weights = weights->buf;
    taps->width = inputs->len / (SIDE * (Py_ssize_t)sizeof(int32_t));
    for (Py_ssize_t n = 0; n < SIDE * taps->width; n++) {
        if (taps->inputs[n] < 0 || taps->inputs[n] >= limit) {
            PyErr_SetString(PyExc_ValueError, "taps: an input index is out of the image");
            return -1;
        }
    }
    return 0;
}

/* Checks the sizes, then runs the core with the GIL released: the quality, or NULL. */
static PyObject *run(const uint8_t *pixels, Py_ssize_t length, Py_ssize_t rows, Py_ssize_t cols,
                     Py_ssize_t stride, Py_buffer taps[4], Py_buffer *out)
{
    Taps row_taps, col_taps;
    int quality = 0;
    /* The bounds keep rows * cols * stride far from overflowing (the service hashes at
     * most 512x512: the reference resizes larger images first). */
    if (rows < 1 || cols < 1 || rows > MAX_SIDE || cols > MAX_SIDE ||
        !(stride == 1 || (stride >= 3 && stride <= 8)) || length < rows * cols * stride ||
        out->len != SIDE * SIDE * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "downsample: pixels or out of the wrong size");
        return NULL;
    }
    if (taps_from(&taps[0], &taps[1], rows, &row_taps) < 0 ||
        taps_from(&taps[2], &taps[3], cols, &col_taps) < 0) {
        return NULL;
    }
    float *work = PyMem_RawMalloc((size_t)(SIDE + 1) * (size_t)cols * sizeof(float));
    if (work == NULL) {
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    downsample_into(pixels, cols, stride, row_taps, col_taps, work, out->buf);
    quality = quality_metric(out->buf);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(work);
    return PyLong_FromLong(quality);
}

static void release_all(Py_buffer taps[4], Py_buffer *out)
{
    for (int n = 0; n < 4; n++) PyBuffer_Release(&taps[n]);
    PyBuffer_Release(out);
}

static PyObject *downsample(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer px, taps[4], out;
    Py_ssize_t rows, cols, stride;
    if (!PyArg_ParseTuple(args, "y*nnny*y*y*y*w*", &px, &rows, &cols, &stride, &taps[0],
                          &taps[1], &taps[2], &taps[3], &out)) {
        return NULL;
    }
    PyObject *result = run(px.buf, px.len, rows, cols, stride, taps, &out);
    PyBuffer_Release(&px);
    release_all(taps, &out);
    return result;
}

/* An exported image's pixel bytes: format "C" (one uint8 a pixel) or "+w:4" (a fixed
 * list of 4 uint8: Pillow's RGB, RGBX, RGBA layout), no nulls, no offset. */
static const uint8_t *arrow_pixels(PyObject *schema_capsule, PyObject *array_capsule,
                                   Py_ssize_t *length, Py_ssize_t *stride)
{
    struct ArrowSchema *schema = PyCapsule_GetPointer(schema_capsule, "arrow_schema");
    struct ArrowArray *array = PyCapsule_GetPointer(array_capsule, "arrow_array");
    if (schema == NULL || array == NULL) {
        return NULL;
    }
    if (array->release == NULL || array->offset != 0 || array->null_count != 0) {
        goto refuse;
    }
    if (strcmp(schema->format, "C") == 0 && array->n_buffers == 2) {
        *stride = 1;
    } else if (strcmp(schema->format, "+w:4") == 0 && schema->n_children == 1 &&
               strcmp(schema->children[0]->format, "C") == 0 && array->n_children == 1 &&
               array->children[0]->offset == 0 && array->children[0]->null_count == 0 &&
               array->children[0]->n_buffers == 2 &&
               array->children[0]->length == array->length * 4) {
        *stride = 4;
        array = array->children[0];
    } else {
        goto refuse;
    }
    *length = (Py_ssize_t)array->length;
    if (array->buffers[1] == NULL) {
        goto refuse;
    }
    return array->buffers[1];
refuse:
    PyErr_SetString(PyExc_ValueError, "downsample_arrow: not an array of uint8 pixels");
    return NULL;
}

static PyObject *downsample_arrow(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *schema, *array, *result = NULL;
    Py_buffer taps[4], out;
    Py_ssize_t rows, cols, stride = 0, length = 0;
    if (!PyArg_ParseTuple(args, "OOnny*y*y*y*w*", &schema, &array, &rows, &cols, &taps[0],
                          &taps[1], &taps[2], &taps[3], &out)) {
        return NULL;
    }
    const uint8_t *pixels = arrow_pixels(schema, array, &length, &stride);
    if (pixels != NULL) {
        result = run(pixels, length, rows, cols, stride, taps, &out);
    }
    release_all(taps, &out);
    return result;
}

static PyMethodDef methods[] = {
    {"downsample", downsample, METH_VARARGS,
     "downsample(pixels, rows, cols, stride, row_inputs, row_weights, col_inputs, "
     "col_weights, out) -> quality: PDQ's 64x64 luma image into out (float32), the GIL "
     "released."},
    {"downsample_arrow", downsample_arrow, METH_VARARGS,
     "downsample_arrow(schema, array, rows, cols, row_inputs, row_weights, col_inputs, "
     "col_weights, out) -> quality: the same from an image's __arrow_c_array__() capsules "
     "(read in place, no copy)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pdqcore", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pdqcore(void) { return PyModule_Create(&module); }
