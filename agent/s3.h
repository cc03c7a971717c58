/* s3.h: the S3 REST client used by the discover and fetch workers (never by
 * the supervisor): SigV4 through libcurl with canonical URLs built here,
 * ListObjectsV2 parsed with expat, streamed GETs. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct S3Client S3Client;

/* Resolve credentials (static, environment; IMDS later) and set up a curl
 * handle. The S3Config is copied. */
int s3_client_new(const S3Config *cfg, S3Client **ret, char **ret_error);
S3Client *s3_client_free(S3Client *c);
static inline void s3_client_freep(S3Client **c) {
        s3_client_free(*c);
}
#define _cleanup_s3_client_ __attribute__((cleanup(s3_client_freep)))

typedef struct S3Object {
        const char *key;
        const char *etag;              /* with its quotes stripped */
        uint64_t last_modified_usec;   /* realtime */
        uint64_t size;
} S3Object;

/* Called once per listed object, in listing order. Return <0 to stop. */
typedef int (*s3_object_cb)(const S3Object *o, void *userdata);

/* ListObjectsV2 of every key under prefix, following continuation tokens
 * over all pages. */
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
} S3GetResponse;
void s3_get_response_done(S3GetResponse *r);

/* Body chunks of a 200/206 answer. Return <0 to abort the transfer. */
typedef int (*s3_data_cb)(const void *data, size_t n, void *userdata);

/* GET bucket/key. 404 -> -ENOENT (but NoSuchBucket -> -ENXIO: a
 * configuration error, never "not published yet"), 403 -> -EACCES, 412 -> -ESTALE,
 * other HTTP errors -> -EIO, transport errors mapped from CURLcode
 * (-ETIMEDOUT, -ECONNRESET, -EHOSTUNREACH...). 304 is success with
 * status 304 and no body. The error message quotes S3's <Code>. */
int s3_get_object(S3Client *c, const char *bucket, const char *key, const S3GetRequest *req,
                  s3_data_cb cb, void *userdata, S3GetResponse *ret_response, char **ret_error);

/* GET a small object (a sidecar, a pointer) into a NUL-terminated buffer. */
int s3_get_small(S3Client *c, const char *bucket, const char *key, size_t max_bytes,
                 char **ret_body, size_t *ret_len, char **ret_error);

/* Canonical URL building (FIELD-NOTES: curl 7.88 signs path and query as
 * given). Exported for the unit tests. */

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
