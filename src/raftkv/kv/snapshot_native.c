/* The body of a snapshot's key map, encoded without holding the GIL (kv/snapshot_format.py).
 *
 * msgspec holds the GIL for every encode() call, so while a node encoded a large state in its
 * disk thread, its event loop waited for the GIL between the encoder's slices: a leader of
 * 600,000 keys served a quarter fewer writes during each snapshot. This module walks the
 * store's frozen shards (dicts of str to KeyRecord) with the GIL released and writes exactly
 * the bytes msgspec writes for them (a test holds the two to the same bytes).
 *
 * Reading Python objects without the GIL is safe here only because nothing can change them
 * meanwhile: a frozen shard is never written again (the key map copies a shared shard before
 * its next write, kv/key_map.py), a KeyRecord is a frozen struct, str and int are immutable,
 * and each shard is held (a reference taken with the GIL) until the walk is over. No Python
 * API that allocates, raises or touches a reference count is called without the GIL. Anything
 * this walk cannot encode byte for byte as msgspec does (a subclass, a negative or huge int, a
 * lone surrogate, a str not in the compact form) makes it answer None, and the caller encodes
 * those shards with msgspec instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* The output, written straight into the bytes object returned. It grows by _PyBytes_Resize,
 * which needs the GIL (taken back for it when the walk let go of it): for a large object that
 * is a realloc, which moves no bytes (glibc remaps the pages). */
typedef struct {
    PyObject *bytes;
    size_t length, capacity;
    PyThreadState **released; /* where the walk's saved thread state is, if it let go of the GIL */
    int failed;               /* a Python error is set (no memory) */
} Output;

static int reserve(Output *out, size_t more) {
    if (out->length + more <= out->capacity) return 1;
    if (out->failed) return 0;
    size_t capacity = out->capacity ? out->capacity : ((size_t)1 << 16);
    while (capacity < out->length + more) capacity *= 2;
    if (out->released != NULL) PyEval_RestoreThread(*out->released);
    int resized = _PyBytes_Resize(&out->bytes, (Py_ssize_t)capacity) == 0;
    if (out->released != NULL) *out->released = PyEval_SaveThread();
    if (!resized) { /* _PyBytes_Resize freed the object and set MemoryError */
        out->failed = 1;
        return 0;
    }
    out->capacity = capacity;
    return 1;
}

static char *at_end(Output *out) { return PyBytes_AS_STRING(out->bytes) + out->length; }

static void put_big_endian(char *at, uint64_t value, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) {
        at[i] = (char)(value & 0xff);
        value >>= 8;
    }
}

/* The value of a non-negative exact int below 2**64, read from its digits: 1, or 0 if it is
 * not one (PyLong_As* would raise, which needs the GIL). */
static int read_unsigned(PyObject *object, uint64_t *value) {
    if (!PyLong_CheckExact(object)) return 0;
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact((PyLongObject *)object)) return 0;
    Py_ssize_t compact = PyUnstable_Long_CompactValue((PyLongObject *)object);
    if (compact < 0) return 0;
    *value = (uint64_t)compact;
    return 1;
#else
    PyLongObject *number = (PyLongObject *)object;
    Py_ssize_t digits = Py_SIZE(number);
    if (digits < 0) return 0;
    uint64_t result = 0;
    for (Py_ssize_t i = digits - 1; i >= 0; i--) {
        if (result >> (64 - PyLong_SHIFT)) return 0;
        result = (result << PyLong_SHIFT) | number->ob_digit[i];
    }
    *value = result;
    return 1;
#endif
}

/* MessagePack's smallest form of an unsigned int, as msgspec writes it. */
static int put_unsigned(Output *out, PyObject *object) {
    uint64_t value;
    if (!read_unsigned(object, &value) || !reserve(out, 9)) return 0;
    char *at = at_end(out);
    if (value < 0x80) {
        at[0] = (char)value;
        out->length += 1;
    } else if (value <= 0xff) {
        at[0] = (char)0xcc;
        at[1] = (char)value;
        out->length += 2;
    } else if (value <= 0xffff) {
        at[0] = (char)0xcd;
        put_big_endian(at + 1, value, 2);
        out->length += 3;
    } else if (value <= 0xffffffffULL) {
        at[0] = (char)0xce;
        put_big_endian(at + 1, value, 4);
        out->length += 5;
    } else {
        at[0] = (char)0xcf;
        put_big_endian(at + 1, value, 8);
        out->length += 9;
    }
    return 1;
}

/* A str as MessagePack (its UTF-8, read from the canonical compact form, never from the
 * UTF-8 cache another thread may be filling in). */
static int put_str(Output *out, PyObject *object) {
    if (!PyUnicode_CheckExact(object)) return 0;
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(object)) return 0;
#endif
    if (!PyUnicode_IS_COMPACT(object)) return 0;
    Py_ssize_t length = PyUnicode_GET_LENGTH(object);
    int ascii = PyUnicode_IS_ASCII(object);
    int kind = PyUnicode_KIND(object);
    const void *characters = PyUnicode_DATA(object);
    size_t bytes = (size_t)length;
    if (!ascii) {
        bytes = 0;
        for (Py_ssize_t i = 0; i < length; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, characters, i);
            if (c >= 0xD800 && c <= 0xDFFF) return 0; /* msgspec refuses a lone surrogate */
            bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        }
    }
    if (bytes > 0xffffffffULL || !reserve(out, bytes + 5)) return 0;
    char *at = at_end(out);
    if (bytes < 32) {
        *at++ = (char)(0xa0 | bytes);
    } else if (bytes <= 0xff) {
        *at++ = (char)0xd9;
        *at++ = (char)bytes;
    } else if (bytes <= 0xffff) {
        *at++ = (char)0xda;
        put_big_endian(at, bytes, 2);
        at += 2;
    } else {
        *at++ = (char)0xdb;
        put_big_endian(at, bytes, 4);
        at += 4;
    }
    if (ascii) {
        memcpy(at, characters, bytes);
        at += bytes;
    } else {
        for (Py_ssize_t i = 0; i < length; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, characters, i);
            if (c < 0x80) {
                *at++ = (char)c;
            } else if (c < 0x800) {
                *at++ = (char)(0xc0 | (c >> 6));
                *at++ = (char)(0x80 | (c & 0x3f));
            } else if (c < 0x10000) {
                *at++ = (char)(0xe0 | (c >> 12));
                *at++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *at++ = (char)(0x80 | (c & 0x3f));
            } else {
                *at++ = (char)(0xf0 | (c >> 18));
                *at++ = (char)(0x80 | ((c >> 12) & 0x3f));
                *at++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *at++ = (char)(0x80 | (c & 0x3f));
            }
        }
    }
    out->length = (size_t)(at - PyBytes_AS_STRING(out->bytes));
    return 1;
}

/* KeyRecord's fields, in order: a str, then four ints. Their slots' offsets come from the
 * type itself (`use`), checked against these names. */
#define RECORD_FIELDS 5
static const char *const field_names[RECORD_FIELDS] = {
    "value", "create_index", "mod_index", "version", "lease"};
static Py_ssize_t field_offsets[RECORD_FIELDS];
static PyTypeObject *record_type = NULL;

static PyObject *field(PyObject *record, int number) {
    return *(PyObject **)((char *)record + field_offsets[number]);
}

static int put_shard(Output *out, PyObject *shard) {
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(shard, &position, &key, &value)) {
        if (!put_str(out, key)) return 0;
        if (PyUnicode_CheckExact(value)) { /* an old snapshot's record: the value alone */
            if (!put_str(out, value)) return 0;
            continue;
        }
        if (Py_TYPE(value) != record_type || !reserve(out, 1)) return 0;
        *at_end(out) = (char)(0x90 | RECORD_FIELDS); /* an array of 5 */
        out->length++;
        PyObject *text = field(value, 0);
        if (text == NULL || !put_str(out, text)) return 0;
        for (int number = 1; number < RECORD_FIELDS; number++) {
            PyObject *integer = field(value, number);
            if (integer == NULL || !put_unsigned(out, integer)) return 0;
        }
    }
    return 1;
}

PyDoc_STRVAR(use_doc,
             "use(record_type): the KeyRecord type whose instances `encode_shards` reads.\n"
             "Raises if its fields are not the five this module knows, in that order.");

static PyObject *use(PyObject *Py_UNUSED(module), PyObject *type) {
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "use() takes the KeyRecord type");
        return NULL;
    }
    PyObject *fields = PyObject_GetAttrString(type, "__struct_fields__");
    if (fields == NULL) return NULL;
    int known = PyTuple_Check(fields) && PyTuple_GET_SIZE(fields) == RECORD_FIELDS;
    for (int i = 0; known && i < RECORD_FIELDS; i++)
        known = PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(fields, i), field_names[i]) == 0;
    Py_DECREF(fields);
    if (!known) {
        PyErr_SetString(PyExc_ValueError,
                        "KeyRecord's fields changed: update kv/snapshot_native.c");
        return NULL;
    }
    Py_ssize_t offsets[RECORD_FIELDS];
    for (int i = 0; i < RECORD_FIELDS; i++) {
        PyObject *descriptor = PyObject_GetAttrString(type, field_names[i]);
        if (descriptor == NULL) return NULL;
        int slot = Py_IS_TYPE(descriptor, &PyMemberDescr_Type);
        if (slot) {
            PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
            slot = member->type == T_OBJECT_EX || member->type == T_OBJECT;
            offsets[i] = member->offset;
        }
        Py_DECREF(descriptor);
        if (!slot) {
            PyErr_SetString(PyExc_TypeError, "KeyRecord's fields are not object slots");
            return NULL;
        }
    }
    memcpy(field_offsets, offsets, sizeof offsets);
    Py_INCREF(type);
    Py_XSETREF(record_type, (PyTypeObject *)type);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(encode_shards_doc,
             "encode_shards(shards, release_gil, size_hint=0, progress=None) -> bytes | None\n\n"
             "The items of every dict in `shards`, in order, as the body of a MessagePack map\n"
             "(no header): what msgspec encodes for each dict, its header cut off. None if an\n"
             "item is one this module does not encode. `release_gil` only for frozen shards,\n"
             "which nothing changes while they are read. `size_hint`: the bytes expected (the\n"
             "output starts that big and grows as needed). `progress`, a writable buffer of 8\n"
             "bytes, is told the number of shards walked so far as the walk goes (tests).");

static PyObject *encode_shards(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *list;
    int release_gil;
    Py_ssize_t size_hint = 0;
    PyObject *progress_object = Py_None;
    if (!PyArg_ParseTuple(args, "O!p|nO:encode_shards", &PyList_Type, &list, &release_gil,
                          &size_hint, &progress_object))
        return NULL;
    if (record_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "use(KeyRecord) first");
        return NULL;
    }
    Py_buffer progress = {0};
    if (progress_object != Py_None) {
        if (PyObject_GetBuffer(progress_object, &progress, PyBUF_WRITABLE) < 0) return NULL;
        if (progress.len < (Py_ssize_t)sizeof(int64_t)) {
            PyBuffer_Release(&progress);
            PyErr_SetString(PyExc_ValueError, "progress: a writable buffer of 8 bytes");
            return NULL;
        }
    }
    /* The list may change once the GIL is let go of: hold each shard itself. */
    Py_ssize_t count = PyList_GET_SIZE(list);
    PyObject **shards = PyMem_Malloc(sizeof(PyObject *) * (size_t)(count ? count : 1));
    if (shards == NULL) return PyErr_NoMemory();
    Py_ssize_t held = 0;
    for (; held < count; held++) {
        PyObject *shard = PyList_GET_ITEM(list, held);
        if (!PyDict_CheckExact(shard)) break;
        Py_INCREF(shard);
        shards[held] = shard;
    }
    Output out = {PyBytes_FromStringAndSize(NULL, size_hint > 0 ? size_hint : 1 << 16), 0, 0, NULL, 0};
    int encoded = held == count && out.bytes != NULL;
    if (out.bytes == NULL) out.failed = 1;
    else out.capacity = (size_t)PyBytes_GET_SIZE(out.bytes);
    if (encoded) {
        PyThreadState *state = release_gil ? PyEval_SaveThread() : NULL;
        out.released = release_gil ? &state : NULL;
        for (Py_ssize_t i = 0; encoded && i < count; i++) {
            encoded = put_shard(&out, shards[i]);
            if (progress.buf != NULL) {
                int64_t walked = (int64_t)i + 1;
                memcpy(progress.buf, &walked, sizeof walked);
            }
        }
        if (state != NULL) PyEval_RestoreThread(state);
    }
    if (progress.buf != NULL) PyBuffer_Release(&progress);
    for (Py_ssize_t i = 0; i < held; i++) Py_DECREF(shards[i]);
    PyMem_Free(shards);
    if (out.failed) return NULL; /* MemoryError, set where it happened */
    if (!encoded) {
        Py_DECREF(out.bytes);
        Py_RETURN_NONE;
    }
    if (_PyBytes_Resize(&out.bytes, (Py_ssize_t)out.length) < 0) return NULL;
    return out.bytes;
}

static PyMethodDef methods[] = {
    {"use", use, METH_O, use_doc},
    {"encode_shards", encode_shards, METH_VARARGS, encode_shards_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "raftkv.kv.snapshot_native",
    "A snapshot's key map encoded as msgspec would, without the GIL (kv/snapshot_format.py).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit_snapshot_native(void) { return PyModule_Create(&module); }
