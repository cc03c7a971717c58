/* s3-url.c: canonical S3 URLs. curl 7.88 signs the path and query exactly as
 * given, unsorted and unencoded (fixed only in 8.3.0), so they are built here
 * the way SigV4 canonicalizes them: RFC 3986 unreserved characters kept,
 * everything else %XX in upper case, query parameters sorted and always
 * name=value. */
#define _GNU_SOURCE
#include <stdio.h>

#include "s3/s3.h"
#include "common/util.h"

static bool is_unreserved(unsigned char ch) {
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
               ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

char *s3_uri_encode(const char *s, bool keep_slash) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n;
        char *out, *p;

        if (!s)
                return NULL;
        n = strlen(s);
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        out = malloc(n * 3 + 1);
        if (!out)
                return NULL;
        p = out;
        for (const unsigned char *q = (const unsigned char *) s; *q; q++) {
                if (is_unreserved(*q) || (keep_slash && *q == '/')) {
                        *p++ = (char) *q;
                        continue;
                }
                *p++ = '%';
                *p++ = hex[*q >> 4];
                *p++ = hex[*q & 15];
        }
        *p = '\0';
        return out;
}

static bool chars_in(const char *s, const char *extra, size_t max) {
        size_t n = 0;

        for (; s && s[n]; n++)
                if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || strchr(extra, s[n])))
                        return false;
        return n > 0 && n <= max;
}

static bool region_is_valid(const char *s) {
        return chars_in(s, "-", 64);
}

/* Bucket names end up in a host name or a path unencoded: allow DNS-ish
 * characters only (plus the legacy upper case and '_'). */
static bool bucket_is_valid(const char *s) {
        return chars_in(s, "-._ABCDEFGHIJKLMNOPQRSTUVWXYZ", 255);
}

typedef struct EncodedParam {
        char *name, *value;
} EncodedParam;

typedef struct Query {
        EncodedParam *params;          /* encoded copies, owned */
        size_t n;
} Query;

static void query_done(Query *q) {
        for (size_t i = 0; i < q->n; i++) {
                free(q->params[i].name);
                free(q->params[i].value);
        }
        free(q->params);
}

static int param_compare(const void *a, const void *b) {
        const EncodedParam *x = a, *y = b;
        int d = strcmp(x->name, y->name);

        return d != 0 ? d : strcmp(x->value, y->value);
}

/* "?a=1&b=" with names and values encoded, sorted by name: what SigV4
 * expects as the canonical query string, sent as such. */
static int build_query(const S3QueryParam *params, size_t n, char **ret) {
        _cleanup_(query_done) Query q = {};
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *s = NULL;
        size_t len;

        q.params = calloc(n ?: 1, sizeof(EncodedParam));
        if (!q.params)
                return -ENOMEM;
        for (; q.n < n; q.n++) {
                q.params[q.n].name = s3_uri_encode(params[q.n].name, false);
                q.params[q.n].value = s3_uri_encode(strempty(params[q.n].value), false);
                if (!q.params[q.n].name || !q.params[q.n].value) {
                        q.n++;
                        return -ENOMEM;
                }
        }
        qsort(q.params, q.n, sizeof(EncodedParam), param_compare);
        f = open_memstream(&s, &len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < q.n; i++)
                fprintf(f, "%c%s=%s", i == 0 ? '?' : '&', q.params[i].name, q.params[i].value);
        if (fclose(TAKE_PTR(f)) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(s);
        return 0;
}

static int build_base(const S3Config *cfg, const char *bucket, const char *ekey, char **ret) {
        const char *sep = isempty(ekey) ? "" : "/", *e = cfg->endpoint, *host;
        bool path = cfg->addressing == S3_ADDRESSING_PATH;
        int n, k;

        if (isempty(e))
                k = path ? asprintf(ret, "https://s3.%s.amazonaws.com/%s%s%s", cfg->region, bucket, sep, ekey)
                         : asprintf(ret, "https://%s.s3.%s.amazonaws.com/%s", bucket, cfg->region, ekey);
        else {
                if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0)
                        return -EINVAL;
                host = strstr(e, "://") + 3;
                n = (int) strlen(e);
                while (n > host - e && e[n - 1] == '/')
                        n--;
                if (n == host - e)
                        return -EINVAL;
                k = path ? asprintf(ret, "%.*s/%s%s%s", n, e, bucket, sep, ekey)
                         : asprintf(ret, "%.*s%s.%.*s/%s", (int) (host - e), e, bucket,
                                    n - (int) (host - e), host, ekey);
        }
        return k < 0 ? -ENOMEM : 0;
}

int s3_build_url(const S3Config *cfg, const char *bucket, const char *key,
                 const S3QueryParam *params, size_t n_params, char **ret_url) {
        _cleanup_free_ char *ekey = NULL, *query = NULL, *base = NULL;
        int r;

        if (!bucket_is_valid(bucket) || !region_is_valid(cfg->region))
                return -EINVAL;
        ekey = s3_uri_encode(strempty(key), true);
        if (!ekey)
                return -ENOMEM;
        r = build_query(params, n_params, &query);
        if (r < 0)
                return r;
        r = build_base(cfg, bucket, ekey, &base);
        if (r < 0)
                return r;
        if (asprintf(ret_url, "%s%s", base, query) < 0)
                return -ENOMEM;
        return 0;
}
