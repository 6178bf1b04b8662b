/*
 * python_buffer.h — pocketlm._core.Buffer: a 1-D view of C memory for Python.
 *
 * A Buffer exports a pointer through the buffer protocol, so memoryview,
 * numpy.asarray and torch.frombuffer share the memory instead of copying it.
 * It holds a reference to the object that owns the memory (a Context for
 * logits), so the memory outlives every view, and numpy arrays made from it
 * keep it alive in turn. A Buffer may instead own a malloc'd block (tokens),
 * freed when the last reference goes. It also reads like a small sequence:
 * len(), indexing, slicing (a slice is a view too), iteration, ==.
 *
 * Included once, into the SWIG wrapper (python.i); everything is static.
 */
#ifndef PLM_PYTHON_BUFFER_H
#define PLM_PYTHON_BUFFER_H

#include <Python.h>

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    PyObject_HEAD
    char *ptr;
    Py_ssize_t n;        /* items */
    Py_ssize_t itemsize; /* 4 for both formats */
    char format[2];      /* "f" (float32) or "i" (int32) */
    int readonly;
    PyObject *owner;     /* keeps ptr valid; NULL when the buffer owns ptr */
    void (*release)(void *); /* frees ptr when the buffer owns it */
    Py_ssize_t shape[1];
    Py_ssize_t strides[1];
    PyObject *weakrefs;
} plmpy_Buffer;

static PyTypeObject plmpy_BufferType;

/* A new Buffer of n items of format fmt ('f' or 'i') at ptr. owner (may be
 * NULL) is kept alive; release (may be NULL) frees ptr with the buffer. */
static PyObject *plmpy_buffer_new(void *ptr, Py_ssize_t n, char fmt, PyObject *owner, void (*release)(void *),
                                  int readonly) {
    plmpy_Buffer *b = PyObject_New(plmpy_Buffer, &plmpy_BufferType);
    if (!b) {
        if (release) release(ptr);
        return NULL;
    }
    b->ptr = (char *)ptr;
    b->n = n;
    b->itemsize = 4;
    b->format[0] = fmt;
    b->format[1] = 0;
    b->readonly = readonly;
    Py_XINCREF(owner);
    b->owner = owner;
    b->release = release;
    b->shape[0] = n;
    b->strides[0] = 4;
    b->weakrefs = NULL;
    return (PyObject *)b;
}

static void plmpy_buffer_dealloc(plmpy_Buffer *b) {
    if (b->weakrefs) PyObject_ClearWeakRefs((PyObject *)b);
    if (b->release) b->release(b->ptr);
    Py_XDECREF(b->owner);
    PyObject_Free(b);
}

static int plmpy_buffer_getbuffer(plmpy_Buffer *b, Py_buffer *view, int flags) {
    if ((flags & PyBUF_WRITABLE) && b->readonly) {
        PyErr_SetString(PyExc_BufferError, "this pocketlm Buffer is read-only");
        view->obj = NULL;
        return -1;
    }
    view->buf = b->ptr;
    view->obj = (PyObject *)b;
    Py_INCREF(b);
    view->len = b->n * b->itemsize;
    view->readonly = b->readonly;
    view->itemsize = b->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? b->format : NULL;
    view->ndim = 1;
    view->shape = (flags & PyBUF_ND) ? b->shape : NULL;
    view->strides = ((flags & PyBUF_STRIDES) == PyBUF_STRIDES) ? b->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static PyBufferProcs plmpy_buffer_as_buffer = {
    (getbufferproc)plmpy_buffer_getbuffer,
    NULL,
};

static Py_ssize_t plmpy_buffer_len(plmpy_Buffer *b) { return b->n; }

static PyObject *plmpy_buffer_item(plmpy_Buffer *b, Py_ssize_t i) {
    if (i < 0) i += b->n;
    if (i < 0 || i >= b->n) {
        PyErr_SetString(PyExc_IndexError, "Buffer index out of range");
        return NULL;
    }
    if (b->format[0] == 'f') return PyFloat_FromDouble(((float *)b->ptr)[i]);
    return PyLong_FromLong(((int32_t *)b->ptr)[i]);
}

static int plmpy_buffer_set(plmpy_Buffer *b, Py_ssize_t i, PyObject *v) {
    if (b->format[0] == 'f') {
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        ((float *)b->ptr)[i] = (float)d;
    } else {
        long x = PyLong_AsLong(v);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (x < INT32_MIN || x > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "value does not fit in int32");
            return -1;
        }
        ((int32_t *)b->ptr)[i] = (int32_t)x;
    }
    return 0;
}

static PyObject *plmpy_buffer_tolist(plmpy_Buffer *b, PyObject *unused) {
    (void)unused;
    PyObject *list = PyList_New(b->n);
    if (!list) return NULL;
    for (Py_ssize_t i = 0; i < b->n; i++) {
        PyObject *x = plmpy_buffer_item(b, i);
        if (!x) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, x);
    }
    return list;
}

static PyObject *plmpy_buffer_subscript(plmpy_Buffer *b, PyObject *key) {
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return NULL;
        return plmpy_buffer_item(b, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return NULL;
        Py_ssize_t len = PySlice_AdjustIndices(b->n, &start, &stop, step);
        if (step == 1) /* a view of the same memory, keeping this buffer alive */
            return plmpy_buffer_new(b->ptr + start * b->itemsize, len, b->format[0], (PyObject *)b, NULL, b->readonly);
        PyObject *list = PyList_New(len);
        if (!list) return NULL;
        for (Py_ssize_t k = 0; k < len; k++) {
            PyObject *x = plmpy_buffer_item(b, start + k * step);
            if (!x) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, k, x);
        }
        return list;
    }
    PyErr_Format(PyExc_TypeError, "Buffer indices must be integers or slices, not %.200s", Py_TYPE(key)->tp_name);
    return NULL;
}

static int plmpy_buffer_ass_subscript(plmpy_Buffer *b, PyObject *key, PyObject *value) {
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "cannot delete items of a Buffer");
        return -1;
    }
    if (b->readonly) {
        PyErr_SetString(PyExc_TypeError, "this pocketlm Buffer is read-only");
        return -1;
    }
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return -1;
        if (i < 0) i += b->n;
        if (i < 0 || i >= b->n) {
            PyErr_SetString(PyExc_IndexError, "Buffer assignment index out of range");
            return -1;
        }
        return plmpy_buffer_set(b, i, value);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return -1;
        Py_ssize_t len = PySlice_AdjustIndices(b->n, &start, &stop, step);
        PyObject *seq = PySequence_Fast(value, "can only assign a sequence to a Buffer slice");
        if (!seq) return -1;
        if (PySequence_Fast_GET_SIZE(seq) != len) {
            PyErr_Format(PyExc_ValueError, "cannot assign %zd items to a slice of %zd", PySequence_Fast_GET_SIZE(seq), len);
            Py_DECREF(seq);
            return -1;
        }
        for (Py_ssize_t k = 0; k < len; k++)
            if (plmpy_buffer_set(b, start + k * step, PySequence_Fast_GET_ITEM(seq, k)) < 0) {
                Py_DECREF(seq);
                return -1;
            }
        Py_DECREF(seq);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "Buffer indices must be integers or slices, not %.200s", Py_TYPE(key)->tp_name);
    return -1;
}

static PySequenceMethods plmpy_buffer_as_sequence = {
    .sq_length = (lenfunc)plmpy_buffer_len,
    .sq_item = (ssizeargfunc)plmpy_buffer_item,
};

static PyMappingMethods plmpy_buffer_as_mapping = {
    .mp_length = (lenfunc)plmpy_buffer_len,
    .mp_subscript = (binaryfunc)plmpy_buffer_subscript,
    .mp_ass_subscript = (objobjargproc)plmpy_buffer_ass_subscript,
};

/* Equal to any sequence (list, tuple, Buffer, array) with equal items. */
static PyObject *plmpy_buffer_richcompare(plmpy_Buffer *b, PyObject *other, int op) {
    if ((op != Py_EQ && op != Py_NE) || !PySequence_Check(other) || PyUnicode_Check(other) || PyBytes_Check(other))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *mine = plmpy_buffer_tolist(b, NULL);
    if (!mine) return NULL;
    PyObject *theirs = PySequence_List(other);
    if (!theirs) {
        Py_DECREF(mine);
        return NULL;
    }
    PyObject *r = PyObject_RichCompare(mine, theirs, op);
    Py_DECREF(mine);
    Py_DECREF(theirs);
    return r;
}

static PyObject *plmpy_buffer_repr(plmpy_Buffer *b) {
    const char *type = b->format[0] == 'f' ? "float32" : "int32";
    if (b->n <= 16) {
        PyObject *list = plmpy_buffer_tolist(b, NULL);
        if (!list) return NULL;
        PyObject *r = PyUnicode_FromFormat("pocketlm.Buffer(%s, %R)", type, list);
        Py_DECREF(list);
        return r;
    }
    return PyUnicode_FromFormat("pocketlm.Buffer(%s, %zd items)", type, b->n);
}

static PyObject *plmpy_buffer_reduce(plmpy_Buffer *b, PyObject *unused) {
    /* Pickles as the list of its values: C memory cannot travel. */
    (void)unused;
    PyObject *list = plmpy_buffer_tolist(b, NULL);
    if (!list) return NULL;
    PyObject *r = Py_BuildValue("(O(O))", (PyObject *)&PyList_Type, list);
    Py_DECREF(list);
    return r;
}

static PyObject *plmpy_buffer_get_address(plmpy_Buffer *b, void *c) {
    (void)c;
    return PyLong_FromVoidPtr(b->ptr);
}
static PyObject *plmpy_buffer_get_format(plmpy_Buffer *b, void *c) {
    (void)c;
    return PyUnicode_FromString(b->format);
}
static PyObject *plmpy_buffer_get_itemsize(plmpy_Buffer *b, void *c) {
    (void)c;
    return PyLong_FromSsize_t(b->itemsize);
}
static PyObject *plmpy_buffer_get_nbytes(plmpy_Buffer *b, void *c) {
    (void)c;
    return PyLong_FromSsize_t(b->n * b->itemsize);
}
static PyObject *plmpy_buffer_get_readonly(plmpy_Buffer *b, void *c) {
    (void)c;
    return PyBool_FromLong(b->readonly);
}
static PyObject *plmpy_buffer_get_owner(plmpy_Buffer *b, void *c) {
    (void)c;
    PyObject *o = b->owner ? b->owner : Py_None;
    Py_INCREF(o);
    return o;
}

static PyGetSetDef plmpy_buffer_getset[] = {
    {"address", (getter)plmpy_buffer_get_address, NULL, "Address of the first item in C memory (an int).", NULL},
    {"format", (getter)plmpy_buffer_get_format, NULL, "struct format of the items: 'f' (float32) or 'i' (int32).", NULL},
    {"itemsize", (getter)plmpy_buffer_get_itemsize, NULL, "Bytes per item (4).", NULL},
    {"nbytes", (getter)plmpy_buffer_get_nbytes, NULL, "Bytes of memory viewed.", NULL},
    {"readonly", (getter)plmpy_buffer_get_readonly, NULL, "True if the memory may not be written.", NULL},
    {"owner", (getter)plmpy_buffer_get_owner, NULL, "The object kept alive for the memory (None if the buffer owns it).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef plmpy_buffer_methods[] = {
    {"tolist", (PyCFunction)plmpy_buffer_tolist, METH_NOARGS, "The items as a list of Python numbers (a copy)."},
    {"__reduce__", (PyCFunction)plmpy_buffer_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject plmpy_BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pocketlm.Buffer",
    .tp_basicsize = sizeof(plmpy_Buffer),
    .tp_dealloc = (destructor)plmpy_buffer_dealloc,
    .tp_repr = (reprfunc)plmpy_buffer_repr,
    .tp_as_sequence = &plmpy_buffer_as_sequence,
    .tp_as_mapping = &plmpy_buffer_as_mapping,
    .tp_as_buffer = &plmpy_buffer_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A 1-D view of C memory (float32 logits or int32 tokens) that shares it without copying.\n\n"
              "memoryview(buf), numpy.asarray(buf) and torch.frombuffer(buf, dtype=...) see the same memory;\n"
              "the object owning the memory stays alive as long as any of them does.",
    .tp_richcompare = (richcmpfunc)plmpy_buffer_richcompare,
    .tp_weaklistoffset = offsetof(plmpy_Buffer, weakrefs),
    .tp_methods = plmpy_buffer_methods,
    .tp_getset = plmpy_buffer_getset,
};

#endif
