/* fleet.c: pointer edits (publish with waves, pause, resume, abort) as
 * read-modify-write with S3 conditional writes. S3 evaluates If-Match at
 * the moment of the write, atomically: the ETag we read is the version we
 * edited, so a PUT that fails its condition has lost a race with another
 * writer and wrote nothing. */
#define _GNU_SOURCE
#include "ctl/fleet.h"

#include <assert.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "artifact/discover.h"
#include "common/util.h"
#include "ctl/ctl-print.h"
#include "ctl/fleet-status.h"

#define POINTER_MAX (64U * 1024)
#define ABORT_REASON_MAX 1024U
#define TEST_HOLD_MAX_USEC (300 * USEC_PER_SEC)

/* ---- --waves ---- */

/* "12.5" or "12.5%" -> 1250 basis points; at most two decimals. */
static int parse_percent_bp(const char *s, size_t n, unsigned *ret) {
        unsigned whole = 0, frac = 0, digits = 0;
        size_t i = 0;

        if (n > 0 && s[n - 1] == '%')
                n--;
        for (; i < n && s[i] >= '0' && s[i] <= '9' && whole <= 100; i++)
                whole = whole * 10 + (unsigned) (s[i] - '0');
        if (i == 0 || whole > 100)
                return -EINVAL;
        if (i < n && s[i] == '.')
                for (i++; i < n && s[i] >= '0' && s[i] <= '9' && digits < 2; i++, digits++)
                        frac = frac * 10 + (unsigned) (s[i] - '0');
        if (i != n)
                return -EINVAL;
        for (; digits < 2; digits++)
                frac *= 10;
        *ret = whole * 100 + frac;
        return 0;
}

int fleet_parse_waves(const char *s, unsigned waves[static ROLLOUT_WAVES_MAX], size_t *ret_n,
                      char **ret_error) {
        size_t n = 0;

        for (const char *p = s;; p++) {
                size_t len = strcspn(p, ",");
                unsigned bp;

                if (n >= ROLLOUT_WAVES_MAX)
                        return error_set(ret_error, -EINVAL, "--waves: at most %d waves", ROLLOUT_WAVES_MAX);
                if (parse_percent_bp(p, len, &bp) < 0 || bp < 1 || bp > ROLLOUT_BUCKETS)
                        return error_set(ret_error, -EINVAL,
                                         "--waves: \"%.*s\" is not a percentage in 0.01%%..100%% "
                                         "(at most two decimals)", (int) len, p);
                if (n > 0 && bp <= waves[n - 1])
                        return error_set(ret_error, -EINVAL, "--waves must be strictly ascending");
                waves[n++] = bp;
                p += len;
                if (*p == '\0')
                        break;
        }
        if (waves[n - 1] != ROLLOUT_BUCKETS)
                return error_set(ret_error, -EINVAL, "--waves must end with 100%%");
        *ret_n = n;
        return 0;
}

/* ---- read-modify-write ---- */

/* Tests only: with DEPLOYCTL_TEST_HOLD_AFTER_READ=PATH, create
 * PATH.read.<pid> once the pointer is read, then wait until PATH exists
 * before writing, so a test can race operators on one ETag
 * deterministically. */
static void test_hold_after_read(void) {
        const char *path = getenv("DEPLOYCTL_TEST_HOLD_AFTER_READ");
        _cleanup_free_ char *ready = NULL;
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + TEST_HOLD_MAX_USEC;
        int fd;

        if (!path || !*path || !(ready = strdup_printf("%s.read.%d", path, (int) getpid())))
                return;
        fd = open(ready, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd >= 0)
                close(fd);
        while (access(path, F_OK) < 0 && now_usec(CLOCK_MONOTONIC) < deadline)
                (void) usleep(10 * 1000);
}

typedef enum PointerFlags {
        POINTER_MAY_CREATE = 1 << 0,   /* publish: a missing pointer is written with If-None-Match: * */
        POINTER_MAY_REPAIR = 1 << 1,   /* publish: a pointer with a bad policy is rewritten */
} PointerFlags;

typedef struct Pointer {
        const char *bucket;
        const char *key;
        bool exists;
        RolloutPolicy policy;          /* as read, then as edited */
        char *etag;                    /* as read; NULL when it did not exist */
        char *text;                    /* as written */
        bool changed;
} Pointer;

static void pointer_done(Pointer *p) {
        free(p->etag);
        free(p->text);
}

static int pointer_read(S3Client *c, Pointer *p, PointerFlags flags, char **ret_error) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        _cleanup_free_ char *why = NULL;
        int r;

        r = s3_get_small(c, p->bucket, p->key, NULL, POINTER_MAX, &o, ret_error);
        if (r == -ENOENT && (flags & POINTER_MAY_CREATE))
                return 0;
        if (r == -ENOENT)
                return error_set(ret_error, r, "no pointer at s3://%s/%s: publish a build first", p->bucket, p->key);
        if (r < 0)
                return r;
        if (!o.etag)
                return error_set(ret_error, -EBADMSG, "s3://%s/%s came without an ETag: it cannot be edited safely",
                                 p->bucket, p->key);
        r = rollout_parse(o.body, o.len, &p->policy, &why);
        if (r < 0 && (flags & POINTER_MAY_REPAIR)) {
                p->policy = (RolloutPolicy) { .max_failures = 1 };
                if (discover_parse_pointer(o.body, o.len, p->policy.sha) < 0)
                        p->policy.sha[0] = '\0';
        } else if (r < 0)
                return error_set(ret_error, r, "s3://%s/%s: %s", p->bucket, p->key, why ?: strerror(-r));
        p->exists = true;
        p->etag = TAKE_PTR(o.etag);
        return 0;
}

/* Write p->policy if it differs from what was read, under the condition
 * that the pointer is still the one read. */
static int pointer_write(S3Client *c, Pointer *p, const char *before, char **ret_error) {
        S3PutCondition cond = { .if_match = p->etag, .if_none_match = !p->exists };
        _cleanup_free_ char *etag = NULL;
        int r;

        p->text = rollout_format(&p->policy);
        if (!p->text)
                return -ENOMEM;
        if (before && streq(before, p->text))
                return 0;
        test_hold_after_read();
        r = s3_put_data_if(c, p->bucket, p->key, p->text, strlen(p->text), &cond, &etag, ret_error);
        if (r == S3_CONDITION_FAILED)
                return error_set(ret_error, r, FLEET_CONFLICT_MESSAGE " (s3://%s/%s)", p->bucket, p->key);
        if (r < 0)
                return r;
        free(p->etag);
        p->etag = TAKE_PTR(etag);
        p->changed = true;
        return 0;
}

int fleet_publish_pointer(S3Client *c, const char *bucket, const char *key, const char *sha,
                          const FleetWaves *w, uint64_t now_usec, char **ret_text, char **ret_error) {
        _cleanup_(pointer_done) Pointer p = { .bucket = bucket, .key = key };
        RolloutPolicy *np = &p.policy;
        char previous[41] = "";
        int r;

        r = pointer_read(c, &p, POINTER_MAY_CREATE | POINTER_MAY_REPAIR, ret_error);
        if (r < 0)
                return r;
        /* Publishing the same build again (new waves, say) keeps the build
         * an abort would go back to. */
        memcpy(previous, streq(np->sha, sha) ? np->previous : np->sha, sizeof(previous));
        *np = (RolloutPolicy) {
                .has_waves = w->n_waves > 0,
                .started_usec = w->n_waves > 0 ? now_usec / USEC_PER_SEC * USEC_PER_SEC : 0,
                .n_waves = w->n_waves,
                .wave_interval_usec = w->wave_interval_usec,
                .max_failures = w->max_failures ?: 1,
        };
        memcpy(np->waves, w->waves, sizeof(np->waves));
        snprintf(np->sha, sizeof(np->sha), "%s", sha);
        memcpy(np->previous, previous, sizeof(previous));
        r = pointer_write(c, &p, NULL, ret_error);
        if (r < 0)
                return r;
        if (ret_text)
                *ret_text = TAKE_PTR(p.text);
        return 0;
}

/* ---- verbs ---- */

typedef struct Fleet {
        const ServiceConfig *svc;
        const Config *cfg;
        S3Client *s3;
        bool json;
        const char *reason;            /* abort */
} Fleet;

static json_t *pointer_json(const Fleet *f, const Pointer *p) {
        return json_pack("{s:b,s:b,s:s,s:s,s:s,s:s?,s:b,s:s?}", "ok", 1, "changed", p->changed, "service",
                         f->svc->name, "pointer", f->svc->pointer_key, "sha", p->policy.sha, "previous",
                         p->policy.previous[0] ? p->policy.previous : NULL, "paused", p->policy.paused, "etag",
                         p->etag);
}

static int set_paused(Fleet *f, bool paused, json_t **ret, char **ret_error) {
        _cleanup_(pointer_done) Pointer p = { .bucket = f->svc->bucket, .key = f->svc->pointer_key };
        _cleanup_free_ char *before = NULL;
        int r;

        r = pointer_read(f->s3, &p, 0, ret_error);
        if (r < 0)
                return r;
        before = rollout_format(&p.policy);
        if (!before)
                return -ENOMEM;
        p.policy.paused = paused;
        r = pointer_write(f->s3, &p, before, ret_error);
        if (r < 0)
                return r;
        if (!f->json)
                printf("%s the rollout of %s (s3://%s/%s)%s\n", paused ? "paused" : "resumed", p.policy.sha,
                       p.bucket, p.key, p.changed ? "" : paused ? ": it was paused already" : ": it was not paused");
        *ret = pointer_json(f, &p);
        return *ret ? 0 : -ENOMEM;
}

/* bad/<sha>/_abort halts sha on every host whatever max_failures says. An
 * _abort already there (an earlier abort, or a rerun after a failed
 * pointer write) is kept: its reason and time are the first ones. */
static int write_abort_marker(Fleet *f, const char *sha, char **ret_key, char **ret_error) {
        S3PutCondition cond = { .if_none_match = true };
        _cleanup_free_ char *key = NULL, *body = NULL;
        _cleanup_(json_decrefp) json_t *o = NULL;
        char when[32];
        int r;

        key = strdup_printf("%sbad/%s/_abort", f->svc->fleet_prefix, sha);
        o = json_pack("{s:s,s:s,s:s}", "sha", sha, "reason", f->reason,
                      "time", format_timestamp(now_usec(CLOCK_REALTIME), when));
        if (!key || !o || !(body = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)))
                return -ENOMEM;
        r = s3_put_data_if(f->s3, f->svc->bucket, key, body, strlen(body), &cond, NULL, ret_error);
        if (r < 0 && r != S3_CONDITION_FAILED)
                return r;
        if (r < 0 && ret_error)                 /* there already: not an error */
                *ret_error = mfree(*ret_error);
        *ret_key = TAKE_PTR(key);
        return 0;
}

static int abort_rollout(Fleet *f, json_t **ret, char **ret_error) {
        _cleanup_(pointer_done) Pointer p = { .bucket = f->svc->bucket, .key = f->svc->pointer_key };
        _cleanup_free_ char *marker = NULL, *why = NULL;
        RolloutPolicy back = { .max_failures = 1 };
        int r;

        if (isempty(f->svc->fleet_prefix))
                return error_set(ret_error, -EINVAL, "service \"%s\" has no fleet_prefix: abort marks the build "
                                 "bad under it", f->svc->name);
        r = pointer_read(f->s3, &p, 0, ret_error);
        if (r < 0)
                return r;
        if (isempty(p.policy.previous))
                return error_set(ret_error, -EDESTADDRREQ,
                                 "s3://%s/%s names %s and no previous build: there is nothing to go back to "
                                 "(publish the build the fleet should run)", p.bucket, p.key, p.policy.sha);
        r = write_abort_marker(f, p.policy.sha, &marker, ret_error);
        if (r < 0)
                return r;
        /* No waves: every host moves back at once. */
        memcpy(back.sha, p.policy.previous, sizeof(back.sha));
        memcpy(back.previous, p.policy.sha, sizeof(back.previous));
        p.policy = back;
        r = pointer_write(f->s3, &p, NULL, &why);
        if (r == S3_CONDITION_FAILED)
                return error_set(ret_error, r, "%s; %s stays halted by s3://%s/%s", why, back.previous,
                                 p.bucket, marker);
        if (r < 0)
                return error_set(ret_error, r, "%s", why ?: strerror(-r));
        if (!f->json)
                printf("aborted %s: marked bad fleet-wide (s3://%s/%s); s3://%s/%s names %s again\n",
                       back.previous, p.bucket, marker, p.bucket, p.key, back.sha);
        *ret = pointer_json(f, &p);
        if (*ret)
                json_object_set_new(*ret, "aborted", json_string(back.previous));
        return *ret ? 0 : -ENOMEM;
}

/* ---- command line ---- */

int fleet_exit_code(int r) {
        switch (r) {
        case 0:
                return CTL_EXIT_OK;
        case S3_CONDITION_FAILED:
                return FLEET_EXIT_CONFLICT;
        case -EDESTADDRREQ:
                return FLEET_EXIT_REFUSED;
        case -EINVAL:
                return CTL_EXIT_USAGE;
        case -ENOENT:
                return CTL_EXIT_UNKNOWN;
        case -EACCES:
                return CTL_EXIT_DENIED;
        default:
                return CTL_EXIT_FAILED;
        }
}

static void help(void) {
        printf("Usage: deployctl [-c FILE] [--json] fleet status SERVICE\n"
               "       deployctl [-c FILE] [--json] fleet pause|resume SERVICE\n"
               "       deployctl [-c FILE] [--json] fleet abort [--reason TEXT] SERVICE\n"
               "The rollout of SERVICE's pointer (select = pointer) across every host, through S3\n"
               "with the agent's settings (default config %s).\n"
               "  status   hosts per build and state, the open wave against the share of hosts\n"
               "           on the build, failed and stale hosts, halted or not, paused or not\n"
               "  pause    no further host takes the build (hosts on it stay)\n"
               "  resume   the rollout goes on where the waves are now\n"
               "  abort    mark the build bad fleet-wide (<fleet_prefix>bad/<sha>/_abort) and point\n"
               "           at the previous build again: every host moves back\n"
               "Pointer edits are read-modify-write with If-Match on the pointer's ETag.\n"
               "Exit status: 0 ok, 1 failed, 2 usage or configuration, 3 unknown service or no\n"
               "pointer, 4 S3 denied access, 7 the pointer changed since it was read (another\n"
               "operator?): nothing written, 8 refused (abort with no previous build).\n",
               CONFIG_DEFAULT_PATH);
}

typedef struct FleetArgs {
        const char *verb;
        const char *service;
        const char *reason;
        bool json;
} FleetArgs;

/* 1: run; 0: --help shown; <0: usage error (explained). */
static int parse_args(int argc, char **argv, FleetArgs *a) {
        static const struct option options[] = {
                { "json", no_argument, NULL, 'j' },
                { "reason", required_argument, NULL, 'r' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'j': a->json = true; break;
                case 'r': a->reason = optarg; break;
                case 'h': help(); return 0;
                default: return -EINVAL;
                }
        if (argc - optind != 2)
                return fprintf(stderr, "deployctl fleet: takes a VERB and one SERVICE (see --help)\n"), -EINVAL;
        a->verb = argv[optind];
        a->service = argv[optind + 1];
        if (!streq(a->verb, "status") && !streq(a->verb, "pause") && !streq(a->verb, "resume") &&
            !streq(a->verb, "abort"))
                return fprintf(stderr, "deployctl fleet: unknown verb \"%s\" (see --help)\n", a->verb), -EINVAL;
        if (a->reason && (!streq(a->verb, "abort") || strlen(a->reason) > ABORT_REASON_MAX))
                return fprintf(stderr, "deployctl fleet: --reason is for abort, up to %u bytes\n",
                               ABORT_REASON_MAX), -EINVAL;
        return 1;
}

static int check_service(const Config *cfg, const char *name, const ServiceConfig **ret, char **ret_error) {
        const ServiceConfig *svc = config_find_service(cfg, name);

        if (!svc)
                return error_set(ret_error, -ENOENT, "no service \"%s\" in %s", name, cfg->path);
        if (svc->select != SELECT_POINTER || isempty(svc->pointer_key))
                return error_set(ret_error, -EINVAL, "service \"%s\" does not deploy from a pointer "
                                 "(select = pointer): it has no rollout", name);
        *ret = svc;
        return 0;
}

static int run_verb(Fleet *f, const char *verb, json_t **ret, char **ret_error) {
        if (streq(verb, "pause"))
                return set_paused(f, true, ret, ret_error);
        if (streq(verb, "resume"))
                return set_paused(f, false, ret, ret_error);
        if (streq(verb, "abort"))
                return abort_rollout(f, ret, ret_error);
        return fleet_status(f->s3, f->cfg, f->svc, f->json, ret, ret_error);
}

static int fail(bool json, int r, const char *error) {
        static const char *const codes[] = {
                [CTL_EXIT_FAILED] = "failed", [CTL_EXIT_USAGE] = "bad_request",
                [CTL_EXIT_UNKNOWN] = "not_found", [CTL_EXIT_DENIED] = "permission_denied",
                [FLEET_EXIT_CONFLICT] = "conflict", [FLEET_EXIT_REFUSED] = "refused",
        };
        int code = fleet_exit_code(r);
        const char *message = error ?: strerror(-r);

        fprintf(stderr, "deployctl fleet: %s\n", message);
        if (json) {
                _cleanup_(json_decrefp) json_t *o = json_pack("{s:b,s:b,s:{s:s,s:s}}", "ok", 0, "changed", 0, "error", "code",
                                                     codes[code] ?: "failed", "message", message);
                if (o)
                        ctl_print_json(o);
        }
        return code;
}

int fleet_main(const char *config_path, bool json, int argc, char **argv) {
        _cleanup_config_ Config *cfg = NULL;
        _cleanup_s3_client_ S3Client *c = NULL;
        _cleanup_(json_decrefp) json_t *res = NULL;
        _cleanup_free_ char *error = NULL;
        FleetArgs a = { .json = json };
        Fleet f = {};
        int r;

        r = parse_args(argc, argv, &a);
        if (r <= 0)
                return r < 0 ? CTL_EXIT_USAGE : CTL_EXIT_OK;
        r = config_load(config_path ?: CONFIG_DEFAULT_PATH, &cfg, &error);
        if (r < 0)
                return fail(a.json, -EINVAL, error);
        r = check_service(cfg, a.service, &f.svc, &error);
        assert(r < 0 || f.svc); /* for the static analyzer: error_set() returns the error it is given */
        if (r >= 0)
                r = s3_client_new(&cfg->s3, &c, &error);
        if (r < 0)
                return fail(a.json, r, error);
        f = (Fleet) { .svc = f.svc, .cfg = cfg, .s3 = c, .json = a.json,
                      .reason = a.reason ?: "aborted by deployctl fleet abort" };
        r = run_verb(&f, a.verb, &res, &error);
        if (r < 0)
                return fail(a.json, r, error);
        if (a.json)
                ctl_print_json(res);
        return CTL_EXIT_OK;
}
