/* wire.c: the strict reader of worker messages (see wire.h). */
#define _GNU_SOURCE
#include "protocol/wire.h"

#include <stdarg.h>

#include "common/util.h"

void wire_reader_init(WireReader *rd, json_t *obj, const char *where) {
        *rd = (WireReader) { .obj = obj };
        snprintf(rd->where, sizeof rd->where, "%s", where);
        if (!json_is_object(obj))
                wire_fail(rd, NULL, "not a JSON object");
}

static void set_error(WireReader *rd, int r, char *msg) {
        if (rd->r < 0) {
                free(msg);
                return;
        }
        rd->r = msg ? r : -ENOMEM;
        rd->error = msg;
}

void wire_fail(WireReader *rd, const char *key, const char *fmt, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;

        if (rd->r < 0)
                return;
        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        if (!what)
                return set_error(rd, -ENOMEM, NULL);
        if (!key && !*rd->where)
                return set_error(rd, -EBADMSG, strdup_printf("message: %s", what));
        set_error(rd, -EBADMSG, strdup_printf("field \"%s%s%s\": %s", rd->where, *rd->where && key ? "." : "",
                                              strempty(key), what));
}

static bool seen(const WireReader *rd, const char *key) {
        for (size_t i = 0; i < rd->n_seen; i++)
                if (streq(rd->seen[i], key))
                        return true;
        return false;
}

/* The value of key, marked seen; NULL (with the error set) when missing. */
static json_t *field(WireReader *rd, const char *key) {
        json_t *v;

        if (rd->r < 0)
                return NULL;
        if (rd->n_seen >= WIRE_FIELDS_MAX) {
                wire_fail(rd, key, "too many fields to check");
                return NULL;
        }
        rd->seen[rd->n_seen++] = key;
        v = json_object_get(rd->obj, key);
        if (!v)
                wire_fail(rd, key, "missing");
        return v;
}

void wire_reader_sub(WireReader *parent, const char *key, WireReader *ret) {
        char where[WIRE_PATH_MAX];
        json_t *v = field(parent, key);

        if (snprintf(where, sizeof where, "%s%s%s", parent->where, *parent->where ? "." : "", key) >=
            (int) sizeof where)
                wire_fail(parent, key, "nested too deep");
        wire_reader_init(ret, v, where);
        if (parent->r < 0 && ret->r == 0)
                ret->r = parent->r; /* nothing more to read: parent has its error */
}

static void check_unknown(WireReader *rd) {
        const char *key;
        json_t *v;

        if (rd->r < 0)
                return;
        json_object_foreach(rd->obj, key, v)
                if (!seen(rd, key))
                        return set_error(rd, -EBADMSG, strdup_printf("unknown field \"%s%s%s\"", rd->where,
                                                                     *rd->where ? "." : "", key));
}

void wire_reader_close(WireReader *sub, WireReader *parent) {
        check_unknown(sub);
        if (sub->r < 0 && parent->r == 0)
                set_error(parent, sub->r, TAKE_PTR(sub->error));
        sub->error = mfree(sub->error);
}

int wire_reader_end(WireReader *rd, char **ret_error) {
        int r;

        check_unknown(rd);
        r = rd->r;
        if (r < 0 && ret_error) {
                free(*ret_error);
                *ret_error = TAKE_PTR(rd->error);
        }
        rd->error = mfree(rd->error);
        return r;
}

static const char *string_value(WireReader *rd, const char *key, const json_t *v) {
        if (!json_is_string(v)) {
                wire_fail(rd, key, "expected a string");
                return NULL;
        }
        if (json_string_length(v) != strlen(json_string_value(v))) {
                wire_fail(rd, key, "contains a NUL byte");
                return NULL;
        }
        return json_string_value(v);
}

static void copy_string(WireReader *rd, const char *s, char **ret) {
        char *copy = strdup(s);

        if (!copy)
                return set_error(rd, -ENOMEM, NULL);
        *ret = copy;
}

void wire_string(WireReader *rd, const char *key, char **ret) {
        json_t *v = field(rd, key);
        const char *s = v ? string_value(rd, key, v) : NULL;

        if (s)
                copy_string(rd, s, ret);
}

void wire_string_or_null(WireReader *rd, const char *key, char **ret) {
        json_t *v = field(rd, key);
        const char *s;

        if (!v || json_is_null(v))
                return;
        s = string_value(rd, key, v);
        if (s)
                copy_string(rd, s, ret);
}

void wire_uint64(WireReader *rd, const char *key, uint64_t max, uint64_t *ret) {
        json_t *v = field(rd, key);
        json_int_t n;

        if (!v)
                return;
        if (!json_is_integer(v))
                return wire_fail(rd, key, "expected an integer");
        n = json_integer_value(v);
        if (n < 0 || (uint64_t) n > max)
                return wire_fail(rd, key, "%lld is out of range 0..%llu", (long long) n, (unsigned long long) max);
        *ret = (uint64_t) n;
}

void wire_bool(WireReader *rd, const char *key, bool *ret) {
        json_t *v = field(rd, key);

        if (!v)
                return;
        if (!json_is_boolean(v))
                return wire_fail(rd, key, "expected true or false");
        *ret = json_is_true(v);
}

void wire_enum(WireReader *rd, const char *key, int (*from_string)(const char *), int *ret) {
        json_t *v = field(rd, key);
        const char *s = v ? string_value(rd, key, v) : NULL;
        int e;

        if (!s)
                return;
        e = from_string(s);
        if (e < 0)
                return wire_fail(rd, key, "\"%s\" is not one of the known values", s);
        *ret = e;
}

void wire_array(WireReader *rd, const char *key, size_t max, json_t **ret) {
        json_t *v = field(rd, key);

        if (!v)
                return;
        if (!json_is_array(v))
                return wire_fail(rd, key, "expected an array");
        if (json_array_size(v) > max)
                return wire_fail(rd, key, "more than %zu elements", max);
        *ret = v;
}

void wire_object(WireReader *rd, const char *key, json_t **ret) {
        json_t *v = field(rd, key);

        if (!v)
                return;
        if (!json_is_object(v))
                return wire_fail(rd, key, "expected an object");
        *ret = v;
}

bool wire_is_null(WireReader *rd, const char *key) {
        json_t *v;

        if (rd->r < 0)
                return false;
        v = json_object_get(rd->obj, key);
        if (!json_is_null(v))
                return false;
        (void) field(rd, key);
        return true;
}
