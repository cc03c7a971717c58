/* step-discover.c: the discover worker (docs/design.md, "Steps"). Lists the
 * service's prefix, or reads its pointer object, and reports the newest
 * artifact with its ETag, LastModified, size and which sidecars exist, so
 * the supervisor can tell "nothing new" and "not ready yet" from a target.
 * In pointer mode the job's pointer_etag makes the GET conditional: an
 * unchanged pointer costs one request answered 304, and the result says
 * not_modified. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <jansson.h>

#include "artifact/discover.h"
#include "artifact/rollout.h"
#include "common/log.h"
#include "s3/s3.h"
#include "worker/steps.h"
#include "common/util.h"
#include "worker/fleet.h"
#include "worker/runtime.h"

#define POINTER_MAX 4096U

/* The artifact key itself and its sidecars, from a listing of prefix=key. */
typedef struct Artifact {
        const char *key;
        bool found;
        char *etag;
        uint64_t last_modified_usec;
        uint64_t size;
        bool sha256;
        bool minisig;
} Artifact;

static void artifact_done(Artifact *a) {
        free(a->etag);
}

static int artifact_cb(const S3Object *o, void *userdata) {
        Artifact *a = userdata;
        size_t n = strlen(a->key);
        const char *rest;

        if (strncmp(o->key, a->key, n) != 0)
                return 0;
        rest = o->key + n;
        if (*rest == '\0') {
                free(a->etag);
                a->etag = strdup(o->etag);
                if (!a->etag)
                        return -ENOMEM;
                a->found = true;
                a->last_modified_usec = o->last_modified_usec;
                a->size = o->size;
        } else if (streq(rest, ".sha256"))
                a->sha256 = true;
        else if (streq(rest, ".minisig"))
                a->minisig = true;
        return 0;
}

/* One small listing gives the artifact's metadata and its sidecars. */
static int artifact_lookup(S3Client *c, const char *bucket, Artifact *a, char **ret_error) {
        return s3_list_objects(c, bucket, a->key, artifact_cb, a, ret_error);
}

static int result_found(const char *sha, const Artifact *a, const char *pointer_etag, DiscoverResult *ret) {
        *ret = (DiscoverResult) {
                .found = true,
                .sha = strdup(sha),
                .key = strdup(a->key),
                .etag = a->etag ? strdup(a->etag) : NULL,
                .last_modified_usec = a->last_modified_usec,
                .size = a->size,
                .sidecar_sha256 = a->sha256,
                .sidecar_minisig = a->minisig,
                .pointer_etag = pointer_etag ? strdup(pointer_etag) : NULL,
        };
        if (!ret->sha || !ret->key || (a->etag && !ret->etag) || (pointer_etag && !ret->pointer_etag))
                return -ENOMEM;
        return 0;
}

/* The pointer did not change since pointer_etag: the supervisor keeps the
 * target it derived from it last time. */
static int result_not_modified(const char *pointer_etag, DiscoverResult *ret) {
        if (!pointer_etag)
                return -EPROTO; /* a 304 answers only a conditional GET */
        *ret = (DiscoverResult) { .not_modified = true, .pointer_etag = strdup(pointer_etag) };
        return ret->pointer_etag ? 0 : -ENOMEM;
}

static int result_not_found(const char *reason, DiscoverResult *ret) {
        *ret = (DiscoverResult) { .reason = strdup(reason) };
        return ret->reason ? 0 : -ENOMEM;
}

typedef struct Listing {
        const DiscoverJob *job;
        DiscoverBest *best;
} Listing;

static int listing_cb(const S3Object *o, void *userdata) {
        Listing *l = userdata;
        int r = discover_best_offer(l->best, l->job->prefix, l->job->suffix, o);

        return r < 0 ? r : 0;
}

/* One listing (a request per 1000 keys) is the whole idle poll. */
static int discover_newest(S3Client *c, const DiscoverJob *j, DiscoverResult *ret, char **ret_error) {
        _cleanup_(discover_best_done) DiscoverBest best = {};
        Listing l = { .job = j, .best = &best };
        Artifact a;
        int r;

        r = s3_list_objects(c, j->bucket, j->prefix, listing_cb, &l, ret_error);
        if (r < 0)
                return r;
        if (!best.found)
                return result_not_found("no key matches prefix + sha + suffix", ret);
        a = (Artifact) {
                .key = best.key, .found = true, .etag = best.etag,
                .last_modified_usec = best.last_modified_usec, .size = best.size,
                .sha256 = best.sha256, .minisig = best.minisig,
        };
        return result_found(best.sha, &a, NULL, ret);
}

/* This host's name, when the job has none: resolved once per agent run
 * (the supervisor keeps what the result says). */
typedef struct Identity {
        const char *host_id;           /* the job's, or resolved */
        char *resolved;
        char *zone;
} Identity;

static void identity_done(Identity *id) {
        free(id->resolved);
        free(id->zone);
}

static int identity_need(Identity *id, char **ret_error) {
        int r;

        if (id->host_id)
                return 0;
        r = fleet_resolve_identity(&id->resolved, &id->zone, ret_error);
        if (r < 0)
                return error_context(ret_error, r, "this host's id (set [agent] host_id)");
        id->host_id = id->resolved;
        return 0;
}

static bool is_settled(const FleetJob *f, const char *sha) {
        for (size_t i = 0; i < f->n_settled; i++)
                if (streq(f->settled[i], sha))
                        return true;
        return false;
}

static int rollout_fill(const RolloutPolicy *p, const Identity *id, bool canary, RolloutResult *ret) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        unsigned bucket = id->host_id ? rollout_bucket(id->host_id, p->sha) : 0;
        size_t wave = rollout_open_wave(p, now), host_wave = canary ? 0 : rollout_wave_of_bucket(p, bucket);

        *ret = (RolloutResult) {
                .set = true, .sha = strdup(p->sha), .wave = wave, .n_waves = p->has_waves ? p->n_waves : 0,
                .percent_bp = p->has_waves ? p->waves[wave] : ROLLOUT_BUCKETS, .bucket = bucket,
                .host_wave = p->has_waves ? host_wave : 0,
                .opens_usec = p->has_waves ? rollout_wave_opens_usec(p, host_wave) : 0,
                .admitted = rollout_admits(p, id->host_id ?: "", canary, now), .paused = p->paused,
        };
        return ret->sha ? 0 : -ENOMEM;
}

static int result_waiting(const RolloutResult *ro, DiscoverResult *ret) {
        _cleanup_free_ char *reason = NULL;
        char when[32];

        if (ro->paused)
                reason = strdup_printf("the rollout of %s is paused", ro->sha);
        else
                reason = strdup_printf("waiting for wave %llu (bucket %llu, opens at %s)",
                                       (unsigned long long) ro->host_wave, (unsigned long long) ro->bucket,
                                       format_timestamp(ro->opens_usec, when));
        return reason ? result_not_found(reason, ret) : -ENOMEM;
}

/* 1 when the rollout decided this poll (waiting, paused, halted: *ret is
 * filled in), 0 to take the build. Builds the supervisor decides on alone
 * (current, bad here, halted before) cost no breaker LIST. */
static int rollout_decide(S3Client *c, const DiscoverJob *j, const Identity *id, const RolloutPolicy *p,
                          const char *pointer_etag, RolloutResult *ro, DiscoverResult *ret, char **ret_error) {
        _cleanup_free_ char *halt = NULL, *reason = NULL;
        bool halted = false;
        int r;

        if (is_settled(&j->fleet, p->sha))
                return 0;
        if (!ro->admitted)
                return result_waiting(ro, ret) < 0 ? -ENOMEM : 1;
        if (!j->fleet.prefix)
                return 0;
        r = fleet_breaker(c, j->bucket, j->fleet.prefix, p->sha, p->max_failures, &halted, &halt, ret_error);
        if (r < 0 || !halted)
                return r;
        reason = strdup_printf("the rollout of %s is halted: %s", p->sha, strempty(halt));
        if (!reason || result_not_found(reason, ret) < 0)
                return -ENOMEM;
        ro->halted = true;
        ro->halt = TAKE_PTR(halt);
        /* settled: the next poll may be a 304 */
        ret->pointer_etag = pointer_etag ? strdup(pointer_etag) : NULL;
        return pointer_etag && !ret->pointer_etag ? -ENOMEM : 1;
}

static int pointer_parse(const DiscoverJob *j, const S3SmallObject *o, RolloutPolicy *ret, char **ret_error) {
        _cleanup_free_ char *why = NULL;

        if (rollout_parse(o->body, o->len, ret, &why) < 0)
                return error_set(ret_error, -EBADMSG, "pointer s3://%s/%s: %s; staying on the running release",
                                 j->bucket, j->pointer_key, why ?: "out of memory");
        return 0;
}

/* The artifact the pointer names, with its sidecars. */
static int pointer_lookup(S3Client *c, const DiscoverJob *j, const char *sha, const char *etag, DiscoverResult *ret,
                          char **ret_error) {
        _cleanup_free_ char *key = NULL, *reason = NULL;
        _cleanup_(artifact_done) Artifact a = {};
        int r;

        key = strdup_printf("%s%s%s", j->prefix, sha, j->suffix);
        if (!key)
                return -ENOMEM;
        a.key = key;
        r = artifact_lookup(c, j->bucket, &a, ret_error);
        if (r < 0)
                return r;
        if (!a.found) {
                reason = strdup_printf("the pointer names %s but %s does not exist (yet)", sha, key);
                return reason ? result_not_found(reason, ret) : -ENOMEM;
        }
        return result_found(sha, &a, etag, ret);
}

/* One conditional GET; a 304 is the whole idle poll. A pointer naming an
 * artifact that is not there yet, or a build this host waits for, returns
 * no pointer_etag, so that the next poll reads the pointer again instead
 * of getting a 304 for it. */
static int discover_pointer(S3Client *c, const DiscoverJob *j, Identity *id, DiscoverResult *ret, char **ret_error) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        RolloutResult ro = {};
        RolloutPolicy policy;
        const char *sha;
        int r;

        const char *pointer_etag = isempty(j->pointer_etag) ? NULL : j->pointer_etag;

        r = s3_get_small(c, j->bucket, j->pointer_key, pointer_etag, POINTER_MAX, &o, ret_error);
        if (r == -ENOENT)
                return result_not_found("the pointer object does not exist", ret);
        if (r < 0)
                return r;
        if (o.status == 304)
                return result_not_modified(pointer_etag, ret);
        r = pointer_parse(j, &o, &policy, ret_error);
        if (r < 0)
                return r;
        sha = policy.sha;
        if (j->fleet.prefix || policy.has_waves || policy.paused) {
                r = policy.has_waves ? identity_need(id, ret_error) : 0;
                if (r >= 0)
                        r = rollout_fill(&policy, id, j->fleet.canary, &ro);
                if (r >= 0)
                        r = rollout_decide(c, j, id, &policy, o.etag, &ro, ret, ret_error);
                if (r != 0) {
                        ret->rollout = ro;
                        return r < 0 ? (free(ro.sha), free(ro.halt), r) : 0;
                }
        }
        r = pointer_lookup(c, j, sha, o.etag, ret, ret_error);
        ret->rollout = ro;
        return r;
}

static void log_stats(S3Client *c) {
        S3Stats st;

        s3_client_stats(c, &st);
        log_debug("S3 requests %u (%u retries), %" PRIu64 " bytes received; IMDS requests %u; credentials %s",
                  st.requests, st.retries, st.bytes_received, st.imds_requests, s3_client_credentials_source(c));
}

int step_discover(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        _cleanup_s3_client_ S3Client *c = NULL;
        const DiscoverJob *j = &job->discover;
        _cleanup_(identity_done) Identity id = { .host_id = j->fleet.host_id };
        int r;

        *ret_bad = false;              /* a listing or a pointer is never an artifact's fault */
        r = s3_client_new(&j->s3, &c, ret_error);
        if (r < 0)
                return error_context(ret_error, r, "S3 client");
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_context(ret_error, r, "dropping privileges");
        if (j->fleet.prefix)
                r = identity_need(&id, ret_error);
        if (r >= 0 && j->select == SELECT_POINTER)
                r = discover_pointer(c, j, &id, &ret->discover, ret_error);
        else if (r >= 0)
                r = discover_newest(c, j, &ret->discover, ret_error);
        log_stats(c);
        if (r < 0)
                return error_context(ret_error, r, "discover");
        /* a name the supervisor did not give goes back to it, to keep */
        ret->discover.host_id = TAKE_PTR(id.resolved);
        ret->discover.zone = TAKE_PTR(id.zone);
        return 0;
}
