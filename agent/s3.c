/* s3.c: the S3 client of the discover and fetch workers. Credentials are
 * resolved once; every request goes through one libcurl easy handle (so the
 * connection is reused) and is signed by curl's SigV4 over a canonical URL
 * built here, because curl 7.88 signs the path and query exactly as given. */
#define _GNU_SOURCE
#include "s3.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <strings.h>
#include <sys/param.h>

#include "s3-list.h"
#include "util.h"

#define CONNECT_TIMEOUT_SEC 10L
#define LOW_SPEED_LIMIT_BPS 1L         /* below this for LOW_SPEED_TIME_SEC: abort */
#define LOW_SPEED_TIME_SEC 60L
#define SMALL_TIMEOUT_SEC 120L         /* whole request: listing pages, sidecars */
#define LIST_PAGE_MAX (8U * 1024 * 1024)
#define LIST_PAGES_MAX 100000U         /* 100 million keys at 1000 a page */
#define ERROR_BODY_MAX (64U * 1024)

struct S3Client {
        CURL *curl;
        S3Config cfg;                  /* deep copy, credentials resolved into it */
        char *sigv4;                   /* "aws:amz:REGION:s3" */
        char errbuf[CURL_ERROR_SIZE];
};

/* One request's state, shared by the header and body callbacks. */
typedef struct Transfer {
        const S3GetRequest *req;
        s3_data_cb cb;
        void *userdata;
        S3GetResponse resp;
        bool have_length;
        bool have_range;
        uint64_t range_first;
        uint64_t received;             /* body bytes handed to cb */
        int abort_r;                   /* why we stopped curl */
        const char *abort_why;
        char *body;                    /* error answers only, capped */
        size_t body_len;
} Transfer;

typedef struct Buffer {
        char *data;
        size_t len;
        size_t allocated;
} Buffer;

static void buffer_done(Buffer *b) {
        free(b->data);
}

static void slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

static void transfer_done(Transfer *t) {
        s3_get_response_done(&t->resp);
        free(t->body);
}

void s3_get_response_done(S3GetResponse *r) {
        free(r->etag);
        *r = (S3GetResponse) {};
}

static void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

S3Client *s3_client_free(S3Client *c) {
        if (!c)
                return NULL;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        free(c->cfg.region);
        free(c->cfg.endpoint);
        free(c->cfg.access_key_id);
        free_secret(c->cfg.secret_access_key);
        free_secret(c->cfg.session_token);
        free(c->sigv4);
        free(c);
        return NULL;
}

/* For header values (tokens, ETags): visible ASCII, no quote, no blank. */
static bool header_token_is_valid(const char *s) {
        if (isempty(s))
                return false;
        for (; *s; s++)
                if (*s < 0x21 || *s > 0x7e || *s == '"')
                        return false;
        return true;
}

/* ---- client ---- */

static int set_credentials(S3Client *c, const char *id, const char *secret, const char *token,
                           const char *origin, char **ret_error) {
        if (!header_token_is_valid(id) || !header_token_is_valid(secret) ||
            (!isempty(token) && !header_token_is_valid(token)))
                return error_set(ret_error, -EINVAL, "%s credentials contain invalid characters", origin);
        c->cfg.access_key_id = strdup(id);
        c->cfg.secret_access_key = strdup(secret);
        c->cfg.session_token = isempty(token) ? NULL : strdup(token);
        if (!c->cfg.access_key_id || !c->cfg.secret_access_key || (!isempty(token) && !c->cfg.session_token))
                return -ENOMEM;
        return 0;
}

static int resolve_credentials(S3Client *c, const S3Config *cfg, char **ret_error) {
        const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
        bool have_env = !isempty(id) && !isempty(secret);

        switch (cfg->credentials) {
        case CREDENTIALS_STATIC:
                if (isempty(cfg->access_key_id) || isempty(cfg->secret_access_key))
                        return error_set(ret_error, -ENOKEY,
                                         "no credentials: credentials = static needs access_key_id and secret_access_key");
                return set_credentials(c, cfg->access_key_id, cfg->secret_access_key, cfg->session_token,
                                       "static", ret_error);
        case CREDENTIALS_ENV:
                if (!have_env)
                        return error_set(ret_error, -ENOKEY,
                                         "no credentials: AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set");
                return set_credentials(c, id, secret, getenv("AWS_SESSION_TOKEN"), "environment", ret_error);
        case CREDENTIALS_AUTO:
                if (have_env)
                        return set_credentials(c, id, secret, getenv("AWS_SESSION_TOKEN"), "environment",
                                               ret_error);
                return error_set(ret_error, -ENOKEY,
                                 "no credentials: IMDS not supported yet (credentials = auto and "
                                 "AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set)");
        case CREDENTIALS_IMDS:
                return error_set(ret_error, -EOPNOTSUPP, "no credentials: IMDS not supported yet");
        default:
                return error_set(ret_error, -EINVAL, "unknown credentials source");
        }
}

static size_t on_header(char *buf, size_t size, size_t n, void *userdata);
static size_t on_body(char *buf, size_t size, size_t n, void *userdata);

static int setup_handle(S3Client *c) {
        CURL *h = c->curl;
        CURLcode e = CURLE_OK;

        e = e ?: curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        e = e ?: curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
        e = e ?: curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        e = e ?: curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        e = e ?: curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        e = e ?: curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);     /* keys with "..", "//" */
        e = e ?: curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_SEC);
        e = e ?: curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_LIMIT_BPS);
        e = e ?: curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_SEC);
        e = e ?: curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        e = e ?: curl_easy_setopt(h, CURLOPT_USERAGENT, "deploy-agent");
        e = e ?: curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
        e = e ?: curl_easy_setopt(h, CURLOPT_USERNAME, c->cfg.access_key_id);
        e = e ?: curl_easy_setopt(h, CURLOPT_PASSWORD, c->cfg.secret_access_key);
        e = e ?: curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        e = e ?: curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        return e == CURLE_OK ? 0 : -EOPNOTSUPP;
}

/* Region and endpoint go into every URL and the SigV4 scope: check them
 * once by building a URL. */
static int check_location(const S3Config *cfg, char **ret_error) {
        _cleanup_free_ char *url = NULL;
        int r;

        if (!cfg->region || strchr(cfg->region, ':'))
                return error_set(ret_error, -EINVAL, "invalid S3 region");
        r = s3_build_url(cfg, "bucket", NULL, NULL, 0, &url);
        if (r == -EINVAL)
                return error_set(ret_error, r, "invalid S3 region or endpoint (want http:// or https://)");
        return r;
}

int s3_client_new(const S3Config *cfg, S3Client **ret, char **ret_error) {
        _cleanup_s3_client_ S3Client *c = NULL;
        int r;

        r = check_location(cfg, ret_error);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(S3Client));
        if (!c)
                return -ENOMEM;
        c->cfg.addressing = cfg->addressing;
        c->cfg.credentials = cfg->credentials;
        c->cfg.region = strdup(cfg->region);
        c->cfg.endpoint = isempty(cfg->endpoint) ? NULL : strdup(cfg->endpoint);
        if (!c->cfg.region || (!isempty(cfg->endpoint) && !c->cfg.endpoint))
                return -ENOMEM;
        r = resolve_credentials(c, cfg, ret_error);
        if (r < 0)
                return r;
        if (asprintf(&c->sigv4, "aws:amz:%s:s3", c->cfg.region) < 0) {
                c->sigv4 = NULL;
                return -ENOMEM;
        }
        c->curl = curl_easy_init();
        if (!c->curl)
                return error_set(ret_error, -ENOMEM, "cannot initialize libcurl");
        r = setup_handle(c);
        if (r < 0)
                return error_set(ret_error, r, "libcurl lacks a needed feature (SigV4, protocol options)");
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- transfers ---- */

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

static void transfer_abort(Transfer *t, int r, const char *why) {
        if (t->abort_r == 0) {
                t->abort_r = r;
                t->abort_why = why;
        }
}

/* A status line starts a new response (after a 100 Continue, say). */
static void transfer_status_line(Transfer *t, const char *line) {
        const char *sp = strchr(line, ' ');
        uint64_t status = 0;

        s3_get_response_done(&t->resp);
        t->have_length = t->have_range = false;
        if (sp)
                (void) parse_digits(sp + 1, &status);
        t->resp.status = status <= 999 ? (long) status : 0;
}

static int transfer_headers_done(Transfer *t) {
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

static bool header_is(const char *name, const char *want) {
        return strcasecmp(name, want) == 0;
}

static void transfer_header(Transfer *t, const char *name, const char *value) {
        uint64_t v;
        const char *end;

        if (header_is(name, "etag")) {
                free(t->resp.etag);
                t->resp.etag = s3_etag_unquote(value, strlen(value));
        } else if (header_is(name, "content-length")) {
                end = parse_digits(value, &v);
                if (end && *end == '\0') {
                        t->have_length = true;
                        t->resp.content_length = v;
                }
        } else if (header_is(name, "content-range"))
                t->have_range = parse_content_range(value, &t->range_first, &t->resp.total_size) >= 0;
}

static size_t on_header(char *buf, size_t size, size_t n, void *userdata) {
        Transfer *t = userdata;
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

static size_t on_body(char *buf, size_t size, size_t n, void *userdata) {
        Transfer *t = userdata;
        size_t m;
        int r;

        if (t->resp.status != 200 && t->resp.status != 206) {
                /* An error document: keep its beginning for the message. */
                m = MIN(n, ERROR_BODY_MAX - t->body_len);
                if (m > 0 && !t->body)
                        t->body = malloc(ERROR_BODY_MAX);
                if (m > 0 && t->body) {
                        memcpy(t->body + t->body_len, buf, m);
                        t->body_len += m;
                }
                return n;
        }
        if (n > t->req->max_bytes - t->received) {
                transfer_abort(t, -EFBIG, NULL);
                return CURL_WRITEFUNC_ERROR;
        }
        t->received += n;
        r = t->cb(buf, n, t->userdata);
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
        default:
                return -EIO;
        }
}

static int http_error(const Transfer *t, const char *what, char **ret_error) {
        _cleanup_free_ char *code = NULL, *message = NULL;
        long status = t->resp.status;
        int r = http_to_errno(status);

        if (t->body_len > 0)
                (void) s3_error_parse(t->body, t->body_len, &code, &message);
        /* A missing bucket is a configuration error, not a missing object:
         * "pointer not published yet" must not hide it. */
        if (status == 404 && streq_ptr(code, "NoSuchBucket"))
                r = -ENXIO;
        if (code)
                return error_set(ret_error, r, "%s: HTTP %ld %s%s%s", what, status, code,
                                 message ? ": " : "", strempty(message));
        return error_set(ret_error, r, "%s: HTTP %ld", what, status);
}

static int transfer_result(S3Client *c, Transfer *t, CURLcode e, const char *what, char **ret_error) {
        long status = t->resp.status;

        if (t->abort_r == -EFBIG)
                return error_set(ret_error, -EFBIG, "%s: larger than %" PRIu64 " bytes", what,
                                 t->req->max_bytes);
        if (t->abort_r < 0)
                return error_set(ret_error, t->abort_r, "%s: %s", what,
                                 t->abort_why ?: strerror(-t->abort_r));
        if (e != CURLE_OK)
                return error_set(ret_error, curl_to_errno(e), "%s: %s", what,
                                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(e));
        if (status != 200 && status != 206 && status != 304)
                return http_error(t, what, ret_error);
        if (!t->have_length)
                t->resp.content_length = t->received;
        if (status == 200)
                t->resp.total_size = t->resp.content_length;
        return 0;
}

static int slist_addf(struct curl_slist **l, const char *fmt, ...) _printf_(2, 3);
static int slist_addf(struct curl_slist **l, const char *fmt, ...) {
        struct curl_slist *n;
        va_list ap;
        char *s;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        n = curl_slist_append(*l, s);
        free_secret(s);                /* it may hold the session token */
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

static int build_headers(const S3Client *c, const S3GetRequest *req, struct curl_slist **ret) {
        _cleanup_(slist_freep) struct curl_slist *l = NULL;
        int r;

        if ((req->if_match && !header_token_is_valid(req->if_match)) ||
            (req->if_none_match && !header_token_is_valid(req->if_none_match)))
                return -EINVAL;
        /* curl 7.88 does not add it; S3 wants it on every signed request. */
        r = slist_addf(&l, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
        if (r >= 0 && c->cfg.session_token)
                r = slist_addf(&l, "x-amz-security-token: %s", c->cfg.session_token);
        if (r >= 0 && req->if_match)
                r = slist_addf(&l, "If-Match: \"%s\"", req->if_match);
        if (r >= 0 && req->if_none_match)
                r = slist_addf(&l, "If-None-Match: \"%s\"", req->if_none_match);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

static int transfer_run(S3Client *c, const char *url, Transfer *t, long timeout_sec,
                        const char *what, char **ret_error) {
        _cleanup_(slist_freep) struct curl_slist *headers = NULL;
        char range[32] = "";
        CURLcode e = CURLE_OK;
        int r;

        r = build_headers(c, t->req, &headers);
        if (r < 0)
                return error_set(ret_error, r, "%s: %s", what,
                                 r == -EINVAL ? "invalid ETag condition" : strerror(-r));
        if (t->req->range_start > 0)
                snprintf(range, sizeof(range), "%" PRIu64 "-", t->req->range_start);
        c->errbuf[0] = '\0';
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_URL, url);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_RANGE, range[0] ? range : NULL);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, timeout_sec);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, t);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, t);
        e = e ?: curl_easy_perform(c->curl);
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        return transfer_result(c, t, e, what, ret_error);
}

static int get_url(S3Client *c, const char *url, const S3GetRequest *req, s3_data_cb cb,
                   void *userdata, long timeout_sec, const char *what,
                   S3GetResponse *ret_response, char **ret_error) {
        _cleanup_(transfer_done) Transfer t = { .req = req, .cb = cb, .userdata = userdata };
        int r;

        r = transfer_run(c, url, &t, timeout_sec, what, ret_error);
        if (r < 0)
                return r;
        if (ret_response) {
                *ret_response = t.resp;
                t.resp = (S3GetResponse) {};
        }
        return 0;
}

static int get_object(S3Client *c, const char *bucket, const char *key, const S3GetRequest *req,
                      s3_data_cb cb, void *userdata, long timeout_sec,
                      S3GetResponse *ret_response, char **ret_error) {
        _cleanup_free_ char *url = NULL, *what = NULL;
        int r;

        if (asprintf(&what, "GET s3://%s/%s", strempty(bucket), strempty(key)) < 0)
                return -ENOMEM;
        if (isempty(key) || strlen(key) > 1024)
                return error_set(ret_error, -EINVAL, "%s: invalid key", what);
        r = s3_build_url(&c->cfg, bucket, key, NULL, 0, &url);
        if (r < 0)
                return error_set(ret_error, r, "%s: %s", what,
                                 r == -EINVAL ? "invalid bucket or endpoint" : strerror(-r));
        return get_url(c, url, req, cb, userdata, timeout_sec, what, ret_response, ret_error);
}

int s3_get_object(S3Client *c, const char *bucket, const char *key, const S3GetRequest *req,
                  s3_data_cb cb, void *userdata, S3GetResponse *ret_response, char **ret_error) {
        /* No overall timeout: artifacts can be large; the low-speed limit
         * catches a stalled transfer and step_timeout bounds the rest. */
        return get_object(c, bucket, key, req, cb, userdata, 0, ret_response, ret_error);
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

int s3_get_small(S3Client *c, const char *bucket, const char *key, size_t max_bytes,
                 char **ret_body, size_t *ret_len, char **ret_error) {
        _cleanup_(buffer_done) Buffer b = {};
        S3GetRequest req = { .max_bytes = max_bytes };
        int r;

        r = get_object(c, bucket, key, &req, buffer_append, &b, SMALL_TIMEOUT_SEC, NULL, ret_error);
        if (r < 0)
                return r;
        if (!b.data && !(b.data = strdup("")))
                return -ENOMEM;
        *ret_len = b.len;
        *ret_body = TAKE_PTR(b.data);
        return 0;
}

/* One ListObjectsV2 page into *ret (NUL-terminated, at most LIST_PAGE_MAX). */
static int list_page(S3Client *c, const char *bucket, const char *prefix, const char *token,
                     const char *what, Buffer *ret, char **ret_error) {
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
        r = get_url(c, url, &req, buffer_append, ret, SMALL_TIMEOUT_SEC, what, NULL, ret_error);
        if (r < 0)
                return r;
        if (!ret->data && !(ret->data = strdup("")))
                return -ENOMEM;
        return 0;
}

int s3_list_objects(S3Client *c, const char *bucket, const char *prefix,
                    s3_object_cb cb, void *userdata, char **ret_error) {
        _cleanup_free_ char *token = NULL, *what = NULL;
        int r;

        if (asprintf(&what, "LIST s3://%s/%s", strempty(bucket), strempty(prefix)) < 0)
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
                if (isempty(page.next_token) || streq_ptr(page.next_token, token))
                        return error_set(ret_error, -EBADMSG,
                                         "%s: truncated page without a new NextContinuationToken", what);
                free(token);
                token = TAKE_PTR(page.next_token);
        }
}
