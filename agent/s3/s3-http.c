/* s3-http.c: the S3 client's curl callbacks (status, headers, bodies) and
 * the mapping of what came back (CURLcode, HTTP status, S3 <Error>) to
 * -errno and one explaining message. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <strings.h>
#include <sys/param.h>

#include "s3/s3-internal.h"
#include "s3/s3-list.h"
#include "common/util.h"

#define ERROR_BODY_MAX (64U * 1024)

void s3_get_response_done(S3GetResponse *r) {
        free(r->etag);
        free(r->content_type);
        *r = (S3GetResponse) {};
}

void s3_transfer_done(S3Transfer *t) {
        s3_get_response_done(&t->resp);
        free(t->body);
        t->body = NULL;
        free(t->location);
        t->location = NULL;
}

/* A server's words go into our log lines: printable ASCII only. */
static char *header_value_dup(const char *v) {
        char *s = strndup(v, 512);

        for (char *p = s; p && *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        *p = '?';
        return s;
}

static const char *parse_digits(const char *p, uint64_t *ret) {
        uint64_t v = 0;
        const char *start = p;

        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                        return NULL;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (p == start)
                return NULL;
        *ret = v;
        return p;
}

/* "bytes FIRST-LAST/TOTAL", or with a "*" total (0 here: unknown). */
static int parse_content_range(const char *v, uint64_t *ret_first, uint64_t *ret_total) {
        uint64_t first, last, total = 0;
        const char *p;

        if (strncmp(v, "bytes ", 6) != 0)
                return -EINVAL;
        p = parse_digits(v + 6, &first);
        if (!p || *p != '-')
                return -EINVAL;
        p = parse_digits(p + 1, &last);
        if (!p || *p != '/' || last < first)
                return -EINVAL;
        if (streq(p + 1, "*"))
                p += 2;
        else if (!(p = parse_digits(p + 1, &total)) || total <= last)
                return -EINVAL;
        if (*p != '\0')
                return -EINVAL;
        *ret_first = first;
        *ret_total = total;
        return 0;
}

static void transfer_abort(S3Transfer *t, int r, const char *why) {
        if (t->abort_r == 0) {
                t->abort_r = r;
                t->abort_why = why;
        }
}

/* A status line starts a new response (after a 100 Continue, say). */
static void transfer_status_line(S3Transfer *t, const char *line) {
        const char *sp = strchr(line, ' ');
        uint64_t status = 0;

        s3_get_response_done(&t->resp);
        free(t->location);
        t->location = NULL;
        t->have_length = t->have_range = false;
        if (sp)
                (void) parse_digits(sp + 1, &status);
        t->resp.status = status <= 999 ? (long) status : 0;
}

static int transfer_headers_done(S3Transfer *t) {
        S3GetResponse *r = &t->resp;

        if (r->status != 200 && r->status != 206)
                return 0;
        if (r->status == 206 && (!t->have_range || t->range_first != t->req->range_start)) {
                transfer_abort(t, -EBADMSG, "206 answer without the requested Content-Range");
                return -EBADMSG;
        }
        if (r->status == 200)
                r->total_size = r->content_length;
        if (t->have_length && r->content_length > t->req->max_bytes) {
                transfer_abort(t, -EFBIG, NULL);
                return -EFBIG;
        }
        if (t->req->on_headers) {
                int k = t->req->on_headers(r, t->userdata);
                if (k < 0) {
                        transfer_abort(t, k, NULL);
                        return k;
                }
        }
        return 0;
}

static void transfer_header(S3Transfer *t, const char *name, const char *value) {
        uint64_t v;
        const char *end;

        if (strcasecmp(name, "etag") == 0) {
                free(t->resp.etag);
                t->resp.etag = s3_etag_unquote(value, strlen(value));
        } else if (strcasecmp(name, "content-length") == 0) {
                end = parse_digits(value, &v);
                if (end && *end == '\0') {
                        t->have_length = true;
                        t->resp.content_length = v;
                }
        } else if (strcasecmp(name, "content-range") == 0)
                t->have_range = parse_content_range(value, &t->range_first, &t->resp.total_size) >= 0;
        else if (strcasecmp(name, "content-type") == 0) {
                free(t->resp.content_type);
                t->resp.content_type = header_value_dup(value);
        } else if (strcasecmp(name, "location") == 0) {
                free(t->location);
                t->location = header_value_dup(value);
        }
}

size_t s3_on_header(char *buf, size_t size, size_t n, void *userdata) {
        S3Transfer *t = userdata;
        char line[8192], *value, *end;
        size_t len = n;

        while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
                len--;
        if (len == 0)
                return transfer_headers_done(t) < 0 ? 0 : n;
        if (len >= sizeof(line))
                return n;              /* none of the headers we read is this long */
        memcpy(line, buf, len);
        line[len] = '\0';
        if (strncmp(line, "HTTP/", 5) == 0) {
                transfer_status_line(t, line);
                return n;
        }
        value = strchr(line, ':');
        if (!value)
                return n;
        *value++ = '\0';
        value += strspn(value, " \t");
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
                *--end = '\0';
        transfer_header(t, line, value);
        return n;
}

static void keep_error_body(S3Transfer *t, const char *buf, size_t n) {
        size_t m = MIN(n, ERROR_BODY_MAX - t->body_len);

        if (m > 0 && !t->body)
                t->body = malloc(ERROR_BODY_MAX);
        if (m > 0 && t->body) {
                memcpy(t->body + t->body_len, buf, m);
                t->body_len += m;
        }
}

size_t s3_on_body(char *buf, size_t size, size_t n, void *userdata) {
        S3Transfer *t = userdata;
        int r;

        if (t->resp.status != 200 && t->resp.status != 206) {
                keep_error_body(t, buf, n);    /* an error document: for the message */
                return n;
        }
        if (n > t->req->max_bytes - t->received) {
                transfer_abort(t, -EFBIG, NULL);
                return CURL_WRITEFUNC_ERROR;
        }
        t->received += n;
        r = t->cb ? t->cb(buf, n, t->userdata) : 0;
        if (r < 0) {
                transfer_abort(t, r, NULL);
                return CURL_WRITEFUNC_ERROR;
        }
        return n;
}

static int curl_to_errno(CURLcode e) {
        switch (e) {
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return -ECONNRESET;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EINVAL;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
                return -EPROTO;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        default:
                return -EIO;
        }
}

static int http_to_errno(long status) {
        switch (status) {
        case 404:
                return -ENOENT;
        case 401:
        case 403:
                return -EACCES;
        case 412:
                return -ESTALE;
        case 416:
                return -ERANGE;
        case 429:
        case 503:
                return -EBUSY;         /* SlowDown: back off harder */
        default:
                return status >= 500 ? -EAGAIN : -EIO;
        }
}

static int http_error(const S3Transfer *t, const char *what, char **ret_error) {
        _cleanup_free_ char *code = NULL, *message = NULL;
        long status = t->resp.status;
        int r = http_to_errno(status);

        if (t->body_len > 0)
                (void) s3_error_parse(t->body, t->body_len, &code, &message);
        /* A missing bucket is a configuration error, not a missing object:
         * "pointer not published yet" must not hide it. */
        if (status == 404 && streq_ptr(code, "NoSuchBucket"))
                r = -ENXIO;
        if (streq_ptr(code, "SlowDown"))
                r = -EBUSY;
        if (status >= 300 && status < 400)
                return error_set(ret_error, r, "%s: HTTP %ld%s%s redirect to %s: not followed (is [s3] "
                                 "region or endpoint the bucket's own?)",
                                 what, status, code ? " " : "", strempty(code), t->location ?: "nowhere");
        /* Another conditional write to the same key was under way: for the
         * caller the same as a failed condition (read again, decide again). */
        if (status == 409 && streq_ptr(code, "ConditionalRequestConflict"))
                r = -ESTALE;
        if (code)
                return error_set(ret_error, r, "%s: HTTP %ld %s%s%s", what, status, code,
                                 message ? ": " : "", strempty(message));
        return error_set(ret_error, r, "%s: HTTP %ld", what, status);
}

/* Which limit ended the request: the connect timeout, the whole request's
 * timeout, or the low-speed limit (a slow loris, a server that accepted
 * the connection and never answers). */
static int timeout_error(S3Client *c, const S3Transfer *t, const char *what, char **ret_error) {
        curl_off_t total = 0;
        long sent = 0;

        /* no request bytes went out: it never connected (a reused
         * connection has no connect time to go by) */
        (void) curl_easy_getinfo(c->curl, CURLINFO_REQUEST_SIZE, &sent);
        (void) curl_easy_getinfo(c->curl, CURLINFO_TOTAL_TIME_T, &total);
        if (sent == 0)
                return error_set(ret_error, -ETIMEDOUT, "%s: %s", what,
                                 c->errbuf[0] ? c->errbuf : "could not connect in time");
        if (t->timeout_sec > 0 && total >= (curl_off_t) t->timeout_sec * 1000000)
                return error_set(ret_error, -ETIMEDOUT, "%s: no complete answer in %ld s (%" PRIu64
                                 " body bytes)", what, t->timeout_sec, t->received);
        if (t->resp.status == 0)
                return error_set(ret_error, -ETIMEDOUT, "%s: connected, but no answer in %ld s", what,
                                 c->stall_sec);
        return error_set(ret_error, -ETIMEDOUT, "%s: transfer slower than %ld bytes/s for %ld s "
                         "(stalled after %" PRIu64 " body bytes)", what, c->low_speed_limit, c->stall_sec,
                         t->received);
}

int s3_transfer_result(S3Client *c, S3Transfer *t, CURLcode e, const char *what, char **ret_error) {
        long status = t->resp.status;

        if (t->abort_r == -EFBIG)
                return error_set(ret_error, -EFBIG, "%s: larger than %" PRIu64 " bytes", what,
                                 t->req->max_bytes);
        if (t->abort_r < 0)
                return error_set(ret_error, t->abort_r, "%s: %s", what,
                                 t->abort_why ?: strerror(-t->abort_r));
        if (e == CURLE_OPERATION_TIMEDOUT)
                return timeout_error(c, t, what, ret_error);
        if (e != CURLE_OK)
                return error_set(ret_error, curl_to_errno(e), "%s: %s", what,
                                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(e));
        if (status != 200 && status != 206 && status != 304)
                return http_error(t, what, ret_error);
        if (!t->have_length)
                t->resp.content_length = t->received;
        if (status == 200 && !t->upload)
                t->resp.total_size = t->resp.content_length;
        return 0;
}
