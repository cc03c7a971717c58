/* s3.c: the S3 client's core. Every request goes through one libcurl easy
 * handle (so the connection is reused), is signed by curl's SigV4 over a
 * canonical URL built in s3-url.c (curl 7.88 signs the path and query
 * exactly as given) with the credentials of the moment (credentials.c
 * refreshes role credentials between requests), and carries
 * "x-amz-content-sha256: UNSIGNED-PAYLOAD", which curl 7.88 does not add. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <limits.h>
#include <sys/param.h>

#include "common/curl-util.h"
#include "s3/s3-internal.h"
#include "common/util.h"

#define CONNECT_TIMEOUT_SEC 10L
#define STALL_MAX_SEC 600L

S3Client *s3_client_free(S3Client *c) {
        if (!c)
                return NULL;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        credentials_provider_free(c->creds);
        free(c->cfg.region);
        free(c->cfg.endpoint);
        free(c->sigv4);
        free(c);
        return NULL;
}

void s3_client_stats(const S3Client *c, S3Stats *ret) {
        *ret = c->stats;
        ret->imds_requests = credentials_provider_imds_requests(c->creds);
}

const char *s3_client_credentials_source(const S3Client *c) {
        return credentials_provider_source(c->creds);
}

/* How long a transfer may stay below low_speed_limit before it counts as
 * stalled (and is retried or resumed): [s3] low_speed_time, unless
 * DEPLOY_AGENT_STALL_TIMEOUT (seconds, the older knob) says otherwise. */
static long stall_timeout(const S3Config *cfg) {
        const char *v = getenv("DEPLOY_AGENT_STALL_TIMEOUT");
        long dflt = (long) ((cfg->low_speed_time_usec ?: S3_LOW_SPEED_TIME_DEFAULT_USEC) / USEC_PER_SEC);
        char *end;
        long n;

        dflt = MAX(1L, MIN(dflt, STALL_MAX_SEC));
        if (isempty(v))
                return dflt;
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno != 0 || *end != '\0' || n < 1 || n > STALL_MAX_SEC)
                return dflt;
        return n;
}

static int setup_handle(S3Client *c) {
        CURL *h = c->curl;
        CURLcode e = CURLE_OK;

        /* Proxies: curl itself honours https_proxy/HTTPS_PROXY, http_proxy
         * and no_proxy/NO_PROXY; the CA store is the system's default. */
        e = e ?: curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        e = e ?: curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
        e = e ?: curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        e = e ?: curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        /* Redirects are never followed: a SigV4 signature is bound to
         * the host it was made for, and a Location must not take our
         * credentials elsewhere. A 3xx fails with its Location named (a
         * bucket in another region, a wrong endpoint), so a redirect loop
         * ends at its first hop. */
        e = e ?: curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        e = e ?: curl_easy_setopt(h, CURLOPT_MAXREDIRS, 0L);
        e = e ?: curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);     /* keys with "..", "//" */
        e = e ?: curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_SEC);
        /* A server that dribbles (a slow loris) or never answers is caught
         * here: curl counts the wait for the first byte too. */
        e = e ?: curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
        e = e ?: curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->stall_sec);
        e = e ?: curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        e = e ?: curl_easy_setopt(h, CURLOPT_USERAGENT, "deploy-agent");
        e = e ?: curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
        e = e ?: curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s3_on_header);
        e = e ?: curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_on_body);
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
        c->cfg.low_speed_limit = cfg->low_speed_limit;
        c->cfg.low_speed_time_usec = cfg->low_speed_time_usec;
        c->cfg.region = strdup(cfg->region);
        c->cfg.endpoint = isempty(cfg->endpoint) ? NULL : strdup(cfg->endpoint);
        if (!c->cfg.region || (!isempty(cfg->endpoint) && !c->cfg.endpoint))
                return -ENOMEM;
        r = credentials_provider_new(cfg, &c->creds, ret_error);
        if (r < 0)
                return r;
        c->sigv4 = strdup_printf("aws:amz:%s:s3", c->cfg.region);
        if (!c->sigv4)
                return -ENOMEM;
        c->stall_sec = stall_timeout(cfg);
        c->low_speed_limit = (long) MIN(cfg->low_speed_limit ?: S3_LOW_SPEED_LIMIT_DEFAULT, (uint64_t) LONG_MAX);
        c->curl = curl_easy_init();
        if (!c->curl)
                return error_set(ret_error, -ENOMEM, "cannot initialize libcurl");
        r = setup_handle(c);
        if (r < 0)
                return error_set(ret_error, r, "libcurl lacks a needed feature (SigV4, protocol options)");
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- one request ---- */

/* For header values (ETags): visible ASCII, no quote, no blank. */
static bool header_token_is_valid(const char *s) {
        if (isempty(s))
                return false;
        for (; *s; s++)
                if (*s < 0x21 || *s > 0x7e || *s == '"')
                        return false;
        return true;
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
        explicit_bzero(s, strlen(s));  /* it may hold the session token */
        free(s);
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

/* Never an empty header (such as "Expect:"): curl before 8.3.0 (Debian 12
 * has 7.88) mis-signs those. */
static int build_headers(const Credentials *cr, const S3Transfer *t, struct curl_slist **ret) {
        _cleanup_(slist_freep) struct curl_slist *l = NULL;
        const S3GetRequest *req = t->req;
        int r;

        if ((req->if_match && !header_token_is_valid(req->if_match)) ||
            (req->if_none_match && !header_token_is_valid(req->if_none_match)))
                return -EINVAL;
        r = slist_addf(&l, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
        if (r >= 0 && cr->session_token)
                r = slist_addf(&l, "x-amz-security-token: %s", cr->session_token);
        if (r >= 0 && req->if_match)
                r = slist_addf(&l, "If-Match: \"%s\"", req->if_match);
        /* "*" (any object: a create-only PUT) is the one unquoted value. */
        if (r >= 0 && req->if_none_match)
                r = streq(req->if_none_match, "*") ? slist_addf(&l, "If-None-Match: *")
                                                    : slist_addf(&l, "If-None-Match: \"%s\"", req->if_none_match);
        if (r >= 0 && t->upload)
                r = slist_addf(&l, "Content-Type: application/octet-stream");
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userdata) {
        S3Upload *u = userdata;
        size_t m = (size_t) MIN((uint64_t) n, u->size - u->offset);
        ssize_t k;

        if (m == 0)
                return 0;
        if (u->data) {
                memcpy(buf, u->data + u->offset, m);
                k = (ssize_t) m;
        } else
                do
                        k = pread(u->fd, buf, m, (off_t) u->offset);
                while (k < 0 && errno == EINTR);
        if (k <= 0)
                return CURL_READFUNC_ABORT;    /* the file shrank or broke */
        u->offset += (uint64_t) k;
        return (size_t) k;
}

static int on_seek(void *userdata, curl_off_t offset, int origin) {
        S3Upload *u = userdata;

        if (origin != SEEK_SET || offset < 0 || (uint64_t) offset > u->size)
                return CURL_SEEKFUNC_CANTSEEK;
        u->offset = (uint64_t) offset;
        return CURL_SEEKFUNC_OK;
}

static CURLcode set_method(CURL *h, S3Transfer *t) {
        CURLcode e = CURLE_OK;

        if (!t->upload)
                return curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        t->upload->offset = 0;
        e = e ?: curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        e = e ?: curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        e = e ?: curl_easy_setopt(h, CURLOPT_READDATA, t->upload);
        e = e ?: curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        e = e ?: curl_easy_setopt(h, CURLOPT_SEEKDATA, t->upload);
        e = e ?: curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t) t->upload->size);
        return e;
}

static void count_request(S3Client *c) {
        curl_off_t down = 0, up = 0;

        c->stats.requests++;
        if (curl_easy_getinfo(c->curl, CURLINFO_SIZE_DOWNLOAD_T, &down) == CURLE_OK && down > 0)
                c->stats.bytes_received += (uint64_t) down;
        if (curl_easy_getinfo(c->curl, CURLINFO_SIZE_UPLOAD_T, &up) == CURLE_OK && up > 0)
                c->stats.bytes_sent += (uint64_t) up;
}

int s3_perform(S3Client *c, const char *url, S3Transfer *t, long timeout_sec, const char *what,
               char **ret_error) {
        _cleanup_(slist_freep) struct curl_slist *headers = NULL;
        const Credentials *cr;
        char range[32] = "";
        CURLcode e = CURLE_OK;
        int r;

        r = credentials_get(c->creds, &cr, ret_error);
        if (r < 0)
                return r;
        r = build_headers(cr, t, &headers);
        if (r < 0)
                return error_set(ret_error, r, "%s: %s", what,
                                 r == -EINVAL ? "invalid ETag condition" : strerror(-r));
        if (t->req->range_start > 0)
                snprintf(range, sizeof(range), "%" PRIu64 "-", t->req->range_start);
        c->errbuf[0] = '\0';
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_URL, url);
        e = e ?: set_method(c->curl, t);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_USERNAME, cr->access_key_id);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_PASSWORD, cr->secret_access_key);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_RANGE, range[0] ? range : NULL);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, timeout_sec);
        t->timeout_sec = timeout_sec;
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, t);
        e = e ?: curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, t);
        e = e ?: curl_easy_perform(c->curl);
        count_request(c);
        (void) curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        (void) curl_easy_setopt(c->curl, CURLOPT_PASSWORD, "");
        return s3_transfer_result(c, t, e, what, ret_error);
}

int s3_object_target(S3Client *c, const char *method, const char *bucket, const char *key, char **ret_what,
                     char **ret_url, char **ret_error) {
        _cleanup_free_ char *what = strdup_printf("%s s3://%s/%s", method, strempty(bucket), strempty(key));
        char *url = NULL;
        int r;

        if (!what)
                return -ENOMEM;
        if (isempty(key) || strlen(key) > 1024)
                return error_set(ret_error, -EINVAL, "%s: invalid key", what);
        r = s3_build_url(&c->cfg, bucket, key, NULL, 0, &url);
        if (r < 0)
                return error_set(ret_error, r, "%s: %s", what,
                                 r == -EINVAL ? "invalid bucket or endpoint" : strerror(-r));
        *ret_what = TAKE_PTR(what);
        *ret_url = url;
        return 0;
}

int s3_get_object(S3Client *c, const char *bucket, const char *key, const S3GetRequest *req,
                  s3_data_cb cb, void *userdata, S3GetResponse *ret_response, char **ret_error) {
        _cleanup_(s3_transfer_done) S3Transfer t = { .req = req, .cb = cb, .userdata = userdata };
        _cleanup_free_ char *url = NULL, *what = NULL;
        int r;

        r = s3_object_target(c, "GET", bucket, key, &what, &url, ret_error);
        if (r < 0)
                return r;
        /* No overall timeout: artifacts can be large; the low-speed limit
         * catches a stalled transfer and step_timeout bounds the rest. */
        r = s3_perform(c, url, &t, 0, what, ret_error);
        if (r < 0)
                return r;
        if (ret_response) {
                *ret_response = t.resp;
                t.resp = (S3GetResponse) {};
        }
        return 0;
}
