/* s3-ops.c: the S3 operations built on one request: small GETs into
 * memory, ListObjectsV2 over all pages, streamed PUTs. Each request is
 * retried on transient failures (s3-retry.c); a retry repeats exactly the
 * request that failed, never the ones before it. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <sys/param.h>

#include "s3/s3-internal.h"
#include "s3/s3-list.h"
#include "common/util.h"

#define SMALL_TIMEOUT_SEC 120L         /* whole request: listing pages, sidecars */
#define PUT_TIMEOUT_SEC 0L             /* none: the low-speed limit catches stalls */
#define PUT_ANSWER_MAX (64U * 1024)
#define LIST_PAGE_MAX (8U * 1024 * 1024)
#define LIST_PAGES_MAX 100000U         /* 100 million keys at 1000 a page */

typedef struct Buffer {
        char *data;
        size_t len;
        size_t allocated;
} Buffer;

static void buffer_done(Buffer *b) {
        free(b->data);
        *b = (Buffer) {};
}

static int buffer_append(const void *data, size_t n, void *userdata) {
        Buffer *b = userdata;
        size_t need = b->len + n + 1;
        char *p;

        if (need > b->allocated) {
                size_t a = MAX(need, MAX(b->allocated * 2, (size_t) 4096));
                p = realloc(b->data, a);
                if (!p)
                        return -ENOMEM;
                b->data = p;
                b->allocated = a;
        }
        memcpy(b->data + b->len, data, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

void s3_small_object_done(S3SmallObject *o) {
        free(o->body);
        free(o->etag);
        *o = (S3SmallObject) {};
}

/* One request into b, retried while transient; b restarts with each try. */
static int get_buffered(S3Client *c, const char *url, const S3GetRequest *req, const char *what,
                        Buffer *b, S3GetResponse *ret_response, char **ret_error) {
        S3Backoff backoff = {};
        int r;

        for (;;) {
                _cleanup_(s3_transfer_done) S3Transfer t = { .req = req, .cb = buffer_append, .userdata = b };

                buffer_done(b);
                r = s3_perform(c, url, &t, SMALL_TIMEOUT_SEC, what, ret_error);
                if (r >= 0) {
                        *ret_response = t.resp;
                        t.resp = (S3GetResponse) {};
                        return 0;
                }
                if (s3_backoff_wait(&backoff, r) < 0)
                        return r;
                c->stats.retries++;
        }
}

int s3_get_small(S3Client *c, const char *bucket, const char *key, const char *if_none_match,
                 size_t max_bytes, S3SmallObject *ret, char **ret_error) {
        _cleanup_(buffer_done) Buffer b = {};
        _cleanup_(s3_get_response_done) S3GetResponse resp = {};
        _cleanup_free_ char *url = NULL, *what = NULL;
        S3GetRequest req = { .max_bytes = max_bytes, .if_none_match = if_none_match };
        int r;

        r = s3_object_target(c, "GET", bucket, key, &what, &url, ret_error);
        if (r < 0)
                return r;
        r = get_buffered(c, url, &req, what, &b, &resp, ret_error);
        if (r < 0)
                return r;
        if (resp.status != 304 && !b.data && !(b.data = strdup("")))
                return -ENOMEM;
        *ret = (S3SmallObject) {
                .status = resp.status,
                .body = resp.status == 304 ? NULL : TAKE_PTR(b.data),
                .len = resp.status == 304 ? 0 : b.len,
                .etag = TAKE_PTR(resp.etag),
        };
        return 0;
}

/* ---- listing ---- */

/* A 200 that is not XML (a captive portal's or a load balancer's HTML
 * page) is named by its Content-Type rather than by the XML parser's
 * complaint about its first line. */
static int check_list_type(const char *content_type, const char *what, char **ret_error) {
        _cleanup_free_ char *type = NULL;
        int r;

        r = s3_content_type_is_xml(content_type, &type);
        if (r != 0)
                return r < 0 ? r : 0;
        return error_set(ret_error, -EBADMSG, "%s: ListObjectsV2 returned %s, not XML", what,
                         isempty(type) ? "an empty Content-Type" : type);
}

/* One ListObjectsV2 page into *ret (NUL-terminated, at most LIST_PAGE_MAX). */
static int list_page(S3Client *c, const char *bucket, const char *prefix, const char *token,
                     const char *what, Buffer *ret, char **ret_error) {
        _cleanup_(s3_get_response_done) S3GetResponse resp = {};
        _cleanup_free_ char *url = NULL;
        S3QueryParam params[] = {
                { "list-type", "2" },
                { "prefix", prefix },
                { "continuation-token", token },
        };
        S3GetRequest req = { .max_bytes = LIST_PAGE_MAX };
        int r;

        r = s3_build_url(&c->cfg, bucket, NULL, params, token ? 3 : 2, &url);
        if (r < 0)
                return error_set(ret_error, r, "%s: %s", what,
                                 r == -EINVAL ? "invalid bucket or endpoint" : strerror(-r));
        r = get_buffered(c, url, &req, what, ret, &resp, ret_error);
        if (r < 0)
                return r;
        r = check_list_type(resp.content_type, what, ret_error);
        if (r < 0)
                return r;
        if (!ret->data && !(ret->data = strdup("")))
                return -ENOMEM;
        return 0;
}

/* After a truncated page: its token must be there and new. */
static int next_token(S3TokenSet *seen, S3ListPage *page, unsigned n, const char *what, char **ret_token,
                      char **ret_error) {
        int r;

        if (isempty(page->next_token))
                return error_set(ret_error, -EBADMSG, "%s: truncated page %u without a NextContinuationToken",
                                 what, n + 1);
        r = s3_token_set_add(seen, page->next_token);
        if (r < 0)
                return r;
        if (r > 0)
                return error_set(ret_error, -EBADMSG, "%s: continuation token repeated (page %u gave one "
                                 "an earlier page gave): the listing would never end", what, n + 1);
        free(*ret_token);
        *ret_token = TAKE_PTR(page->next_token);
        return 0;
}

int s3_list_objects(S3Client *c, const char *bucket, const char *prefix,
                    s3_object_cb cb, void *userdata, char **ret_error) {
        _cleanup_free_ char *token = NULL, *what = NULL;
        _cleanup_(s3_token_set_done) S3TokenSet seen = {};
        int r;

        what = strdup_printf("LIST s3://%s/%s", strempty(bucket), strempty(prefix));
        if (!what)
                return -ENOMEM;
        for (unsigned n = 0;; n++) {
                _cleanup_(buffer_done) Buffer b = {};
                _cleanup_(s3_list_page_done) S3ListPage page = {};

                if (n >= LIST_PAGES_MAX)
                        return error_set(ret_error, -E2BIG, "%s: more than %u pages", what, LIST_PAGES_MAX);
                r = list_page(c, bucket, strempty(prefix), token, what, &b, ret_error);
                if (r < 0)
                        return r;
                r = s3_list_parse(b.data, b.len, cb, userdata, &page, ret_error);
                if (r < 0 && ret_error && *ret_error)      /* the parser's complaint */
                        return error_set(ret_error, r, "%s: %s", what, *ret_error);
                if (r < 0)                                 /* cb said stop */
                        return error_set(ret_error, r, "%s: stopped: %s", what, strerror(-r));
                if (!page.truncated)
                        return 0;
                r = next_token(&seen, &page, n, what, &token, ret_error);
                if (r < 0)
                        return r;
        }
}

/* ---- uploads ---- */

/* After a transient failure the first attempt may have been written with
 * its answer lost: a failed condition on the retry is then our own write
 * when the object now holds exactly our bytes. */
static bool put_was_ours(S3Client *c, const char *bucket, const char *key, const S3Upload *u, char **ret_etag) {
        S3SmallObject o = {};
        bool same;

        if (!u->data || s3_get_small(c, bucket, key, NULL, (size_t) u->size, &o, NULL) < 0)
                same = false;
        else
                same = o.len == u->size && (o.len == 0 || memcmp(o.body, u->data, o.len) == 0);
        if (same && ret_etag)
                *ret_etag = TAKE_PTR(o.etag);
        s3_small_object_done(&o);
        return same;
}

/* r: how a conditional PUT failed. 0: it was ours after all (see above). */
static int condition_result(S3Client *c, const char *bucket, const char *key, const S3Upload *u,
                            const S3PutCondition *cond, bool retried, int r, const char *what, char **ret_etag,
                            char **ret_error) {
        if (r == -ENOENT && cond->if_match)
                r = error_set(ret_error, S3_CONDITION_FAILED, "%s: the object is gone (If-Match on a missing key)",
                              what);
        if (r != S3_CONDITION_FAILED || !retried || !put_was_ours(c, bucket, key, u, ret_etag))
                return r;
        if (ret_error) {
                free(*ret_error);
                *ret_error = NULL;
        }
        return 0;
}

static int put_body(S3Client *c, const char *bucket, const char *key, S3Upload *u, const S3PutCondition *cond,
                    char **ret_etag, char **ret_error) {
        _cleanup_free_ char *url = NULL, *what = NULL;
        S3GetRequest req = {
                .max_bytes = PUT_ANSWER_MAX,
                .if_match = cond ? cond->if_match : NULL,
                .if_none_match = cond && cond->if_none_match ? "*" : NULL,
        };
        S3Backoff backoff = {};
        bool retried = false;
        int r;

        r = s3_object_target(c, "PUT", bucket, key, &what, &url, ret_error);
        if (r < 0)
                return r;
        if (u->size > S3_PUT_MAX)
                return error_set(ret_error, -EFBIG,
                                 "%s: %" PRIu64 " bytes is more than a single PUT takes (5 GiB); "
                                 "multipart upload is not supported", what, u->size);
        if (req.if_match && req.if_none_match)
                return error_set(ret_error, -EINVAL, "%s: If-Match and If-None-Match together", what);
        for (;;) {
                _cleanup_(s3_transfer_done) S3Transfer t = { .req = &req, .upload = u };

                r = s3_perform(c, url, &t, PUT_TIMEOUT_SEC, what, ret_error);
                if (r >= 0 && t.resp.status != 200)
                        r = error_set(ret_error, -EIO, "%s: unexpected HTTP %ld", what, t.resp.status);
                if (r >= 0) {
                        if (ret_etag)
                                *ret_etag = TAKE_PTR(t.resp.etag);
                        return 0;
                }
                if (cond)
                        r = condition_result(c, bucket, key, u, cond, retried, r, what, ret_etag, ret_error);
                if (r >= 0 || s3_backoff_wait(&backoff, r) < 0)
                        return r;
                retried = true;
                c->stats.retries++;
        }
}

int s3_put_file(S3Client *c, const char *bucket, const char *key, int fd, uint64_t size,
                char **ret_etag, char **ret_error) {
        S3Upload u = { .fd = fd, .size = size };

        return put_body(c, bucket, key, &u, NULL, ret_etag, ret_error);
}

int s3_put_data(S3Client *c, const char *bucket, const char *key, const void *data, size_t n,
                char **ret_etag, char **ret_error) {
        S3Upload u = { .fd = -1, .data = data ?: "", .size = n };

        return put_body(c, bucket, key, &u, NULL, ret_etag, ret_error);
}

int s3_put_data_if(S3Client *c, const char *bucket, const char *key, const void *data, size_t n,
                   const S3PutCondition *cond, char **ret_etag, char **ret_error) {
        S3Upload u = { .fd = -1, .data = data ?: "", .size = n };

        return put_body(c, bucket, key, &u, cond, ret_etag, ret_error);
}
