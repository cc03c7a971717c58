/* rollout.c: the rollout policy in a pointer object, and which hosts a wave
 * admits (docs/design.md, "Fleet"). */
#include "artifact/rollout.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact/discover.h"
#include "common/util.h"

/* One "key=value" line, not NUL-terminated: the body is not ours to edit. */
typedef struct RolloutLine {
        unsigned no;
        const char *key;
        size_t key_len;
        const char *value;
        size_t value_len;
} RolloutLine;

enum {
        SEEN_STARTED = 1 << 0,
        SEEN_WAVES = 1 << 1,
        SEEN_INTERVAL = 1 << 2,
        SEEN_MAX_FAILURES = 1 << 3,
        SEEN_PAUSED = 1 << 4,
        SEEN_PREVIOUS = 1 << 5,
};

static int line_error(char **ret_error, const RolloutLine *l, const char *why) {
        return error_set(ret_error, -EBADMSG, "pointer line %u: %.*s: %s", l->no, (int) (l->key_len < 32 ? l->key_len : 32), l->key,
                         why);
}

/* Decimal digits only (no sign, no space), at most max. */
static int parse_number(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0 || n > 20)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (v > (max - (uint64_t) (s[i] - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

static int parse_sha(const char *s, size_t n, char ret[static 41]) {
        if (n < 7 || n > 40)
                return -EINVAL;
        memcpy(ret, s, n);
        ret[n] = '\0';
        return sha_is_valid(ret) ? 0 : -EINVAL;
}

static int parse_waves(const RolloutLine *l, RolloutPolicy *p, char **ret_error) {
        const char *s = l->value, *end = l->value + l->value_len;
        size_t n = 0;

        for (;;) {
                const char *comma = memchr(s, ',', (size_t) (end - s));
                const char *e = comma ? comma : end;
                uint64_t v;

                if (n == ROLLOUT_WAVES_MAX)
                        return line_error(ret_error, l, "more than 16 waves");
                if (parse_number(s, (size_t) (e - s), ROLLOUT_BUCKETS, &v) < 0 || v == 0)
                        return line_error(ret_error, l, "each wave is 1..10000 basis points");
                if (n > 0 && v <= p->waves[n - 1])
                        return line_error(ret_error, l, "waves must be strictly ascending");
                p->waves[n++] = (unsigned) v;
                if (!comma)
                        break;
                s = comma + 1;
        }
        if (p->waves[n - 1] != ROLLOUT_BUCKETS)
                return line_error(ret_error, l, "the last wave must be 10000 (100%)");
        p->n_waves = n;
        p->has_waves = true;
        return 0;
}

static bool key_is(const RolloutLine *l, const char *key) {
        return l->key_len == strlen(key) && memcmp(l->key, key, l->key_len) == 0;
}

static bool value_is(const RolloutLine *l, const char *v) {
        return l->value_len == strlen(v) && memcmp(l->value, v, l->value_len) == 0;
}

/* Seconds to microseconds, within [min, max]. The bounds keep every time
 * derived from them (started + k * wave_interval) below INT64_MAX, the
 * most the worker protocol carries: an absurd pointer is then an error
 * naming its line, not a result the supervisor refuses at every poll. */
static int parse_seconds(const RolloutLine *l, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v;

        if (parse_number(l->value, l->value_len, UINT64_MAX / USEC_PER_SEC, &v) < 0 || v < min)
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *ret = v * USEC_PER_SEC;
        return 0;
}

static int parse_field(const RolloutLine *l, RolloutPolicy *p, unsigned *seen, char **ret_error) {
        uint64_t v;
        unsigned bit;
        int r;

        if (key_is(l, "started"))
                bit = SEEN_STARTED;
        else if (key_is(l, "waves"))
                bit = SEEN_WAVES;
        else if (key_is(l, "wave_interval"))
                bit = SEEN_INTERVAL;
        else if (key_is(l, "max_failures"))
                bit = SEEN_MAX_FAILURES;
        else if (key_is(l, "paused"))
                bit = SEEN_PAUSED;
        else if (key_is(l, "previous"))
                bit = SEEN_PREVIOUS;
        else
                return line_error(ret_error, l, "unknown key");
        if (*seen & bit)
                return line_error(ret_error, l, "duplicate key");
        *seen |= bit;

        switch (bit) {
        case SEEN_STARTED:
                r = parse_seconds(l, 0, ROLLOUT_STARTED_MAX_SEC, &p->started_usec);
                if (r < 0)
                        return line_error(ret_error, l, r == -ERANGE ? "after the year 9999" : "not unix seconds");
                return 0;
        case SEEN_WAVES:
                return parse_waves(l, p, ret_error);
        case SEEN_INTERVAL:
                r = parse_seconds(l, 1, ROLLOUT_INTERVAL_MAX_SEC, &p->wave_interval_usec);
                if (r < 0)
                        return line_error(ret_error, l, r == -ERANGE ? "more than a year" :
                                                                      "not a number of seconds >= 1");
                return 0;
        case SEEN_MAX_FAILURES:
                if (parse_number(l->value, l->value_len, UINT32_MAX, &v) < 0 || v == 0)
                        return line_error(ret_error, l, "not a number >= 1");
                p->max_failures = (unsigned) v;
                return 0;
        case SEEN_PAUSED:
                if (!value_is(l, "yes") && !value_is(l, "no"))
                        return line_error(ret_error, l, "not yes or no");
                p->paused = value_is(l, "yes");
                return 0;
        default:
                if (parse_sha(l->value, l->value_len, p->previous) < 0)
                        return line_error(ret_error, l, "not a sha (7..40 lowercase hex)");
                return 0;
        }
}

/* Splits "key=value" (a trailing CR or blanks dropped: an editor may add
 * them) and parses it. */
static int parse_line(const char *s, size_t n, unsigned no, RolloutPolicy *p, unsigned *seen, char **ret_error) {
        RolloutLine l = { .no = no, .key = s };
        const char *eq;

        while (n > 0 && is_space(s[n - 1]))
                n--;
        eq = memchr(s, '=', n);
        if (!eq) {
                l.key_len = n;
                return line_error(ret_error, &l, "not key=value");
        }
        l.key_len = (size_t) (eq - s);
        l.value = eq + 1;
        l.value_len = n - l.key_len - 1;
        return parse_field(&l, p, seen, ret_error);
}

static bool all_space(const char *s, const char *end) {
        for (; s < end; s++)
                if (!is_space(*s))
                        return false;
        return true;
}

/* Line 1 is what discover_parse_pointer() reads: the sha, then for an old
 * pointer maybe whitespace and text this agent ignores. That text is
 * tolerated only without policy lines: with them it is most likely a
 * policy typed on the wrong line (`abc1234 paused=yes`), not to be
 * ignored. */
static int parse_first_line(const char *body, size_t n, RolloutPolicy *p, char **ret_error) {
        const char *nl = memchr(body, '\n', n), *end = body + n;

        if (discover_parse_pointer(body, n, p->sha) < 0)
                return error_set(ret_error, -EBADMSG, "pointer line 1: not a sha (7..40 lowercase hex)");
        if (nl && !all_space(body + strlen(p->sha), nl) && !all_space(nl + 1, end))
                return error_set(ret_error, -EBADMSG, "pointer line 1: text after the sha before policy lines");
        return 0;
}

static int check_policy(const RolloutPolicy *p, unsigned seen, char **ret_error) {
        if (!(seen & SEEN_WAVES))
                return 0;
        if (!(seen & SEEN_STARTED))
                return error_set(ret_error, -EBADMSG, "pointer: waves without started");
        if (!(seen & SEEN_INTERVAL))
                return error_set(ret_error, -EBADMSG, "pointer: waves without wave_interval");
        return 0;
}

int rollout_parse(const char *body, size_t n, RolloutPolicy *ret, char **ret_error) {
        RolloutPolicy p = { .max_failures = 1 };
        const char *s, *end = body + n;
        unsigned seen = 0, no = 1;
        int r;

        if (n > ROLLOUT_BODY_MAX)
                return error_set(ret_error, -EBADMSG, "pointer: larger than %u bytes", ROLLOUT_BODY_MAX);
        if (memchr(body, '\0', n))
                return error_set(ret_error, -EBADMSG, "pointer: contains a NUL byte");
        r = parse_first_line(body, n, &p, ret_error);
        if (r < 0)
                return r;
        s = memchr(body, '\n', n);
        while (s && s < end) {
                const char *line = s + 1;
                const char *nl = memchr(line, '\n', (size_t) (end - line));
                const char *e = nl ? nl : end;
                bool blank = true;

                no++;
                for (const char *c = line; c < e; c++)
                        blank = blank && is_space(*c);
                if (!blank) {
                        r = parse_line(line, (size_t) (e - line), no, &p, &seen, ret_error);
                        if (r < 0)
                                return r;
                }
                s = nl;
        }
        r = check_policy(&p, seen, ret_error);
        if (r < 0)
                return r;
        *ret = p;
        return 0;
}

/* Appends to a FILE; the caller checks ferror-free close once. */
static void format_waves(FILE *f, const RolloutPolicy *p) {
        fputs("waves=", f);
        for (size_t i = 0; i < p->n_waves; i++)
                fprintf(f, "%s%u", i > 0 ? "," : "", p->waves[i]);
        fputc('\n', f);
}

char *rollout_format(const RolloutPolicy *p) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        fprintf(f, "%s\n", p->sha);
        if (p->has_waves || p->started_usec > 0)
                fprintf(f, "started=%" PRIu64 "\n", p->started_usec / USEC_PER_SEC);
        if (p->has_waves)
                format_waves(f, p);
        if (p->has_waves || p->wave_interval_usec > 0)
                fprintf(f, "wave_interval=%" PRIu64 "\n", p->wave_interval_usec / USEC_PER_SEC);
        if (p->has_waves || p->max_failures != 1)
                fprintf(f, "max_failures=%u\n", p->max_failures);
        if (p->has_waves || p->paused)
                fprintf(f, "paused=%s\n", p->paused ? "yes" : "no");
        if (!isempty(p->previous))
                fprintf(f, "previous=%s\n", p->previous);
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(buf);
}

unsigned rollout_bucket(const char *host_id, const char *sha) {
        unsigned char digest[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_state st;
        uint64_t v = 0;

        /* The hash functions need no sodium_init(): it only picks faster
         * implementations and seeds the random generator. */
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, (const unsigned char *) host_id, strlen(host_id));
        crypto_hash_sha256_update(&st, (const unsigned char *) "\n", 1);
        crypto_hash_sha256_update(&st, (const unsigned char *) sha, strlen(sha));
        crypto_hash_sha256_final(&st, digest);
        for (size_t i = 0; i < 8; i++)
                v = (v << 8) | digest[i];
        return (unsigned) (v % ROLLOUT_BUCKETS);
}

size_t rollout_open_wave(const RolloutPolicy *p, uint64_t now_usec) {
        uint64_t k;

        if (!p->has_waves || p->n_waves == 0 || p->wave_interval_usec == 0 || now_usec < p->started_usec)
                return 0;
        k = (now_usec - p->started_usec) / p->wave_interval_usec;
        return k >= p->n_waves - 1 ? p->n_waves - 1 : (size_t) k;
}

bool rollout_admits(const RolloutPolicy *p, const char *host_id, bool canary, uint64_t now_usec) {
        if (p->paused)
                return false;
        if (!p->has_waves || p->n_waves == 0 || canary)
                return true;
        return rollout_bucket(host_id, p->sha) < p->waves[rollout_open_wave(p, now_usec)];
}

bool rollout_host_id_is_valid(const char *s) {
        size_t n;

        if (!s)         /* a field read from untrusted JSON may be absent or of another type */
                return false;
        n = strlen(s);

        return n > 0 && n <= 64 && s[0] != '_' && s[0] != '.' && identity_chars_valid(s, n);
}

uint64_t rollout_wave_opens_usec(const RolloutPolicy *p, size_t k) {
        if (p->started_usec >= ROLLOUT_USEC_NEVER ||
            (k > 0 && p->wave_interval_usec > (ROLLOUT_USEC_NEVER - p->started_usec) / k))
                return ROLLOUT_USEC_NEVER;
        return p->started_usec + k * p->wave_interval_usec;
}

size_t rollout_wave_of_bucket(const RolloutPolicy *p, unsigned bucket) {
        for (size_t k = 0; k < p->n_waves; k++)
                if (bucket < p->waves[k])
                        return k;
        return p->n_waves > 0 ? p->n_waves - 1 : 0;
}
