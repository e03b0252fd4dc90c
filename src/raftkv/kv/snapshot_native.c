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

/* Where a walk writes: in place, into the bytes object being built (`Builder`), as long as
 * it has room; past that, in memory of its own (PyMem_Raw*, which needs no GIL, so that any
 * thread may write it), copied into the bytes object, grown, once the walk is over. In place
 * is the point: a snapshot of a large state is hundreds of megabytes, and every copy of it
 * is fresh memory the kernel must zero on first touch (docs/ARCHITECTURE.md, session 42). */
typedef struct {
    char *data;
    size_t length, capacity;
    int owned;                  /* data is PyMem_Raw memory of this output's, to free */
    int failed;                 /* no memory */
    atomic_int *abandoned;      /* when set, the walk stops at its next key (NULL: never) */
} Output;

static int reserve(Output *out, size_t more) {
    if (out->length + more <= out->capacity) return 1;
    if (out->failed) return 0;
    size_t capacity = out->capacity > ((size_t)1 << 16) ? out->capacity : ((size_t)1 << 16);
    while (capacity < out->length + more) capacity *= 2;
    char *data;
    if (out->owned) {
        data = PyMem_RawRealloc(out->data, capacity);
    } else if ((data = PyMem_RawMalloc(capacity)) != NULL && out->length > 0) {
        memcpy(data, out->data, out->length); /* out of room in place: on in memory of its own */
    }
    if (data == NULL) {
        out->failed = 1;
        return 0;
    }
    out->data = data;
    out->capacity = capacity;
    out->owned = 1;
    return 1;
}

static void release_output(Output *out) {
    if (out->owned) PyMem_RawFree(out->data);
    out->data = NULL;
    out->length = out->capacity = 0;
    out->owned = 0;
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
             "use(record_type): the KeyRecord type whose instances the walks read.\n"
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
        /* Abandoned: walked again here, into memory of its own (the idle thread may write
         * in place until it stops, at its next key). */
        atomic_store(&job.abandoned, 1);
        atomic_fetch_add(&walks_moved, 1);
        Output here = {NULL, 0, 0, 0, 0, NULL};
        encoded = walk(&here, shards, count, progress);
        *out = here;
    }
    pthread_join(thread, NULL);
    if (!done) release_output(&job.out);
    pthread_cond_destroy(&job.ended);
    pthread_mutex_destroy(&job.lock);
    return encoded;
}

/* A bytes object being written, front to back, by `append` and `walk`: the one reference to
 * it is the builder's until `finish` hands it over, cut to what was written. Until then its
 * size is the room it has (memory reserved, not yet touched), so that the walks write the
 * snapshot in place, in the memory the snapshot will keep. */
typedef struct {
    PyObject_HEAD
    PyObject *bytes; /* NULL once finished */
    Py_ssize_t length;
    int busy;        /* a walk is under way (without the GIL): no other call meanwhile */
} Builder;

/* Room for `more` bytes after what was written, growing the bytes object (with the GIL;
 * its one reference is ours, so _PyBytes_Resize may move it). */
static int make_room(Builder *self, size_t more) {
    Py_ssize_t size = PyBytes_GET_SIZE(self->bytes);
    if ((size_t)(size - self->length) >= more) return 0;
    if (more > (size_t)(PY_SSIZE_T_MAX - self->length)) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t needed = self->length + (Py_ssize_t)more;
    Py_ssize_t grown = size < PY_SSIZE_T_MAX / 2 ? size + size / 2 : PY_SSIZE_T_MAX;
    if (_PyBytes_Resize(&self->bytes, grown > needed ? grown : needed) < 0) return -1;
    return 0;
}

/* Copy `length` bytes to the end of what was written; big copies with the GIL let go of
 * (the source is held by the caller, the builder by `busy`). */
static int put(Builder *self, const char *from, size_t length) {
    if (make_room(self, length) < 0) return -1;
    char *into = PyBytes_AS_STRING(self->bytes) + self->length;
    if (length >= ((size_t)1 << 16)) {
        Py_BEGIN_ALLOW_THREADS
        memcpy(into, from, length);
        Py_END_ALLOW_THREADS
    } else {
        memcpy(into, from, length);
    }
    self->length += (Py_ssize_t)length;
    return 0;
}

static int check_open(Builder *self) {
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_ValueError, "the builder was finished");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the builder is in use by another thread");
        return -1;
    }
    return 0;
}

static PyObject *builder_create(PyTypeObject *type, Py_ssize_t capacity) {
    Builder *self = (Builder *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->bytes = PyBytes_FromStringAndSize(NULL, capacity);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *builder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"capacity", NULL};
    Py_ssize_t capacity = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:Builder", keywords, &capacity))
        return NULL;
    if (capacity < 0) {
        PyErr_SetString(PyExc_ValueError, "capacity: a size in bytes, 0 or more");
        return NULL;
    }
    return builder_create(type, capacity);
}

static void builder_dealloc(Builder *self) {
    Py_XDECREF(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(builder_append_doc, "append(data): bytes-like `data` after what was written.");

static PyObject *builder_append(Builder *self, PyObject *data) {
    if (check_open(self) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    self->busy = 1;
    int failed = put(self, view.buf, (size_t)view.len) < 0;
    self->busy = 0;
    PyBuffer_Release(&view);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(builder_walk_doc,
             "walk(shards, release_gil, progress=None, idle_seconds=0.0) -> bool\n\n"
             "The items of every dict in `shards`, in order, as the body of a MessagePack map\n"
             "(no header), after what was written: what msgspec encodes for each dict, its\n"
             "header cut off. False, and nothing written, if any of it is not what this\n"
             "module writes as msgspec does (module comment). `release_gil`: only for a\n"
             "snapshot's frozen shards, which nothing changes while they are read. `progress`,\n"
             "a writable buffer of 8 bytes, is told the number of shards walked so far as the\n"
             "walk goes (tests). `idle_seconds` (with `release_gil`): walk in a thread of idle\n"
             "priority, for that long at most, then here (module comment).");

static PyObject *builder_walk(Builder *self, PyObject *args) {
    PyObject *list;
    int release_gil;
    PyObject *progress_object = Py_None;
    double idle_seconds = 0.0;
    if (!PyArg_ParseTuple(args, "O!p|Od:walk", &PyList_Type, &list, &release_gil,
                          &progress_object, &idle_seconds))
        return NULL;
    if (check_open(self) < 0) return NULL;
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
    /* In place, in the room left in the bytes object. */
    Output out = {PyBytes_AS_STRING(self->bytes) + self->length, 0,
                  (size_t)(PyBytes_GET_SIZE(self->bytes) - self->length), 0, 0, NULL};
    int encoded = held == count;
    if (encoded) {
        self->busy = 1;
        if (release_gil) {
            Py_BEGIN_ALLOW_THREADS
            encoded = idle_seconds > 0 ? walk_idle_first(&out, shards, count, &progress, idle_seconds)
                                       : walk(&out, shards, count, &progress);
            Py_END_ALLOW_THREADS
        } else {
            encoded = walk(&out, shards, count, &progress);
        }
        self->busy = 0;
    }
    if (progress.buf != NULL) PyBuffer_Release(&progress);
    for (Py_ssize_t i = 0; i < held; i++) Py_DECREF(shards[i]);
    PyMem_Free(shards);
    PyObject *result = NULL;
    if (out.failed) {
        PyErr_NoMemory();
    } else if (!encoded) {
        result = Py_NewRef(Py_False); /* whatever it wrote in place lies past `length` */
    } else if (!out.owned) {
        self->length += (Py_ssize_t)out.length;
        result = Py_NewRef(Py_True);
    } else { /* it ran out of room: written elsewhere, copied in after growing */
        self->busy = 1;
        int failed = put(self, out.data, out.length) < 0;
        self->busy = 0;
        if (!failed) result = Py_NewRef(Py_True);
    }
    release_output(&out);
    return result;
}

PyDoc_STRVAR(builder_finish_doc,
             "finish() -> bytes: what was written; the builder takes no more after.");

static PyObject *builder_finish(Builder *self, PyObject *Py_UNUSED(unused)) {
    if (check_open(self) < 0) return NULL;
    PyObject *bytes = self->bytes;
    self->bytes = NULL;
    if (PyBytes_GET_SIZE(bytes) != self->length && _PyBytes_Resize(&bytes, self->length) < 0)
        return NULL; /* (it freed the bytes) */
    return bytes;
}

PyDoc_STRVAR(builder_length_doc, "The bytes written so far.");

static PyObject *builder_get_length(Builder *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(self->length);
}

static PyMethodDef builder_methods[] = {
    {"append", (PyCFunction)builder_append, METH_O, builder_append_doc},
    {"walk", (PyCFunction)builder_walk, METH_VARARGS, builder_walk_doc},
    {"finish", (PyCFunction)builder_finish, METH_NOARGS, builder_finish_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef builder_getset[] = {
    {"length", (getter)builder_get_length, NULL, builder_length_doc, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(builder_doc,
             "Builder(capacity=0): a bytes object written front to back (`append`, `walk`)\n"
             "and handed over by `finish`, its memory reserved up front (`capacity`, grown\n"
             "as needed): a snapshot is written in place, not assembled from copies.");

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "raftkv.kv.snapshot_native.Builder",
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = builder_doc,
    .tp_new = builder_new,
    .tp_dealloc = (destructor)builder_dealloc,
    .tp_methods = builder_methods,
    .tp_getset = builder_getset,
};

PyDoc_STRVAR(encode_shards_doc,
             "encode_shards(shards, release_gil, size_hint=0, progress=None, idle_seconds=0.0)\n"
             "-> bytes | None\n\n"
             "`Builder(size_hint).walk(...)` alone: the walk's bytes, or None where `walk`\n"
             "answers False.");

static PyObject *encode_shards(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *list;
    int release_gil;
    Py_ssize_t size_hint = 0;
    PyObject *progress_object = Py_None;
    double idle_seconds = 0.0;
    if (!PyArg_ParseTuple(args, "O!p|nOd:encode_shards", &PyList_Type, &list, &release_gil,
                          &size_hint, &progress_object, &idle_seconds))
        return NULL;
    Builder *builder = (Builder *)builder_create(&BuilderType, size_hint > 0 ? size_hint : 0);
    if (builder == NULL) return NULL;
    PyObject *walk_args = Py_BuildValue("(OOOd)", list, release_gil ? Py_True : Py_False,
                                        progress_object, idle_seconds);
    PyObject *encoded = walk_args == NULL ? NULL : builder_walk(builder, walk_args);
    Py_XDECREF(walk_args);
    PyObject *result = NULL;
    if (encoded == Py_True) {
        result = builder_finish(builder, NULL);
    } else if (encoded != NULL) {
        result = Py_NewRef(Py_None);
    }
    Py_XDECREF(encoded);
    Py_DECREF(builder);
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

PyMODINIT_FUNC PyInit_snapshot_native(void) {
    if (PyType_Ready(&BuilderType) < 0) return NULL;
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) return NULL;
    if (PyModule_AddObjectRef(created, "Builder", (PyObject *)&BuilderType) < 0) {
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
