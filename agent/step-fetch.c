/* step-fetch.c: the fetch worker (DESIGN.md section 3.2). Streams one
 * artifact into downloads/<sha><suffix>.part with its SHA-256 computed on
 * the way (flat memory whatever the size), checks it against the
 * <key>.sha256 sidecar and renames it into place. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <time.h>

#include "fetch.h"
#include "job.h"
#include "s3.h"
#include "steps.h"
#include "util.h"
#include "worker.h"

#define PROGRESS_INTERVAL_USEC (250 * USEC_PER_MSEC)
#define DEFAULT_MAX_ARTIFACT_SIZE (UINT64_C(2) << 30)

typedef struct FetchJob {
        S3Config s3;                   /* borrows the job's strings */
        const char *bucket;
        const char *key;
        const char *sha;
        const char *suffix;
        const char *etag;              /* expected, or NULL */
        const char *downloads_dir;
        bool checksum;
        uint64_t max_size;
} FetchJob;

/* The state of one streamed download. bytes and hash are where a resume
 * would pick up; today every download starts at byte 0. */
typedef struct Download {
        WorkerContext *w;
        int fd;
        crypto_hash_sha256_state hash;
        uint64_t bytes;                /* written to fd and hashed */
        uint64_t total;                /* 0: unknown */
        uint64_t reported_usec;
        int write_error;
} Download;

/* Keep the first message: s3 and the parsers explain themselves. */
static int fail(char **ret_error, int r, const char *what) {
        if (ret_error && *ret_error)
                return r;
        return error_set(ret_error, r, "%s: %s", what, strerror(-r));
}

static bool public_key_is_set(const json_t *job) {
        json_t *v = json_object_get(job, "public_key");

        return v && !json_is_null(v) && !(json_is_string(v) && isempty(json_string_value(v)));
}

static int fetch_job_parse(const json_t *job, FetchJob *ret, char **ret_error) {
        const char *checksum = job_string(job, "checksum");
        FetchJob j = {
                .bucket = job_string(job, "bucket"),
                .key = job_string(job, "key"),
                .sha = job_string(job, "sha"),
                .suffix = strempty(job_string(job, "suffix")),
                .etag = job_string(job, "etag"),
                .downloads_dir = job_string(job, "downloads_dir"),
                .checksum = !checksum || streq(checksum, "required"),
                .max_size = job_uint64(job, "max_artifact_size", DEFAULT_MAX_ARTIFACT_SIZE),
        };

        if (job_s3_from_json(job, &j.s3) < 0)
                return error_set(ret_error, -EINVAL, "job: missing or invalid \"s3\"");
        if (isempty(j.bucket) || isempty(j.key))
                return error_set(ret_error, -EINVAL, "job: missing \"bucket\" or \"key\"");
        if (!fetch_file_name_is_valid(j.sha, j.suffix))
                return error_set(ret_error, -EINVAL, "job: invalid \"sha\" or \"suffix\"");
        if (!j.downloads_dir || j.downloads_dir[0] != '/')
                return error_set(ret_error, -EINVAL, "job: \"downloads_dir\" must be an absolute path");
        if (checksum && !streq(checksum, "required") && !streq(checksum, "off"))
                return error_set(ret_error, -EINVAL, "job: \"checksum\" must be required or off");
        if (public_key_is_set(job))
                return error_set(ret_error, -EOPNOTSUPP,
                                 "public_key is set but signature verification is not built yet");
        if (isempty(j.etag))
                j.etag = NULL;
        *ret = j;
        return 0;
}

/* A missing sidecar means "not published yet", a malformed one a CI
 * mistake that a re-upload fixes: neither marks the artifact bad. */
static int fetch_sidecar(S3Client *c, const FetchJob *j, char ret_hex[static 65], char **ret_error) {
        _cleanup_free_ char *key = NULL, *body = NULL;
        size_t n;
        int r;

        if (asprintf(&key, "%s.sha256", j->key) < 0)
                return -ENOMEM;
        r = s3_get_small(c, j->bucket, key, FETCH_SIDECAR_MAX, &body, &n, ret_error);
        if (r == -ENOENT)
                return error_set(ret_error, r, "checksum sidecar %s not found", key);
        if (r < 0)
                return r;
        r = fetch_parse_sidecar(body, n, ret_hex);
        if (r < 0)
                return error_set(ret_error, r, "checksum sidecar %s is neither sha256sum output nor bare hex", key);
        return 0;
}

static void download_progress(Download *d, bool force) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (!force && now - d->reported_usec < PROGRESS_INTERVAL_USEC)
                return;
        worker_send_progress(d->w, d->bytes, d->total);
        d->reported_usec = now;
}

static int download_headers(const S3GetResponse *r, void *userdata) {
        Download *d = userdata;

        d->total = r->total_size ?: r->content_length;
        download_progress(d, true);
        return 0;
}

static int download_data(const void *data, size_t n, void *userdata) {
        Download *d = userdata;
        int r;

        r = loop_write(d->fd, data, n);
        if (r < 0) {
                d->write_error = r;
                return r;
        }
        crypto_hash_sha256_update(&d->hash, data, n);
        d->bytes += n;
        download_progress(d, false);
        return 0;
}

static int fetch_download(S3Client *c, const FetchJob *j, int dir_fd, const char *part, Download *d,
                          S3GetResponse *ret_response, char **ret_error) {
        _cleanup_(s3_get_response_done) S3GetResponse resp = {};
        _cleanup_close_ int fd = -1;
        S3GetRequest req = { .if_match = j->etag, .max_bytes = j->max_size, .on_headers = download_headers };
        int r;

        fd = openat(dir_fd, part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return error_set(ret_error, -errno, "cannot create %s/%s: %m", j->downloads_dir, part);
        d->fd = fd;
        crypto_hash_sha256_init(&d->hash);
        r = s3_get_object(c, j->bucket, j->key, &req, download_data, d, &resp, ret_error);
        if (r < 0 && d->write_error < 0)
                return error_set(ret_error, d->write_error, "writing %s/%s: %s", j->downloads_dir, part,
                                 strerror(-d->write_error));
        if (r < 0)
                return r;
        if (resp.status != 200)
                return error_set(ret_error, -EIO, "GET s3://%s/%s: unexpected HTTP %ld", j->bucket, j->key,
                                 resp.status);
        /* s3rver (and maybe others) ignore If-Match: check it ourselves. */
        if (j->etag && !streq_ptr(resp.etag, j->etag))
                return error_set(ret_error, -ESTALE, "s3://%s/%s changed: ETag %s, expected %s", j->bucket,
                                 j->key, strempty(resp.etag), j->etag);
        if (fsync(fd) < 0)
                return error_set(ret_error, -errno, "fsync %s/%s: %m", j->downloads_dir, part);
        download_progress(d, true);
        *ret_response = resp;
        resp = (S3GetResponse) {};
        return 0;
}

/* A transfer cut by the network leaves its .part for a resume; any other
 * failure (full disk, too large, object replaced) leaves nothing behind. */
static bool download_was_cut(int r) {
        return r == -ECONNRESET || r == -ETIMEDOUT;
}

static int fetch_commit(int dir_fd, const FetchJob *j, const char *part, const char *file, char **ret_error) {
        if (renameat(dir_fd, part, dir_fd, file) < 0)
                return error_set(ret_error, -errno, "rename %s/%s: %m", j->downloads_dir, part);
        if (fsync(dir_fd) < 0)
                return error_set(ret_error, -errno, "fsync %s: %m", j->downloads_dir);
        return 0;
}

static int fetch_result(const FetchJob *j, const char *file, const char *sha256, uint64_t size,
                        const char *etag, json_t **ret) {
        _cleanup_free_ char *path = NULL;
        size_t n = strlen(j->downloads_dir);
        json_t *v;

        while (n > 1 && j->downloads_dir[n - 1] == '/')
                n--;
        if (asprintf(&path, "%.*s/%s", (int) n, j->downloads_dir, file) < 0)
                return -ENOMEM;
        v = json_pack("{s:s,s:s,s:I,s:s?}", "path", path, "sha256", sha256, "size", (json_int_t) size,
                      "etag", etag);
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

static int fetch_verify(int dir_fd, const FetchJob *j, const char *part, Download *d, const char *expected,
                        char ret_hex[static 65], bool *ret_bad, char **ret_error) {
        unsigned char digest[crypto_hash_sha256_BYTES];

        crypto_hash_sha256_final(&d->hash, digest);
        sodium_bin2hex(ret_hex, 65, digest, sizeof(digest));
        if (!j->checksum || streq(expected, ret_hex))
                return 0;
        (void) unlinkat(dir_fd, part, 0);
        *ret_bad = true;
        return error_set(ret_error, -EBADMSG, "sha256 mismatch for %s: expected %s, got %s", j->key, expected,
                         ret_hex);
}

/* Acquire the directory and the client while privileged; nothing here
 * reads untrusted bytes. */
static int fetch_acquire(const FetchJob *j, int *ret_dir_fd, S3Client **ret_client, char **ret_error) {
        _cleanup_close_ int dir_fd = -1;
        int r;

        if (sodium_init() < 0)
                return error_set(ret_error, -EIO, "cannot initialize libsodium");
        dir_fd = open(j->downloads_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return error_set(ret_error, -errno, "cannot open %s: %m", j->downloads_dir);
        r = s3_client_new(&j->s3, ret_client, ret_error);
        if (r < 0)
                return fail(ret_error, r, "S3 client");
        *ret_dir_fd = TAKE_FD(dir_fd);
        return 0;
}

int step_fetch(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error) {
        _cleanup_s3_client_ S3Client *c = NULL;
        _cleanup_close_ int dir_fd = -1;
        _cleanup_free_ char *file = NULL, *part = NULL;
        _cleanup_(s3_get_response_done) S3GetResponse resp = {};
        Download d = { .w = w, .fd = -1 };
        char expected[65] = "", actual[65];
        FetchJob j;
        int r;

        *ret_bad = false;
        r = fetch_job_parse(job, &j, ret_error);
        if (r < 0)
                return r;
        r = fetch_acquire(&j, &dir_fd, &c, ret_error);
        if (r < 0)
                return r;
        r = worker_drop_privileges(w);
        if (r < 0)
                return fail(ret_error, r, "dropping privileges");
        if (j.checksum && (r = fetch_sidecar(c, &j, expected, ret_error)) < 0)
                return fail(ret_error, r, "checksum sidecar");
        if (asprintf(&file, "%s%s", j.sha, j.suffix) < 0 || asprintf(&part, "%s.part", file) < 0)
                return -ENOMEM;
        r = fetch_download(c, &j, dir_fd, part, &d, &resp, ret_error);
        if (r < 0 && !download_was_cut(r))
                (void) unlinkat(dir_fd, part, 0);
        if (r < 0)
                return fail(ret_error, r, "download");
        r = fetch_verify(dir_fd, &j, part, &d, expected, actual, ret_bad, ret_error);
        if (r < 0)
                return r;
        r = fetch_commit(dir_fd, &j, part, file, ret_error);
        if (r < 0)
                return r;
        r = fetch_result(&j, file, actual, d.bytes, resp.etag, ret_result);
        return r < 0 ? fail(ret_error, r, "result") : 0;
}
