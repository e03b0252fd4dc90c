/* Taking the state's containers of keys out of the cyclic garbage collector's walk: the
 * store's sorted key lists (kv/ranges.py, `SortedKeys`) and each lease's set of keys
 * (kv/leases.py); docs/ARCHITECTURE.md, session 51, the numbers.
 *
 * A full collection visits every item of every tracked list and set. These hold one string
 * per key: at 1,000,000 keys a full collection took 14-26 ms on a loaded leader, every
 * request waiting, and more as the state grew. A container of nothing but strings can never
 * be part of a reference cycle (a string refers to nothing), so the collector has nothing
 * to find in it; CPython untracks tuples and dicts of such items itself, never a list or a
 * set. `untrack_string_containers` does it for those it is given: only an exact list or set
 * of nothing but exact `str`, checked item by item once, when it is untracked. A list or a
 * set stays untracked for life (CPython re-tracks only dicts on insertion), so whoever
 * untracks one must put nothing but strings in it later; if something else ever went in,
 * the cost would be a cycle through it never collected, not a crash. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* 1 if every item of `container` (an exact list or set) is an exact str, 0 if not, -1 on
 * an error (set). */
static int
only_strings(PyObject *container)
{
    if (PyList_CheckExact(container)) {
        Py_ssize_t n = PyList_GET_SIZE(container);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!PyUnicode_CheckExact(PyList_GET_ITEM(container, i))) {
                return 0;
            }
        }
        return 1;
    }
    PyObject *iterator = PyObject_GetIter(container);
    if (iterator == NULL) {
        return -1;
    }
    int strings = 1;
    PyObject *item;
    while (strings && (item = PyIter_Next(iterator)) != NULL) {
        strings = PyUnicode_CheckExact(item);
        Py_DECREF(item);
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : strings;
}

static PyObject *
untrack_string_containers(PyObject *module, PyObject *containers)
{
    if (!PyList_Check(containers)) {
        PyErr_SetString(PyExc_TypeError, "untrack_string_containers takes a list");
        return NULL;
    }
    Py_ssize_t untracked = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(containers); i++) {
        PyObject *container = PyList_GET_ITEM(containers, i);
        if (!(PyList_CheckExact(container) || PyAnySet_CheckExact(container))
            || !PyObject_GC_IsTracked(container)) {
            continue;
        }
        int strings = only_strings(container);
        if (strings < 0) {
            return NULL;
        }
        if (strings) {
            PyObject_GC_UnTrack(container);
            untracked++;
        }
    }
    return PyLong_FromSsize_t(untracked);
}

static PyMethodDef methods[] = {
    {"untrack_string_containers", untrack_string_containers, METH_O,
     "Untrack, among the containers given, each tracked list or set holding nothing but"
     " str; returns how many."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "untracked_strings", NULL, 0, methods,
};

PyMODINIT_FUNC
PyInit_untracked_strings(void)
{
    return PyModule_Create(&module);
}
