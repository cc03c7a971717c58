/* s3-internal.h: what the S3 client's files (s3.c, s3-http.c, s3-ops.c,
 * s3-retry.c) share. No other module includes this. */
#pragma once

#include <curl/curl.h>

#include "s3/credentials.h"
#include "s3/s3.h"

struct S3Client {
        CURL *curl;
        S3Config cfg;                  /* region, endpoint, addressing; no secrets */
        CredentialsProvider *creds;
        char *sigv4;                   /* "aws:amz:REGION:s3" */
        long stall_sec;                /* low-speed time */
        long low_speed_limit;          /* bytes/s */
        S3Stats stats;
        char errbuf[CURL_ERROR_SIZE];
};

/* A request body: size bytes from fd (pread) or from data. */
typedef struct S3Upload {
        int fd;
        const char *data;
        uint64_t size;
        uint64_t offset;               /* next byte to send */
} S3Upload;

/* One request's state, shared by the header, body and read callbacks. */
typedef struct S3Transfer {
        const S3GetRequest *req;       /* limits and conditions (a PUT has one too) */
        S3Upload *upload;              /* PUT; NULL for GET */
        s3_data_cb cb;                 /* NULL: discard a 2xx body */
        void *userdata;
        S3GetResponse resp;
        bool have_length;
        bool have_range;
        uint64_t range_first;
        uint64_t received;             /* 2xx body bytes handed to cb */
        long timeout_sec;              /* whole request; 0: none */
        char *location;                /* of a 3xx, printable ASCII */
        int abort_r;                   /* why we stopped curl */
        const char *abort_why;
        char *body;                    /* error answers only, capped */
        size_t body_len;
} S3Transfer;
void s3_transfer_done(S3Transfer *t);

/* s3-http.c: curl callbacks and the mapping of answers to -errno. */
size_t s3_on_header(char *buf, size_t size, size_t n, void *userdata);
size_t s3_on_body(char *buf, size_t size, size_t n, void *userdata);
int s3_transfer_result(S3Client *c, S3Transfer *t, CURLcode e, const char *what, char **ret_error);

/* s3.c: "GET s3://bucket/key" for messages and the request's URL, once
 * the key (1..1024 bytes) and the bucket are known to be valid. */
int s3_object_target(S3Client *c, const char *method, const char *bucket, const char *key, char **ret_what,
                     char **ret_url, char **ret_error);

/* s3.c: run one signed request (GET, or PUT when t->upload is set) with
 * the current credentials; timeout_sec 0: no overall limit. */
int s3_perform(S3Client *c, const char *url, S3Transfer *t, long timeout_sec, const char *what,
               char **ret_error);
