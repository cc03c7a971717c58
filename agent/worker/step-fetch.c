/* step-fetch.c: the fetch worker (docs/design.md, "Steps"). Reads the
 * artifact's <key>.sha256 and, when public_key is set, <key>.minisig first
 * (a missing one means "not published yet": a plain failure, not a bad
 * build), then streams the artifact into downloads/<sha><suffix>.part
 * (fetch-download.c: hashed on the way, resumed after cuts), verifies both
 * and renames it into place. Anything that is the artifact's own fault
 * (checksum, bad or foreign signature, legacy signature, a signature naming
 * another file) deletes the download and sets bad. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>

#include "worker/debug-hostile.h"
#include "worker/fetch-download.h"
#include "artifact/sidecar.h"
#include "common/log.h"
#include "artifact/minisign.h"
#include "s3/s3.h"
#include "worker/steps.h"
#include "common/util.h"
#include "worker/runtime.h"
#include "worker/confine.h"

/* The job, with its public keys parsed. */
typedef struct Fetch {
        const S3Config *s3;            /* borrowed from the job, as the strings */
        const char *bucket;
        const char *key;
        const char *sha;
        const char *suffix;
        const char *etag;              /* expected, or NULL */
        const char *downloads_dir;
        bool checksum;
        bool resume;
        uint64_t max_size;
        MinisignKey keys[MINISIGN_KEYS_MAX];
        size_t n_keys;                 /* 0: no signature required */
} Fetch;

/* What the sidecars say. */
typedef struct Expect {
        char sha256[65];
        MinisignSignature sig;
} Expect;

static void expect_done(Expect *e) {
        minisign_signature_done(&e->sig);
}

static int parse_keys(const char *keys, Fetch *j, char **ret_error) {
        if (isempty(keys))
                return 0;
        if (minisign_parse_public_keys(keys, j->keys, &j->n_keys) < 0)
                return error_set(ret_error, -EINVAL,
                                 "job: \"public_key\" must be up to %d minisign public keys", MINISIGN_KEYS_MAX);
        return 0;
}

static int fetch_from_job(const FetchJob *job, Fetch *j, char **ret_error) {
        *j = (Fetch) {
                .s3 = &job->s3,
                .bucket = job->bucket,
                .key = job->key,
                .sha = job->sha,
                .suffix = job->suffix,
                .etag = isempty(job->etag) ? NULL : job->etag,
                .downloads_dir = job->downloads_dir,
                .checksum = job->checksum == CHECKSUM_REQUIRED,
                .resume = job->resume,
                .max_size = job->max_artifact_size,
        };
        if (isempty(j->bucket) || isempty(j->key))
                return error_set(ret_error, -EINVAL, "job: empty \"bucket\" or \"key\"");
        if (!fetch_file_name_is_valid(j->sha, j->suffix))
                return error_set(ret_error, -EINVAL, "job: invalid \"sha\" or \"suffix\"");
        return parse_keys(job->public_key, j, ret_error);
}

/* GET <key><ext>; a missing one means "not published yet". */
static int get_sidecar(S3Client *c, const Fetch *j, const char *ext, size_t max, const char *what,
                       S3SmallObject *ret, char **ret_error) {
        _cleanup_free_ char *key = strdup_printf("%s%s", j->key, ext);
        int r;

        if (!key)
                return -ENOMEM;
        r = s3_get_small(c, j->bucket, key, NULL, max, ret, ret_error);
        if (r == -ENOENT)
                return error_set(ret_error, r, "%s s3://%s/%s not found (not uploaded yet?)", what, j->bucket, key);
        return r;
}

/* A malformed sidecar is a CI mistake that a re-upload fixes: not bad. */
static int fetch_checksum(S3Client *c, const Fetch *j, Expect *e, char **ret_error) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        int r;

        r = get_sidecar(c, j, ".sha256", FETCH_SIDECAR_MAX, "checksum sidecar", &o, ret_error);
        if (r < 0)
                return r;
        if (fetch_parse_sidecar(o.body, o.len, e->sha256) < 0)
                return error_set(ret_error, -EBADMSG,
                                 "checksum sidecar %s.sha256 is neither sha256sum output nor bare hex", j->key);
        return 0;
}

/* A legacy signature is refused for good (bad); garbage is not. */
static int fetch_signature(S3Client *c, const Fetch *j, Expect *e, bool *ret_bad, char **ret_error) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        _cleanup_free_ char *why = NULL;
        int r;

        r = get_sidecar(c, j, ".minisig", MINISIGN_SIG_FILE_MAX, "signature", &o, ret_error);
        if (r < 0)
                return r;
        r = minisign_parse_signature(o.body, o.len, &e->sig, &why);
        if (r == -EPROTONOSUPPORT)
                *ret_bad = true;
        if (r < 0)
                return error_set(ret_error, r, "signature %s.minisig rejected: %s", j->key, strempty(why));
        return 0;
}

static int verify(const Fetch *j, FetchDownload *d, const Expect *e, bool *ret_bad, char **ret_error) {
        _cleanup_free_ char *file = NULL, *why = NULL;
        char hex[65];
        int r;

        sodium_bin2hex(hex, sizeof(hex), d->sha256, sizeof(d->sha256));
        if (j->checksum && !streq(e->sha256, hex)) {
                *ret_bad = true;
                return error_set(ret_error, -EBADMSG, "sha256 mismatch for %s: expected %s, got %s", j->key,
                                 e->sha256, hex);
        }
        if (j->n_keys == 0)
                return 0;
        file = strdup_printf("%s%s", j->sha, j->suffix);
        if (!file)
                return -ENOMEM;
        r = minisign_verify(j->keys, j->n_keys, &e->sig, d->blake2b_hash, file, &why);
        if (r == -ENOMEM || r == -EIO)
                return r;
        if (r < 0) {
                *ret_bad = true;
                return error_set(ret_error, r, "signature check of %s failed: %s", j->key, strempty(why));
        }
        return 0;
}

static void on_progress(uint64_t bytes, uint64_t total, void *userdata) {
        worker_send_progress(userdata, bytes, total);
}

static int fetch_result(const Fetch *j, const FetchDownload *d, FetchResult *ret) {
        char hex[65];

        sodium_bin2hex(hex, sizeof(hex), d->sha256, sizeof(d->sha256));
        *ret = (FetchResult) {
                .sha = strdup(j->sha),
                .key = strdup(j->key),
                .size = d->size,
                .sha256 = strdup(hex),
                .downloaded = d->downloaded,
                .reused = d->reused,
                .checksum_verified = j->checksum,
                .signature_verified = j->n_keys > 0,
        };
        return ret->sha && ret->key && ret->sha256 ? 0 : -ENOMEM;
}

/* Acquire the directory and the client while privileged; nothing here
 * reads untrusted bytes or talks to the network. */
static int fetch_acquire(const Fetch *j, int *ret_dir_fd, S3Client **ret_client, char **ret_error) {
        _cleanup_close_ int dir_fd = -1;
        int r;

        if (sodium_init() < 0)
                return error_set(ret_error, -EIO, "cannot initialize libsodium");
        dir_fd = open(j->downloads_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return error_set(ret_error, -errno, "cannot open %s: %m", j->downloads_dir);
        r = s3_client_new(j->s3, ret_client, ret_error);
        if (r < 0)
                return error_context(ret_error, r, "S3 client");
        *ret_dir_fd = TAKE_FD(dir_fd);
        return 0;
}

static void log_stats(const Fetch *j, const FetchDownload *d, S3Client *c) {
        S3Stats st;

        s3_client_stats(c, &st);
        log_info("fetched %s: %" PRIu64 " bytes, %" PRIu64 " downloaded, %" PRIu64
                 " re-hashed from an earlier .part; artifact GETs %u (%u resumed, %u restarts, %u retries); "
                 "S3 requests %u, IMDS requests %u, credentials %s",
                 j->key, d->size, d->downloaded, d->reused, d->requests, d->resumes, d->restarts, d->retries,
                 st.requests, st.imds_requests, s3_client_credentials_source(c));
}

static int download_and_verify(S3Client *c, const Fetch *j, FetchDownload *d, bool *ret_bad,
                               char **ret_error) {
        _cleanup_(expect_done) Expect e = {};
        _cleanup_free_ char *file = NULL;
        int r;

        if (j->checksum && (r = fetch_checksum(c, j, &e, ret_error)) < 0)
                return error_context(ret_error, r, "checksum sidecar");
        if (j->n_keys > 0 && (r = fetch_signature(c, j, &e, ret_bad, ret_error)) < 0)
                return error_context(ret_error, r, "signature");
        r = fetch_download(d, ret_error);
        if (r < 0 && !d->keep_part)
                fetch_download_discard(d);
        if (r < 0)
                return error_context(ret_error, r, "download");
        log_stats(j, d, c);
        r = verify(j, d, &e, ret_bad, ret_error);
        if (r < 0) {
                fetch_download_discard(d);
                return error_context(ret_error, r, "verify");
        }
        file = strdup_printf("%s%s", j->sha, j->suffix);
        if (!file)
                return -ENOMEM;
        return fetch_download_commit(d, file, ret_error);
}

int step_fetch(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        _cleanup_s3_client_ S3Client *c = NULL;
        _cleanup_close_ int dir_fd = -1;
        _cleanup_free_ char *file = NULL, *part = NULL;
        _cleanup_(fetch_download_done) FetchDownload d = {};
        Fetch j;
        int r;

        *ret_bad = false;
        r = fetch_from_job(&job->fetch, &j, ret_error);
        if (r < 0)
                return r;
        r = fetch_acquire(&j, &dir_fd, &c, ret_error);
        if (r < 0)
                return r;
        confine_allow_writes(dir_fd, -1);
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_context(ret_error, r, "dropping privileges");
        file = strdup_printf("%s%s", j.sha, j.suffix);
        part = strdup_printf("%s%s.part", j.sha, j.suffix);
        if (!file || !part)
                return -ENOMEM;
        d = (FetchDownload) {
                .client = c, .bucket = j.bucket, .key = j.key, .dir_fd = dir_fd, .dir = j.downloads_dir,
                .part = part, .etag = j.etag, .max_size = j.max_size, .resume = j.resume,
                .blake2b = j.n_keys > 0, .progress = on_progress, .userdata = w,
        };
        r = download_and_verify(c, &j, &d, ret_bad, ret_error);
        if (r < 0)
                return r;
        debug_hostile_fetch_plant(dir_fd, file);
        r = fetch_result(&j, &d, &ret->fetch);
        return r < 0 ? error_context(ret_error, r, "result") : 0;
}
