/* fleet-status.c: `deployctl fleet status`. One LIST of status/ and a GET
 * per host, one LIST of bad/ and a GET per marker (the reasons), one GET of
 * the pointer: what a thousand hosts cost an operator is about a thousand
 * small GETs. Everything read is untrusted input from hosts: objects are
 * capped in size and count, and a field of the wrong type reads as absent. */
#define _GNU_SOURCE
#include "ctl/fleet-status.h"

#include <inttypes.h>

#include "artifact/rollout.h"
#include "common/json-util.h"
#include "common/util.h"
#include "ctl/fleet-print.h"

#define HOSTS_MAX 100000U
#define STATUS_OBJECT_MAX (64U * 1024)
#define POINTER_MAX (64U * 1024)
#define MARKERS_READ_MAX 1000U         /* markers beyond these are counted, their reasons not read */
#define STATUS_INTERVAL_DEFAULT_SEC 3600

typedef struct Keys {
        char **keys;
        size_t n, allocated;
        size_t max;
} Keys;

static void keys_done(Keys *k) {
        for (size_t i = 0; i < k->n; i++)
                free(k->keys[i]);
        free(k->keys);
}

static int keys_add(const S3Object *o, void *userdata) {
        Keys *k = userdata;
        char **a;

        if (k->n >= k->max)
                return -E2BIG;
        if (k->n == k->allocated) {
                a = reallocarray(k->keys, k->allocated ? k->allocated * 2 : 64, sizeof(char *));
                if (!a)
                        return -ENOMEM;
                k->keys = a;
                k->allocated = k->allocated ? k->allocated * 2 : 64;
        }
        if (!(k->keys[k->n] = strdup(o->key)))
                return -ENOMEM;
        k->n++;
        return 0;
}

static int read_json(S3Client *c, const char *bucket, const char *key, json_t **ret, char **ret_error) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        json_error_t e;
        int r;

        r = s3_get_small(c, bucket, key, NULL, STATUS_OBJECT_MAX, &o, ret_error);
        if (r < 0)
                return r;
        *ret = json_loadb(o.body, o.len, JSON_REJECT_DUPLICATES, &e);
        if (!*ret || !json_is_object(*ret)) {
                json_decref(*ret);
                *ret = NULL;
                return error_set(ret_error, -EBADMSG, "s3://%s/%s: not a JSON object: %s", bucket, key,
                                 e.text[0] ? e.text : "wrong type");
        }
        return 0;
}

static const char *field_string(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* ---- hosts ---- */

/* A host's status reduced to the fields we show, typed; stale when it is
 * older than two heartbeats and a poll. */
static json_t *host_entry(json_t *st, uint64_t now, uint64_t margin_usec) {
        json_t *interval = json_object_get(st, "status_interval_sec"), *bad = json_object_get(st, "bad");
        uint64_t t = 0, every = STATUS_INTERVAL_DEFAULT_SEC * USEC_PER_SEC;
        bool known = field_string(st, "time") && parse_timestamp(field_string(st, "time"), &t) >= 0;
        bool stale;

        if (json_is_integer(interval) && json_integer_value(interval) > 0 && json_integer_value(interval) < 86400 * 365)
                every = (uint64_t) json_integer_value(interval) * USEC_PER_SEC;
        stale = !known || (now > t && now - t > 2 * every + margin_usec);
        return json_pack("{s:s,s:o,s:o,s:o,s:s,s:o,s:O,s:o,s:o,s:b,s:I}",
                         "host_id", field_string(st, "host_id"),
                         "zone", json_string_or_null(field_string(st, "zone")),
                         "current", json_string_or_null(field_string(st, "current")),
                         "previous", json_string_or_null(field_string(st, "previous")),
                         "state", field_string(st, "state") ?: "unknown",
                         "last_error", json_string_or_null(field_string(st, "last_error")),
                         "bad", json_is_array(bad) ? bad : json_null(),
                         "rollout", json_is_object(json_object_get(st, "rollout")) ?
                                 json_deep_copy(json_object_get(st, "rollout")) : json_null(),
                         "time", json_string_or_null(known ? field_string(st, "time") : NULL),
                         "stale", stale,
                         "age_sec", (json_int_t) (known && now > t ? (now - t) / USEC_PER_SEC : 0));
}

static bool string_or_null(const json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);

        return !v || json_is_string(v) || json_is_null(v);
}

/* Every field host_entry() and the summary read, checked for type: an
 * object that is valid JSON but not a status object is unreadable, never
 * fatal (one broken host must not hide the others). */
static bool status_is_valid(const json_t *st) {
        static const char *const strings[] = { "zone", "current", "previous", "state", "last_error", "time" };
        json_t *bad = json_object_get(st, "bad"), *rollout = json_object_get(st, "rollout"),
               *interval = json_object_get(st, "status_interval_sec"), *v;
        size_t i;

        if (!rollout_host_id_is_valid(field_string(st, "host_id")))
                return false;
        for (i = 0; i < ELEMENTSOF(strings); i++)
                if (!string_or_null(st, strings[i]))
                        return false;
        if (bad && !json_is_null(bad) && !json_is_array(bad))
                return false;
        json_array_foreach(bad, i, v)
                if (!json_is_string(v))
                        return false;
        if (rollout && !json_is_null(rollout) && !json_is_object(rollout))
                return false;
        return !interval || json_is_null(interval) || json_is_integer(interval);
}

/* One status object into hosts, or why not into unreadable. */
static int read_host(S3Client *c, const char *bucket, const char *key, uint64_t now, uint64_t margin, json_t *hosts,
                     json_t *unreadable) {
        _cleanup_(json_decrefp) json_t *st = NULL;
        _cleanup_free_ char *why = NULL;
        json_t *h;
        int r;

        r = read_json(c, bucket, key, &st, &why);
        if (r == -ENOENT)              /* removed since the listing */
                return 0;
        if (r >= 0 && !rollout_host_id_is_valid(field_string(st, "host_id")))
                r = error_set(&why, -EBADMSG, "no valid host_id");
        else if (r >= 0 && !status_is_valid(st))
                r = error_set(&why, -EBADMSG, "a field of the wrong type");
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return json_array_append_new(unreadable, json_pack("{s:s,s:s}", "key", key,
                                                                   "error", why ?: strerror(-r)));
        h = host_entry(st, now, margin);
        if (!h)
                return -ENOMEM;
        return json_array_append_new(hosts, h);
}

static int collect_hosts(S3Client *c, const ServiceConfig *svc, uint64_t now, uint64_t margin, json_t *report,
                         char **ret_error) {
        _cleanup_(keys_done) Keys keys = { .max = HOSTS_MAX };
        _cleanup_free_ char *prefix = strdup_printf("%sstatus/", svc->fleet_prefix);
        json_t *hosts = json_array(), *unreadable = json_array();
        int r;

        if (!prefix || json_object_set_new(report, "hosts", hosts) < 0 ||
            json_object_set_new(report, "unreadable", unreadable) < 0)
                return -ENOMEM;
        r = s3_list_objects(c, svc->bucket, prefix, keys_add, &keys, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < keys.n; i++) {
                const char *name = keys.keys[i] + strlen(prefix);
                size_t n = strlen(name);

                if (n <= 5 || !streq(name + n - 5, ".json") || strchr(name, '/'))
                        continue;
                r = read_host(c, svc->bucket, keys.keys[i], now, margin, hosts, unreadable);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- bad markers ---- */

static json_t *bad_entry(json_t *bad, const char *sha) {
        json_t *e = json_object_get(bad, sha);

        if (e)
                return e;
        e = json_pack("{s:s,s:b,s:n,s:[]}", "sha", sha, "aborted", 0, "abort_reason", "hosts");
        if (e && json_object_set_new(bad, sha, e) < 0)
                return NULL;
        return e;
}

/* bad/<sha>/<host_id> or bad/<sha>/_abort, with the marker's reason. */
static int add_marker(S3Client *c, const char *bucket, const char *key, const char *rest, bool read_body,
                      json_t *bad) {
        _cleanup_(json_decrefp) json_t *m = NULL;
        char sha[41];
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t) (slash - rest) : 0;
        json_t *e;

        if (n == 0 || n >= sizeof(sha) || !slash[1] || strchr(slash + 1, '/'))
                return 0;
        memcpy(sha, rest, n);
        sha[n] = '\0';
        if (!sha_is_valid(sha))
                return 0;
        if (read_body)
                (void) read_json(c, bucket, key, &m, NULL);    /* a reason is nice to have */
        e = bad_entry(bad, sha);
        if (!e)
                return -ENOMEM;
        if (streq(slash + 1, "_abort")) {
                json_object_set_new(e, "aborted", json_true());
                json_object_set_new(e, "abort_reason", json_string_or_null(field_string(m, "reason")));
                return 0;
        }
        if (!rollout_host_id_is_valid(slash + 1))
                return 0;
        return json_array_append_new(json_object_get(e, "hosts"),
                                     json_pack("{s:s,s:o,s:o}", "host_id", slash + 1,
                                               "reason", json_string_or_null(field_string(m, "reason")),
                                               "time", json_string_or_null(field_string(m, "time"))));
}

static int collect_bad(S3Client *c, const ServiceConfig *svc, json_t *report, char **ret_error) {
        _cleanup_(keys_done) Keys keys = { .max = HOSTS_MAX };
        _cleanup_free_ char *prefix = strdup_printf("%sbad/", svc->fleet_prefix);
        json_t *bad = json_object();
        int r;

        if (!prefix || json_object_set_new(report, "bad", bad) < 0)
                return -ENOMEM;
        r = s3_list_objects(c, svc->bucket, prefix, keys_add, &keys, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < keys.n; i++) {
                r = add_marker(c, svc->bucket, keys.keys[i], keys.keys[i] + strlen(prefix), i < MARKERS_READ_MAX,
                               bad);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- the pointer and the rollout ---- */

static json_t *waves_json(const RolloutPolicy *p) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < p->n_waves; i++)
                json_array_append_new(a, json_real(p->waves[i] / 100.0));
        return a;
}

static int read_pointer(S3Client *c, const ServiceConfig *svc, RolloutPolicy *ret, json_t *report,
                        char **ret_error) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        _cleanup_free_ char *why = NULL;
        char when[32];
        int r;

        r = s3_get_small(c, svc->bucket, svc->pointer_key, NULL, POINTER_MAX, &o, ret_error);
        if (r == -ENOENT)
                return json_object_set_new(report, "pointer", json_null());
        if (r < 0)
                return r;
        r = rollout_parse(o.body, o.len, ret, &why);
        if (r < 0)
                return error_set(ret_error, r, "s3://%s/%s: %s", svc->bucket, svc->pointer_key,
                                 why ?: strerror(-r));
        return json_object_set_new(report, "pointer", json_pack(
                "{s:s,s:s,s:o,s:b,s:o,s:o,s:o,s:i,s:o}", "key", svc->pointer_key, "sha", ret->sha,
                "previous", json_string_or_null(ret->previous[0] ? ret->previous : NULL), "paused", ret->paused,
                "started", ret->has_waves ? json_string(format_timestamp(ret->started_usec, when)) : json_null(),
                "waves", ret->has_waves ? waves_json(ret) : json_null(),
                "wave_interval_sec", ret->has_waves ? json_integer((json_int_t) (ret->wave_interval_usec / USEC_PER_SEC))
                                                    : json_null(),
                "max_failures", (int) ret->max_failures, "etag", json_string_or_null(o.etag)));
}

/* The open wave, its percent, and the share of hosts on the build. */
static json_t *rollout_json(const RolloutPolicy *p, json_t *hosts, uint64_t now) {
        size_t open = rollout_open_wave(p, now), on = 0, n = json_array_size(hosts);
        uint64_t next = rollout_wave_opens_usec(p, open + 1);
        json_t *h;
        size_t i;
        char when[32];

        json_array_foreach(hosts, i, h)
                if (streq_ptr(field_string(h, "current"), p->sha))
                        on++;
        return json_pack("{s:s,s:i,s:i,s:f,s:o,s:i,s:i,s:f}", "sha", p->sha, "wave", (int) open + 1,
                         "waves", (int) p->n_waves, "wave_percent",
                         p->has_waves ? p->waves[open] / 100.0 : 100.0,
                         "next_wave", p->has_waves && open + 1 < p->n_waves && next != ROLLOUT_USEC_NEVER ?
                                 json_string(format_timestamp(next, when)) : json_null(),
                         "hosts_on_build", (int) on, "hosts", (int) n,
                         "share_percent", n ? 100.0 * (double) on / (double) n : 0.0);
}

/* The breaker as a host would see it for the pointer's build: halted by
 * _abort or by max_failures host markers. */
static json_t *breaker_json(const RolloutPolicy *p, json_t *bad) {
        json_t *e = json_object_get(bad, p->sha);
        json_t *hosts = e ? json_object_get(e, "hosts") : NULL;
        size_t failures = json_array_size(hosts);
        bool aborted = e && json_is_true(json_object_get(e, "aborted"));

        return json_pack("{s:s,s:b,s:b,s:O,s:i,s:i,s:o}", "sha", p->sha,
                         "halted", aborted || failures >= p->max_failures, "aborted", aborted,
                         "abort_reason", e ? json_object_get(e, "abort_reason") : json_null(),
                         "failures", (int) failures, "max_failures", (int) p->max_failures,
                         "hosts", hosts ? json_incref(hosts) : json_array());
}

static bool host_failed(json_t *h, const char *sha) {
        json_t *bad = json_object_get(h, "bad"), *v;
        size_t i;

        if (streq_ptr(field_string(h, "state"), "failed"))
                return true;
        json_array_foreach(bad, i, v)
                if (sha && streq_ptr(json_string_value(v), sha))
                        return true;
        return false;
}

/* Hosts per build and state; the failed and the stale hosts. */
static int summarize_hosts(json_t *report, const char *sha) {
        json_t *hosts = json_object_get(report, "hosts"), *builds = json_object(), *failed = json_array(),
               *stale = json_array(), *h;
        size_t i;

        if (!builds || !failed || !stale || json_object_set_new(report, "builds", builds) < 0 ||
            json_object_set_new(report, "failed", failed) < 0 || json_object_set_new(report, "stale", stale) < 0)
                return -ENOMEM;
        json_array_foreach(hosts, i, h) {
                const char *cur = field_string(h, "current") ?: "(none)", *state = field_string(h, "state");
                json_t *b = json_object_get(builds, cur);

                if (!b && json_object_set_new(builds, cur, b = json_object()) < 0)
                        return -ENOMEM;
                json_object_set_new(b, state, json_integer(json_integer_value(json_object_get(b, state)) + 1));
                if (host_failed(h, sha))
                        json_array_append(failed, h);
                if (json_is_true(json_object_get(h, "stale")))
                        json_array_append(stale, h);
        }
        return json_object_set_new(report, "hosts_total", json_integer((json_int_t) json_array_size(hosts)));
}

int fleet_status(S3Client *c, const Config *cfg, const ServiceConfig *svc, bool json, json_t **ret,
                 char **ret_error) {
        _cleanup_(json_decrefp) json_t *report = json_pack("{s:b,s:b,s:s}", "ok", 1, "changed", 0, "service", svc->name);
        uint64_t now = now_usec(CLOCK_REALTIME);
        uint64_t margin = cfg->agent.poll_interval_usec / 100 * (100 + cfg->agent.poll_jitter_percent);
        RolloutPolicy p = {};
        json_t *breaker = NULL;
        int r;

        if (!report)
                return -ENOMEM;
        if (isempty(svc->fleet_prefix))
                return error_set(ret_error, -EINVAL, "service \"%s\" has no fleet_prefix: its hosts report nothing",
                                 svc->name);
        r = read_pointer(c, svc, &p, report, ret_error);
        if (r >= 0)
                r = collect_hosts(c, svc, now, margin, report, ret_error);
        if (r >= 0)
                r = collect_bad(c, svc, report, ret_error);
        if (r >= 0)
                r = summarize_hosts(report, p.sha[0] ? p.sha : NULL);
        if (r < 0)
                return r;
        if (p.sha[0])
                breaker = breaker_json(&p, json_object_get(report, "bad"));
        json_object_set_new(report, "rollout", p.sha[0] ? rollout_json(&p, json_object_get(report, "hosts"), now)
                                                        : json_null());
        json_object_set_new(report, "halted", json_boolean(json_is_true(json_object_get(breaker, "halted"))));
        json_object_set_new(report, "paused", json_boolean(p.paused));
        json_object_set_new(report, "breaker", breaker ?: json_null());
        if (!json)
                fleet_print_status(report, stdout);
        *ret = TAKE_PTR(report);
        return 0;
}
