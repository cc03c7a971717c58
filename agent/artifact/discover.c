/* discover.c: artifact key matching, newest selection and pointer parsing. */
#include "artifact/discover.h"

#include "common/util.h"

static bool is_sha_char(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool discover_match_key(const char *prefix, const char *suffix, const char *key, char ret_sha[static 41]) {
        size_t np = strlen(prefix), ns = strlen(suffix), nk = strlen(key), n;

        if (nk < np + ns + 7 || strncmp(key, prefix, np) != 0 || !streq(key + nk - ns, suffix))
                return false;
        n = nk - np - ns;
        if (n > 40)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_sha_char(key[np + i]))
                        return false;
        memcpy(ret_sha, key + np, n);
        ret_sha[n] = '\0';
        return true;
}

bool discover_is_newer(uint64_t a_usec, const char *a_key, uint64_t b_usec, const char *b_key) {
        if (a_usec != b_usec)
                return a_usec > b_usec;
        return strcmp(a_key, b_key) > 0;
}

void discover_best_done(DiscoverBest *b) {
        free(b->key);
        free(b->etag);
        *b = (DiscoverBest) {};
}

/* "<best key>.sha256" or "<best key>.minisig": note it. */
static bool offer_sidecar(DiscoverBest *b, const char *key) {
        size_t n;

        if (!b->found || strncmp(key, b->key, (n = strlen(b->key))) != 0)
                return false;
        if (streq(key + n, ".sha256"))
                return (b->sha256 = true);
        if (streq(key + n, ".minisig"))
                return (b->minisig = true);
        return false;
}

int discover_best_offer(DiscoverBest *b, const char *prefix, const char *suffix, const S3Object *o) {
        char sha[41];
        char *key, *etag;

        if (offer_sidecar(b, o->key) || !discover_match_key(prefix, suffix, o->key, sha))
                return 0;
        if (b->found && !discover_is_newer(o->last_modified_usec, o->key, b->last_modified_usec, b->key))
                return 0;
        key = strdup(o->key);
        etag = strdup(strempty(o->etag));
        if (!key || !etag) {
                free(key);
                free(etag);
                return -ENOMEM;
        }
        discover_best_done(b);
        *b = (DiscoverBest) {
                .found = true,
                .key = key,
                .etag = etag,
                .last_modified_usec = o->last_modified_usec,
                .size = o->size,
        };
        memcpy(b->sha, sha, sizeof(sha));
        return 1;
}

int discover_parse_pointer(const char *body, size_t n, char ret_sha[static 41]) {
        size_t i = 0;

        if (memchr(body, '\0', n))
                return -EBADMSG;
        while (i < n && is_sha_char(body[i]))
                i++;
        if (i < 7 || i > 40 || (i < n && !is_space(body[i])))
                return -EBADMSG;
        memcpy(ret_sha, body, i);
        ret_sha[i] = '\0';
        return 0;
}
