/* minisign.h: verification of minisign signatures (docs/design.md, "Steps")
 * with libsodium, in the fetch worker, before anything is unpacked.
 *
 * Formats (as minisign 0.11 writes them): a public key is base64 of "Ed" + key id (8) +
 * Ed25519 key (32). A .minisig file is four lines: "untrusted comment: ...",
 * base64 of "ED" + key id (8) + signature (64), "trusted comment: TEXT",
 * base64 of the global signature (64). "ED" signs BLAKE2b-512 of the file
 * (crypto_generichash, 64 bytes); the global signature signs signature ||
 * TEXT, so the trusted comment cannot be swapped. Legacy "Ed" signatures
 * (over the whole file) are rejected. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MINISIGN_KEYS_MAX 16
#define MINISIGN_HASH_BYTES 64         /* BLAKE2b-512 */
#define MINISIGN_SIG_FILE_MAX (16U * 1024)

typedef struct MinisignKey {
        uint8_t id[8];
        uint8_t pk[32];
} MinisignKey;

typedef struct MinisignSignature {
        uint8_t key_id[8];
        uint8_t sig[64];
        char *trusted_comment;         /* malloc'd, without "trusted comment: " */
        uint8_t global_sig[64];
} MinisignSignature;
void minisign_signature_done(MinisignSignature *s);

/* One or more public keys, separated by blanks and/or commas (the config's
 * public_key). Each must decode to "Ed" + 40 bytes; duplicates are kept
 * once. -EINVAL for anything else, -E2BIG above MINISIGN_KEYS_MAX. */
int minisign_parse_public_keys(const char *s, MinisignKey *ret_keys, size_t *ret_n);

/* A .minisig file. Malformed: -EBADMSG; a legacy "Ed" signature:
 * -EPROTONOSUPPORT; ret_error says which. */
int minisign_parse_signature(const char *text, size_t n, MinisignSignature *ret, char **ret_error);

/* true when the trusted comment has the blank-separated token
 * "file:<file_name>" (minisign's default: "timestamp:N\tfile:NAME\thashed"). */
bool minisign_comment_names_file(const char *comment, const char *file_name);

/* Verify sig over a file whose BLAKE2b-512 is hash, named file_name:
 *   -ENOKEY   signed with a key that is not among keys
 *   -EBADMSG  the signature does not match (file tampered or not this one)
 *   -EBADE    the trusted comment was tampered with (global signature)
 *   -EXDEV    the trusted comment names another file (a replayed build)
 * ret_error explains, naming key ids as minisign prints them. */
int minisign_verify(const MinisignKey *keys, size_t n_keys, const MinisignSignature *sig,
                    const uint8_t hash[static MINISIGN_HASH_BYTES], const char *file_name, char **ret_error);

/* The key id as minisign prints it (upper-case hex, no leading zeros). */
const char *minisign_key_id_to_string(const uint8_t id[static 8], char buf[static 17]);
