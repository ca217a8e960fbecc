/* The per-object loops of `memdiag leaks`, compiled: counting a heap of millions of objects
 * by type in every snapshot, and telling the traced call's new objects from the old ones.
 *
 * Both run in a forked copy of the measured process, the job's heap read and never written
 * (a write would copy the page it lands on). They give exactly what the pure-Python versions
 * in snapshot.py and owners.py give, about ten times faster; those versions run wherever
 * this module was not built (another interpreter, a machine without a compiler).
 *
 * count(objects, large_bytes) -> (stats, large, ids)
 *     `objects`: the collector's objects (gc.get_objects()). Counts them and the untracked
 *     objects they refer to, each once, two levels deep (a str inside an untracked tuple or
 *     dict). stats: {type: [count, bytes]} (bytes as sys.getsizeof); large: [[id, bytes]]
 *     of the objects of at least `large_bytes` (none when it is 0); ids: the untracked
 *     objects' ids, sorted, as native unsigned 64-bit integers.
 *
 * count_reachable(objects, large_bytes) -> (stats, large, ids, unreachable)
 *     count() of the objects a full collection would keep, without collecting: those
 *     referred to from outside `objects` (more references than the listed objects and the
 *     list hold: the collector's own test), and all they lead to; untracked objects only
 *     through those. unreachable: how many listed objects were left out (cyclic garbage
 *     that no collection has freed yet).
 *
 * Newness(new_tracked, old_untracked, traced)
 *     new_tracked, old_untracked: sorted ids as `count` writes them (old_untracked None:
 *     not counted); traced(obj): tracemalloc's traceback of obj or None. Called on an
 *     object: whether the traced call made it (owners.new_since says how that is decided).
 *     select(objects, claimed, seen): the new ones whose ids are in neither set.
 *     select_referents(owner, claimed, seen): the same of gc.get_referents(owner).
 *     sample_referents(obj, seen): the untracked referents a sample can be among.
 *     With `freed` (what freed() gave), an old address whose block was not freed since is
 *     its old object: tracemalloc is asked only about the others.
 *
 * referents_in(holder, wanted): the ids among `wanted` of holder's referents.
 *
 * install_free_log(), log_frees(), freed(), stop_log(): the blocks the object allocator
 *     frees, from log_frees() on.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if PY_VERSION_HEX >= 0x030D0000 /* exported still, no longer in the public headers */
PyAPI_FUNC(size_t) _PySys_GetSizeOf(PyObject *);
PyAPI_FUNC(PyObject *) _PyTraceMalloc_GetTraceback(unsigned int domain, uintptr_t ptr);
#endif

/* ---- a growable array of addresses ---- */

typedef struct {
    uintptr_t *items;
    size_t len;
    size_t cap;
} Addrs;

static int addrs_push(Addrs *a, uintptr_t value) {
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4096;
        uintptr_t *items = realloc(a->items, cap * sizeof(uintptr_t));
        if (items == NULL) {
            return -1;
        }
        a->items = items;
        a->cap = cap;
    }
    a->items[a->len++] = value;
    return 0;
}

/* Sorts in place, least significant 16 bits first, then drops repeats: streaming passes,
 * far faster than a comparison sort at millions of addresses. */
static int addrs_sort_unique(Addrs *a) {
    size_t ordered = 1;
    while (ordered < a->len && a->items[ordered - 1] < a->items[ordered]) {
        ordered++;
    }
    if (ordered >= a->len) {
        return 0; /* sorted and unique already (as `count` writes its ids) */
    }
    uintptr_t top = 0;
    for (size_t i = 0; i < a->len; i++) {
        top |= a->items[i];
    }
    uintptr_t *spare = malloc(a->len * sizeof(uintptr_t));
    size_t *counts = malloc(65536 * sizeof(size_t));
    if (spare == NULL || counts == NULL) {
        free(spare);
        free(counts);
        return -1;
    }
    uintptr_t *from = a->items, *to = spare;
    for (unsigned shift = 0; shift < 64 && (top >> shift) != 0; shift += 16) {
        memset(counts, 0, 65536 * sizeof(size_t));
        for (size_t i = 0; i < a->len; i++) {
            counts[(from[i] >> shift) & 0xffff]++;
        }
        size_t at = 0;
        for (size_t d = 0; d < 65536; d++) {
            size_t n = counts[d];
            counts[d] = at;
            at += n;
        }
        for (size_t i = 0; i < a->len; i++) {
            to[counts[(from[i] >> shift) & 0xffff]++] = from[i];
        }
        uintptr_t *swap = from;
        from = to;
        to = swap;
    }
    size_t kept = 0;
    for (size_t i = 0; i < a->len; i++) {
        if (kept == 0 || from[i] != from[kept - 1]) {
            from[kept++] = from[i];
        }
    }
    if (from != a->items) {
        free(a->items);
        a->items = from;
        a->cap = a->len;
    } else {
        free(spare);
    }
    a->len = kept;
    free(counts);
    return 0;
}

/* An object to test and where it stands among the objects given. */
typedef struct {
    uintptr_t address;
    size_t index;
} Spot;

static int spot_order(const void *a, const void *b) {
    uintptr_t x = ((const Spot *)a)->address, y = ((const Spot *)b)->address;
    return (x > y) - (x < y);
}

/* Below this many, a comparison sort: the radix passes' tables cost more than the sort. */
#define RADIX_FROM 4096

/* Sorts by address: least significant 16 bits first (stable passes keep the given order
 * among repeats), or below RADIX_FROM by qsort (repeats in any order: they share a flag). */
static int spots_sort(Spot *spots, size_t n) {
    if (n < RADIX_FROM) {
        qsort(spots, n, sizeof(Spot), spot_order);
        return 0;
    }
    uintptr_t top = 0;
    for (size_t i = 0; i < n; i++) {
        top |= spots[i].address;
    }
    Spot *spare = malloc((n ? n : 1) * sizeof(Spot));
    size_t *counts = malloc(65536 * sizeof(size_t));
    if (spare == NULL || counts == NULL) {
        free(spare);
        free(counts);
        return -1;
    }
    Spot *from = spots, *to = spare;
    for (unsigned shift = 0; shift < 64 && (top >> shift) != 0; shift += 16) {
        memset(counts, 0, 65536 * sizeof(size_t));
        for (size_t i = 0; i < n; i++) {
            counts[(from[i].address >> shift) & 0xffff]++;
        }
        size_t at = 0;
        for (size_t d = 0; d < 65536; d++) {
            size_t k = counts[d];
            counts[d] = at;
            at += k;
        }
        for (size_t i = 0; i < n; i++) {
            to[counts[(from[i].address >> shift) & 0xffff]++] = from[i];
        }
        Spot *swap = from;
        from = to;
        to = swap;
    }
    if (from != spots) {
        memcpy(spots, from, n * sizeof(Spot));
    }
    free(spare);
    free(counts);
    return 0;
}

static int addrs_has(const Addrs *a, uintptr_t value) {
    size_t lo = 0, hi = a->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->items[mid] < value) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < a->len && a->items[lo] == value;
}

/* ---- a set of addresses: open addressing, 0 never stored ---- */

typedef struct {
    uintptr_t *slots;
    size_t mask;
} AddrSet;

static inline size_t addr_hash(uintptr_t a) {
    uint64_t x = (uint64_t)a;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int addrset_fill(AddrSet *s, const uintptr_t *items, size_t n) {
    size_t cap = 16;
    while (cap < n * 2) {
        cap <<= 1;
    }
    s->slots = calloc(cap, sizeof(uintptr_t));
    if (s->slots == NULL) {
        return -1;
    }
    s->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = items[i];
        if (a == 0) {
            continue;
        }
        size_t at = addr_hash(a) & s->mask;
        while (s->slots[at] != 0 && s->slots[at] != a) {
            at = (at + 1) & s->mask;
        }
        s->slots[at] = a;
    }
    return 0;
}

static inline int addrset_has(const AddrSet *s, uintptr_t a) {
    size_t at = addr_hash(a) & s->mask;
    while (s->slots[at] != 0) {
        if (s->slots[at] == a) {
            return 1;
        }
        at = (at + 1) & s->mask;
    }
    return 0;
}

/* ---- sizes, as sys.getsizeof gives them, by the fastest way each type allows ---- */

enum { SIZE_UNKNOWN, SIZE_FIXED, SIZE_DIRECT, SIZE_GENERAL };

typedef struct {
    PyTypeObject *type; /* NULL: a free slot */
    Py_ssize_t count;
    Py_ssize_t bytes;
    int how;
    Py_ssize_t fixed;   /* SIZE_FIXED: every object's size */
    PyCFunction method; /* SIZE_DIRECT: the type's own C __sizeof__ */
    Py_ssize_t extra;   /* SIZE_DIRECT: what getsizeof adds to it (the collector's header) */
    PyObject *first;    /* Newness.walk: the first object of the type met */
    Py_ssize_t traced;  /* Newness.walk: how many of them tracemalloc traced */
} TypeRow;

typedef struct {
    TypeRow *rows;
    size_t mask;
    size_t used;
    PyObject *object_sizeof; /* object.__sizeof__ */
    PyObject *sizeof_name;
} Types;

static TypeRow *types_row(Types *t, PyTypeObject *type) {
    if ((t->used + 1) * 2 > t->mask + 1) {
        size_t cap = (t->mask + 1) * 2;
        TypeRow *rows = calloc(cap, sizeof(TypeRow));
        if (rows == NULL) {
            return NULL;
        }
        for (size_t i = 0; i <= t->mask; i++) {
            if (t->rows[i].type != NULL) {
                size_t at = addr_hash((uintptr_t)t->rows[i].type) & (cap - 1);
                while (rows[at].type != NULL) {
                    at = (at + 1) & (cap - 1);
                }
                rows[at] = t->rows[i];
            }
        }
        free(t->rows);
        t->rows = rows;
        t->mask = cap - 1;
    }
    size_t at = addr_hash((uintptr_t)type) & t->mask;
    while (t->rows[at].type != NULL) {
        if (t->rows[at].type == type) {
            return &t->rows[at];
        }
        at = (at + 1) & t->mask;
    }
    t->rows[at].type = type;
    t->used++;
    return &t->rows[at];
}

/* getsizeof's answer, -1 when the object has none (its __sizeof__ failed). */
static Py_ssize_t general_size(PyObject *obj) {
    size_t size = _PySys_GetSizeOf(obj);
    if (size == (size_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return (Py_ssize_t)size;
}

static Py_ssize_t method_size(PyCFunction method, PyObject *obj) {
    PyObject *result = method(obj, NULL);
    if (result == NULL) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t size = PyLong_AsSsize_t(result);
    Py_DECREF(result);
    if (size == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return size;
}

/* Decides, from the first object of a type, how its objects are sized: a constant when the
 * type has object's __sizeof__ and no items; its own C __sizeof__ called directly when it
 * has one; else sys.getsizeof's way. The collector's header getsizeof adds is constant per
 * type unless the type decides per object whether it is collected (tp_is_gc). */
static void types_learn(Types *t, TypeRow *row, PyObject *obj) {
    PyTypeObject *type = Py_TYPE(obj);
    row->how = SIZE_GENERAL;
    if (type->tp_is_gc != NULL) {
        return;
    }
    PyObject *method = PyObject_GetAttr((PyObject *)type, t->sizeof_name);
    if (method == NULL) {
        PyErr_Clear();
        return;
    }
    Py_ssize_t whole = general_size(obj);
    if (whole < 0) {
        Py_DECREF(method);
        return;
    }
    if (method == t->object_sizeof && type->tp_itemsize == 0) {
        row->how = SIZE_FIXED;
        row->fixed = whole;
    } else if (Py_IS_TYPE(method, &PyMethodDescr_Type)) {
        PyMethodDef *def = ((PyMethodDescrObject *)method)->d_method;
        if ((def->ml_flags & (METH_VARARGS | METH_KEYWORDS | METH_O | METH_FASTCALL)) == 0 &&
            (def->ml_flags & METH_NOARGS)) {
            Py_ssize_t own = method_size(def->ml_meth, obj);
            if (own >= 0 && own <= whole) {
                row->how = SIZE_DIRECT;
                row->method = def->ml_meth;
                row->extra = whole - own;
            }
        }
    }
    Py_DECREF(method);
}

static int types_init(Types *t) {
    t->rows = calloc(64, sizeof(TypeRow));
    t->mask = 63;
    t->used = 0;
    t->object_sizeof = PyObject_GetAttrString((PyObject *)&PyBaseObject_Type, "__sizeof__");
    t->sizeof_name = PyUnicode_InternFromString("__sizeof__");
    if (t->rows == NULL && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    return t->rows != NULL && t->object_sizeof != NULL && t->sizeof_name != NULL ? 0 : -1;
}

static void types_clear(Types *t) {
    free(t->rows);
    Py_XDECREF(t->object_sizeof);
    Py_XDECREF(t->sizeof_name);
}

/* Counts `obj` under its type (its row in `*found` when given); its size, -1 when it has
 * none. */
static Py_ssize_t types_add(Types *t, PyObject *obj, int *failed, TypeRow **found) {
    TypeRow *row = types_row(t, Py_TYPE(obj));
    if (row == NULL) {
        *failed = 1;
        return -1;
    }
    if (found != NULL) {
        *found = row;
    }
    if (row->how == SIZE_UNKNOWN) {
        types_learn(t, row, obj);
    }
    Py_ssize_t size;
    switch (row->how) {
    case SIZE_FIXED:
        size = row->fixed;
        break;
    case SIZE_DIRECT:
        size = method_size(row->method, obj);
        if (size >= 0) {
            size += row->extra;
        }
        break;
    default:
        size = general_size(obj);
    }
    row->count++;
    if (size > 0) {
        row->bytes += size;
    }
    return size;
}

/* ---- count ---- */

typedef struct {
    Addrs *into;
    int failed;
} Visit;

/* Every referent is listed, tracked or not: which are tracked is asked later, in address
 * order, where reading each object's header costs far fewer cache misses than here. */
static int visit_any(PyObject *ref, void *arg) {
    Visit *v = (Visit *)arg;
    if (addrs_push(v->into, (uintptr_t)ref) < 0) {
        v->failed = 1;
        return -1;
    }
    return 0;
}

/* Calls `visit` on each of `obj`'s referents, as gc.get_referents lists them. */
static void traverse_referents(PyObject *obj, visitproc visit, void *arg) {
    if (PyObject_IS_GC(obj) && Py_TYPE(obj)->tp_traverse != NULL) {
        Py_TYPE(obj)->tp_traverse(obj, visit, arg);
    }
}

static int referents_into(PyObject *obj, Visit *v) {
    traverse_referents(obj, visit_any, v);
    return v->failed ? -1 : 0;
}

typedef struct {
    Types types;
    PyObject *large;
    Py_ssize_t large_bytes;
    int failed;
} Counting;

static int account(Counting *c, PyObject *obj) {
    Py_ssize_t size = types_add(&c->types, obj, &c->failed, NULL);
    if (c->failed) {
        return -1;
    }
    if (c->large_bytes > 0 && size >= c->large_bytes) {
        PyObject *pair = Py_BuildValue("[Kn]", (unsigned long long)(uintptr_t)obj, size);
        if (pair == NULL || PyList_Append(c->large, pair) < 0) {
            Py_XDECREF(pair);
            return -1;
        }
        Py_DECREF(pair);
    }
    return 0;
}

/* {type: [count, bytes]}; `walked`: [count, bytes, traced, first] (Newness.walk). */
static PyObject *stats_dict(Types *t, int walked) {
    PyObject *stats = PyDict_New();
    if (stats == NULL) {
        return NULL;
    }
    for (size_t i = 0; i <= t->mask; i++) {
        TypeRow *row = &t->rows[i];
        if (row->type == NULL) {
            continue;
        }
        PyObject *entry = walked ? Py_BuildValue("[nnnO]", row->count, row->bytes, row->traced,
                                                 row->first ? row->first : Py_None)
                                 : Py_BuildValue("[nn]", row->count, row->bytes);
        if (entry == NULL || PyDict_SetItem(stats, (PyObject *)row->type, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(stats);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return stats;
}

/* The sorted ids of `first` and `second` (both sorted, without repeats, disjoint). */
static PyObject *merged_ids(const Addrs *first, const Addrs *second) {
    size_t n = first->len + second->len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * sizeof(uint64_t)));
    if (out == NULL) {
        return NULL;
    }
    uint64_t *ids = (uint64_t *)PyBytes_AS_STRING(out);
    size_t i = 0, j = 0, k = 0;
    while (i < first->len || j < second->len) {
        if (j >= second->len || (i < first->len && first->items[i] < second->items[j])) {
            ids[k++] = first->items[i++];
        } else {
            ids[k++] = second->items[j++];
        }
    }
    return out;
}

/* ---- reachability, as a full collection decides it ---- */

/* Addresses to indices: open addressing, 0 never stored. */
typedef struct {
    uintptr_t *keys;
    uint32_t *values;
    size_t mask;
} AddrMap;

static int addrmap_init(AddrMap *m, PyObject *objects) {
    size_t n = (size_t)PyList_GET_SIZE(objects), cap = 16;
    while (cap < n * 2) {
        cap <<= 1;
    }
    m->keys = calloc(cap, sizeof(uintptr_t));
    m->values = malloc(cap * sizeof(uint32_t));
    m->mask = cap - 1;
    if (m->keys == NULL || m->values == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)PyList_GET_ITEM(objects, i);
        size_t at = addr_hash(a) & m->mask;
        while (m->keys[at] != 0 && m->keys[at] != a) {
            at = (at + 1) & m->mask;
        }
        m->keys[at] = a;
        m->values[at] = (uint32_t)i;
    }
    return 0;
}

static inline int64_t addrmap_get(const AddrMap *m, uintptr_t a) {
    size_t at = addr_hash(a) & m->mask;
    while (m->keys[at] != 0) {
        if (m->keys[at] == a) {
            return (int64_t)m->values[at];
        }
        at = (at + 1) & m->mask;
    }
    return -1;
}

typedef struct {
    const AddrMap *listed;
    uint32_t *inside;  /* per listed object: the references to it from listed objects */
    Addrs *edges;      /* the listed referents' indices, object after object; NULL: none */
    Addrs *others;     /* the referents not listed (untracked ones among them) */
    int failed;
} ReachVisit;

static int visit_reach(PyObject *ref, void *arg) {
    ReachVisit *v = (ReachVisit *)arg;
    int64_t at = addrmap_get(v->listed, (uintptr_t)ref);
    if (at >= 0) {
        if (v->inside != NULL) {
            v->inside[at]++;
        }
        if (v->edges != NULL && addrs_push(v->edges, (uintptr_t)at) < 0) {
            v->failed = 1;
            return -1;
        }
    } else if (addrs_push(v->others, (uintptr_t)ref) < 0) {
        v->failed = 1;
        return -1;
    }
    return 0;
}

/* Marks in `reached` the objects of `objects` a full collection would keep: those referred
 * to from outside the list (more references than the listed objects and the list itself
 * hold), and what they refer to, through listed objects. The rest is cyclic garbage. The
 * referents not listed are appended to `others`, of reached objects only. Returns the
 * number of objects not reached, -1 on failure (memory). */
static Py_ssize_t reach_listed(PyObject *objects, char *reached, Addrs *others) {
    size_t n = (size_t)PyList_GET_SIZE(objects);
    AddrMap listed = {NULL, NULL, 0};
    Addrs edges = {NULL, 0, 0}, stack = {NULL, 0, 0};
    uint32_t *inside = calloc(n ? n : 1, sizeof(uint32_t));
    size_t *first = malloc((n + 1) * sizeof(size_t));
    Py_ssize_t unreached = -1;
    if (inside == NULL || first == NULL || addrmap_init(&listed, objects) < 0) {
        goto done;
    }
    ReachVisit visit = {&listed, inside, &edges, others, 0};
    for (size_t i = 0; i < n; i++) {
        first[i] = edges.len;
        traverse_referents(PyList_GET_ITEM(objects, i), visit_reach, &visit);
        if (visit.failed) {
            goto done;
        }
    }
    first[n] = edges.len;
    memset(reached, 0, n);
    for (size_t i = 0; i < n; i++) {
        /* One reference is the list's own. */
        if (Py_REFCNT(PyList_GET_ITEM(objects, i)) - 1 > (Py_ssize_t)inside[i]) {
            reached[i] = 1;
            if (addrs_push(&stack, i) < 0) {
                goto done;
            }
        }
    }
    size_t kept = stack.len;
    while (stack.len > 0) {
        size_t i = stack.items[--stack.len];
        for (size_t e = first[i]; e < first[i + 1]; e++) {
            size_t to = edges.items[e];
            if (!reached[to]) {
                reached[to] = 1;
                kept++;
                if (addrs_push(&stack, to) < 0) {
                    goto done;
                }
            }
        }
    }
    unreached = (Py_ssize_t)(n - kept);
    if (unreached > 0) {
        /* The untracked referents of the garbage are garbage too: listed again without. */
        others->len = 0;
        ReachVisit again = {&listed, NULL, NULL, others, 0};
        for (size_t i = 0; i < n; i++) {
            if (reached[i]) {
                traverse_referents(PyList_GET_ITEM(objects, i), visit_reach, &again);
                if (again.failed) {
                    unreached = -1;
                    goto done;
                }
            }
        }
    }
done:
    free(listed.keys);
    free(listed.values);
    free(edges.items);
    free(stack.items);
    free(inside);
    free(first);
    return unreached;
}

/* ---- count ---- */

static PyObject *count_objects(PyObject *objects, Py_ssize_t large_bytes, int reach) {
    Counting c = {{NULL, 0, 0, NULL, NULL}, NULL, large_bytes, 0};
    Addrs level1 = {NULL, 0, 0}, level2 = {NULL, 0, 0};
    Visit visit1 = {&level1, 0}, visit2 = {&level2, 0};
    PyObject *stats = NULL, *ids = NULL, *result = NULL;
    char *reached = NULL;
    Py_ssize_t unreached = 0;
    c.large = PyList_New(0);
    if (types_init(&c.types) < 0 || c.large == NULL) {
        goto done;
    }
    if (reach) {
        /* The collector's objects a full collection would keep, and what they refer to. */
        reached = malloc(PyList_GET_SIZE(objects) ? PyList_GET_SIZE(objects) : 1);
        if (reached == NULL || (unreached = reach_listed(objects, reached, &level1)) < 0) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects); i++) {
            if (reached[i] && account(&c, PyList_GET_ITEM(objects, i)) < 0) {
                goto done;
            }
        }
    } else {
        /* The collector's objects, and what they refer to that it does not track. */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects); i++) {
            PyObject *obj = PyList_GET_ITEM(objects, i);
            if (account(&c, obj) < 0 || referents_into(obj, &visit1) < 0) {
                goto done;
            }
        }
    }
    if (addrs_sort_unique(&level1) < 0) {
        goto done;
    }
    /* Those, each once, in address order; and inside the untracked tuples and dicts. */
    size_t untracked = 0;
    for (size_t i = 0; i < level1.len; i++) {
        PyObject *obj = (PyObject *)level1.items[i];
        if (PyObject_GC_IsTracked(obj)) {
            continue; /* counted from the collector's list */
        }
        level1.items[untracked++] = level1.items[i];
        if (account(&c, obj) < 0) {
            goto done;
        }
        if ((Py_IS_TYPE(obj, &PyTuple_Type) || Py_IS_TYPE(obj, &PyDict_Type)) &&
            referents_into(obj, &visit2) < 0) {
            goto done;
        }
    }
    level1.len = untracked;
    if (addrs_sort_unique(&level2) < 0) {
        goto done;
    }
    size_t kept = 0;
    for (size_t i = 0; i < level2.len; i++) {
        uintptr_t address = level2.items[i];
        if (addrs_has(&level1, address) || PyObject_GC_IsTracked((PyObject *)address)) {
            continue;
        }
        level2.items[kept++] = address;
        if (account(&c, (PyObject *)address) < 0) {
            goto done;
        }
    }
    level2.len = kept;
    stats = stats_dict(&c.types, 0);
    ids = stats != NULL ? merged_ids(&level1, &level2) : NULL;
    if (ids != NULL) {
        result = reach ? Py_BuildValue("(OOOn)", stats, c.large, ids, unreached)
                       : PyTuple_Pack(3, stats, c.large, ids);
    }
done:
    if (result == NULL && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    free(reached);
    free(level1.items);
    free(level2.items);
    types_clear(&c.types);
    Py_XDECREF(c.large);
    Py_XDECREF(stats);
    Py_XDECREF(ids);
    return result;
}

static PyObject *heapwalk_count(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *objects;
    Py_ssize_t large_bytes;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &objects, &large_bytes)) {
        return NULL;
    }
    return count_objects(objects, large_bytes, 0);
}

static PyObject *heapwalk_count_reachable(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *objects;
    Py_ssize_t large_bytes;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &objects, &large_bytes)) {
        return NULL;
    }
    if ((uint64_t)PyList_GET_SIZE(objects) >= UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "count_reachable: too many objects");
        return NULL;
    }
    return count_objects(objects, large_bytes, 1);
}

/* ---- referents_in ---- */

typedef struct {
    Addrs wanted; /* sorted; the caller's buffer, not freed */
    PyObject *out;
    int failed;
} Hits;

static int visit_hit(PyObject *ref, void *arg) {
    Hits *h = (Hits *)arg;
    if (addrs_has(&h->wanted, (uintptr_t)ref)) {
        PyObject *ident = PyLong_FromVoidPtr(ref);
        if (ident == NULL || PyList_Append(h->out, ident) < 0) {
            Py_XDECREF(ident);
            h->failed = 1;
            return -1;
        }
        Py_DECREF(ident);
    }
    return 0;
}

/* The ids among `wanted` (sorted native uint64) of `holder`'s referents, read by its
 * tp_traverse: no list of them, no reference taken (in a forked copy, a set of millions of
 * strings is not written to for the few the chain search looks for). */
static PyObject *heapwalk_referents_in(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *holder;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "Oy*", &holder, &view)) {
        return NULL;
    }
    size_t n = (size_t)view.len / sizeof(uintptr_t);
    Hits h = {{(uintptr_t *)view.buf, n, n}, PyList_New(0), 0};
    if (h.out != NULL) {
        traverse_referents(holder, visit_hit, &h);
        if (h.failed) {
            Py_CLEAR(h.out);
        }
    }
    PyBuffer_Release(&view);
    return h.out;
}

/* ---- the blocks the object allocator freed since log_frees() ---- */

/* An old address holds its old object still unless that block was freed since the old
 * objects were listed: only then can a new object have taken it, and only then need
 * tracemalloc be asked. The object allocator is wrapped (install_free_log) before
 * `untraced.Tracer` reads the allocators again, before tracemalloc starts: tracemalloc then
 * wraps this in turn, and the tracer's untraced slices allocate, reallocate and free through
 * it too, so every free and every moving realloc comes here. The wrapper takes no context
 * (its functions may run with tracemalloc's, as CPython's own do); the GIL is held in all
 * of them. */
static PyMemAllocatorEx freed_inner;
static Addrs freed_log;
static int freed_installed;
static int freed_state; /* 0 not logging, 1 logging, 2 the log overflowed: unknown */
#define FREED_MAX ((size_t)1 << 26)

static void note_freed(void *block) {
    if (block != NULL && freed_state == 1 &&
        (freed_log.len >= FREED_MAX || addrs_push(&freed_log, (uintptr_t)block) < 0)) {
        freed_state = 2;
    }
}

static void *logged_malloc(void *Py_UNUSED(ctx), size_t size) {
    return freed_inner.malloc(freed_inner.ctx, size);
}

static void *logged_calloc(void *Py_UNUSED(ctx), size_t count, size_t size) {
    return freed_inner.calloc(freed_inner.ctx, count, size);
}

static void *logged_realloc(void *Py_UNUSED(ctx), void *block, size_t size) {
    void *moved = freed_inner.realloc(freed_inner.ctx, block, size);
    if (moved != NULL && moved != block) {
        note_freed(block);
    }
    return moved;
}

static void logged_free(void *Py_UNUSED(ctx), void *block) {
    note_freed(block);
    freed_inner.free(freed_inner.ctx, block);
}

static int tracemalloc_on(void) {
    PyObject *module = PyImport_ImportModule("tracemalloc");
    PyObject *on = module != NULL ? PyObject_CallMethod(module, "is_tracing", NULL) : NULL;
    int tracing = on != NULL ? PyObject_IsTrue(on) : -1;
    Py_XDECREF(on);
    Py_XDECREF(module);
    return tracing;
}

static PyObject *heapwalk_install_free_log(PyObject *Py_UNUSED(module),
                                           PyObject *Py_UNUSED(args)) {
    if (freed_installed) {
        Py_RETURN_TRUE;
    }
    int tracing = tracemalloc_on();
    if (tracing < 0) {
        return NULL;
    }
    PyMemAllocatorEx inner;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &inner);
    /* Not while tracemalloc traces (it would put its allocators back over this one when it
     * stops), nor over hooks that take a context (debug hooks, another tool's). */
    if (tracing || inner.ctx != NULL) {
        Py_RETURN_FALSE;
    }
    freed_inner = inner;
    PyMemAllocatorEx logged = {NULL, logged_malloc, logged_calloc, logged_realloc, logged_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &logged);
    freed_installed = 1;
    Py_RETURN_TRUE;
}

static PyObject *heapwalk_log_frees(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args)) {
    if (!freed_installed) {
        Py_RETURN_FALSE;
    }
    freed_log.len = 0;
    freed_state = 1;
    Py_RETURN_TRUE;
}

static PyObject *heapwalk_stop_log(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args)) {
    freed_state = 0;
    free(freed_log.items);
    freed_log.items = NULL;
    freed_log.len = freed_log.cap = 0;
    Py_RETURN_NONE;
}

static PyObject *heapwalk_freed(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_ssize_t most = -1;
    if (!PyArg_ParseTuple(args, "|n", &most)) {
        return NULL;
    }
    if (freed_state != 1 || (most >= 0 && freed_log.len > (size_t)most)) {
        Py_RETURN_NONE;
    }
    Addrs copy = {malloc((freed_log.len ? freed_log.len : 1) * sizeof(uintptr_t)), 0, 0};
    if (copy.items == NULL) {
        return PyErr_NoMemory();
    }
    memcpy(copy.items, freed_log.items, freed_log.len * sizeof(uintptr_t));
    copy.len = copy.cap = freed_log.len;
    if (addrs_sort_unique(&copy) < 0) {
        free(copy.items);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)copy.items,
                                              (Py_ssize_t)(copy.len * sizeof(uintptr_t)));
    free(copy.items);
    return out;
}

/* ---- Newness ---- */

typedef struct {
    PyObject_HEAD
    AddrSet new_tracked;
    /* The old untracked objects' addresses, in order: searched, or walked beside objects
     * in address order (`new_flags`). Not also hashed: at 2.2 million, filling a table of
     * 8 million slots (64 MB, every page new to the copy) cost more than the searches. */
    Addrs old_sorted;
    Addrs freed;      /* the blocks freed since they were listed, in order (log_frees) */
    int counted;      /* old_untracked was given */
    int logged;       /* freed was given */
    PyObject *traced;
    /* The referents and new_flags of the last container of many (`referents_flags`): the
     * samples' scan and the owners' both read the one set of millions of strings. */
    PyObject *cached; /* borrowed: compared by address and referent count only */
    Addrs cached_refs;
    char *cached_flags;
} Newness;

static int fill_from(AddrSet *set, PyObject *source) {
    Py_buffer view;
    if (PyObject_GetBuffer(source, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    int failed = addrset_fill(set, (const uintptr_t *)view.buf, (size_t)view.len / 8);
    PyBuffer_Release(&view);
    if (failed) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int copy_sorted(Addrs *into, PyObject *source) {
    Py_buffer view;
    if (PyObject_GetBuffer(source, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    size_t n = (size_t)view.len / 8;
    free(into->items);
    into->items = malloc((n ? n : 1) * sizeof(uintptr_t));
    into->len = into->cap = into->items != NULL ? n : 0;
    if (into->items != NULL) {
        memcpy(into->items, view.buf, n * sizeof(uintptr_t));
    }
    PyBuffer_Release(&view);
    if (into->items == NULL || addrs_sort_unique(into) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int newness_init(Newness *self, PyObject *args, PyObject *kwargs) {
    PyObject *new_tracked, *old_untracked, *traced, *freed = Py_None;
    static char *names[] = {"new_tracked", "old_untracked", "traced", "freed", NULL};
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "OOO|O", names, &new_tracked, &old_untracked, &traced, &freed)) {
        return -1;
    }
    self->logged = freed != Py_None;
    if (self->logged && copy_sorted(&self->freed, freed) < 0) {
        return -1;
    }
    if (fill_from(&self->new_tracked, new_tracked) < 0) {
        return -1;
    }
    self->counted = old_untracked != Py_None;
    if (self->counted && copy_sorted(&self->old_sorted, old_untracked) < 0) {
        return -1;
    }
    Py_INCREF(traced);
    Py_XSETREF(self->traced, traced);
    return 0;
}

static void newness_dealloc(Newness *self) {
    free(self->new_tracked.slots);
    free(self->old_sorted.items);
    free(self->freed.items);
    free(self->cached_refs.items);
    free(self->cached_flags);
    Py_XDECREF(self->traced);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Whether tracemalloc traced `obj`: 1, 0, -1 an error. An object the collector never
 * tracks starts at its block (no header before it), so its trace is looked up there
 * directly; others through tracemalloc's own function. */
static int is_traced(Newness *self, PyObject *obj) {
    PyObject *traceback = PyType_IS_GC(Py_TYPE(obj))
                              ? PyObject_CallOneArg(self->traced, obj)
                              : _PyTraceMalloc_GetTraceback(0, (uintptr_t)obj);
    if (traceback == NULL) {
        return -1;
    }
    int traced = traceback != Py_None;
    Py_DECREF(traceback);
    return traced;
}

/* 1 new, 0 old, -1 an error; `was_old`: whether the old untracked objects hold the
 * address, `was_freed`: whether its block was freed since (-1: look them up). */
static int is_new(Newness *self, PyObject *obj, int was_old, int was_freed) {
    uintptr_t address = (uintptr_t)obj;
    if (PyObject_GC_IsTracked(obj)) {
        return self->new_tracked.slots != NULL && addrset_has(&self->new_tracked, address);
    }
    if (self->counted && was_old < 0) {
        was_old = addrs_has(&self->old_sorted, address);
    }
    if (self->counted && !was_old) {
        return 1;
    }
    /* An old address: its old object still, unless its block was freed since (a block is
     * the object's own address when the collector never tracks its type). */
    if (self->counted && self->logged && !PyType_IS_GC(Py_TYPE(obj))) {
        if (was_freed < 0) {
            was_freed = addrs_has(&self->freed, address);
        }
        if (!was_freed) {
            return 0;
        }
    }
    return is_traced(self, obj); /* an old address a traced new object took, or no count */
}

static PyObject *newness_call(Newness *self, PyObject *args, PyObject *kwargs) {
    PyObject *obj;
    static char *names[] = {"obj", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O", names, &obj)) {
        return NULL;
    }
    int found = is_new(self, obj, -1, -1);
    if (found < 0) {
        return NULL;
    }
    return PyBool_FromLong(found);
}

static int in_set(PyObject *set, PyObject *obj) {
    if (PySet_GET_SIZE(set) == 0) {
        return 0;
    }
    PyObject *ident = PyLong_FromVoidPtr(obj);
    if (ident == NULL) {
        return -1;
    }
    int found = PySet_Contains(set, ident);
    Py_DECREF(ident);
    return found;
}

/* new_flags' bits for each object: made by the traced call; tracked by the collector; an
 * exact tuple or dict (untracked, it may hold new objects while old itself). */
#define FLAG_NEW 1
#define FLAG_TRACKED 2
#define FLAG_INSIDE 4

/* flags[i] for each of `objs`, tested in address order: the old addresses are then met in
 * the order they are stored, the objects' headers and tracemalloc's table nearly in the
 * order they lie in memory (at millions of objects, far fewer cache misses). */
static int new_flags(Newness *self, PyObject **objs, size_t n, char *flags) {
    Spot *spots = malloc((n ? n : 1) * sizeof(Spot));
    if (spots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        spots[i].address = (uintptr_t)objs[i];
        spots[i].index = i;
    }
    if (spots_sort(spots, n) < 0) {
        free(spots);
        PyErr_NoMemory();
        return -1;
    }
    size_t at = 0, gone = 0;
    const Addrs *old = &self->old_sorted, *freed = &self->freed;
    for (size_t k = 0; k < n; k++) {
        uintptr_t address = spots[k].address;
        while (at < old->len && old->items[at] < address) {
            at++;
        }
        while (gone < freed->len && freed->items[gone] < address) {
            gone++;
        }
        int found = is_new(self, (PyObject *)address, at < old->len && old->items[at] == address,
                           gone < freed->len && freed->items[gone] == address);
        if (found < 0) {
            free(spots);
            return -1;
        }
        PyObject *obj = (PyObject *)address;
        flags[spots[k].index] = (char)((found ? FLAG_NEW : 0) |
                                       (PyObject_GC_IsTracked(obj) ? FLAG_TRACKED : 0) |
                                       (PyTuple_CheckExact(obj) || PyDict_CheckExact(obj)
                                            ? FLAG_INSIDE
                                            : 0));
    }
    free(spots);
    return 0;
}

/* Below this many referents, sample_referents gives every untracked one (testing each for
 * newness would cost more than the caller's look at it), and their flags are not kept. */
#define SAMPLE_ALL_BELOW 4096

/* `obj`'s referents and their flags. Of a container of SAMPLE_ALL_BELOW referents or more,
 * new_flags, remembered by the Newness (`owned` 0): asked again with as many referents
 * (nothing changes in this forked copy), the same are given back. Of a smaller one, owned
 * by the caller (`owned` 1, release_flags), new_flags only when `need_new`, else the
 * tracked bit alone. */
typedef struct {
    Addrs refs;
    char *flags;
    int owned;
} Flagged;

static void release_flags(Flagged *f) {
    if (f->owned) {
        free(f->refs.items);
        free(f->flags);
    }
}

static int referents_flags(Newness *self, PyObject *obj, int need_new, Flagged *out) {
    Addrs found = {NULL, 0, 0};
    Visit v = {&found, 0};
    out->owned = 0;
    if (referents_into(obj, &v) < 0) {
        free(found.items);
        PyErr_NoMemory();
        return -1;
    }
    int large = found.len >= SAMPLE_ALL_BELOW;
    if (large && self->cached == obj && self->cached_refs.len == found.len) {
        free(found.items);
        out->refs = self->cached_refs;
        out->flags = self->cached_flags;
        return 0;
    }
    char *flags = malloc(found.len ? found.len : 1);
    if (flags == NULL) {
        free(found.items);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **objs = (PyObject **)found.items;
    if (large || need_new) {
        if (new_flags(self, objs, found.len, flags) < 0) {
            free(found.items);
            free(flags);
            return -1;
        }
    } else {
        for (size_t i = 0; i < found.len; i++) {
            flags[i] = PyObject_GC_IsTracked(objs[i]) ? FLAG_TRACKED : 0;
        }
    }
    out->refs = found;
    out->flags = flags;
    if (!large) {
        out->owned = 1;
        return 0;
    }
    free(self->cached_refs.items);
    free(self->cached_flags);
    self->cached = obj;
    self->cached_refs = found;
    self->cached_flags = flags;
    return 0;
}

/* Which flags collect keeps. */
static int keep_new(char flags) { return (flags & FLAG_NEW) != 0; }
static int keep_untracked(char flags) { return !(flags & FLAG_TRACKED); }
static int keep_sample(char flags) {
    return !(flags & FLAG_TRACKED) && (flags & (FLAG_NEW | FLAG_INSIDE)) != 0;
}

/* A new list of the objs[i] whose flags[i] `keep` takes and whose ids are in neither
 * `claimed` (NULL: none) nor `seen`, in the given order. */
static PyObject *collect(PyObject **objs, size_t n, const char *flags, int (*keep)(char),
                         PyObject *claimed, PyObject *seen) {
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < n; i++) {
        if (!keep(flags[i])) {
            continue;
        }
        int taken = claimed != NULL ? in_set(claimed, objs[i]) : 0;
        if (taken == 0) {
            taken = in_set(seen, objs[i]);
        }
        if (taken < 0 || (taken == 0 && PyList_Append(out, objs[i]) < 0)) {
            Py_CLEAR(out);
        }
    }
    return out;
}

/* The new objects of objs[0..n) whose ids are in neither `claimed` nor `seen`, a new list. */
static PyObject *select_from(Newness *self, PyObject **objs, size_t n, PyObject *claimed,
                             PyObject *seen) {
    char *flags = malloc(n ? n : 1);
    if (flags == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *out = NULL;
    if (new_flags(self, objs, n, flags) == 0) {
        out = collect(objs, n, flags, keep_new, claimed, seen);
    }
    free(flags);
    return out;
}

static PyObject *newness_select(Newness *self, PyObject *args) {
    PyObject *objects, *claimed, *seen;
    if (!PyArg_ParseTuple(args, "OO!O!", &objects, &PySet_Type, &claimed, &PySet_Type, &seen)) {
        return NULL;
    }
    PyObject *items = PySequence_Fast(objects, "select: a sequence of objects");
    if (items == NULL) {
        return NULL;
    }
    PyObject *out = select_from(self, PySequence_Fast_ITEMS(items),
                                (size_t)PySequence_Fast_GET_SIZE(items), claimed, seen);
    Py_DECREF(items);
    return out;
}

/* `select` of the owner's referents, read by its tp_traverse: no list of them is made, and
 * no reference taken, so a forked copy writes to none of the pages they are on (a set of
 * millions of old strings is not copied to find its few new ones). The owner holds them
 * meanwhile: nothing here runs Python code nor frees an object. */
static PyObject *newness_select_referents(Newness *self, PyObject *args) {
    PyObject *owner, *claimed, *seen;
    if (!PyArg_ParseTuple(args, "OO!O!", &owner, &PySet_Type, &claimed, &PySet_Type, &seen)) {
        return NULL;
    }
    Flagged f;
    if (referents_flags(self, owner, 1, &f) < 0) {
        return NULL;
    }
    PyObject *out =
        collect((PyObject **)f.refs.items, f.refs.len, f.flags, keep_new, claimed, seen);
    release_flags(&f);
    return out;
}

/* The referents of `obj` among which `refchain.Evidence` looks for samples, in
 * gc.get_referents' order, not in `seen`: of an object with SAMPLE_ALL_BELOW referents or
 * more, the untracked ones the traced call made and every untracked tuple or dict (new
 * objects may be inside an old one), read as select_referents reads them (a set of millions
 * of old strings gives its new ones, and no page of the old ones is written); of a smaller
 * one, all the untracked ones. */
static PyObject *newness_sample_referents(Newness *self, PyObject *args) {
    PyObject *obj, *seen;
    if (!PyArg_ParseTuple(args, "OO!", &obj, &PySet_Type, &seen)) {
        return NULL;
    }
    Flagged f;
    if (referents_flags(self, obj, 0, &f) < 0) {
        return NULL;
    }
    PyObject *out = collect((PyObject **)f.refs.items, f.refs.len, f.flags,
                            f.refs.len < SAMPLE_ALL_BELOW ? keep_untracked : keep_sample, NULL,
                            seen);
    release_flags(&f);
    return out;
}

/* ---- Newness.walk ---- */

typedef struct {
    PyObject **items;
    PyObject **parents;
    size_t len;
    size_t cap;
} Stack;

static int stack_push(Stack *s, PyObject *obj, PyObject *parent) {
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        PyObject **items = realloc(s->items, cap * sizeof(PyObject *));
        if (items != NULL) {
            s->items = items;
        }
        PyObject **parents = items != NULL ? realloc(s->parents, cap * sizeof(PyObject *)) : NULL;
        if (parents == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->parents = parents;
        s->cap = cap;
    }
    s->items[s->len] = obj;
    s->parents[s->len] = parent;
    s->len++;
    return 0;
}

typedef struct {
    Newness *self;
    PyObject *claimed;
    PyObject *seen;
    Stack *stack;
    PyObject *pushed;  /* every object pushed, in order */
    PyObject *parents; /* the object each was reached from */
    PyObject *holder;
    int failed;
} Walk;

static int visit_new(PyObject *ref, void *arg) {
    Walk *w = (Walk *)arg;
    int found = is_new(w->self, ref, -1, -1);
    if (found > 0) {
        PyObject *ident = PyLong_FromVoidPtr(ref);
        if (ident == NULL) {
            found = -1;
        } else {
            int taken = PySet_Contains(w->claimed, ident);
            if (taken == 0) {
                taken = PySet_Contains(w->seen, ident);
            }
            if (taken < 0 || (taken == 0 && (PySet_Add(w->seen, ident) < 0 ||
                                             stack_push(w->stack, ref, w->holder) < 0 ||
                                             PyList_Append(w->pushed, ref) < 0 ||
                                             PyList_Append(w->parents, w->holder) < 0))) {
                found = -1;
            }
            Py_DECREF(ident);
        }
    }
    if (found < 0) {
        w->failed = 1;
        return -1;
    }
    return 0;
}

static int referents_new(PyObject *obj, Walk *w) {
    traverse_referents(obj, visit_new, w);
    return w->failed ? -1 : 0;
}

static PyObject *newness_walk(Newness *self, PyObject *args) {
    PyObject *starts, *claimed, *seen;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!O!n", &PyList_Type, &starts, &PySet_Type, &claimed,
                          &PySet_Type, &seen, &limit)) {
        return NULL;
    }
    Stack stack = {NULL, NULL, 0, 0};
    Types types = {NULL, 0, 0, NULL, NULL};
    PyObject *pushed = PyList_New(0), *parents = PyList_New(0), *stats = NULL, *result = NULL;
    Walk w = {self, claimed, seen, &stack, pushed, parents, NULL, 0};
    if (types_init(&types) < 0 || pushed == NULL || parents == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(starts); i++) {
        if (stack_push(&stack, PyList_GET_ITEM(starts, i), NULL) < 0) {
            goto done;
        }
    }
    Py_ssize_t walked = 0;
    int truncated = 0, failed = 0;
    while (stack.len > 0) {
        PyObject *obj = stack.items[--stack.len];
        if (++walked > limit) {
            truncated = 1;
            break;
        }
        TypeRow *row = NULL;
        types_add(&types, obj, &failed, &row);
        int traced = failed ? -1 : is_traced(self, obj);
        if (traced < 0) {
            goto done;
        }
        if (row->first == NULL) {
            row->first = obj;
        }
        row->traced += traced;
        w.holder = obj;
        if (referents_new(obj, &w) < 0) {
            goto done;
        }
    }
    stats = stats_dict(&types, 1);
    if (stats != NULL) {
        result = Py_BuildValue("(OOOO)", pushed, parents, stats, truncated ? Py_True : Py_False);
    }
done:
    if (result == NULL && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    free(stack.items);
    free(stack.parents);
    types_clear(&types);
    Py_XDECREF(pushed);
    Py_XDECREF(parents);
    Py_XDECREF(stats);
    return result;
}

static PyMethodDef newness_methods[] = {
    {"select", (PyCFunction)newness_select, METH_VARARGS,
     "select(objects, claimed, seen): the new objects whose ids are in neither set."},
    {"sample_referents", (PyCFunction)newness_sample_referents, METH_VARARGS,
     "sample_referents(obj, seen) -> list: the untracked referents a sample can be among."},
    {"select_referents", (PyCFunction)newness_select_referents, METH_VARARGS,
     "select_referents(owner, claimed, seen) -> list: select(gc.get_referents(owner), claimed, "
     "seen), without the list of referents."},
    {"walk", (PyCFunction)newness_walk, METH_VARARGS,
     "walk(starts, claimed, seen, limit) -> (pushed, parents, stats, truncated): see owners."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject NewnessType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "memdiag.measure.python._heapwalk.Newness",
    .tp_basicsize = sizeof(Newness),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Whether the traced call made an object (see the module's docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)newness_init,
    .tp_dealloc = (destructor)newness_dealloc,
    .tp_call = (ternaryfunc)newness_call,
    .tp_methods = newness_methods,
};

static PyMethodDef heapwalk_methods[] = {
    {"count", heapwalk_count, METH_VARARGS,
     "count(objects, large_bytes) -> (stats, large, ids): see the module's docstring."},
    {"count_reachable", heapwalk_count_reachable, METH_VARARGS,
     "count_reachable(objects, large_bytes) -> (stats, large, ids, unreachable): count() of "
     "what a full collection would keep: see the module's docstring."},
    {"referents_in", heapwalk_referents_in, METH_VARARGS,
     "referents_in(holder, wanted) -> list[int]: the ids, among `wanted` (sorted native uint64 "
     "bytes), of holder's referents, each as often as holder refers to it."},
    {"install_free_log", heapwalk_install_free_log, METH_NOARGS,
     "install_free_log() -> bool: wrap the object allocator so that log_frees() can note its "
     "frees (False, and nothing wrapped, while tracemalloc traces or over hooks with a "
     "context)."},
    {"log_frees", heapwalk_log_frees, METH_NOARGS,
     "log_frees() -> bool: note every block the object allocator frees from now on (False "
     "when install_free_log() did not wrap it)."},
    {"stop_log", heapwalk_stop_log, METH_NOARGS,
     "stop_log(): note no more frees, and drop those noted (the allocator stays wrapped)."},
    {"freed", heapwalk_freed, METH_VARARGS,
     "freed(most=-1) -> bytes | None: the blocks freed since log_frees(), sorted; None when "
     "not noted (never started, or too many to note), or when more than `most` were."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef heapwalk_module = {
    PyModuleDef_HEAD_INIT, "_heapwalk",
    "The per-object loops of memdiag leaks, compiled.", -1, heapwalk_methods, NULL, NULL, NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__heapwalk(void) {
    if (PyType_Ready(&NewnessType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&heapwalk_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&NewnessType);
    if (PyModule_AddObject(module, "Newness", (PyObject *)&NewnessType) < 0) {
        Py_DECREF(&NewnessType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
