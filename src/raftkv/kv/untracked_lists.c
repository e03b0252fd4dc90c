/* Taking the store's sorted key lists out of the cyclic garbage collector's walk
 * (kv/ranges.py, `SortedKeys`; docs/ARCHITECTURE.md, session 51, the numbers).
 *
 * A full collection visits every item of every tracked list. The sorted keys are lists of
 * strings, one entry per key: at 1,000,000 keys a full collection took 19-33 ms on a loaded
 * node, every request waiting, and more as the state grew. A list that holds only strings
 * can never be part of a reference cycle (a string refers to nothing), so the collector has
 * nothing to find in it; CPython untracks tuples and dicts of such items itself, never a
 * list. `untrack_string_lists` does it for the lists it is given: only a list of nothing but
 * `str` (exactly), checked item by item once, when it is untracked. A list stays untracked
 * for life (CPython re-tracks only dicts on insertion), so whoever untracks one must put
 * nothing but strings in it later; if something else ever went in, the cost is a cycle
 * through it never collected, not a crash. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int
only_strings(PyObject *list)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(list, i))) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
untrack_string_lists(PyObject *module, PyObject *lists)
{
    if (!PyList_Check(lists)) {
        PyErr_SetString(PyExc_TypeError, "untrack_string_lists takes a list of lists");
        return NULL;
    }
    Py_ssize_t untracked = 0;
    Py_ssize_t n = PyList_GET_SIZE(lists);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *list = PyList_GET_ITEM(lists, i);
        if (PyList_CheckExact(list) && PyObject_GC_IsTracked(list) && only_strings(list)) {
            PyObject_GC_UnTrack(list);
            untracked++;
        }
    }
    return PyLong_FromSsize_t(untracked);
}

static PyMethodDef methods[] = {
    {"untrack_string_lists", untrack_string_lists, METH_O,
     "Untrack, among the lists given, each tracked one holding nothing but str; returns how"
     " many."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "untracked_lists", NULL, 0, methods,
};

PyMODINIT_FUNC
PyInit_untracked_lists(void)
{
    return PyModule_Create(&module);
}
