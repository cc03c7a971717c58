/* s3.h: the S3 REST client used by the discover and fetch workers and by
 * `deployctl publish` (never by the supervisor): SigV4 through libcurl with
 * canonical URLs built here, ListObjectsV2 parsed with expat, streamed GETs
 * and PUTs, retries with exponential backoff and full jitter. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct S3Client S3Client;

/* Pick the credentials source (credentials.h) and set up a curl handle. No
 * network I/O: IMDS is asked on the first request. The S3Config is copied. */
int s3_client_new(const S3Config *cfg, S3Client **ret, char **ret_error);
S3Client *s3_client_free(S3Client *c);
static inline void s3_client_freep(S3Client **c) {
        s3_client_free(*c);
}
#define _cleanup_s3_client_ __attribute__((cleanup(s3_client_freep)))

/* What the client did so far: for logs, results and tests. */
typedef struct S3Stats {
        unsigned requests;             /* HTTP requests to S3 */
        unsigned retries;              /* of those, repeats after a transient failure */
        uint64_t bytes_received;       /* response bodies, error documents included */
        uint64_t bytes_sent;           /* request bodies */
        unsigned imds_requests;        /* HTTP requests to IMDS */
} S3Stats;
void s3_client_stats(const S3Client *c, S3Stats *ret);
const char *s3_client_credentials_source(const S3Client *c);

typedef struct S3Object {
        const char *key;
        const char *etag;              /* with its quotes stripped */
        uint64_t last_modified_usec;   /* realtime */
        uint64_t size;
} S3Object;

/* Called once per listed object, in listing order. Return <0 to stop. */
typedef int (*s3_object_cb)(const S3Object *o, void *userdata);

/* ListObjectsV2 of every key under prefix, following continuation tokens
 * over all pages. Each page is retried on transient failures. */
int s3_list_objects(S3Client *c, const char *bucket, const char *prefix,
                    s3_object_cb cb, void *userdata, char **ret_error);

struct S3GetResponse;

/* Called once the headers of a 200/206 answer are in, before its first body
 * byte, with status, etag, content_length and total_size filled in (0 when
 * the server did not say). Return <0 to abort the transfer. */
typedef int (*s3_headers_cb)(const struct S3GetResponse *r, void *userdata);

typedef struct S3GetRequest {
        uint64_t range_start;          /* >0: "Range: bytes=N-" */
        const char *if_match;          /* ETag, or NULL */
        const char *if_none_match;     /* ETag, or NULL */
        uint64_t max_bytes;            /* body larger than this: -EFBIG */
        s3_headers_cb on_headers;      /* or NULL; gets the data callback's userdata */
} S3GetRequest;

typedef struct S3GetResponse {
        long status;                   /* 200, 206, 304 ... */
        char *etag;                    /* malloc'd, quotes stripped, may be NULL */
        uint64_t content_length;       /* of this response's body */
        uint64_t total_size;           /* whole object (from Content-Range) */
        char *content_type;            /* malloc'd, printable ASCII, may be NULL */
} S3GetResponse;
void s3_get_response_done(S3GetResponse *r);

/* Body chunks of a 200/206 answer. Return <0 to abort the transfer. */
typedef int (*s3_data_cb)(const void *data, size_t n, void *userdata);

/* One GET of bucket/key, without retries (the caller resumes). Errors:
 *   404 -> -ENOENT (but NoSuchBucket -> -ENXIO: a configuration error),
 *   401/403 -> -EACCES, 412 -> -ESTALE (S3_CONDITION_FAILED), 416 -> -ERANGE,
 *   503 and 429 -> -EBUSY,
 *   other 5xx -> -EAGAIN, other HTTP errors -> -EIO; transport errors
 *   mapped from CURLcode (-ETIMEDOUT for a stall, -ECONNRESET for a cut,
 *   -ECONNREFUSED, -EHOSTUNREACH...).
 * 304 is success with status 304 and no body. Messages quote S3's <Code>. */
int s3_get_object(S3Client *c, const char *bucket, const char *key, const S3GetRequest *req,
                  s3_data_cb cb, void *userdata, S3GetResponse *ret_response, char **ret_error);

/* A small object (a sidecar, a signature, a pointer) in memory, with retries. */
typedef struct S3SmallObject {
        long status;                   /* 200, or 304 when if_none_match matched */
        char *body;                    /* NUL-terminated; NULL on 304 */
        size_t len;
        char *etag;                    /* quotes stripped, may be NULL */
} S3SmallObject;
void s3_small_object_done(S3SmallObject *o);

int s3_get_small(S3Client *c, const char *bucket, const char *key, const char *if_none_match,
                 size_t max_bytes, S3SmallObject *ret, char **ret_error);

/* The largest object a single PUT may create. */
#define S3_PUT_MAX (UINT64_C(5) << 30)

/* PUT size bytes read from fd (from offset 0, with pread: the offset of fd
 * is not used) or from memory, streamed with "x-amz-content-sha256:
 * UNSIGNED-PAYLOAD", retried on transient failures. More than S3_PUT_MAX:
 * -EFBIG. ret_etag (may be NULL) gets the new object's ETag. */
int s3_put_file(S3Client *c, const char *bucket, const char *key, int fd, uint64_t size,
                char **ret_etag, char **ret_error);
int s3_put_data(S3Client *c, const char *bucket, const char *key, const void *data, size_t n,
                char **ret_etag, char **ret_error);

/* S3 conditional writes, for read-modify-write of small objects (the
 * pointer): at most one condition. */
typedef struct S3PutCondition {
        const char *if_match;          /* the ETag the object must still have, or NULL */
        bool if_none_match;            /* the object must not exist: "If-None-Match: *" */
} S3PutCondition;

/* s3_put_data() under a condition. When the condition does not hold, nothing
 * is written and the result is S3_CONDITION_FAILED (-ESTALE): S3's 412
 * PreconditionFailed, its 409 ConditionalRequestConflict (another
 * conditional write to the key was under way), or, for if_match, the 404
 * NoSuchKey S3 answers when the object is gone. A retry after a lost answer
 * can meet the ETag our own first attempt created: a 412 after a transient
 * failure is therefore checked by reading the object back, and counts as
 * success when it holds exactly our bytes. */
#define S3_CONDITION_FAILED (-ESTALE)
int s3_put_data_if(S3Client *c, const char *bucket, const char *key, const void *data, size_t n,
                   const S3PutCondition *cond, char **ret_etag, char **ret_error);

/* ---- retries ---- */

/* Attempts per request (the first one included). */
#define S3_RETRY_ATTEMPTS 5U

/* Connection resets, stalls, timeouts, refused or unresolved connections,
 * 5xx and SlowDown: worth another try after a pause. */
bool s3_error_is_transient(int r);

typedef struct S3Backoff {
        unsigned failures;             /* transient failures in a row */
        uint64_t slept_usec;           /* total */
} S3Backoff;

/* After failure r: when r is transient and attempts remain, sleep a full
 * jitter backoff and return 0; else return r. */
int s3_backoff_wait(S3Backoff *b, int r);

/* The pause before retry number failures (1, 2, ...): uniform in
 * [0, min(cap, base * 2^(failures-1))], drawn from random; the base is
 * longer for -EBUSY (throttling). Exported for the unit tests. */
uint64_t s3_backoff_delay(unsigned failures, int r, uint64_t random);

/* ---- canonical URLs (curl 7.88 signs path and query as
 * given, unsorted and unencoded), exported for the unit tests ---- */

/* Percent-encode everything but A-Za-z0-9-._~ as uppercase %XX; '/' is kept
 * when keep_slash. */
char *s3_uri_encode(const char *s, bool keep_slash);

typedef struct S3QueryParam {
        const char *name;
        const char *value;             /* NULL or "": "name=" */
} S3QueryParam;

/* https://bucket.s3.region.amazonaws.com/key?sorted&encoded, or the
 * endpoint with path style /bucket/key. */
int s3_build_url(const S3Config *cfg, const char *bucket, const char *key,
                 const S3QueryParam *params, size_t n_params, char **ret_url);
