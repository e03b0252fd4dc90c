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
 *
 * At idle priority. Walking a large state is a few hundred milliseconds of CPU, due on every
 * member at about the same index; at ordinary priority it took its share of the cores from
 * the event loops, and the writes of a loaded cluster waited (p99 10-40 ms in the rounds with
 * snapshots against 6-9 ms without: docs/ARCHITECTURE.md, "Session 37"). Given `idle_seconds`,
 * the walk runs in a thread of its own, scheduled SCHED_IDLE: it uses only CPU no other
 * thread wants and yields it at once to one that wakes. That thread never holds the GIL, and
 * must not: a Python thread at idle priority holding the GIL, preempted, would keep every
 * other thread of the process waiting for as long as the machine has no idle CPU (seconds,
 * measured, beside two busy processes on two cores). And since a thread cannot take back an
 * ordinary priority without a privilege, a walk still unfinished after `idle_seconds` (a
 * machine busy to its last core) is abandoned and done again by the calling thread, at its
 * own priority; the idle thread stops at its next key and is joined.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* The output, written into memory of its own (PyMem_Raw*, which needs no GIL), so that any
 * thread may write it; copied into the bytes object returned at the end. */
typedef struct {
    char *data;
    size_t length, capacity;
    int failed;                 /* no memory */
    atomic_int *abandoned;      /* when set, the walk stops at its next key (NULL: never) */
} Output;

static int reserve(Output *out, size_t more) {
    if (out->length + more <= out->capacity) return 1;
    if (out->failed) return 0;
    size_t capacity = out->capacity ? out->capacity : ((size_t)1 << 16);
    while (capacity < out->length + more) capacity *= 2;
    char *data = PyMem_RawRealloc(out->data, capacity);
    if (data == NULL) {
        out->failed = 1;
        return 0;
    }
    out->data = data;
    out->capacity = capacity;
    return 1;
}

static char *at_end(Output *out) { return out->data + out->length; }

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
    out->length = (size_t)(at - out->data);
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
        if (out->abandoned != NULL && atomic_load_explicit(out->abandoned, memory_order_relaxed))
            return 0;
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

/* Every shard into `out`; 1 if all were encoded. `progress`: the shards walked so far. */
static int walk(Output *out, PyObject **shards, Py_ssize_t count, Py_buffer *progress) {
    int encoded = 1;
    for (Py_ssize_t i = 0; encoded && i < count; i++) {
        encoded = put_shard(out, shards[i]);
        if (progress->buf != NULL) {
            int64_t walked = (int64_t)i + 1;
            memcpy(progress->buf, &walked, sizeof walked);
        }
    }
    return encoded;
}

/* A walk handed to a thread of idle priority. */
typedef struct {
    PyObject **shards;
    Py_ssize_t count;
    Py_buffer *progress;
    Output out;
    int encoded, done;
    atomic_int abandoned;
    pthread_mutex_t lock;
    pthread_cond_t ended;
} IdleWalk;

/* Walks that found too little idle CPU in time and were done again at ordinary priority. */
static atomic_long walks_moved = 0;

static void *walk_at_idle_priority(void *argument) {
    IdleWalk *job = argument;
#ifdef SCHED_IDLE
    struct sched_param parameters = {0};
    sched_setscheduler(0, SCHED_IDLE, &parameters); /* 0: this thread; if refused, it walks as is */
#endif
    int encoded = walk(&job->out, job->shards, job->count, job->progress);
    pthread_mutex_lock(&job->lock);
    job->encoded = encoded;
    job->done = 1;
    pthread_cond_signal(&job->ended);
    pthread_mutex_unlock(&job->lock);
    return NULL;
}

/* The walk into `out`, by a thread of idle priority for up to `idle_seconds`, then (or if no
 * thread can be started) here. Called without the GIL. */
static int walk_idle_first(Output *out, PyObject **shards, Py_ssize_t count,
                           Py_buffer *progress, double idle_seconds) {
    IdleWalk job;
    memset(&job, 0, sizeof job);
    job.shards = shards;
    job.count = count;
    job.progress = progress;
    job.out = *out; /* the buffer allocated for the walk is the idle thread's now */
    atomic_init(&job.abandoned, 0);
    job.out.abandoned = &job.abandoned;
    pthread_condattr_t attributes;
    if (pthread_condattr_init(&attributes) != 0) return walk(out, shards, count, progress);
    int ready = pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC) == 0 &&
                pthread_cond_init(&job.ended, &attributes) == 0;
    pthread_condattr_destroy(&attributes);
    if (!ready) return walk(out, shards, count, progress);
    pthread_mutex_init(&job.lock, NULL);
    pthread_t thread;
    if (pthread_create(&thread, NULL, walk_at_idle_priority, &job) != 0) {
        pthread_cond_destroy(&job.ended);
        pthread_mutex_destroy(&job.lock);
        return walk(out, shards, count, progress);
    }
    if (idle_seconds > 1e6) idle_seconds = 1e6; /* a deadline a time_t holds */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double whole = (double)(time_t)idle_seconds;
    deadline.tv_sec += (time_t)idle_seconds;
    deadline.tv_nsec += (long)((idle_seconds - whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&job.lock);
    while (!job.done) {
        int waited = pthread_cond_timedwait(&job.ended, &job.lock, &deadline);
        if (waited != 0 && waited != EINTR) break; /* timed out (or cannot wait): walk here */
    }
    int done = job.done;
    pthread_mutex_unlock(&job.lock);
    int encoded;
    if (done) {
        encoded = job.encoded;
        *out = job.out;
        out->abandoned = NULL;
    } else {
        /* Abandoned: walked again here, meanwhile the idle thread stops at its next key. */
        atomic_store(&job.abandoned, 1);
        atomic_fetch_add(&walks_moved, 1);
        out->data = NULL;
        out->capacity = 0;
        encoded = walk(out, shards, count, progress);
    }
    pthread_join(thread, NULL);
    if (!done) PyMem_RawFree(job.out.data);
    pthread_cond_destroy(&job.ended);
    pthread_mutex_destroy(&job.lock);
    return encoded;
}

PyDoc_STRVAR(encode_shards_doc,
             "encode_shards(shards, release_gil, size_hint=0, progress=None, idle_seconds=0.0)\n"
             "-> bytes | None\n\n"
             "The items of every dict in `shards`, in order, as the body of a MessagePack map\n"
             "(no header): what msgspec encodes for each dict, its header cut off. None if an\n"
             "item is one this module does not encode. `release_gil` only for frozen shards,\n"
             "which nothing changes while they are read. `size_hint`: the bytes expected (the\n"
             "output starts that big and grows as needed). `progress`, a writable buffer of 8\n"
             "bytes, is told the number of shards walked so far as the walk goes (tests).\n"
             "`idle_seconds` (with `release_gil`): walk in a thread of idle priority, for that\n"
             "long at most, then here (module comment).");

static PyObject *encode_shards(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *list;
    int release_gil;
    Py_ssize_t size_hint = 0;
    PyObject *progress_object = Py_None;
    double idle_seconds = 0.0;
    if (!PyArg_ParseTuple(args, "O!p|nOd:encode_shards", &PyList_Type, &list, &release_gil,
                          &size_hint, &progress_object, &idle_seconds))
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
    if (shards == NULL) {
        if (progress.buf != NULL) PyBuffer_Release(&progress);
        return PyErr_NoMemory();
    }
    Py_ssize_t held = 0;
    for (; held < count; held++) {
        PyObject *shard = PyList_GET_ITEM(list, held);
        if (!PyDict_CheckExact(shard)) break;
        Py_INCREF(shard);
        shards[held] = shard;
    }
    size_t first = size_hint > 0 ? (size_t)size_hint : ((size_t)1 << 16);
    Output out = {PyMem_RawMalloc(first), 0, first, 0, NULL};
    if (out.data == NULL) out.failed = 1;
    int encoded = held == count && !out.failed;
    if (encoded) {
        if (release_gil) {
            Py_BEGIN_ALLOW_THREADS
            encoded = idle_seconds > 0 ? walk_idle_first(&out, shards, count, &progress, idle_seconds)
                                       : walk(&out, shards, count, &progress);
            Py_END_ALLOW_THREADS
        } else {
            encoded = walk(&out, shards, count, &progress);
        }
    }
    if (progress.buf != NULL) PyBuffer_Release(&progress);
    for (Py_ssize_t i = 0; i < held; i++) Py_DECREF(shards[i]);
    PyMem_Free(shards);
    PyObject *result = NULL;
    if (out.failed) {
        PyErr_NoMemory();
    } else if (!encoded) {
        result = Py_NewRef(Py_None);
    } else if ((result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)out.length)) != NULL) {
        char *into = PyBytes_AS_STRING(result);
        if (release_gil) { /* megabytes: copied while the other threads run */
            Py_BEGIN_ALLOW_THREADS
            memcpy(into, out.data, out.length);
            Py_END_ALLOW_THREADS
        } else {
            memcpy(into, out.data, out.length);
        }
    }
    PyMem_RawFree(out.data);
    return result;
}

PyDoc_STRVAR(walks_moved_doc,
             "walks_moved() -> int: walks in this process that found too little idle CPU in\n"
             "their `idle_seconds` and were done again at the caller's priority.");

static PyObject *walks_moved_count(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused)) {
    return PyLong_FromLong(atomic_load(&walks_moved));
}

static PyMethodDef methods[] = {
    {"use", use, METH_O, use_doc},
    {"encode_shards", encode_shards, METH_VARARGS, encode_shards_doc},
    {"walks_moved", walks_moved_count, METH_NOARGS, walks_moved_doc},
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
