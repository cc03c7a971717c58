/* state.c: ServiceState <-> state.json. */
#define _GNU_SOURCE
#include "supervisor/state.h"

#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>

#include "common/fs-util.h"
#include "common/json-util.h"
#include "common/util.h"

#define STATE_FILE_MAX (4 * 1024 * 1024)

int state_set(char **field, const char *value) {
        char *copy = NULL;

        if (value && !(copy = strdup(value)))
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static void bad_release_done(BadRelease *b) {
        free(b->sha);
        free(b->etag);
        free(b->reason);
}

static void history_entry_done(HistoryEntry *h) {
        free(h->sha);
        free(h->previous);
        free(h->outcome);
        free(h->message);
}

ServiceState *state_free(ServiceState *s) {
        if (!s)
                return NULL;
        free(s->current);
        free(s->previous);
        free(s->in_flight_step);
        free(s->in_flight_sha);
        free(s->in_flight_previous);
        free(s->in_flight_etag);
        free(s->pointer_etag);
        free(s->pinned);
        free(s->last_error);
        for (size_t i = 0; i < s->n_bad; i++)
                bad_release_done(&s->bad[i]);
        for (size_t i = 0; i < s->n_history; i++)
                history_entry_done(&s->history[i]);
        free(s->bad);
        free(s->history);
        free(s);
        return NULL;
}

const BadRelease *state_find_bad(const ServiceState *s, const char *sha, const char *etag) {
        for (size_t i = 0; i < s->n_bad; i++) {
                const BadRelease *b = &s->bad[i];
                if (streq(b->sha, sha) && (!etag || !b->etag || streq(b->etag, etag)))
                        return b;
        }
        return NULL;
}

static char *dup_or_null(const char *v, bool *oom) {
        char *c = v ? strdup(v) : NULL;

        if (v && !c)
                *oom = true;
        return c;
}

int state_mark_bad(ServiceState *s, const char *sha, const char *etag, const char *reason, uint64_t now) {
        BadRelease b = { .when_usec = now };
        bool oom = false;

        b.sha = dup_or_null(sha, &oom);
        b.etag = dup_or_null(etag, &oom);
        b.reason = dup_or_null(reason, &oom);
        if (oom || !b.sha)
                return bad_release_done(&b), -ENOMEM;
        if (s->n_bad == STATE_BAD_MAX) {
                bad_release_done(&s->bad[0]);
                memmove(s->bad, s->bad + 1, --s->n_bad * sizeof *s->bad);
        }
        BadRelease *n = reallocarray(s->bad, s->n_bad + 1, sizeof *n);
        if (!n)
                return bad_release_done(&b), -ENOMEM;
        s->bad = n;
        s->bad[s->n_bad++] = b;
        return 0;
}

void state_set_unreported(ServiceState *s, const char *sha, bool unreported) {
        for (size_t i = 0; i < s->n_bad; i++)
                if (streq(s->bad[i].sha, sha))
                        s->bad[i].unreported = unreported;
}

const BadRelease *state_first_unreported(const ServiceState *s) {
        for (size_t i = 0; i < s->n_bad; i++)
                if (s->bad[i].unreported)
                        return &s->bad[i];
        return NULL;
}

void state_unmark_bad(ServiceState *s, const char *sha) {
        size_t kept = 0;

        for (size_t i = 0; i < s->n_bad; i++) {
                if (streq(s->bad[i].sha, sha))
                        bad_release_done(&s->bad[i]);
                else
                        s->bad[kept++] = s->bad[i];
        }
        s->n_bad = kept;
}

int state_add_history(ServiceState *s, const char *sha, const char *previous, const char *outcome,
                      const char *message, uint64_t now) {
        HistoryEntry h = { .when_usec = now };
        bool oom = false;

        h.sha = dup_or_null(sha, &oom);
        h.previous = dup_or_null(previous, &oom);
        h.outcome = dup_or_null(outcome, &oom);
        h.message = dup_or_null(message, &oom);
        if (oom)
                return history_entry_done(&h), -ENOMEM;
        if (s->n_history == STATE_HISTORY_MAX) {
                history_entry_done(&s->history[0]);
                memmove(s->history, s->history + 1, --s->n_history * sizeof *s->history);
        }
        HistoryEntry *n = reallocarray(s->history, s->n_history + 1, sizeof *n);
        if (!n)
                return history_entry_done(&h), -ENOMEM;
        s->history = n;
        s->history[s->n_history++] = h;
        return 0;
}

/* ---- JSON ---- */

static json_t *bad_to_json(const ServiceState *s) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < s->n_bad; i++) {
                json_t *b = json_pack("{s:s,s:o,s:o,s:I}", "sha", s->bad[i].sha,
                                      "etag", json_string_or_null(s->bad[i].etag),
                                      "reason", json_string_or_null(s->bad[i].reason),
                                      "when_usec", (json_int_t) s->bad[i].when_usec);
                /* only while it is true: a state without fleet looks as before */
                if (b && s->bad[i].unreported)
                        json_object_set_new(b, "fleet_unreported", json_true());
                json_array_append_new(a, b);
        }
        return a;
}

static json_t *history_to_json(const ServiceState *s) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < s->n_history; i++) {
                const HistoryEntry *h = &s->history[i];
                json_array_append_new(a, json_pack("{s:o,s:o,s:o,s:o,s:I}", "sha", json_string_or_null(h->sha),
                                                   "previous", json_string_or_null(h->previous),
                                                   "outcome", json_string_or_null(h->outcome),
                                                   "message", json_string_or_null(h->message),
                                                   "when_usec", (json_int_t) h->when_usec));
        }
        return a;
}

static json_t *state_to_json(const ServiceState *s) {
        return json_pack("{s:i,s:o,s:o,s:{s:o,s:o,s:o,s:o},s:o,s:b,s:o,s:o,s:o,s:o}",
                         "version", 1,
                         "current", json_string_or_null(s->current),
                         "previous", json_string_or_null(s->previous),
                         "in_flight", "step", json_string_or_null(s->in_flight_step), "sha", json_string_or_null(s->in_flight_sha),
                         "previous", json_string_or_null(s->in_flight_previous),
                         "etag", json_string_or_null(s->in_flight_etag),
                         "pointer_etag", json_string_or_null(s->pointer_etag),
                         "paused", s->paused,
                         "pinned", json_string_or_null(s->pinned),
                         "last_error", json_string_or_null(s->last_error),
                         "bad", bad_to_json(s),
                         "history", history_to_json(s));
}

char *state_format(const ServiceState *s) {
        json_auto_t *j = state_to_json(s);

        return j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
}

int state_write(const char *text, const char *path) {
        _cleanup_free_ char *dir_copy = strdup(path), *base_copy = strdup(path);
        _cleanup_close_ int dir_fd = -1;

        if (!dir_copy || !base_copy)
                return -ENOMEM;
        dir_fd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return -errno;
        return write_file_atomic_at(dir_fd, basename(base_copy), text, strlen(text), 0644);
}

int state_save(const ServiceState *s, const char *path) {
        _cleanup_free_ char *text = state_format(s);

        return text ? state_write(text, path) : -ENOMEM;
}

static int get_str(const json_t *o, const char *key, char **field, bool *oom) {
        json_t *v = json_object_get(o, key);

        if (v && !json_is_string(v) && !json_is_null(v))
                return -EBADMSG;
        *field = dup_or_null(json_string_value(v), oom);
        return 0;
}

static int load_bad(ServiceState *s, const json_t *arr) {
        size_t i;
        json_t *v;

        json_array_foreach(arr, i, v) {
                const char *sha = json_string_value(json_object_get(v, "sha"));
                if (!sha)
                        return -EBADMSG;
                int r = state_mark_bad(s, sha, json_string_value(json_object_get(v, "etag")),
                                       json_string_value(json_object_get(v, "reason")),
                                       (uint64_t) json_integer_value(json_object_get(v, "when_usec")));
                if (r < 0)
                        return r;
                s->bad[s->n_bad - 1].unreported = json_is_true(json_object_get(v, "fleet_unreported"));
        }
        return 0;
}

static int load_history(ServiceState *s, const json_t *arr) {
        size_t i;
        json_t *v;

        json_array_foreach(arr, i, v) {
                int r = state_add_history(s, json_string_value(json_object_get(v, "sha")),
                                          json_string_value(json_object_get(v, "previous")),
                                          json_string_value(json_object_get(v, "outcome")),
                                          json_string_value(json_object_get(v, "message")),
                                          (uint64_t) json_integer_value(json_object_get(v, "when_usec")));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int state_from_json(const json_t *j, ServiceState *s) {
        const json_t *fl = json_object_get(j, "in_flight");
        bool oom = false;
        int r = 0;

        if (!json_is_object(j))
                return -EBADMSG;
        if (get_str(j, "current", &s->current, &oom) < 0 || get_str(j, "previous", &s->previous, &oom) < 0 ||
            get_str(j, "pinned", &s->pinned, &oom) < 0 || get_str(j, "last_error", &s->last_error, &oom) < 0 ||
            get_str(j, "pointer_etag", &s->pointer_etag, &oom) < 0 ||
            get_str(fl, "step", &s->in_flight_step, &oom) < 0 || get_str(fl, "sha", &s->in_flight_sha, &oom) < 0 ||
            get_str(fl, "previous", &s->in_flight_previous, &oom) < 0 ||
            get_str(fl, "etag", &s->in_flight_etag, &oom) < 0)
                return -EBADMSG;
        if (oom)
                return -ENOMEM;
        s->paused = json_is_true(json_object_get(j, "paused"));
        if ((r = load_bad(s, json_object_get(j, "bad"))) < 0 ||
            (r = load_history(s, json_object_get(j, "history"))) < 0)
                return r;
        return 0;
}

int state_load(const char *path, ServiceState **ret, char **ret_error) {
        ServiceState *s = calloc(1, sizeof *s);
        json_auto_t *j = NULL;
        json_error_t jerr;
        int r;

        if (!s)
                return -ENOMEM;
        j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!j && access(path, F_OK) < 0 && errno == ENOENT) {
                *ret = s;
                return 0;
        }
        if (!j) {
                state_free(s);
                return error_set(ret_error, -EBADMSG, "%s:%d: %s", path, jerr.line, jerr.text);
        }
        r = state_from_json(j, s);
        if (r < 0) {
                state_free(s);
                return error_set(ret_error, r, "%s: %s", path, r == -ENOMEM ? "out of memory" : "malformed state");
        }
        *ret = s;
        return 0;
}
