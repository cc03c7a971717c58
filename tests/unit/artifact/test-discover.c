/* test-discover.c: artifact key matching, newest selection, pointer bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "artifact/discover.h"
#include "common/util.h"

#define SHA40 "3f2c1ab9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8"

static void test_match_good(void **state) {
        char sha[41];

        assert_true(discover_match_key("api/", ".tar.gz", "api/" SHA40 ".tar.gz", sha));
        assert_string_equal(sha, SHA40);
        assert_true(discover_match_key("api/", ".tar.gz", "api/3f2c1ab.tar.gz", sha));
        assert_string_equal(sha, "3f2c1ab");
        assert_true(discover_match_key("", ".zip", "0123456789abcdef.zip", sha));
        assert_string_equal(sha, "0123456789abcdef");
        assert_true(discover_match_key("builds/api-", ".tar.zst", "builds/api-deadbeef.tar.zst", sha));
        assert_string_equal(sha, "deadbeef");
}

static void test_match_rejected(void **state) {
        char sha[41] = "untouched";

        assert_false(discover_match_key("api/", ".tar.gz", "api/3F2C1AB.tar.gz", sha));       /* upper case */
        assert_false(discover_match_key("api/", ".tar.gz", "api/3f2c1a.tar.gz", sha));        /* 6 hex */
        assert_false(discover_match_key("api/", ".tar.gz", "api/" SHA40 "0.tar.gz", sha));    /* 41 hex */
        assert_false(discover_match_key("api/", ".tar.gz", "api/x/3f2c1ab.tar.gz", sha));     /* nested */
        assert_false(discover_match_key("api/", ".tar.gz", "api/x/" SHA40 ".tar.gz", sha));
        assert_false(discover_match_key("api/", ".tar.gz", "api/3f2c1ab.tar.gz.sha256", sha)); /* sidecar */
        assert_false(discover_match_key("api/", ".tar.gz", "api/3f2c1ab.tar.gz.minisig", sha));
        assert_false(discover_match_key("api/", ".tar.gz", "api/3f2c1ab.tar.zst", sha));       /* suffix */
        assert_false(discover_match_key("api/", ".tar.gz", "web/3f2c1ab.tar.gz", sha));        /* prefix */
        assert_false(discover_match_key("api/", ".tar.gz", "api/3f2c1ag.tar.gz", sha));        /* not hex */
        assert_false(discover_match_key("api/", ".tar.gz", "api/.tar.gz", sha));
        assert_false(discover_match_key("api/", ".tar.gz", "api/", sha));
        assert_false(discover_match_key("api/", ".tar.gz", "api/latest", sha));
        assert_false(discover_match_key("", ".tar.gz", "api/3f2c1ab.tar.gz", sha));
        assert_false(discover_match_key("", ".tar.gz", "3f2c1ab.tar.gz.sha256", sha));
        assert_string_equal(sha, "untouched");
}

static S3Object object(const char *key, uint64_t usec) {
        return (S3Object) { .key = key, .etag = "e-" , .last_modified_usec = usec, .size = 42 };
}

static void test_newest(void **state) {
        _cleanup_(discover_best_done) DiscoverBest b = {};
        S3Object o;

        o = object("api/aaaaaaa.tar.gz", 100);
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 1);
        o = object("api/bbbbbbb.tar.gz.sha256", 900);          /* newer, but a sidecar */
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 0);
        o = object("api/ccccccc.tar.gz", 300);
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 1);
        o = object("api/ddddddd.tar.gz", 200);                  /* older */
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 0);
        assert_true(b.found);
        assert_string_equal(b.sha, "ccccccc");
        assert_string_equal(b.key, "api/ccccccc.tar.gz");
        assert_string_equal(b.etag, "e-");
        assert_int_equal(b.last_modified_usec, 300);
        assert_int_equal(b.size, 42);
}

static void test_newest_ties(void **state) {
        _cleanup_(discover_best_done) DiscoverBest b = {};
        S3Object o;

        /* Same LastModified: the greatest key wins, whatever the order. */
        o = object("api/bbbbbbb.tar.gz", 500);
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 1);
        o = object("api/aaaaaaa.tar.gz", 500);
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 0);
        o = object("api/ccccccc.tar.gz", 500);
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 1);
        o = object("api/ccccccc.tar.gz", 500);                  /* same again: not newer */
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 0);
        assert_string_equal(b.sha, "ccccccc");

        assert_true(discover_is_newer(2, "a", 1, "z"));
        assert_false(discover_is_newer(1, "z", 2, "a"));
        assert_true(discover_is_newer(1, "b", 1, "a"));
        assert_false(discover_is_newer(1, "a", 1, "a"));
}

/* In listing (byte) order the sidecars follow their artifact. */
static void test_newest_sidecars(void **state) {
        _cleanup_(discover_best_done) DiscoverBest b = {};
        static const char *const keys[] = {
                "api/aaaaaaa.tar.gz", "api/aaaaaaa.tar.gz.minisig", "api/aaaaaaa.tar.gz.sha256",
                "api/bbbbbbb.tar.gz", "api/bbbbbbb.tar.gz.sha256", "api/bbbbbbb.tar.gz.sha256.old",
                "api/ccccccc.tar.gz", "api/ccccccc.tar.gz.minisig",
        };
        static const uint64_t when[] = { 100, 100, 100, 300, 300, 300, 200, 200 };
        S3Object o;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                o = object(keys[i], when[i]);
                assert_true(discover_best_offer(&b, "api/", ".tar.gz", &o) >= 0);
        }
        assert_string_equal(b.sha, "bbbbbbb");
        assert_true(b.sha256);
        assert_false(b.minisig);               /* aaaaaaa's and ccccccc's do not count */

        discover_best_done(&b);
        o = object("api/ddddddd.tar.gz", 100);
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 1);
        o = object("api/ddddddd.tar.gz.minisig", 100);
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 0);
        o = object("api/eeeeeee.tar.gz", 500);  /* a newer one: its own sidecars only */
        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 1);
        assert_false(b.minisig);
        assert_false(b.sha256);
}

static void test_newest_none(void **state) {
        _cleanup_(discover_best_done) DiscoverBest b = {};
        S3Object o = object("api/latest.txt", 100);

        assert_int_equal(discover_best_offer(&b, "api/", ".tar.gz", &o), 0);
        assert_false(b.found);
        assert_null(b.key);
}

static int parse_pointer(const char *body, char sha[static 41]) {
        return discover_parse_pointer(body, strlen(body), sha);
}

static void test_pointer(void **state) {
        char sha[41];

        assert_int_equal(parse_pointer(SHA40, sha), 0);
        assert_string_equal(sha, SHA40);
        assert_int_equal(parse_pointer("3f2c1ab\n", sha), 0);
        assert_string_equal(sha, "3f2c1ab");
        assert_int_equal(parse_pointer("3f2c1ab rollout=25 future=field\n", sha), 0);
        assert_string_equal(sha, "3f2c1ab");
        assert_int_equal(parse_pointer("3f2c1ab\tx", sha), 0);

        assert_int_equal(parse_pointer("", sha), -EBADMSG);
        assert_int_equal(parse_pointer("3f2c1a\n", sha), -EBADMSG);             /* 6 */
        assert_int_equal(parse_pointer(SHA40 "0", sha), -EBADMSG);              /* 41 */
        assert_int_equal(parse_pointer("3F2C1AB", sha), -EBADMSG);
        assert_int_equal(parse_pointer("3f2c1ab.tar.gz", sha), -EBADMSG);
        assert_int_equal(parse_pointer(" 3f2c1ab", sha), -EBADMSG);
        assert_int_equal(parse_pointer("../../3f2c1ab", sha), -EBADMSG);
        assert_int_equal(discover_parse_pointer("3f2c1ab\0evil", 12, sha), -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_match_good),
                cmocka_unit_test(test_match_rejected),
                cmocka_unit_test(test_newest),
                cmocka_unit_test(test_newest_ties),
                cmocka_unit_test(test_newest_sidecars),
                cmocka_unit_test(test_newest_none),
                cmocka_unit_test(test_pointer),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
