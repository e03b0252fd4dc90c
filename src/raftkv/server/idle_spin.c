/* Keeping a CPU out of halt for a short window after the event loop's work
 * (server/idle_poll.py says when and why; docs/ARCHITECTURE.md, session 46, the numbers).
 *
 * A `Spinner` is run by a thread of its own, at SCHED_IDLE (set by idle_poll.py): `run()`
 * releases the GIL and, while `arm()`'s deadline is ahead, spins on the CPU the arming
 * thread last ran on; past it, it sleeps on a futex until the next `arm()`. The scheduler
 * preempts a SCHED_IDLE thread at once for any other, so the spinning only fills time the
 * CPU would otherwise spend halted, and a thread woken there starts without the CPU having
 * to be woken first (in a virtual machine that does not poll before halting, 50-100 µs a
 * wake-up here). Nothing here takes the GIL: `arm()` is an atomic store, and a futex wake
 * only when the spinner sleeps. */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    _Atomic int64_t deadline_ns; /* CLOCK_MONOTONIC; the spinning ends there */
    _Atomic uint32_t sleeping;   /* the futex word: 1 while `run` waits for `arm` */
    _Atomic int stopping;
    _Atomic int running;     /* 0: not in run(); 1: entering; 2: `thread` set */
    _Atomic int64_t spun_ns; /* total time spent spinning */
    _Atomic int64_t arms;
    pthread_t thread;        /* the thread in `run` (valid while `running`) */
    int cpu;                 /* the CPU the spinner is bound to; -1: none yet */
} Spinner;

static inline int64_t now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static inline void futex_wake(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static PyObject *Spinner_run(Spinner *self, PyObject *Py_UNUSED(ignored)) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&self->running, &expected, 1)) {
        PyErr_SetString(PyExc_RuntimeError, "the spinner is already running");
        return NULL;
    }
    self->thread = pthread_self();
    atomic_store(&self->running, 2); /* `thread` is set: arm() may bind it */
    Py_BEGIN_ALLOW_THREADS
    while (!atomic_load(&self->stopping)) {
        int64_t start = now_ns(), now = start;
        while (now < atomic_load_explicit(&self->deadline_ns, memory_order_relaxed) &&
               !atomic_load_explicit(&self->stopping, memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause(); /* spares a hyperthread sibling */
#endif
            now = now_ns();
        }
        atomic_fetch_add(&self->spun_ns, now - start);
        /* Sleep unless an `arm()` came in between: it sets the deadline before it reads
         * `sleeping`, and this reads the deadline after setting it. */
        atomic_store(&self->sleeping, 1);
        if (now_ns() >= atomic_load(&self->deadline_ns) && !atomic_load(&self->stopping)) {
            syscall(SYS_futex, (uint32_t *)&self->sleeping, FUTEX_WAIT_PRIVATE, 1, NULL, NULL,
                    0);
        }
        atomic_store(&self->sleeping, 0);
    }
    Py_END_ALLOW_THREADS
    atomic_store(&self->running, 0);
    Py_RETURN_NONE;
}

static PyObject *Spinner_arm(Spinner *self, PyObject *arg) {
    long long window_ns = PyLong_AsLongLong(arg);
    if (window_ns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    atomic_store(&self->deadline_ns, now_ns() + window_ns);
    atomic_fetch_add(&self->arms, 1);
    if (atomic_load(&self->running) == 2) {
        /* Spin where the caller runs: the CPU its thread is woken on next, if idle. */
        int cpu = sched_getcpu();
        if (cpu >= 0 && cpu != self->cpu) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            if (pthread_setaffinity_np(self->thread, sizeof(set), &set) == 0) {
                self->cpu = cpu;
            }
        }
    }
    if (atomic_exchange(&self->sleeping, 0)) {
        futex_wake(&self->sleeping);
    }
    Py_RETURN_NONE;
}

static PyObject *Spinner_stop(Spinner *self, PyObject *Py_UNUSED(ignored)) {
    atomic_store(&self->stopping, 1);
    atomic_store(&self->sleeping, 0);
    futex_wake(&self->sleeping);
    Py_RETURN_NONE;
}

static PyObject *Spinner_spun_seconds(Spinner *self, void *Py_UNUSED(closure)) {
    return PyFloat_FromDouble((double)atomic_load(&self->spun_ns) / 1e9);
}

static PyObject *Spinner_arms(Spinner *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLongLong(atomic_load(&self->arms));
}

static PyObject *Spinner_sleeping(Spinner *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(atomic_load(&self->sleeping) != 0);
}

static PyObject *Spinner_bound_cpu(Spinner *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLong(self->cpu);
}

static int Spinner_init(Spinner *self, PyObject *args, PyObject *kwargs) {
    if (!PyArg_ParseTuple(args, ":Spinner")) {
        return -1;
    }
    atomic_store(&self->deadline_ns, 0);
    atomic_store(&self->sleeping, 0);
    atomic_store(&self->stopping, 0);
    atomic_store(&self->running, 0);
    atomic_store(&self->spun_ns, 0);
    atomic_store(&self->arms, 0);
    self->cpu = -1;
    return 0;
}

static PyMethodDef Spinner_methods[] = {
    {"run", (PyCFunction)Spinner_run, METH_NOARGS,
     "Spin while armed, sleep otherwise, until stop(); without the GIL."},
    {"arm", (PyCFunction)Spinner_arm, METH_O,
     "Spin for the next `window_ns` nanoseconds, on the calling thread's CPU."},
    {"stop", (PyCFunction)Spinner_stop, METH_NOARGS, "End run()."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Spinner_getset[] = {
    {"spun_seconds", (getter)Spinner_spun_seconds, NULL, "time spent spinning", NULL},
    {"arms", (getter)Spinner_arms, NULL, "arm() calls so far", NULL},
    {"sleeping", (getter)Spinner_sleeping, NULL, "waiting for the next arm()", NULL},
    {"bound_cpu", (getter)Spinner_bound_cpu, NULL, "the CPU it spins on; -1: none yet", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SpinnerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "raftkv.server.idle_spin.Spinner",
    .tp_basicsize = sizeof(Spinner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Keeps a CPU out of halt for a window after arm().",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Spinner_init,
    .tp_methods = Spinner_methods,
    .tp_getset = Spinner_getset,
};

static struct PyModuleDef idle_spin_module = {
    PyModuleDef_HEAD_INIT, "raftkv.server.idle_spin",
    "A CPU kept out of halt for a window after the event loop's work.", -1, NULL,
};

PyMODINIT_FUNC PyInit_idle_spin(void) {
    if (PyType_Ready(&SpinnerType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&idle_spin_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&SpinnerType);
    if (PyModule_AddObject(module, "Spinner", (PyObject *)&SpinnerType) < 0) {
        Py_DECREF(&SpinnerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
