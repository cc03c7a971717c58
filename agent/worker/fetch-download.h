/* fetch-download.h: one artifact streamed into DIR/<name>.part, hashed on
 * the way (SHA-256, and BLAKE2b-512 for minisign), surviving a flaky
 * network: a cut or stalled transfer resumes with "Range: bytes=N-" and
 * "If-Match: <etag>"; when the object changed (412, or a 206 with another
 * ETag, as s3rver ignores If-Match) it starts over; 5xx and SlowDown are
 * retried with backoff. Each downloaded byte is hashed once. A .part left by
 * an earlier run (with its ETag in <name>.part.etag) is re-hashed from disk
 * and continued when the object is still the same. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "s3/s3.h"

/* Requests for one download, whatever happens: with each request that
 * makes progress the backoff budget starts afresh, this bounds the rest. */
#define FETCH_REQUESTS_MAX 32U
/* Bytes an attempt must add before a failure counts as a new one. */
#define FETCH_PROGRESS_MIN (UINT64_C(64) * 1024)

typedef void (*fetch_progress_cb)(uint64_t bytes, uint64_t total, void *userdata);

typedef struct FetchDownload {
        /* in */
        S3Client *client;
        const char *bucket;
        const char *key;
        int dir_fd;
        const char *dir;               /* dir_fd's path, for messages */
        const char *part;              /* "<sha><suffix>.part" */
        const char *etag;              /* the ETag discover saw, or NULL */
        uint64_t max_size;
        bool resume;                   /* may continue a .part of an earlier run */
        bool blake2b;                  /* also compute BLAKE2b-512 */
        fetch_progress_cb progress;
        void *userdata;

        /* out */
        uint8_t sha256[32];
        uint8_t blake2b_hash[64];
        uint64_t size;
        char *etag_seen;               /* the ETag of what was downloaded */
        unsigned requests;             /* GETs of the artifact */
        unsigned retries;              /* after transient failures */
        unsigned resumes;              /* GETs with Range */
        unsigned restarts;             /* back to byte 0: object changed, Range ignored */
        uint64_t reused;               /* bytes of an earlier .part, re-hashed from disk */
        uint64_t downloaded;           /* body bytes written to the file */
        bool keep_part;                /* on failure: worth resuming next time */
} FetchDownload;
void fetch_download_done(FetchDownload *d);

/* Download into d->part. On failure d->keep_part says whether to keep the
 * .part (network trouble) or discard it. */
int fetch_download(FetchDownload *d, char **ret_error);

/* Remove d->part and its .etag note. */
void fetch_download_discard(FetchDownload *d);

/* fsync, rename d->part to file, drop the .etag note, fsync the directory. */
int fetch_download_commit(FetchDownload *d, const char *file, char **ret_error);
