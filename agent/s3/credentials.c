/* credentials.c: static, environment and EC2 instance role credentials.
 * IMDSv2: PUT /latest/api/token with a TTL header, through
 * CURLOPT_CUSTOMREQUEST (CURLOPT_UPLOAD sends a chunked body with Expect,
 * which IMDS answers 417), on an unsigned handle that never uses a proxy,
 * then GET the role name and the role's credentials with that token. A 401
 * means the token expired: get a new one once and ask again. */
#define _GNU_SOURCE
#include "s3/credentials.h"

#include <curl/curl.h>
#include <jansson.h>

#include "common/curl-util.h"
#include "common/log.h"
#include "common/util.h"

#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define IMDS_TOKEN_TTL_SEC 21600
#define IMDS_BODY_MAX (64U * 1024)
#define IMDS_CONNECT_TIMEOUT_MS 1000L
#define IMDS_TIMEOUT_MS 5000L
#define IMDS_ATTEMPTS 2
#define ROLE_NAME_MAX 128
#define USABLE_MARGIN_USEC (60 * USEC_PER_SEC)

typedef enum { SOURCE_STATIC, SOURCE_ENV, SOURCE_IMDS } Source;

static const char *const source_names[] = {
        [SOURCE_STATIC] = "static", [SOURCE_ENV] = "environment", [SOURCE_IMDS] = "imds",
};

struct CredentialsProvider {
        Source source;
        Credentials current;
        bool have;                     /* current is filled in */
        CURL *curl;                    /* IMDS only, created on first use */
        char *endpoint;
        char *token;                   /* IMDSv2 session token */
        uint64_t token_valid_until;    /* monotonic */
        uint64_t next_attempt;         /* monotonic: earliest voluntary refresh */
        unsigned imds_requests;
        char errbuf[CURL_ERROR_SIZE];
};

typedef struct Reply {
        long status;
        char *body;
        size_t len;
} Reply;

static void reply_done(Reply *r) {
        free_secret(r->body);
        *r = (Reply) {};
}

void credentials_done(Credentials *c) {
        free(c->access_key_id);
        free_secret(c->secret_access_key);
        free_secret(c->session_token);
        *c = (Credentials) {};
}

/* Header-safe: visible ASCII without quotes or blanks. */
static bool token_is_valid(const char *s, size_t max) {
        size_t n = 0;

        for (; s && s[n]; n++)
                if (s[n] < 0x21 || s[n] > 0x7e || s[n] == '"')
                        return false;
        return n > 0 && n <= max;
}

static int credentials_set(Credentials *c, const char *id, const char *secret, const char *token,
                           uint64_t expiration_usec) {
        Credentials n = { .expiration_usec = expiration_usec };

        if (!token_is_valid(id, 256) || !token_is_valid(secret, 256) ||
            (!isempty(token) && !token_is_valid(token, 8192)))
                return -EINVAL;
        n.access_key_id = strdup(id);
        n.secret_access_key = strdup(secret);
        n.session_token = isempty(token) ? NULL : strdup(token);
        if (!n.access_key_id || !n.secret_access_key || (!isempty(token) && !n.session_token)) {
                credentials_done(&n);
                return -ENOMEM;
        }
        credentials_done(c);
        *c = n;
        return 0;
}

CredentialsProvider *credentials_provider_free(CredentialsProvider *p) {
        if (!p)
                return NULL;
        credentials_done(&p->current);
        if (p->curl)
                curl_easy_cleanup(p->curl);
        free(p->endpoint);
        free_secret(p->token);
        free(p);
        return NULL;
}

const char *credentials_provider_source(const CredentialsProvider *p) {
        return source_names[p->source];
}

unsigned credentials_provider_imds_requests(const CredentialsProvider *p) {
        return p->imds_requests;
}

int credentials_imds_endpoint(const char *env_value, char **ret) {
        size_t n;

        if (isempty(env_value))
                return (*ret = strdup(IMDS_DEFAULT_ENDPOINT)) ? 0 : -ENOMEM;
        if (strncmp(env_value, "http://", 7) != 0 && strncmp(env_value, "https://", 8) != 0)
                return -EINVAL;
        n = strlen(env_value);
        while (n > 0 && env_value[n - 1] == '/')
                n--;
        if (n <= strlen("https://") || strpbrk(env_value, " \t\r\n?#"))
                return -EINVAL;
        *ret = strndup(env_value, n);
        return *ret ? 0 : -ENOMEM;
}

static bool env_is_true(const char *name) {
        const char *v = getenv(name);

        return v && strcasecmp(v, "true") == 0;
}

static int provider_from_env(CredentialsProvider *p, bool required, char **ret_error) {
        const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
        int r;

        if (isempty(id) || isempty(secret)) {
                if (required)
                        return error_set(ret_error, -ENOKEY,
                                         "no credentials: AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set");
                return 0;
        }
        r = credentials_set(&p->current, id, secret, getenv("AWS_SESSION_TOKEN"), 0);
        if (r == -EINVAL)
                return error_set(ret_error, r, "environment credentials contain invalid characters");
        if (r < 0)
                return r;
        p->source = SOURCE_ENV;
        p->have = true;
        return 1;
}

static int provider_imds(CredentialsProvider *p, char **ret_error) {
        int r;

        if (env_is_true("AWS_EC2_METADATA_DISABLED"))
                return error_set(ret_error, -ENOKEY,
                                 "no credentials: IMDS is disabled by AWS_EC2_METADATA_DISABLED");
        r = credentials_imds_endpoint(getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT"), &p->endpoint);
        if (r == -EINVAL)
                return error_set(ret_error, r, "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http:// or https:// URL");
        if (r < 0)
                return r;
        p->source = SOURCE_IMDS;
        return 0;
}

static int provider_setup(CredentialsProvider *p, const S3Config *cfg, char **ret_error) {
        int r;

        switch (cfg->credentials) {
        case CREDENTIALS_STATIC:
                if (isempty(cfg->access_key_id) || isempty(cfg->secret_access_key))
                        return error_set(ret_error, -ENOKEY,
                                         "no credentials: credentials = static needs access_key_id and secret_access_key");
                r = credentials_set(&p->current, cfg->access_key_id, cfg->secret_access_key,
                                    cfg->session_token, 0);
                if (r == -EINVAL)
                        return error_set(ret_error, r, "static credentials contain invalid characters");
                p->source = SOURCE_STATIC;
                p->have = r >= 0;
                return r;
        case CREDENTIALS_ENV:
                return provider_from_env(p, true, ret_error);
        case CREDENTIALS_AUTO:
                r = provider_from_env(p, false, ret_error);
                return r != 0 ? r : provider_imds(p, ret_error);
        case CREDENTIALS_IMDS:
                return provider_imds(p, ret_error);
        default:
                return error_set(ret_error, -EINVAL, "unknown credentials source");
        }
}

int credentials_provider_new(const S3Config *cfg, CredentialsProvider **ret, char **ret_error) {
        CredentialsProvider *p = calloc(1, sizeof(CredentialsProvider));
        int r;

        if (!p)
                return -ENOMEM;
        r = provider_setup(p, cfg, ret_error);
        if (r < 0) {
                credentials_provider_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

/* ---- pure helpers ---- */

static bool role_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("+=,.@_-", c);
}

int credentials_parse_role(const char *body, size_t n, char **ret_role) {
        size_t i = 0;

        while (i < n && i <= ROLE_NAME_MAX && body[i] && role_char(body[i]))
                i++;
        if (i == 0 || i > ROLE_NAME_MAX || (i < n && body[i] != '\n' && body[i] != '\r'))
                return -EBADMSG;
        *ret_role = strndup(body, i);
        return *ret_role ? 0 : -ENOMEM;
}

static const char *json_str(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

int credentials_parse_imds(const char *text, size_t n, Credentials *ret, char **ret_error) {
        json_auto_t *o = NULL;
        const char *code, *id, *secret, *token, *expiration;
        uint64_t exp_usec;
        int r;

        o = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(o))
                return error_set(ret_error, -EBADMSG, "IMDS role credentials are not a JSON object");
        code = json_str(o, "Code");
        if (code && !streq(code, "Success"))
                return error_set(ret_error, -EBADMSG, "IMDS role credentials: Code is not Success");
        id = json_str(o, "AccessKeyId");
        secret = json_str(o, "SecretAccessKey");
        token = json_str(o, "Token");
        expiration = json_str(o, "Expiration");
        if (isempty(id) || isempty(secret) || isempty(token) || isempty(expiration))
                return error_set(ret_error, -EBADMSG,
                                 "IMDS role credentials lack AccessKeyId, SecretAccessKey, Token or Expiration");
        if (parse_timestamp(expiration, &exp_usec) < 0 || exp_usec == 0)
                return error_set(ret_error, -EBADMSG, "IMDS role credentials: Expiration is not a timestamp");
        r = credentials_set(ret, id, secret, token, exp_usec);
        if (r == -EINVAL)
                return error_set(ret_error, -EBADMSG, "IMDS role credentials contain invalid characters");
        return r;
}

bool credentials_need_refresh(const Credentials *c, uint64_t now) {
        return c->expiration_usec != 0 && now + CREDENTIALS_REFRESH_BEFORE_USEC >= c->expiration_usec;
}

bool credentials_usable(const Credentials *c, uint64_t now) {
        return c->expiration_usec == 0 || now + USABLE_MARGIN_USEC < c->expiration_usec;
}

/* ---- IMDS over HTTP ---- */

static size_t on_imds_body(char *buf, size_t size, size_t n, void *userdata) {
        Reply *r = userdata;
        char *p;

        if (n > IMDS_BODY_MAX - r->len)
                return CURL_WRITEFUNC_ERROR;
        p = realloc(r->body, r->len + n + 1);
        if (!p)
                return CURL_WRITEFUNC_ERROR;
        memcpy(p + r->len, buf, n);
        r->body = p;
        r->len += n;
        r->body[r->len] = '\0';
        return n;
}

static int imds_handle(CredentialsProvider *p) {
        CURLcode e = CURLE_OK;

        if (p->curl)
                return 0;
        p->curl = curl_easy_init();
        if (!p->curl)
                return -ENOMEM;
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_NOSIGNAL, 1L);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_ERRORBUFFER, p->errbuf);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_FOLLOWLOCATION, 0L);
        /* "" disables proxies, even those named by the environment. */
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_PROXY, "");
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_NOPROXY, "*");
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_CONNECTTIMEOUT_MS, IMDS_CONNECT_TIMEOUT_MS);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_TIMEOUT_MS, IMDS_TIMEOUT_MS);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_USERAGENT, "deploy-agent");
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, on_imds_body);
        return e == CURLE_OK ? 0 : -EOPNOTSUPP;
}

static int imds_headers(const CredentialsProvider *p, bool token_put, struct curl_slist **ret) {
        _cleanup_free_ char *h = NULL;
        struct curl_slist *l;

        if (token_put)
                h = strdup_printf("X-aws-ec2-metadata-token-ttl-seconds: %d", IMDS_TOKEN_TTL_SEC);
        else
                h = strdup_printf("X-aws-ec2-metadata-token: %s", p->token);
        if (!h)
                return -ENOMEM;
        l = curl_slist_append(NULL, h);
        explicit_bzero(h, strlen(h));
        if (!l)
                return -ENOMEM;
        *ret = l;
        return 0;
}

/* One HTTP exchange; transport failures are errors, any status is not. */

/* -ETIMEDOUT only for an IMDS that accepted the connection and then did not
 * answer in time (busy: ask again later). A connection that never opened
 * is -EHOSTUNREACH, like no route: off EC2, packets to the link-local
 * address are often dropped silently, and that means "no IMDS here". */
static int imds_transport_error(CURL *curl, CURLcode e) {
        curl_off_t connect_usec = 0;

        if (e != CURLE_OPERATION_TIMEDOUT)
                return -EHOSTUNREACH;
        if (curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_usec) != CURLE_OK || connect_usec == 0)
                return -EHOSTUNREACH;
        return -ETIMEDOUT;
}
static int imds_once(CredentialsProvider *p, bool token_put, const char *url, Reply *ret, char **ret_error) {
        _cleanup_(slist_freep) struct curl_slist *headers = NULL;
        CURLcode e = CURLE_OK;
        int r;

        r = imds_headers(p, token_put, &headers);
        if (r < 0)
                return r;
        reply_done(ret);
        p->errbuf[0] = '\0';
        p->imds_requests++;
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_URL, url);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_HTTPGET, 1L);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_CUSTOMREQUEST, token_put ? "PUT" : NULL);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, headers);
        e = e ?: curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, ret);
        e = e ?: curl_easy_perform(p->curl);
        (void) curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, NULL);
        if (e == CURLE_OK)
                e = curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &ret->status);
        if (e != CURLE_OK)
                return error_set(ret_error, imds_transport_error(p->curl, e), "IMDS %s: %s", url,
                                 p->errbuf[0] ? p->errbuf : curl_easy_strerror(e));
        return 0;
}

/* With one retry on transport errors and 5xx (IMDS can be briefly busy). */
static int imds_call(CredentialsProvider *p, bool token_put, const char *path, Reply *ret, char **ret_error) {
        _cleanup_free_ char *url = strdup_printf("%s%s", p->endpoint, path);
        int r = 0;

        if (!url)
                return -ENOMEM;
        for (int i = 0; i < IMDS_ATTEMPTS; i++) {
                if (i > 0)
                        (void) usleep(200 * 1000);
                r = imds_once(p, token_put, url, ret, ret_error);
                if (r >= 0 && ret->status < 500) {
                        if (ret_error)
                                free(TAKE_PTR(*ret_error));   /* an earlier attempt's */
                        return 0;
                }
                if (r >= 0)
                        r = error_set(ret_error, -EIO, "IMDS %s: HTTP %ld", path, ret->status);
        }
        return r;
}

static int imds_get_token(CredentialsProvider *p, char **ret_error) {
        _cleanup_(reply_done) Reply reply = {};
        int r;

        r = imds_call(p, true, "/latest/api/token", &reply, ret_error);
        if (r < 0)
                return r;
        if (reply.status != 200)        /* 404: no IMDSv2 here at all */
                return error_set(ret_error, reply.status == 404 ? -ENOKEY : -EACCES, "IMDS token request: HTTP %ld",
                                 reply.status);
        if (!token_is_valid(reply.body, 4096))
                return error_set(ret_error, -EBADMSG, "IMDS token request: invalid token");
        free_secret(p->token);
        p->token = TAKE_PTR(reply.body);
        p->token_valid_until = now_usec(CLOCK_MONOTONIC) + (IMDS_TOKEN_TTL_SEC - 60) * USEC_PER_SEC;
        return 0;
}

/* GET path with the session token; a 401 (token expired or revoked) gets a
 * fresh token and one more try. */
static int imds_get(CredentialsProvider *p, const char *path, Reply *ret, char **ret_error) {
        int r;

        for (int i = 0; i < 2; i++) {
                if (!p->token || now_usec(CLOCK_MONOTONIC) >= p->token_valid_until) {
                        r = imds_get_token(p, ret_error);
                        if (r < 0)
                                return r;
                }
                r = imds_call(p, false, path, ret, ret_error);
                if (r < 0)
                        return r;
                if (ret->status != 401)
                        break;
                free_secret(TAKE_PTR(p->token));
        }
        if (ret->status == 404)
                return error_set(ret_error, -ENOKEY, "IMDS %s: HTTP 404 (no instance role attached?)", path);
        if (ret->status != 200)
                return error_set(ret_error, -EACCES, "IMDS %s: HTTP %ld", path, ret->status);
        return 0;
}

static int imds_fetch(CredentialsProvider *p, Credentials *ret, char **ret_error) {
        static const char base[] = "/latest/meta-data/iam/security-credentials/";
        _cleanup_(reply_done) Reply listing = {}, doc = {};
        _cleanup_free_ char *role = NULL, *path = NULL;
        int r;

        r = imds_handle(p);
        if (r < 0)
                return error_set(ret_error, r, "cannot set up the IMDS client");
        r = imds_get(p, base, &listing, ret_error);
        if (r < 0)
                return r;
        if (credentials_parse_role(listing.body ?: "", listing.len, &role) < 0)
                return error_set(ret_error, -EBADMSG, "IMDS %s: no valid role name", base);
        path = strdup_printf("%s%s", base, role);
        if (!path)
                return -ENOMEM;
        r = imds_get(p, path, &doc, ret_error);
        if (r < 0)
                return r;
        return credentials_parse_imds(doc.body ?: "", doc.len, ret, ret_error);
}

/* Refresh when due; a failed refresh keeps credentials that still work. */
static int imds_refresh(CredentialsProvider *p, char **ret_error) {
        _cleanup_(credentials_done) Credentials fresh = {};
        _cleanup_free_ char *error = NULL;
        uint64_t now = now_usec(CLOCK_REALTIME), mono = now_usec(CLOCK_MONOTONIC);
        bool usable = p->have && credentials_usable(&p->current, now);
        char when[32];
        int r;

        if (p->have && !credentials_need_refresh(&p->current, now))
                return 0;
        if (usable && mono < p->next_attempt)
                return 0;
        r = imds_fetch(p, &fresh, &error);
        /* IMDS may hand out the old set until it rotates: do not ask again
         * for every request while it does, nor while it is down. */
        p->next_attempt = r >= 0 && !credentials_need_refresh(&fresh, now) ? 0 :
                          mono + CREDENTIALS_RETRY_INTERVAL_USEC;
        if (r >= 0) {
                credentials_done(&p->current);
                p->current = fresh;
                fresh = (Credentials) {};
                p->have = true;
                return 0;
        }
        if (!usable)
                return error_set(ret_error, r, "no credentials from IMDS: %s", error ?: strerror(-r));
        log_warning("IMDS refresh failed (%s); keeping the role credentials valid until %s",
                    error ?: strerror(-r), format_timestamp(p->current.expiration_usec, when));
        return 0;
}

int credentials_get(CredentialsProvider *p, const Credentials **ret, char **ret_error) {
        int r;

        if (p->source == SOURCE_IMDS) {
                r = imds_refresh(p, ret_error);
                if (r < 0)
                        return r;
        }
        if (!p->have)
                return error_set(ret_error, -ENOKEY, "no credentials");
        *ret = &p->current;
        return 0;
}

/* IMDS answers plain text: one short token of printable ASCII. */
static char *identity_value(const Reply *r) {
        size_t n = r->len;

        while (n > 0 && is_space(r->body[n - 1]))
                n--;
        if (n == 0 || n > 64 || !identity_chars_valid(r->body, n))
                return NULL;
        return strndup(r->body, n);
}

static int identity_query(CredentialsProvider *p, char **ret_instance_id, char **ret_zone, char **ret_error) {
        _cleanup_(reply_done) Reply id = {}, zone = {};
        _cleanup_free_ char *instance_id = NULL;
        int r;

        r = provider_imds(p, ret_error);
        if (r < 0)
                return r;
        r = imds_handle(p);
        if (r < 0)
                return error_set(ret_error, r, "cannot set up the IMDS client");
        r = imds_get(p, "/latest/meta-data/instance-id", &id, ret_error);
        if (r < 0)
                return r;
        instance_id = id.body ? identity_value(&id) : NULL;
        if (!instance_id)
                return error_set(ret_error, -EBADMSG, "IMDS instance-id: not an instance id");
        /* the zone is a nicety: an instance id without it is still a name */
        *ret_zone = imds_get(p, "/latest/meta-data/placement/availability-zone", &zone, NULL) >= 0 && zone.body ?
                    identity_value(&zone) : NULL;
        *ret_instance_id = TAKE_PTR(instance_id);
        return 0;
}

int credentials_imds_identity(char **ret_instance_id, char **ret_zone, char **ret_error) {
        CredentialsProvider *p = calloc(1, sizeof(CredentialsProvider));
        int r;

        if (!p)
                return -ENOMEM;
        r = identity_query(p, ret_instance_id, ret_zone, ret_error);
        credentials_provider_free(p);
        return r;
}
