/* The UDP listener's drain in C: recvmmsg, the exact-bytes cache, sendmmsg.
 *
 * Why: on a repeated question the answer itself costs 0.4 us of Python, and the
 * socket calls around it (socket.recvfrom allocating 64 KiB and an address tuple,
 * sendto parsing the tuple back, one system call each way) several times that.
 * This module reads up to BATCH datagrams per system call, answers those whose
 * bytes after the ID are in the snapshot's exact-bytes cache (ReplyCache.exact:
 * tail -> (reply[2:], slot)) without building a Python object but the key, hands
 * every other datagram to the handler (handle(data, False, client)) exactly as
 * serve.server.UdpListener._drain does, and sends the replies of a batch with one
 * sendmmsg.  Where the only stage is the cookie stage, which lets a reply to a query
 * without a COOKIE option through unchanged and counts it (cookies.stage), a hit whose
 * octets past the header hold no 00 0a is answered here too, and counted as the stage
 * counts it (plain_counts[plain_slot]); any other query goes to the handler.
 * Behaviour is that of the pure-Python drain, which is kept, used where this does
 * not build, and tested against the same server tests.
 *
 * Bounds: BATCH slots of SLOT bytes (the largest UDP payload) allocated once per
 * listener; untouched pages cost no memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define BATCH 32
#define SLOT 65536
/* Shorter than a header (RFC 1035 4.1.1) is never a cache hit: the handler decides. */
#define HEADER_LEN 12

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *handle;   /* handle(data, tcp, client) -> bytes | None */
    PyObject *snapshot; /* () -> Snapshot, or None: no cache lookup here */
    PyObject *counts;   /* QueryStats.counts (a list of int) */
    PyObject *timer;    /* QueryStats.time(seconds) */
    PyObject *report;   /* report(exception, size): a handler bug, logged once per kind */
    PyObject *plain_counts; /* the cookie stage's counters, or None: no stage to pass */
    Py_ssize_t plain_slot;  /* its NO_COOKIE slot */
    int sample_every;
    int countdown;
    unsigned char *buffers;
    struct mmsghdr in[BATCH];
    struct iovec in_iov[BATCH];
    struct sockaddr_storage names[BATCH];
    struct mmsghdr out[BATCH];
    struct iovec out_iov[BATCH][2];
    PyObject *keep[BATCH];
} Datagrams;

static PyObject *s_replies, *s_exact;

static int
Datagrams_init(Datagrams *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"fd", "handle", "snapshot", "counts", "timer", "report",
                            "sample_every", "plain_counts", "plain_slot", NULL};
    int fd, sample_every;
    PyObject *handle, *snapshot, *counts, *timer, *report, *plain_counts = Py_None;
    Py_ssize_t plain_slot = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOOOOOi|On", names, &fd, &handle, &snapshot,
                                     &counts, &timer, &report, &sample_every, &plain_counts,
                                     &plain_slot))
        return -1;
    if (!PyList_Check(counts)) {
        PyErr_SetString(PyExc_TypeError, "counts must be a list");
        return -1;
    }
    if (plain_counts != Py_None && (!PyList_Check(plain_counts) || plain_slot < 0
                                    || plain_slot >= PyList_GET_SIZE(plain_counts))) {
        PyErr_SetString(PyExc_ValueError, "plain_counts must be a list holding plain_slot");
        return -1;
    }
    if (sample_every < 1) {
        PyErr_SetString(PyExc_ValueError, "sample_every must be at least 1");
        return -1;
    }
    if (self->buffers == NULL) {
        self->buffers = PyMem_RawMalloc((size_t)BATCH * SLOT);
        if (self->buffers == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->fd = fd;
    self->sample_every = self->countdown = sample_every;
    Py_INCREF(handle);
    Py_XSETREF(self->handle, handle);
    Py_INCREF(snapshot);
    Py_XSETREF(self->snapshot, snapshot);
    Py_INCREF(counts);
    Py_XSETREF(self->counts, counts);
    Py_INCREF(timer);
    Py_XSETREF(self->timer, timer);
    Py_INCREF(report);
    Py_XSETREF(self->report, report);
    Py_INCREF(plain_counts);
    Py_XSETREF(self->plain_counts, plain_counts);
    self->plain_slot = plain_slot;
    for (int i = 0; i < BATCH; i++) {
        self->in_iov[i].iov_base = self->buffers + (size_t)i * SLOT;
        self->in_iov[i].iov_len = SLOT;
    }
    return 0;
}

static void
Datagrams_dealloc(Datagrams *self)
{
    Py_CLEAR(self->handle);
    Py_CLEAR(self->snapshot);
    Py_CLEAR(self->counts);
    Py_CLEAR(self->timer);
    Py_CLEAR(self->report);
    Py_CLEAR(self->plain_counts);
    if (self->buffers != NULL)
        PyMem_RawFree(self->buffers);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The client's address as socket.recvfrom gives it: addr[0]. */
static PyObject *
client_text(const struct sockaddr_storage *name, socklen_t len)
{
    char text[NI_MAXHOST];
    if (name->ss_family == AF_INET) { /* by hand: glibc's inet_ntop goes through sprintf */
        const unsigned char *octet =
            (const unsigned char *)&((const struct sockaddr_in *)name)->sin_addr;
        char *at = text;
        for (int i = 0; i < 4; i++) {
            unsigned v = octet[i];
            if (v >= 100)
                *at++ = (char)('0' + v / 100);
            if (v >= 10)
                *at++ = (char)('0' + v / 10 % 10);
            *at++ = (char)('0' + v % 10);
            *at++ = i < 3 ? '.' : '\0';
        }
    } else if (getnameinfo((const struct sockaddr *)name, len, text, sizeof text, NULL, 0,
                           NI_NUMERICHOST) != 0) {
        return PyUnicode_FromString("");
    }
    return PyUnicode_FromString(text);
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One counter up: counts[slot] += 1.  0, or -1 with an exception set. */
static int
count(PyObject *counts, Py_ssize_t slot)
{
    if (slot < 0 || slot >= PyList_GET_SIZE(counts)) {
        PyErr_SetString(PyExc_IndexError, "counter slot out of range");
        return -1;
    }
    PyObject *old = PyList_GET_ITEM(counts, slot);
    PyObject *one = PyLong_FromLong(1);
    if (one == NULL)
        return -1;
    PyObject *sum = PyNumber_Add(old, one);
    Py_DECREF(one);
    if (sum == NULL)
        return -1;
    PyList_SET_ITEM(counts, slot, sum);
    Py_DECREF(old);
    return 0;
}

/* The exact-bytes cache's reply to the datagram in ``slot``, as a new reference to
 * reply[2:] (the counter counted), NULL with no exception for a miss, or NULL with
 * one (a bug; the caller reports it and hands the datagram to the handler). */
static PyObject *
cached(Datagrams *self, PyObject *replies, const unsigned char *data, Py_ssize_t size)
{
    PyObject *exact = PyObject_GetAttr(replies, s_exact);
    if (exact == NULL)
        return NULL;
    if (!PyDict_Check(exact)) {
        Py_DECREF(exact);
        return NULL;
    }
    PyObject *tail = PyBytes_FromStringAndSize((const char *)data + 2, size - 2);
    if (tail == NULL) {
        Py_DECREF(exact);
        return NULL;
    }
    PyObject *ready = PyDict_GetItemWithError(exact, tail); /* borrowed */
    Py_DECREF(tail);
    PyObject *reply = NULL;
    if (ready != NULL && PyTuple_Check(ready) && PyTuple_GET_SIZE(ready) == 2
        && PyBytes_Check(PyTuple_GET_ITEM(ready, 0))
        && PyLong_Check(PyTuple_GET_ITEM(ready, 1))) {
        Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(ready, 1));
        if (!(slot == -1 && PyErr_Occurred()) && count(self->counts, slot) == 0) {
            reply = PyTuple_GET_ITEM(ready, 0);
            Py_INCREF(reply);
        }
    }
    Py_DECREF(exact);
    return reply;
}

/* Whether the cookie stage would let this query's reply through unchanged: it holds
 * no 00 0a (the COOKIE option's code, RFC 7873 section 4) past the header, the test
 * cookies.stage.CookieStage.__call__ makes first. */
static int
passes_plain(const unsigned char *data, Py_ssize_t size)
{
    return memmem(data + HEADER_LEN, (size_t)(size - HEADER_LEN), "\0\n", 2) == NULL;
}

/* Log a handler bug through ``report`` and clear it; -1 if it is not an Exception
 * (KeyboardInterrupt, SystemExit: left set, for the caller to return). */
static int
reported(Datagrams *self, Py_ssize_t size)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *type, *value, *trace;
    PyErr_Fetch(&type, &value, &trace);
    PyErr_NormalizeException(&type, &value, &trace);
    PyObject *done = PyObject_CallFunction(self->report, "On", value ? value : Py_None, size);
    Py_XDECREF(done);
    PyErr_Clear();
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(trace);
    return 0;
}

/* Send the batch's replies; counts what could not be sent.  The datagram whose send
 * failed is skipped, as the pure-Python drain does. */
static void
send_all(Datagrams *self, int queued, long *dropped, long *failed)
{
    int at = 0;
    while (at < queued) {
        int sent = sendmmsg(self->fd, self->out + at, (unsigned int)(queued - at), MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                (*dropped)++;
            else
                (*failed)++;
            at++;
        } else {
            at += sent;
        }
    }
    for (int i = 0; i < queued; i++)
        Py_CLEAR(self->keep[i]);
}

static int
queue_reply(Datagrams *self, int queued, int i, PyObject *reply, int with_id)
{
    struct mmsghdr *msg = &self->out[queued];
    struct iovec *iov = self->out_iov[queued];
    int n = 0;
    if (with_id) {
        iov[n].iov_base = self->in_iov[i].iov_base;
        iov[n].iov_len = 2;
        n++;
    }
    iov[n].iov_base = PyBytes_AS_STRING(reply);
    iov[n].iov_len = (size_t)PyBytes_GET_SIZE(reply);
    n++;
    memset(&msg->msg_hdr, 0, sizeof msg->msg_hdr);
    msg->msg_hdr.msg_name = &self->names[i];
    msg->msg_hdr.msg_namelen = self->in[i].msg_hdr.msg_namelen;
    msg->msg_hdr.msg_iov = iov;
    msg->msg_hdr.msg_iovlen = (size_t)n;
    self->keep[queued] = reply; /* the reference passes to keep */
    return queued + 1;
}

/* drain(limit) -> (read, dropped_sends, failed_sends) */
static PyObject *
Datagrams_drain(Datagrams *self, PyObject *arg)
{
    long limit = PyLong_AsLong(arg);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    long done = 0, dropped = 0, failed = 0;
    PyObject *replies = NULL;
    if (self->snapshot != Py_None) {
        PyObject *snap = PyObject_CallNoArgs(self->snapshot);
        if (snap == NULL)
            return NULL;
        replies = PyObject_GetAttr(snap, s_replies);
        Py_DECREF(snap);
        if (replies == NULL)
            return NULL;
    }
    while (done < limit) {
        unsigned int want = (unsigned int)(limit - done < BATCH ? limit - done : BATCH);
        for (unsigned int i = 0; i < want; i++) {
            memset(&self->in[i].msg_hdr, 0, sizeof self->in[i].msg_hdr);
            self->in[i].msg_hdr.msg_name = &self->names[i];
            self->in[i].msg_hdr.msg_namelen = sizeof self->names[i];
            self->in[i].msg_hdr.msg_iov = &self->in_iov[i];
            self->in[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(self->fd, self->in, want, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            done++; /* e.g. a queued ICMP error: the socket is still fine */
            continue;
        }
        if (got == 0)
            break;
        done += got;
        int queued = 0;
        for (int i = 0; i < got; i++) {
            const unsigned char *data = self->in_iov[i].iov_base;
            Py_ssize_t size = (Py_ssize_t)self->in[i].msg_len;
            PyObject *reply = NULL;
            if (replies != NULL && size > HEADER_LEN
                && (self->plain_counts == Py_None || passes_plain(data, size))) {
                /* One hit in N is timed (the handler times one in N of the rest). */
                double started = self->countdown == 1 ? now() : 0.0;
                reply = cached(self, replies, data, size);
                if (reply == NULL && PyErr_Occurred() && reported(self, size) < 0)
                    goto interrupted;
                if (reply != NULL && self->plain_counts != Py_None
                    && count(self->plain_counts, self->plain_slot) < 0) {
                    Py_CLEAR(reply); /* cannot happen: the slot was checked at init */
                    if (reported(self, size) < 0)
                        goto interrupted;
                }
                if (reply != NULL) {
                    if (--self->countdown == 0) {
                        self->countdown = self->sample_every;
                        PyObject *r = PyObject_CallFunction(self->timer, "d", now() - started);
                        if (r == NULL && reported(self, size) < 0) {
                            Py_DECREF(reply);
                            goto interrupted;
                        }
                        Py_XDECREF(r);
                    }
                    queued = queue_reply(self, queued, i, reply, 1);
                    continue;
                }
            }
            PyObject *message = PyBytes_FromStringAndSize((const char *)data, size);
            PyObject *client = message ? client_text(&self->names[i],
                                                     self->in[i].msg_hdr.msg_namelen)
                                       : NULL;
            if (client != NULL)
                reply = PyObject_CallFunctionObjArgs(self->handle, message, Py_False, client,
                                                     NULL);
            Py_XDECREF(message);
            Py_XDECREF(client);
            if (reply == NULL) {
                if (reported(self, size) < 0)
                    goto interrupted;
                continue;
            }
            if (!PyBytes_Check(reply)) { /* None: no reply (RFC 1035 4.1.1) */
                Py_DECREF(reply);
                continue;
            }
            queued = queue_reply(self, queued, i, reply, 0);
        }
        send_all(self, queued, &dropped, &failed);
        if ((unsigned int)got < want)
            break;
        continue;
    interrupted:
        send_all(self, queued, &dropped, &failed);
        Py_XDECREF(replies);
        return NULL;
    }
    Py_XDECREF(replies);
    return Py_BuildValue("lll", done, dropped, failed);
}

static PyMethodDef Datagrams_methods[] = {
    {"drain", (PyCFunction)Datagrams_drain, METH_O,
     "drain(limit) -> (read, dropped_sends, failed_sends): answer up to limit datagrams."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DatagramsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dnsfail.serve._datagrams.Datagrams",
    .tp_basicsize = sizeof(Datagrams),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One UDP socket's batched reader and writer.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Datagrams_init,
    .tp_dealloc = (destructor)Datagrams_dealloc,
    .tp_methods = Datagrams_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dnsfail.serve._datagrams",
    "recvmmsg/sendmmsg and the exact-bytes cache for the UDP listener.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__datagrams(void)
{
    s_replies = PyUnicode_InternFromString("replies");
    s_exact = PyUnicode_InternFromString("exact");
    if (s_replies == NULL || s_exact == NULL || PyType_Ready(&DatagramsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&DatagramsType);
    if (PyModule_AddObject(m, "Datagrams", (PyObject *)&DatagramsType) < 0) {
        Py_DECREF(&DatagramsType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "BATCH", BATCH);
    PyModule_AddIntConstant(m, "SLOT", SLOT);
    return m;
}
