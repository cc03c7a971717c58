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
#include "common/log.h"
#include "s3/s3.h"
#include "worker/steps.h"
#include "common/util.h"
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

/* One conditional GET; a 304 is the whole idle poll. A pointer naming an
 * artifact that is not there yet returns no pointer_etag, so that the next
 * poll reads the pointer again instead of getting a 304 for it. */
static int discover_pointer(S3Client *c, const DiscoverJob *j, DiscoverResult *ret, char **ret_error) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        _cleanup_free_ char *key = NULL, *reason = NULL;
        _cleanup_(artifact_done) Artifact a = {};
        char sha[41];
        int r;

        const char *pointer_etag = isempty(j->pointer_etag) ? NULL : j->pointer_etag;

        r = s3_get_small(c, j->bucket, j->pointer_key, pointer_etag, POINTER_MAX, &o, ret_error);
        if (r == -ENOENT)
                return result_not_found("the pointer object does not exist", ret);
        if (r < 0)
                return r;
        if (o.status == 304)
                return result_not_modified(pointer_etag, ret);
        if (discover_parse_pointer(o.body, o.len, sha) < 0)
                return error_set(ret_error, -EBADMSG,
                                 "pointer s3://%s/%s does not start with a sha (7..40 lowercase hex)",
                                 j->bucket, j->pointer_key);
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
        return result_found(sha, &a, o.etag, ret);
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
        int r;

        *ret_bad = false;              /* a listing or a pointer is never an artifact's fault */
        r = s3_client_new(&j->s3, &c, ret_error);
        if (r < 0)
                return error_context(ret_error, r, "S3 client");
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_context(ret_error, r, "dropping privileges");
        if (j->select == SELECT_POINTER)
                r = discover_pointer(c, j, &ret->discover, ret_error);
        else
                r = discover_newest(c, j, &ret->discover, ret_error);
        log_stats(c);
        if (r < 0)
                return error_context(ret_error, r, "discover");
        return 0;
}
