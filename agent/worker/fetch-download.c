/* fetch-download.c: the resumable, hashed download of one artifact. The
 * hash states live in memory for the whole run, so a resume after a cut
 * just goes on feeding them: a downloaded byte is hashed exactly once. Only
 * a .part from an earlier run is read back (from disk, not the network) to
 * rebuild the hash states before continuing. */
#define _GNU_SOURCE
#include "worker/fetch-download.h"

#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <sys/stat.h>

#include "common/fs-space.h"
#include "common/util.h"

#define PROGRESS_INTERVAL_USEC (250 * USEC_PER_MSEC)
#define ETAG_NOTE_MAX 256
#define REHASH_CHUNK (64U * 1024)

typedef struct Stream {
        FetchDownload *d;
        int fd;
        crypto_hash_sha256_state sha;
        crypto_generichash_state b2;
        uint64_t bytes;                /* in the file and hashed */
        uint64_t total;                /* 0: unknown */
        char *etag;                    /* the object version the bytes belong to */
        char *note;                    /* "<part>.etag" */
        uint64_t reported_usec;
        int write_error;
        unsigned changes;              /* times the object changed under us */
} Stream;

static void stream_done(Stream *s) {
        if (s->fd >= 0)
                close(s->fd);
        free(s->etag);
        free(s->note);
}

void fetch_download_done(FetchDownload *d) {
        free(d->etag_seen);
        d->etag_seen = NULL;
}

static void hash_init(Stream *s) {
        crypto_hash_sha256_init(&s->sha);
        if (s->d->blake2b)
                crypto_generichash_init(&s->b2, NULL, 0, 64);
}

static void hash_update(Stream *s, const void *data, size_t n) {
        crypto_hash_sha256_update(&s->sha, data, n);
        if (s->d->blake2b)
                crypto_generichash_update(&s->b2, data, n);
}

static void progress(Stream *s, bool force) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (!s->d->progress || (!force && now - s->reported_usec < PROGRESS_INTERVAL_USEC))
                return;
        s->d->progress(s->bytes, s->total, s->d->userdata);
        s->reported_usec = now;
}

/* Back to an empty file: the note goes first, so a crash in between
 * never leaves old bytes under a new ETag. */
static int stream_reset(Stream *s) {
        (void) unlinkat(s->d->dir_fd, s->note, 0);
        if (ftruncate(s->fd, 0) < 0)
                return -errno;
        hash_init(s);
        s->bytes = 0;
        s->d->reused = 0;
        free(s->etag);
        s->etag = NULL;
        return 0;
}

static int stream_set_etag(Stream *s, const char *etag) {
        _cleanup_close_ int fd = -1;
        char *copy;

        if (streq_ptr(s->etag, etag))
                return 0;
        copy = etag ? strdup(etag) : NULL;
        if (etag && !copy)
                return -ENOMEM;
        free(s->etag);
        s->etag = copy;
        if (!etag)
                return 0;              /* nothing to resume against */
        fd = openat(s->d->dir_fd, s->note, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        return loop_write(fd, etag, strlen(etag));
}

static char *read_note(Stream *s) {
        _cleanup_close_ int fd = openat(s->d->dir_fd, s->note, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char buf[ETAG_NOTE_MAX + 1];
        ssize_t n;

        if (fd < 0)
                return NULL;
        n = read(fd, buf, ETAG_NOTE_MAX);
        if (n <= 0 || memchr(buf, '\0', (size_t) n))
                return NULL;
        return strndup(buf, (size_t) n);
}

/* Re-hash what an earlier run left, from disk. */
static int rehash(Stream *s, uint64_t size) {
        _cleanup_free_ uint8_t *buf = malloc(REHASH_CHUNK);
        uint64_t done = 0;
        ssize_t n;

        if (!buf)
                return -ENOMEM;
        while (done < size) {
                n = pread(s->fd, buf, REHASH_CHUNK, (off_t) done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                hash_update(s, buf, (size_t) n);
                done += (uint64_t) n;
        }
        s->bytes = size;
        return 0;
}

/* Continue a .part of an earlier run when it belongs to the object that is
 * there now; else start from nothing. */
static int stream_open(Stream *s) {
        FetchDownload *d = s->d;
        _cleanup_free_ char *saved = NULL;
        struct stat st;

        s->fd = openat(d->dir_fd, d->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->fd < 0)
                return -errno;
        hash_init(s);
        if (d->resume)
                saved = read_note(s);
        if (!saved || (d->etag && !streq(saved, d->etag)) || fstat(s->fd, &st) < 0 ||
            !S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t) st.st_size > d->max_size)
                return stream_reset(s);
        s->etag = TAKE_PTR(saved);
        d->reused = (uint64_t) st.st_size;
        return rehash(s, (uint64_t) st.st_size);
}

static int on_headers(const S3GetResponse *r, void *userdata) {
        Stream *s = userdata;
        FetchDownload *d = s->d;
        int k;

        if (r->status == 200 && s->bytes > 0) {
                /* The Range was ignored: this body starts at byte 0. */
                d->restarts++;
                k = stream_reset(s);
                if (k < 0)
                        return (s->write_error = k);
        }
        if ((d->etag && !streq_ptr(r->etag, d->etag)) || (s->bytes > 0 && !streq_ptr(r->etag, s->etag)))
                return -ESTALE;
        if (r->total_size > d->max_size)
                return -EFBIG;
        k = stream_set_etag(s, r->etag);
        if (k < 0)
                return (s->write_error = k);
        s->total = r->total_size;
        progress(s, true);
        return 0;
}

static int on_data(const void *data, size_t n, void *userdata) {
        Stream *s = userdata;
        const uint8_t *p = data;
        size_t left = n;
        ssize_t k;

        while (left > 0) {
                k = pwrite(s->fd, p, left, (off_t) s->bytes);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return (s->write_error = k < 0 ? -errno : -EIO);
                hash_update(s, p, (size_t) k);
                s->bytes += (uint64_t) k;
                s->d->downloaded += (uint64_t) k;
                p += k;
                left -= (size_t) k;
        }
        progress(s, false);
        return 0;
}

static int attempt(Stream *s, char **ret_error) {
        _cleanup_(s3_get_response_done) S3GetResponse resp = {};
        FetchDownload *d = s->d;
        S3GetRequest req = {
                .range_start = s->bytes,
                .if_match = s->bytes > 0 ? s->etag : d->etag,
                .max_bytes = d->max_size,
                .on_headers = on_headers,
        };
        int r;

        d->requests++;
        if (s->bytes > 0)
                d->resumes++;
        s->write_error = 0;
        r = s3_get_object(d->client, d->bucket, d->key, &req, on_data, s, &resp, ret_error);
        if (r < 0 && s->write_error < 0) {
                char space[FS_SPACE_TEXT_MAX], at[16];

                /* the .part is discarded (fetch_download): freeing space is enough */
                fs_space_describe_fd(d->dir_fd, d->dir, s->total, space);
                fs_format_bytes(s->bytes, at);
                return error_set(ret_error, s->write_error, "writing %s/%s after %s: %s (%s)", d->dir, d->part,
                                 at, strerror(-s->write_error), space);
        }
        if (r < 0)
                return r;
        if (resp.status != 200 && resp.status != 206)
                return error_set(ret_error, -EIO, "GET s3://%s/%s: unexpected HTTP %ld", d->bucket, d->key,
                                 resp.status);
        if (s->total > 0 && s->bytes != s->total)
                return error_set(ret_error, -ECONNRESET, "GET s3://%s/%s: %" PRIu64 " of %" PRIu64 " bytes",
                                 d->bucket, d->key, s->bytes, s->total);
        return 0;
}

/* The object is not the one the bytes so far came from: start over, once
 * when discover told us which ETag to expect (a second change means a new
 * upload, which the next poll picks up), twice otherwise. */
static int restart_after_change(Stream *s, int r, char **ret_error) {
        FetchDownload *d = s->d;

        if (++s->changes > (d->etag ? 1U : 2U))
                return error_set(ret_error, -ESTALE,
                                 "s3://%s/%s changed during the download (expected ETag %s); "
                                 "the next poll picks up the new object", d->bucket, d->key,
                                 d->etag ?: strempty(s->etag));
        d->restarts++;
        r = stream_reset(s);
        return r < 0 ? error_set(ret_error, r, "truncating %s/%s: %s", d->dir, d->part, strerror(-r)) : 0;
}

static int download_loop(Stream *s, char **ret_error) {
        FetchDownload *d = s->d;
        S3Backoff backoff = {};
        uint64_t before;
        int r;

        for (;;) {
                if (d->requests >= FETCH_REQUESTS_MAX)
                        return error_set(ret_error, -ETIMEDOUT, "GET s3://%s/%s: gave up after %u requests (%s)",
                                         d->bucket, d->key, d->requests, strempty(ret_error ? *ret_error : NULL));
                before = s->bytes;
                r = attempt(s, ret_error);
                if (r >= 0)
                        return 0;
                if (r == -ESTALE || r == -ERANGE) {
                        r = restart_after_change(s, r, ret_error);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (s->write_error < 0 || !s3_error_is_transient(r))
                        return r;
                /* progress: a fresh budget; but a few bytes before each
                 * stall or cut (a slow loris, a server that cuts every
                 * answer short) are no progress, or the fetch would go
                 * on until step_timeout and fail without saying why */
                if (s->bytes >= before + FETCH_PROGRESS_MIN)
                        backoff.failures = 0;
                if (!s->etag && s->bytes > 0 && (r = stream_reset(s)) < 0)
                        return r;              /* no ETag to resume against */
                r = s3_backoff_wait(&backoff, r);
                if (r < 0)
                        return r;
                d->retries++;
        }
}

int fetch_download(FetchDownload *d, char **ret_error) {
        _cleanup_(stream_done) Stream s = { .d = d, .fd = -1 };
        int r;

        s.note = strdup_printf("%s.etag", d->part);
        if (!s.note)
                return -ENOMEM;
        if (sodium_init() < 0)
                return error_set(ret_error, -EIO, "cannot initialize libsodium");
        r = stream_open(&s);
        if (r < 0)
                return error_set(ret_error, r, "cannot open %s/%s: %s", d->dir, d->part, strerror(-r));
        r = download_loop(&s, ret_error);
        d->keep_part = r < 0 && s.bytes > 0 && s.etag && s3_error_is_transient(r) && s.write_error == 0;
        if (r >= 0 && fsync(s.fd) < 0)
                r = error_set(ret_error, -errno, "fsync %s/%s: %m", d->dir, d->part);
        close(TAKE_FD(s.fd));
        if (r < 0)
                return r;
        crypto_hash_sha256_final(&s.sha, d->sha256);
        if (d->blake2b)
                crypto_generichash_final(&s.b2, d->blake2b_hash, sizeof(d->blake2b_hash));
        d->size = s.bytes;
        d->etag_seen = TAKE_PTR(s.etag);
        progress(&s, true);
        return 0;
}

void fetch_download_discard(FetchDownload *d) {
        _cleanup_free_ char *note = strdup_printf("%s.etag", d->part);

        (void) unlinkat(d->dir_fd, d->part, 0);
        if (note)
                (void) unlinkat(d->dir_fd, note, 0);
}

int fetch_download_commit(FetchDownload *d, const char *file, char **ret_error) {
        _cleanup_free_ char *note = strdup_printf("%s.etag", d->part);

        if (!note)
                return -ENOMEM;
        if (renameat(d->dir_fd, d->part, d->dir_fd, file) < 0)
                return error_set(ret_error, -errno, "rename %s/%s: %m", d->dir, d->part);
        (void) unlinkat(d->dir_fd, note, 0);
        if (fsync(d->dir_fd) < 0)
                return error_set(ret_error, -errno, "fsync %s: %m", d->dir);
        return 0;
}
