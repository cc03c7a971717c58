/* test-minisign.c: public keys, .minisig parsing and verification, against
 * vectors made with Debian's minisign 0.11 (minisign -G -W; minisign -S of a
 * file holding "hello deploy-agent\n" named 3f2c1ab.tar.gz). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>

#include "config/config.h"
#include "artifact/minisign.h"
#include "common/util.h"

#define FILE_TEXT "hello deploy-agent\n"
#define PUB_A "RWSxI1xKtnQMKy63nf1SZ3xjgJjoE79VhDvs243MIeU+gzP1xCqAqJEh"   /* id 2B0C74B64A5C23B1 */
#define PUB_B "RWSVdgHhFZNzCqZ0Po4LsHm7yWq6X7KwSnBKrqbJvmVxxbnAvHZ4Ip0G"   /* id A739315E1017695 */

static const char sig_a[] =
        "untrusted comment: signature from minisign secret key\n"
        "RUSxI1xKtnQMKyU74xUExKavsj+W3J9oTGeZ+LB+wDyK/zZo6S/+sW47JnUqKXCh1juhuJMexnT6fs9OZwhtdaH4GY+yPZi/wAc=\n"
        "trusted comment: timestamp:1700000000\tfile:3f2c1ab.tar.gz\thashed\n"
        "9EmyoF4SEyk7e1D1JMKWb5VEREaKvV4zgkhtRXlhqnWV6dI2nxyULaR+OGFOxlJPJJHTwItpsg5quGQa2rq6BQ==\n";

/* The same bytes signed as another build's file. */
static const char sig_other_file[] =
        "untrusted comment: signature from minisign secret key\n"
        "RUSxI1xKtnQMKyU74xUExKavsj+W3J9oTGeZ+LB+wDyK/zZo6S/+sW47JnUqKXCh1juhuJMexnT6fs9OZwhtdaH4GY+yPZi/wAc=\n"
        "trusted comment: timestamp:1795826401\tfile:0000000.tar.gz\thashed\n"
        "mISAMMNaKesuCDsR/FyBi8sr3Rfit5BiWybZUNGtGGGRkpdonkK4wKMJrko4akx7+1zD1qzbqLBRyGbvDy0cCQ==\n";

static const char sig_legacy[] =
        "untrusted comment: signature from minisign secret key\n"
        "RWSxI1xKtnQMK6rE+EHmNYCE1SkW76sfp470JQqiXIi5/ngvQ2fOQvXrZBNQ8QKBXruNODr8fQl/9gUi0Dp3sqw8449SItHALAw=\n"
        "trusted comment: timestamp:1795826401\tfile:3f2c1ab.tar.gz\n"
        "8mqB4x9MIKZq9nGv0NuZOnwcu8X+hgJhbowo+DLkQAfIOPCpSFlGq4CV7YtkslcOeo5RG64OJkTnNEbVeP12DA==\n";

static const char sig_b[] =
        "untrusted comment: signature from minisign secret key\n"
        "RUSVdgHhFZNzCjIMKXVaavSf5VqtC84o7QOZndzeuWr7iARiCj255uukCdPbLcsIylckPHOo9EpL00dK1WjfFJHOWLk+2+qiIwM=\n"
        "trusted comment: timestamp:1700000000\tfile:3f2c1ab.tar.gz\thashed\n"
        "Tm0zRgcM5k1XpUVy2LWEP8ncrKxzWqiLnE6oBrWMMXdoxEB3Ij8NOw0UUXTLP8HWurSWoFTnWCHhoOgCDLDDAQ==\n";

static void file_hash(const char *text, uint8_t hash[static MINISIGN_HASH_BYTES]) {
        assert_int_equal(crypto_generichash(hash, MINISIGN_HASH_BYTES, (const uint8_t *) text, strlen(text),
                                            NULL, 0), 0);
}

static int verify(const char *keys, const char *sig_text, const char *data, const char *name, char **error) {
        _cleanup_(minisign_signature_done) MinisignSignature sig = {};
        MinisignKey k[MINISIGN_KEYS_MAX];
        uint8_t hash[MINISIGN_HASH_BYTES];
        size_t n;

        assert_int_equal(minisign_parse_public_keys(keys, k, &n), 0);
        assert_int_equal(minisign_parse_signature(sig_text, strlen(sig_text), &sig, error), 0);
        file_hash(data, hash);
        return minisign_verify(k, n, &sig, hash, name, error);
}

static void test_keys(void **state) {
        MinisignKey k[MINISIGN_KEYS_MAX];
        char id[17];
        size_t n = 0;

        assert_int_equal(minisign_parse_public_keys(PUB_A, k, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(minisign_key_id_to_string(k[0].id, id), "2B0C74B64A5C23B1");
        assert_int_equal(minisign_parse_public_keys(" " PUB_A ",\n" PUB_B " , " PUB_A "\t", k, &n), 0);
        assert_int_equal(n, 2);                 /* the duplicate once */
        assert_string_equal(minisign_key_id_to_string(k[1].id, id), "A739315E1017695");

        assert_int_equal(minisign_parse_public_keys("", k, &n), -EINVAL);
        assert_int_equal(minisign_parse_public_keys(" , ", k, &n), -EINVAL);
        assert_int_equal(minisign_parse_public_keys(PUB_A "x", k, &n), -EINVAL);
        assert_int_equal(minisign_parse_public_keys(PUB_A ";" PUB_B, k, &n), -EINVAL);
        /* An "ED" secret-key-ish prefix is not a public key. */
        assert_int_equal(minisign_parse_public_keys("RUSxI1xKtnQMKy63nf1SZ3xjgJjoE79VhDvs243MIeU+gzP1xCqAqJEh", k, &n),
                         -EINVAL);
}

static void test_parse_signature(void **state) {
        _cleanup_(minisign_signature_done) MinisignSignature sig = {};
        _cleanup_free_ char *error = NULL;
        char id[17];

        assert_int_equal(minisign_parse_signature(sig_a, strlen(sig_a), &sig, &error), 0);
        assert_string_equal(sig.trusted_comment, "timestamp:1700000000\tfile:3f2c1ab.tar.gz\thashed");
        assert_string_equal(minisign_key_id_to_string(sig.key_id, id), "2B0C74B64A5C23B1");
        assert_null(error);
}

static void check_malformed(const char *text, int want, const char *why) {
        _cleanup_(minisign_signature_done) MinisignSignature sig = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(minisign_parse_signature(text, strlen(text), &sig, &error), want);
        assert_non_null(error);
        assert_non_null(strstr(error, why));
        assert_null(sig.trusted_comment);
}

static void test_malformed_signatures(void **state) {
        char crlf[sizeof(sig_a) + 8], *p = crlf;

        check_malformed(sig_legacy, -EPROTONOSUPPORT, "legacy");
        check_malformed("", -EBADMSG, "untrusted comment");
        check_malformed("hello\n", -EBADMSG, "untrusted comment");
        check_malformed("untrusted comment: x\n", -EBADMSG, "no signature line");
        check_malformed("untrusted comment: x\nnot base64\n", -EBADMSG, "not base64");
        check_malformed("untrusted comment: x\n"
                        "RUSxI1xKtnQMKyU74xUExKavsj+W3J9oTGeZ+LB+wDyK/zZo6S/+sW47JnUqKXCh1juhuJMexnT6fs9OZwhtdaH4GY+yPZi/wAc=\n"
                        "comment: x\nAAAA\n", -EBADMSG, "trusted comment");
        check_malformed("untrusted comment: x\n"
                        "RUSxI1xKtnQMKyU74xUExKavsj+W3J9oTGeZ+LB+wDyK/zZo6S/+sW47JnUqKXCh1juhuJMexnT6fs9OZwhtdaH4GY+yPZi/wAc=\n"
                        "trusted comment: x\nAAAA\n", -EBADMSG, "global signature");
        {
                char extra[sizeof(sig_a) + 16];
                snprintf(extra, sizeof(extra), "%smore\n", sig_a);
                check_malformed(extra, -EBADMSG, "after the global signature");
        }
        /* CRLF line ends (a signature edited on Windows) still parse. */
        for (const char *q = sig_a; *q; q++) {
                if (*q == '\n')
                        *p++ = '\r';
                *p++ = *q;
        }
        *p = '\0';
        {
                _cleanup_(minisign_signature_done) MinisignSignature sig = {};
                assert_int_equal(minisign_parse_signature(crlf, strlen(crlf), &sig, NULL), 0);
                assert_string_equal(sig.trusted_comment, "timestamp:1700000000\tfile:3f2c1ab.tar.gz\thashed");
        }
}

static void test_verify_good(void **state) {
        _cleanup_free_ char *error = NULL;

        assert_int_equal(verify(PUB_A, sig_a, FILE_TEXT, "3f2c1ab.tar.gz", &error), 0);
        assert_int_equal(verify(PUB_B ", " PUB_A, sig_a, FILE_TEXT, "3f2c1ab.tar.gz", &error), 0);
        assert_int_equal(verify(PUB_A " " PUB_B, sig_b, FILE_TEXT, "3f2c1ab.tar.gz", &error), 0);
        assert_null(error);
}

static void test_verify_rejects(void **state) {
        _cleanup_free_ char *error = NULL;

        assert_int_equal(verify(PUB_A, sig_a, "hello deploy-agenT\n", "3f2c1ab.tar.gz", &error), -EBADMSG);
        assert_non_null(strstr(error, "does not match the file"));
        assert_int_equal(verify(PUB_A, sig_b, FILE_TEXT, "3f2c1ab.tar.gz", &error), -ENOKEY);
        assert_non_null(strstr(error, "A739315E1017695"));
        assert_int_equal(verify(PUB_A, sig_other_file, FILE_TEXT, "3f2c1ab.tar.gz", &error), -EXDEV);
        assert_non_null(strstr(error, "file:3f2c1ab.tar.gz"));
        assert_int_equal(verify(PUB_A, sig_other_file, FILE_TEXT, "0000000.tar.gz", &error), 0);
}

static void test_tampered_trusted_comment(void **state) {
        _cleanup_(minisign_signature_done) MinisignSignature sig = {};
        _cleanup_free_ char *error = NULL;
        MinisignKey k[MINISIGN_KEYS_MAX];
        uint8_t hash[MINISIGN_HASH_BYTES];
        size_t n;

        assert_int_equal(minisign_parse_public_keys(PUB_A, k, &n), 0);
        assert_int_equal(minisign_parse_signature(sig_other_file, strlen(sig_other_file), &sig, NULL), 0);
        /* Rename the file in the comment: the global signature breaks. */
        memcpy(strstr(sig.trusted_comment, "0000000"), "3f2c1ab", 7);
        file_hash(FILE_TEXT, hash);
        assert_int_equal(minisign_verify(k, n, &sig, hash, "3f2c1ab.tar.gz", &error), -EBADE);
        assert_non_null(strstr(error, "tampered"));
}

static void test_comment_names_file(void **state) {
        assert_true(minisign_comment_names_file("timestamp:1\tfile:3f2c1ab.tar.gz\thashed", "3f2c1ab.tar.gz"));
        assert_true(minisign_comment_names_file("file:3f2c1ab.tar.gz", "3f2c1ab.tar.gz"));
        assert_true(minisign_comment_names_file("built by ci file:3f2c1ab.tar.gz", "3f2c1ab.tar.gz"));
        assert_false(minisign_comment_names_file("file:3f2c1ab.tar.gz.old", "3f2c1ab.tar.gz"));
        assert_false(minisign_comment_names_file("file:x3f2c1ab.tar.gz", "3f2c1ab.tar.gz"));
        assert_false(minisign_comment_names_file("myfile:3f2c1ab.tar.gz", "3f2c1ab.tar.gz"));
        assert_false(minisign_comment_names_file("3f2c1ab.tar.gz", "3f2c1ab.tar.gz"));
        assert_false(minisign_comment_names_file("", "3f2c1ab.tar.gz"));
        assert_true(minisign_comment_names_file("file:a file:3f2c1ab.tar.gz", "3f2c1ab.tar.gz"));
}

/* config/items.c accepts what minisign_parse_public_keys() accepts. */
static int load_public_key(const char *value) {
        char path[] = "/tmp/test-minisign-XXXXXX";
        _cleanup_config_ Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        int fd, r;

        fd = mkstemp(path);
        assert_true(fd >= 0);
        f = fdopen(fd, "we");
        assert_non_null(f);
        fprintf(f, "[service \"api\"]\nbucket = acme-artifacts\nroot = /srv/api\npublic_key = %s\n", value);
        assert_int_equal(fflush(f), 0);
        r = config_load(path, &c, &error);
        unlink(path);
        return r;
}

static void test_config_public_keys(void **state) {
        char many[17 * 58 + 1] = "";

        assert_int_equal(load_public_key(PUB_A), 0);
        assert_int_equal(load_public_key(PUB_A ", " PUB_B), 0);
        assert_int_equal(load_public_key(PUB_A " " PUB_B ","), 0);
        assert_int_equal(load_public_key(PUB_A ";" PUB_B), -EINVAL);
        assert_int_equal(load_public_key("RWSnope"), -EINVAL);
        for (int i = 0; i < 17; i++)
                strcat(strcat(many, PUB_A), " ");
        assert_int_equal(load_public_key(many), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keys),
                cmocka_unit_test(test_parse_signature),
                cmocka_unit_test(test_malformed_signatures),
                cmocka_unit_test(test_verify_good),
                cmocka_unit_test(test_verify_rejects),
                cmocka_unit_test(test_tampered_trusted_comment),
                cmocka_unit_test(test_comment_names_file),
                cmocka_unit_test(test_config_public_keys),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
