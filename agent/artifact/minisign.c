/* minisign.c: public keys, .minisig parsing and verification with
 * libsodium (Ed25519 over BLAKE2b-512, "ED" mode only). */
#define _GNU_SOURCE
#include "artifact/minisign.h"

#include <sodium.h>

#include "common/util.h"

#define UNTRUSTED_PREFIX "untrusted comment:"
#define TRUSTED_PREFIX "trusted comment: "
#define TRUSTED_COMMENT_MAX 8192U

void minisign_signature_done(MinisignSignature *s) {
        free(s->trusted_comment);
        *s = (MinisignSignature) {};
}

const char *minisign_key_id_to_string(const uint8_t id[static 8], char buf[static 17]) {
        static const char hex[] = "0123456789ABCDEF";

        size_t skip = 0;

        /* minisign prints the id as a little-endian 64-bit number, in hex
         * without leading zeros ("%" PRIX64). */
        for (size_t i = 0; i < 8; i++) {
                buf[2 * i] = hex[id[7 - i] >> 4];
                buf[2 * i + 1] = hex[id[7 - i] & 15];
        }
        buf[16] = '\0';
        while (skip < 15 && buf[skip] == '0')
                skip++;
        memmove(buf, buf + skip, 17 - skip);
        return buf;
}

/* Exactly want bytes of standard base64 (padding included) from s[0..n). */
static int decode_exact(const char *s, size_t n, uint8_t *out, size_t want) {
        uint8_t buf[128];
        size_t len = 0;
        const char *end = NULL;

        if (want >= sizeof(buf) || n == 0)
                return -EINVAL;
        if (sodium_base642bin(buf, sizeof(buf), s, n, NULL, &len, &end, sodium_base64_VARIANT_ORIGINAL) < 0 ||
            end != s + n || len != want)
                return -EINVAL;
        memcpy(out, buf, want);
        return 0;
}

static bool is_separator(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',';
}

static int add_key(MinisignKey *keys, size_t *n, const char *s, size_t len) {
        uint8_t raw[42];
        MinisignKey k;

        if (decode_exact(s, len, raw, sizeof(raw)) < 0 || raw[0] != 'E' || raw[1] != 'd')
                return -EINVAL;
        memcpy(k.id, raw + 2, 8);
        memcpy(k.pk, raw + 10, 32);
        for (size_t i = 0; i < *n; i++)
                if (memcmp(&keys[i], &k, sizeof(k)) == 0)
                        return 0;
        if (*n >= MINISIGN_KEYS_MAX)
                return -E2BIG;
        keys[(*n)++] = k;
        return 0;
}

int minisign_parse_public_keys(const char *s, MinisignKey *ret_keys, size_t *ret_n) {
        MinisignKey keys[MINISIGN_KEYS_MAX];
        size_t n = 0, len;
        int r;

        if (!s)
                return -EINVAL;
        for (;;) {
                while (is_separator(*s))
                        s++;
                if (*s == '\0')
                        break;
                for (len = 0; s[len] && !is_separator(s[len]); len++)
                        ;
                r = add_key(keys, &n, s, len);
                if (r < 0)
                        return r;
                s += len;
        }
        if (n == 0)
                return -EINVAL;
        memcpy(ret_keys, keys, n * sizeof(MinisignKey));
        *ret_n = n;
        return 0;
}

/* The next line of text[*pos..n) without its "\n" or "\r\n". */
static bool next_line(const char *text, size_t n, size_t *pos, const char **ret, size_t *ret_len) {
        size_t start = *pos, end;
        const char *nl;

        if (start >= n)
                return false;
        nl = memchr(text + start, '\n', n - start);
        end = nl ? (size_t) (nl - text) : n;
        *pos = nl ? end + 1 : n;
        if (end > start && text[end - 1] == '\r')
                end--;
        *ret = text + start;
        *ret_len = end - start;
        return true;
}

static int parse_sig_line(const char *line, size_t len, MinisignSignature *s, char **ret_error) {
        uint8_t raw[74];

        if (decode_exact(line, len, raw, sizeof(raw)) < 0)
                return error_set(ret_error, -EBADMSG, "signature line is not base64 of 74 bytes");
        if (raw[0] == 'E' && raw[1] == 'd')
                return error_set(ret_error, -EPROTONOSUPPORT,
                                 "legacy signature (minisign -l, not prehashed): re-sign without -l");
        if (raw[0] != 'E' || raw[1] != 'D')
                return error_set(ret_error, -EBADMSG, "unknown signature algorithm");
        memcpy(s->key_id, raw + 2, 8);
        memcpy(s->sig, raw + 10, 64);
        return 0;
}

static int parse_trusted(const char *line, size_t len, MinisignSignature *s, char **ret_error) {
        size_t k = strlen(TRUSTED_PREFIX);

        if (len < k || memcmp(line, TRUSTED_PREFIX, k) != 0)
                return error_set(ret_error, -EBADMSG, "third line is not a trusted comment");
        if (len - k > TRUSTED_COMMENT_MAX || memchr(line + k, '\0', len - k))
                return error_set(ret_error, -EBADMSG, "trusted comment too long or not text");
        s->trusted_comment = strndup(line + k, len - k);
        return s->trusted_comment ? 0 : -ENOMEM;
}

int minisign_parse_signature(const char *text, size_t n, MinisignSignature *ret, char **ret_error) {
        _cleanup_(minisign_signature_done) MinisignSignature s = {};
        const char *line;
        size_t pos = 0, len;
        int r;

        if (n > MINISIGN_SIG_FILE_MAX)
                return error_set(ret_error, -EBADMSG, "larger than %u bytes", MINISIGN_SIG_FILE_MAX);
        if (!next_line(text, n, &pos, &line, &len) || len < strlen(UNTRUSTED_PREFIX) ||
            memcmp(line, UNTRUSTED_PREFIX, strlen(UNTRUSTED_PREFIX)) != 0)
                return error_set(ret_error, -EBADMSG, "does not start with an untrusted comment");
        if (!next_line(text, n, &pos, &line, &len))
                return error_set(ret_error, -EBADMSG, "no signature line");
        r = parse_sig_line(line, len, &s, ret_error);
        if (r < 0)
                return r;
        if (!next_line(text, n, &pos, &line, &len))
                return error_set(ret_error, -EBADMSG, "no trusted comment");
        r = parse_trusted(line, len, &s, ret_error);
        if (r < 0)
                return r;
        if (!next_line(text, n, &pos, &line, &len) || decode_exact(line, len, s.global_sig, 64) < 0)
                return error_set(ret_error, -EBADMSG, "no global signature line (base64 of 64 bytes)");
        while (next_line(text, n, &pos, &line, &len))
                if (len > 0)
                        return error_set(ret_error, -EBADMSG, "text after the global signature");
        *ret = s;
        s = (MinisignSignature) {};
        return 0;
}

bool minisign_comment_names_file(const char *comment, const char *file_name) {
        size_t n = strlen(file_name);

        for (const char *p = comment; (p = strstr(p, "file:")); p++) {
                if (p != comment && p[-1] != ' ' && p[-1] != '\t')
                        continue;
                if (strncmp(p + 5, file_name, n) == 0 &&
                    (p[5 + n] == '\0' || p[5 + n] == ' ' || p[5 + n] == '\t'))
                        return true;
        }
        return false;
}

static const MinisignKey *find_key(const MinisignKey *keys, size_t n, const uint8_t id[static 8]) {
        for (size_t i = 0; i < n; i++)
                if (memcmp(keys[i].id, id, 8) == 0)
                        return &keys[i];
        return NULL;
}

static int verify_global(const MinisignKey *k, const MinisignSignature *sig) {
        size_t n = strlen(sig->trusted_comment);
        _cleanup_free_ uint8_t *msg = malloc(64 + n);

        if (!msg)
                return -ENOMEM;
        memcpy(msg, sig->sig, 64);
        memcpy(msg + 64, sig->trusted_comment, n);
        return crypto_sign_verify_detached(sig->global_sig, msg, 64 + n, k->pk) == 0 ? 0 : -EBADE;
}

int minisign_verify(const MinisignKey *keys, size_t n_keys, const MinisignSignature *sig,
                    const uint8_t hash[static MINISIGN_HASH_BYTES], const char *file_name, char **ret_error) {
        const MinisignKey *k = find_key(keys, n_keys, sig->key_id);
        char id[17];
        int r;

        if (sodium_init() < 0)
                return error_set(ret_error, -EIO, "cannot initialize libsodium");
        if (!k)
                return error_set(ret_error, -ENOKEY, "signed with key %s, which is not a configured public_key",
                                 minisign_key_id_to_string(sig->key_id, id));
        if (crypto_sign_verify_detached(sig->sig, hash, MINISIGN_HASH_BYTES, k->pk) != 0)
                return error_set(ret_error, -EBADMSG,
                                 "signature by key %s does not match the file (tampered, or signed another file)",
                                 minisign_key_id_to_string(k->id, id));
        r = verify_global(k, sig);
        if (r == -EBADE)
                return error_set(ret_error, r, "the trusted comment does not match its global signature (tampered)");
        if (r < 0)
                return r;
        if (!minisign_comment_names_file(sig->trusted_comment, file_name))
                return error_set(ret_error, -EXDEV,
                                 "the trusted comment does not name file:%s (a signature of another build?)",
                                 file_name);
        return 0;
}
