/*
 * python.i — the Python side of pocketlm.i: typemaps and a few Python-only helpers.
 *
 * - A plm_status other than PLM_OK raises the exception class registered for
 *   it by pocketlm.errors (set_error_classes), with plm_last_error() as text.
 * - The interpreter lock is released around every C call (module option
 *   threads="1"); helpers that build Python objects are marked nothreadallow.
 *   Input buffers are held (PyObject_GetBuffer) until after the call and
 *   released in freearg, so no one can resize or free them while C reads them
 *   without the lock.
 * - Tokens in: any C-contiguous 1-D int32 buffer is read in place (numpy int32
 *   arrays, array('i'), pocketlm.Buffer); other integer sequences are copied.
 * - Logits and token arrays out: pocketlm.Buffer (python_buffer.h), a view of
 *   the C memory that keeps its owner alive.
 * - Embeddings, classification scores and saved states are written by C into
 *   a buffer the caller allocates (a numpy array, array('f'), bytearray),
 *   held writable until the call is over: no copy.
 * - Ctrl-C: context_watch_signals installs an abort callback that, on the main
 *   thread, runs Python's signal handlers between layers (at most every 50 ms);
 *   a handler that raises (KeyboardInterrupt) cancels the decode, leaving the
 *   cache as it was, and that exception propagates instead of CancelledError.
 *   Between the tokens of a stream Python checks signals itself.
 */

%{
#include "python_buffer.h"

#include <pythread.h>
#include <time.h>

/* Exception class per plm_status, registered by pocketlm.errors. */
#define PLMPY_N_STATUS 16
static PyObject *plmpy_errors[PLMPY_N_STATUS];
static unsigned long plmpy_main_thread;

/* Raises the exception for a failed status, unless one is already set (a
 * signal handler raised while the call ran: that one wins). */
static void plmpy_raise(plm_status st) {
    const char *msg = plmb_error_message();
    if (PyErr_Occurred()) return;
    PyObject *cls = (st >= 0 && st < PLMPY_N_STATUS && plmpy_errors[st]) ? plmpy_errors[st] : PyExc_RuntimeError;
    if (!msg || !*msg) msg = plm_status_str(st);
    PyErr_SetString(cls, msg);
}

/* Appends an output to a wrapper's result: None is replaced, then a tuple grows. */
static PyObject *plmpy_append(PyObject *result, PyObject *obj) {
    if (!obj) {
        Py_XDECREF(result);
        return NULL;
    }
    if (!result || result == Py_None) {
        Py_XDECREF(result);
        return obj;
    }
    PyObject *t;
    if (PyTuple_Check(result)) {
        Py_ssize_t n = PyTuple_GET_SIZE(result);
        t = PyTuple_New(n + 1);
        if (t) {
            for (Py_ssize_t i = 0; i < n; i++) {
                Py_INCREF(PyTuple_GET_ITEM(result, i));
                PyTuple_SET_ITEM(t, i, PyTuple_GET_ITEM(result, i));
            }
            PyTuple_SET_ITEM(t, n, obj);
        }
    } else {
        t = PyTuple_Pack(2, result, obj);
        Py_DECREF(obj);
    }
    if (!t) Py_DECREF(obj);
    Py_DECREF(result);
    return t;
}

/* Token input: a view of an int32 buffer, or a copy of a sequence of ints. */
typedef struct {
    Py_buffer view;
    int have_view;
    plm_token *copy;
} plmpy_tokens_arg;

static int plmpy_is_int32_format(const char *f) {
    if (!f) return 0;
    if (*f == '@' || *f == '=' || *f == '<') f++;
    if (!strcmp(f, "i")) return 1;
    if (!strcmp(f, "l") && sizeof(long) == 4) return 1;
    return 0;
}

static int plmpy_is_float32_format(const char *f) {
    if (!f) return 0;
    if (*f == '@' || *f == '=' || *f == '<') f++;
    return !strcmp(f, "f");
}

/* Reads obj as n items of 4 bytes: in place if it is a C-contiguous 1-D buffer
 * whose format passes is_fmt, else item by item through conv into a copy. */
static int plmpy_array_in(PyObject *obj, plmpy_tokens_arg *a, int (*is_fmt)(const char *),
                          int (*conv)(PyObject *, void *, Py_ssize_t), const char *what, void **out, int32_t *n) {
    a->have_view = 0;
    a->copy = NULL;
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || PyByteArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "expected %s, got %.200s (text is not tokens)", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_CheckBuffer(obj)) {
        if (PyObject_GetBuffer(obj, &a->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
            if (a->view.ndim == 1 && a->view.itemsize == 4 && is_fmt(a->view.format)) {
                if (a->view.len / 4 > INT32_MAX) {
                    PyBuffer_Release(&a->view);
                    PyErr_Format(PyExc_ValueError, "too many %s", what);
                    return -1;
                }
                a->have_view = 1;
                *out = a->view.buf;
                *n = (int32_t)(a->view.len / 4);
                return 0;
            }
            PyBuffer_Release(&a->view);
        } else {
            PyErr_Clear();
        }
    }
    PyObject *seq = PySequence_Fast(obj, "");
    if (!seq) {
        PyErr_Format(PyExc_TypeError, "expected a sequence or buffer of %s, got %.200s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    if (len > INT32_MAX) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "too many %s", what);
        return -1;
    }
    a->copy = malloc((size_t)(len > 0 ? len : 1) * 4);
    if (!a->copy) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++)
        if (conv(PySequence_Fast_GET_ITEM(seq, i), a->copy, i) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    Py_DECREF(seq);
    *out = a->copy;
    *n = (int32_t)len;
    return 0;
}

static int plmpy_conv_token(PyObject *o, void *dst, Py_ssize_t i) {
    PyObject *idx = PyNumber_Index(o);
    if (!idx) {
        PyErr_Format(PyExc_TypeError, "token %zd is a %.200s, not an integer", i, Py_TYPE(o)->tp_name);
        return -1;
    }
    long v = PyLong_AsLong(idx);
    Py_DECREF(idx);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < INT32_MIN || v > INT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "token %zd (%ld) does not fit in int32", i, v);
        return -1;
    }
    ((plm_token *)dst)[i] = (plm_token)v;
    return 0;
}

static int plmpy_conv_float(PyObject *o, void *dst, Py_ssize_t i) {
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    ((float *)dst)[i] = (float)d;
    return 0;
}

static void plmpy_array_release(plmpy_tokens_arg *a) {
    if (a->have_view) PyBuffer_Release(&a->view);
    a->have_view = 0;
    free(a->copy);
    a->copy = NULL;
}

/* A list of strings: the encoded bytes objects stay referenced until freearg. */
typedef struct {
    PyObject *bytes; /* list of bytes objects */
    const char **ptrs;
} plmpy_strs_arg;

static int plmpy_strs_in(PyObject *obj, plmpy_strs_arg *a, const char *const **out, int32_t *n) {
    a->bytes = NULL;
    a->ptrs = NULL;
    *out = NULL;
    *n = 0;
    if (obj == Py_None) return 0;
    if (PyUnicode_Check(obj) || PyBytes_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "expected a list of strings, got a single string (wrap it in a list)");
        return -1;
    }
    PyObject *seq = PySequence_Fast(obj, "expected a list of strings");
    if (!seq) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    a->bytes = PyList_New(0);
    a->ptrs = malloc((size_t)(len > 0 ? len : 1) * sizeof(char *));
    if (!a->bytes || !a->ptrs) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *b = PyUnicode_Check(s) ? PyUnicode_AsUTF8String(s) : (PyBytes_Check(s) ? (Py_INCREF(s), s) : NULL);
        if (!b) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "string %zd is a %.200s, not str or bytes", i, Py_TYPE(s)->tp_name);
            Py_DECREF(seq);
            return -1;
        }
        int err = PyList_Append(a->bytes, b);
        Py_DECREF(b);
        if (err < 0) {
            Py_DECREF(seq);
            return -1;
        }
        if ((size_t)PyBytes_GET_SIZE(b) != strlen(PyBytes_AS_STRING(b))) {
            PyErr_Format(PyExc_ValueError, "string %zd contains a NUL character", i);
            Py_DECREF(seq);
            return -1;
        }
        a->ptrs[i] = PyBytes_AS_STRING(b);
    }
    Py_DECREF(seq);
    *out = a->ptrs;
    *n = (int32_t)len;
    return 0;
}

static void plmpy_strs_release(plmpy_strs_arg *a) {
    Py_XDECREF(a->bytes);
    free(a->ptrs);
    a->bytes = NULL;
    a->ptrs = NULL;
}

/* A list of texts with their lengths (chat messages): str (read through its
 * cached UTF-8, no copy) or bytes, NUL bytes kept. The objects are held in a
 * list until freearg, so they outlive the call even if the caller's list
 * changes while the lock is released. */
typedef struct {
    PyObject *held; /* list of the str / bytes objects */
    const char **ptrs;
    size_t *lens;
} plmpy_texts_arg;

static int plmpy_texts_in(PyObject *obj, plmpy_texts_arg *a, const char *const **out, const size_t **lens,
                          int32_t *n) {
    a->held = NULL;
    a->ptrs = NULL;
    a->lens = NULL;
    if (PyUnicode_Check(obj) || PyBytes_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "expected a list of strings, got a single string");
        return -1;
    }
    PyObject *seq = PySequence_Fast(obj, "expected a list of strings");
    if (!seq) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    if (len > INT32_MAX) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many strings");
        return -1;
    }
    a->held = PyList_New(0);
    a->ptrs = malloc((size_t)(len > 0 ? len : 1) * sizeof(char *));
    a->lens = malloc((size_t)(len > 0 ? len : 1) * sizeof(size_t));
    if (!a->held || !a->ptrs || !a->lens) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t k = 0;
        const char *p = NULL;
        if (PyUnicode_Check(s)) {
            p = PyUnicode_AsUTF8AndSize(s, &k);
        } else if (PyBytes_Check(s)) {
            p = PyBytes_AS_STRING(s);
            k = PyBytes_GET_SIZE(s);
        } else {
            PyErr_Format(PyExc_TypeError, "string %zd is a %.200s, not str or bytes", i, Py_TYPE(s)->tp_name);
        }
        if (!p || PyList_Append(a->held, s) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        a->ptrs[i] = p;
        a->lens[i] = (size_t)k;
    }
    Py_DECREF(seq);
    *out = a->ptrs;
    *lens = a->lens;
    *n = (int32_t)len;
    return 0;
}

static void plmpy_texts_release(plmpy_texts_arg *a) {
    Py_XDECREF(a->held);
    free(a->ptrs);
    free(a->lens);
    a->held = NULL;
    a->ptrs = NULL;
    a->lens = NULL;
}

/* Logit bias: a mapping {token: bias} or an iterable of (token, bias) pairs. */
static int plmpy_bias_in(PyObject *obj, plm_logit_bias **out, int32_t *n) {
    *out = NULL;
    *n = 0;
    if (obj == Py_None) return 0;
    PyObject *items = PyMapping_Check(obj) && PyObject_HasAttrString(obj, "items") ? PyMapping_Items(obj)
                                                                                   : PySequence_List(obj);
    if (!items) return -1;
    Py_ssize_t len = PyList_GET_SIZE(items);
    plm_logit_bias *b = malloc((size_t)(len > 0 ? len : 1) * sizeof(*b));
    if (!b) {
        Py_DECREF(items);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "logit_bias: expected {token: bias} or (token, bias) pairs");
            goto fail;
        }
        if (plmpy_conv_token(PyTuple_GET_ITEM(pair, 0), &b[i].token, 0) < 0) goto fail;
        double d = PyFloat_AsDouble(PyTuple_GET_ITEM(pair, 1));
        if (d == -1.0 && PyErr_Occurred()) goto fail;
        b[i].bias = (float)d;
    }
    Py_DECREF(items);
    *out = b;
    *n = (int32_t)len;
    return 0;
fail:
    Py_DECREF(items);
    free(b);
    return -1;
}

/* Abort callback: on the main thread, runs pending signal handlers. Taking
 * the lock can wait for another Python thread's switch interval (5 ms), so it
 * is done at most every PLMPY_SIGNAL_CHECK_S: a Ctrl-C lands within that, and
 * a busy Python thread slows a long computation by a few percent at most. */
#define PLMPY_SIGNAL_CHECK_S 0.05
static double plmpy_last_signal_check; /* touched by the main thread only */

static int plmpy_abort_check(void *user) {
    (void)user;
    if (PyThread_get_thread_ident() != plmpy_main_thread) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (now - plmpy_last_signal_check < PLMPY_SIGNAL_CHECK_S) return 0;
    plmpy_last_signal_check = now;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_CheckSignals() < 0;
    PyGILState_Release(g);
    return stop;
}

static PyObject *plmpy_model_info_dict(const plm_model_info *in) {
    return Py_BuildValue(
        "{s:s,s:s,s:s,s:s,s:O&,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:K,s:K,s:i,s:i,s:i,s:O,s:i,s:K}",
        "arch", in->arch, "name", in->name, "file_type", in->file_type, "chat_template", in->chat_template,
        "path", PyUnicode_DecodeFSDefault, in->path, "n_vocab", in->n_vocab, "n_ctx_train", in->n_ctx_train,
        "n_embd", in->n_embd, "n_layer", in->n_layer, "n_head", in->n_head, "n_head_kv", in->n_head_kv, "n_ff",
        in->n_ff, "head_dim", in->head_dim, "n_params", (unsigned long long)in->n_params, "n_bytes",
        (unsigned long long)in->n_bytes, "bos", in->bos, "eos", in->eos, "eot", in->eot, "add_bos",
        in->add_bos ? Py_True : Py_False, "n_cls_out", in->n_cls_out, "n_repacked", (unsigned long long)in->n_repacked);
}

static int plmpy_module_init(PyObject *m) {
    if (PyType_Ready(&plmpy_BufferType) < 0) return -1;
    Py_INCREF(&plmpy_BufferType);
    if (PyModule_AddObject(m, "Buffer", (PyObject *)&plmpy_BufferType) < 0) {
        Py_DECREF(&plmpy_BufferType);
        return -1;
    }
    /* Signals are delivered to the main thread only; find it once. */
    PyObject *threading = PyImport_ImportModule("threading");
    if (!threading) return -1;
    PyObject *main = PyObject_CallMethod(threading, "main_thread", NULL);
    Py_DECREF(threading);
    if (!main) return -1;
    PyObject *ident = PyObject_GetAttrString(main, "ident");
    Py_DECREF(main);
    if (!ident) return -1;
    plmpy_main_thread = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    return PyErr_Occurred() ? -1 : 0;
}
%}

%init %{
    if (plmpy_module_init(m) < 0) {
#if SWIG_VERSION >= 0x040400 /* multi-phase init: %init runs in an int-returning exec slot */
        return -1;
#else
        return NULL;
#endif
    }
%}

/* ------------------------------------------------------------ status */

%typemap(out) plm_status {
    if (PyErr_Occurred()) SWIG_fail; /* a signal handler raised during the call */
    if ($1 != PLM_OK) {
        plmpy_raise($1);
        SWIG_fail;
    }
    $result = SWIG_Py_Void();
}

/* ------------------------------------------------------------ inputs */

%typemap(in) const char *path (PyObject *encoded = NULL) {
    if ($input == Py_None) {
        $1 = NULL;
    } else {
        if (!PyUnicode_FSConverter($input, &encoded)) SWIG_fail;
        $1 = PyBytes_AS_STRING(encoded);
    }
}
%typemap(freearg) const char *path { Py_XDECREF(encoded$argnum); }

%{
/* Text in: a str (its UTF-8, cached in the str, which the call holds) or a
 * bytes-like object (held in *view until the call is over: *have_view). */
static int plmpy_text_in(PyObject *obj, Py_buffer *view, int *have_view, const char **s, size_t *n) {
    if (PyUnicode_Check(obj)) {
        Py_ssize_t k;
        if (!(*s = PyUnicode_AsUTF8AndSize(obj, &k))) return -1;
        *n = (size_t)k;
    } else if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) == 0) {
        *have_view = 1;
        *s = (const char *)view->buf;
        *n = (size_t)view->len;
    } else {
        PyErr_Format(PyExc_TypeError, "expected str or a bytes-like object, got %.200s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    return 0;
}
%}
%typemap(in) (const char *text, size_t len) (Py_buffer view, int have_view = 0) {
    const char *s_$argnum = NULL;
    if (plmpy_text_in($input, &view, &have_view, &s_$argnum, &$2) < 0) SWIG_fail;
    $1 = ($1_ltype)s_$argnum;
}
%typemap(freearg) (const char *text, size_t len) {
    if (have_view$argnum) PyBuffer_Release(&view$argnum);
}
/* The same, or None: NULL. */
%typemap(in) (const char *opt_text, size_t opt_len) (Py_buffer view, int have_view = 0) {
    const char *s_$argnum = NULL;
    $2 = 0;
    if ($input != Py_None && plmpy_text_in($input, &view, &have_view, &s_$argnum, &$2) < 0) SWIG_fail;
    $1 = ($1_ltype)s_$argnum;
}
%typemap(freearg) (const char *opt_text, size_t opt_len) {
    if (have_view$argnum) PyBuffer_Release(&view$argnum);
}

%typemap(in) (const plm_token *tokens, int32_t n_tokens) (plmpy_tokens_arg tmp = {0}) {
    void *p = NULL;
    if (plmpy_array_in($input, &tmp, plmpy_is_int32_format, plmpy_conv_token, "int32 tokens", &p, &$2) < 0) SWIG_fail;
    $1 = (plm_token *)p;
}
%typemap(freearg) (const plm_token *tokens, int32_t n_tokens) { plmpy_array_release(&tmp$argnum); }

%typemap(in) (const float *values, int32_t n_values) (plmpy_tokens_arg tmp = {0}) {
    void *p = NULL;
    if (plmpy_array_in($input, &tmp, plmpy_is_float32_format, plmpy_conv_float, "float32 values", &p, &$2) < 0)
        SWIG_fail;
    $1 = (float *)p;
}
%typemap(freearg) (const float *values, int32_t n_values) { plmpy_array_release(&tmp$argnum); }

%typemap(in) (const char *const *strs, int32_t n_strs) (plmpy_strs_arg tmp = {0}) {
    if (plmpy_strs_in($input, &tmp, (const char *const **)&$1, &$2) < 0) SWIG_fail;
}
%typemap(freearg) (const char *const *strs, int32_t n_strs) { plmpy_strs_release(&tmp$argnum); }

%typemap(in) (const char *const *texts, const size_t *text_lens, int32_t n_texts) (plmpy_texts_arg tmp = {0}) {
    if (plmpy_texts_in($input, &tmp, (const char *const **)&$1, (const size_t **)&$2, &$3) < 0) SWIG_fail;
}
%typemap(freearg) (const char *const *texts, const size_t *text_lens, int32_t n_texts) { plmpy_texts_release(&tmp$argnum); }
%typemap(in) (const plm_logit_bias *bias, int32_t n_bias) (plm_logit_bias *tmp = NULL) {
    if (plmpy_bias_in($input, &tmp, &$2) < 0) SWIG_fail;
    $1 = tmp;
}
%typemap(freearg) (const plm_logit_bias *bias, int32_t n_bias) { free(tmp$argnum); }

/* Several token sequences, concatenated, and their lengths: like tokens. */
%apply (const plm_token *tokens, int32_t n_tokens) { (const plm_token *flat, int32_t n_flat) };
%apply (const plm_token *tokens, int32_t n_tokens) { (const int32_t *lens, int32_t n_lens) };

/* Bytes in: any bytes-like object, held until the call is over. */
%typemap(in) (const void *data, size_t size) (Py_buffer view, int have_view = 0) {
    if (PyObject_GetBuffer($input, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "expected a bytes-like object, got %.200s", Py_TYPE($input)->tp_name);
        SWIG_fail;
    }
    have_view = 1;
    $1 = view.buf;
    $2 = (size_t)view.len;
}
%typemap(freearg) (const void *data, size_t size) {
    if (have_view$argnum) PyBuffer_Release(&view$argnum);
}

/* Output buffers the caller allocates and C fills in place (a numpy array, an
 * array('f'), a bytearray): held writable until the call is over, so nothing
 * can resize or free them while C writes without the interpreter lock. */
%typemap(in) (float *out_floats, int32_t n_out_floats) (Py_buffer view, int have_view = 0) {
    if (PyObject_GetBuffer($input, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "expected a writable C-contiguous float32 buffer, got %.200s",
                     Py_TYPE($input)->tp_name);
        SWIG_fail;
    }
    have_view = 1;
    if (view.itemsize != 4 || !plmpy_is_float32_format(view.format) || view.len / 4 > INT32_MAX) {
        PyErr_SetString(PyExc_TypeError, "expected a writable C-contiguous float32 buffer (dtype float32)");
        SWIG_fail;
    }
    $1 = (float *)view.buf;
    $2 = (int32_t)(view.len / 4);
}
%typemap(freearg) (float *out_floats, int32_t n_out_floats) {
    if (have_view$argnum) PyBuffer_Release(&view$argnum);
}

%typemap(in) (void *out_data, size_t out_size) (Py_buffer view, int have_view = 0) {
    if (PyObject_GetBuffer($input, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "expected a writable bytes-like object (bytearray), got %.200s",
                     Py_TYPE($input)->tp_name);
        SWIG_fail;
    }
    have_view = 1;
    $1 = view.buf;
    $2 = (size_t)view.len;
}
%typemap(freearg) (void *out_data, size_t out_size) {
    if (have_view$argnum) PyBuffer_Release(&view$argnum);
}

/* Parameter structs may be passed as None for the defaults. */
%typemap(in) const plm_sampler_params *params, const plm_generate_params *params,
             const plm_context_params *params, const plm_model_params *params,
             const plm_classify_params *params {
    if ($input == Py_None) {
        $1 = NULL;
    } else if (!SWIG_IsOK(SWIG_ConvertPtr($input, (void **)&$1, $1_descriptor, 0))) {
        SWIG_exception_fail(SWIG_TypeError, "expected a parameter struct or None");
    }
}

/* ----------------------------------------------------------- outputs */

%define PLMPY_HANDLE_OUT(TYPE)
%typemap(in, numinputs=0) TYPE **out (TYPE *tmp = NULL) { $1 = &tmp; }
%typemap(argout) TYPE **out {
    $result = plmpy_append($result, SWIG_NewPointerObj(SWIG_as_voidptr(*$1), $*1_descriptor, SWIG_POINTER_OWN));
    if (!$result) SWIG_fail;
}
%enddef
PLMPY_HANDLE_OUT(plm_model)
PLMPY_HANDLE_OUT(plm_context)
PLMPY_HANDLE_OUT(plm_sampler)
PLMPY_HANDLE_OUT(plm_generator)
PLMPY_HANDLE_OUT(plm_batch_gen)
PLMPY_HANDLE_OUT(plm_grammar)
PLMPY_HANDLE_OUT(plm_adapter)

%typemap(in, numinputs=0) (plm_token **out_tokens, int32_t *out_n) (plm_token *toks = NULL, int32_t n = 0) {
    $1 = &toks;
    $2 = &n;
}
%typemap(argout) (plm_token **out_tokens, int32_t *out_n) {
    /* The Buffer takes the malloc'd array: no copy. */
    $result = plmpy_append($result, plmpy_buffer_new(*$1, *$2, 'i', NULL, free, 0));
    toks$argnum = NULL;
    if (!$result) SWIG_fail;
}
%typemap(freearg) (plm_token **out_tokens, int32_t *out_n) { free(toks$argnum); }

%typemap(in, numinputs=0) (char **out_bytes, size_t *out_len) (char *bytes = NULL, size_t n = 0) {
    $1 = &bytes;
    $2 = &n;
}
%typemap(argout) (char **out_bytes, size_t *out_len) {
    $result = plmpy_append($result, PyBytes_FromStringAndSize(*$1 ? *$1 : "", (Py_ssize_t)*$2));
    if (!$result) SWIG_fail;
}
%typemap(freearg) (char **out_bytes, size_t *out_len) { free(bytes$argnum); }

%typemap(in, numinputs=0) (const char **piece, size_t *piece_len) (const char *p = NULL, size_t n = 0) {
    $1 = ($1_ltype)&p;
    $2 = &n;
}
%typemap(argout) (const char **piece, size_t *piece_len) {
    $result = plmpy_append($result, PyBytes_FromStringAndSize(*$1 ? *$1 : "", (Py_ssize_t)*$2));
    if (!$result) SWIG_fail;
}

/* Borrowed bytes, or None when the pointer is NULL. */
%typemap(in, numinputs=0) (const char **opt_bytes, size_t *opt_len) (const char *p = NULL, size_t n = 0) {
    $1 = ($1_ltype)&p;
    $2 = &n;
}
%typemap(argout) (const char **opt_bytes, size_t *opt_len) {
    if (*$1) {
        $result = plmpy_append($result, PyBytes_FromStringAndSize(*$1, (Py_ssize_t)*$2));
    } else {
        Py_INCREF(Py_None);
        $result = plmpy_append($result, Py_None);
    }
    if (!$result) SWIG_fail;
}

%typemap(in, numinputs=0) plm_token *out_token (plm_token t = 0) { $1 = &t; }
%typemap(argout) plm_token *out_token {
    $result = plmpy_append($result, PyLong_FromLong(*$1));
    if (!$result) SWIG_fail;
}

%typemap(in, numinputs=0) plm_stop_reason *out_reason (plm_stop_reason r = PLM_STOP_NONE) { $1 = &r; }
%typemap(argout) plm_stop_reason *out_reason {
    $result = plmpy_append($result, PyLong_FromLong((long)*$1));
    if (!$result) SWIG_fail;
}

%typemap(in, numinputs=0) plm_model_info *out_info (plm_model_info info) { $1 = &info; }
%typemap(argout) plm_model_info *out_info {
    $result = plmpy_append($result, plmpy_model_info_dict($1));
    if (!$result) SWIG_fail;
}

/* ------------------------------------------------ Python-only helpers */

%feature("nothreadallow") set_error_classes;
%feature("nothreadallow") context_logits_view;
%feature("docstring") context_logits_view
"context_logits_view(ctx, i) -> Buffer: zero-copy float32 view of the logits of batch entry i (-1: last)."

%inline %{
/* Registers the exception class of each status: a dict {status: class}. */
static PyObject *set_error_classes(PyObject *mapping) {
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "expected a dict {status: exception class}");
        return NULL;
    }
    while (PyDict_Next(mapping, &pos, &key, &value)) {
        long st = PyLong_AsLong(key);
        if (st == -1 && PyErr_Occurred()) return NULL;
        if (st < 0 || st >= PLMPY_N_STATUS) continue;
        Py_INCREF(value);
        Py_XSETREF(plmpy_errors[st], value);
    }
    Py_RETURN_NONE;
}

/* A Buffer over the logits of batch entry i (-1: last) that keeps ctx (the
 * handle object) alive. The memory is the context's: writes are seen by C. */
static PyObject *context_logits_view(PyObject *ctx, int32_t i) {
    plm_context *c = NULL;
    if (!SWIG_IsOK(SWIG_ConvertPtr(ctx, (void **)&c, SWIGTYPE_p_plm_context, 0)) || !c) {
        PyErr_SetString(PyExc_TypeError, "expected a Context handle");
        return NULL;
    }
    float *p = plm_context_logits(c, i);
    if (!p) {
        plmpy_raise(PLM_ERR_ARG);
        return NULL;
    }
    plm_model_info info;
    plm_status st = plm_model_get_info(plm_context_model(c), &info);
    if (st) {
        plmpy_raise(st);
        return NULL;
    }
    return plmpy_buffer_new(p, info.n_vocab, 'f', ctx, NULL, 0);
}

/* Lets Python's signal handlers (Ctrl-C) interrupt computations on ctx when
 * they run on the main thread (on = false removes the check). */
static void context_watch_signals(plm_context *ctx, bool on) {
    plm_context_set_abort_callback(ctx, on ? plmpy_abort_check : NULL, NULL);
}
%}

/* The Buffer type is added to the C module (named _core_c by setup.py's
 * `swig -interface _core_c`); the proxy module re-exports it. */
%pythoncode %{
Buffer = _core_c.Buffer
%}
