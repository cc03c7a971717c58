/* fuzz-minisign.c: minisign public keys and .minisig files. The input's
 * first line is the config's public_key value, the rest a .minisig; when
 * both parse, the signature is verified over a fixed file, so the
 * verification's own parsing of ids and comments runs too. */
#include <sodium.h>

#include "artifact/minisign.h"
#include "fuzz.h"

#define FILE_TEXT "hello deploy-agent\n"
#define FILE_NAME "3f2c1ab.tar.gz"

static void check_verify(const MinisignKey *keys, size_t n_keys, const MinisignSignature *sig) {
        uint8_t hash[MINISIGN_HASH_BYTES];
        char *error = NULL;
        bool known = false;
        int r;

        if (crypto_generichash(hash, sizeof hash, (const uint8_t *) FILE_TEXT, strlen(FILE_TEXT), NULL, 0) != 0)
                abort();
        r = minisign_verify(keys, n_keys, sig, hash, FILE_NAME, &error);
        /* a success must come from one of the keys given */
        for (size_t i = 0; i < n_keys; i++)
                known = known || memcmp(keys[i].id, sig->key_id, sizeof sig->key_id) == 0;
        if (r == 0 && (!known || error))
                abort();
        if (r < 0 && !error)
                abort();
        (void) minisign_comment_names_file(sig->trusted_comment, FILE_NAME);
        free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        MinisignSignature sig = {};
        MinisignKey keys[MINISIGN_KEYS_MAX];
        const uint8_t *nl = memchr(data, '\n', size);
        size_t key_len = nl ? (size_t) (nl - data) : size, n_keys = 0;
        char *key_text = fuzz_strndup(data, key_len), *error = NULL;
        int kr, sr;

        if (size > MINISIGN_SIG_FILE_MAX + 1024) {
                free(key_text);
                return -1;
        }
        kr = key_text ? minisign_parse_public_keys(key_text, keys, &n_keys) : -EINVAL;
        if (kr >= 0 && (n_keys == 0 || n_keys > MINISIGN_KEYS_MAX))
                abort();
        free(key_text);
        if (!nl)
                return 0;
        sr = minisign_parse_signature((const char *) nl + 1, size - key_len - 1, &sig, &error);
        if (sr < 0 && !error)
                abort();
        if (sr >= 0 && (error || !sig.trusted_comment))
                abort();
        if (sr >= 0 && kr >= 0)
                check_verify(keys, n_keys, &sig);
        minisign_signature_done(&sig);
        free(error);
        return 0;
}
