/* test-sidecar.c: checksum sidecar parsing and download file names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "artifact/sidecar.h"
#include "common/util.h"

#define HEX "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define HEX_UPPER "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"

static int parse(const char *body, char hex[static 65]) {
        return fetch_parse_sidecar(body, strlen(body), hex);
}

static void test_sidecar_good(void **state) {
        static const char *const good[] = {
                HEX,
                HEX "\n",
                HEX "  3f2c1ab.tar.gz\n",                     /* sha256sum, text mode */
                HEX " *3f2c1ab.tar.gz\n",                     /* sha256sum, binary mode */
                HEX "  api/3f2c1ab.tar.gz\n" HEX "  other\n", /* first line counts */
                "\\" HEX "  we\\nird\n",                      /* escaped file name */
                "  \n" HEX "\r\n",
                HEX_UPPER "  3f2c1ab.tar.gz\n",
        };
        char hex[65];

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                memset(hex, 'x', sizeof(hex));
                assert_int_equal(parse(good[i], hex), 0);
                assert_string_equal(hex, HEX);
        }
}

static void test_sidecar_bad(void **state) {
        static const char *const bad[] = {
                "",
                "\n",
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",    /* 63 */
                (HEX "0"),                                                            /* 65 */
                (HEX "x  file"),
                ("SHA256 (3f2c1ab.tar.gz) = " HEX),                                    /* BSD tag */
                "zf86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "3f2c1ab",
        };
        char hex[65] = "untouched";

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse(bad[i], hex), -EBADMSG);
        assert_int_equal(fetch_parse_sidecar(HEX "\0  x", 68, hex), -EBADMSG);
        assert_string_equal(hex, "untouched");
}

static void test_file_name(void **state) {
        assert_true(fetch_file_name_is_valid("3f2c1ab", ".tar.gz"));
        assert_true(fetch_file_name_is_valid("3f2c1ab", ""));
        assert_false(fetch_file_name_is_valid("3F2C1AB", ".tar.gz"));
        assert_false(fetch_file_name_is_valid("../etc", ".tar.gz"));
        assert_false(fetch_file_name_is_valid(NULL, ".tar.gz"));
        assert_false(fetch_file_name_is_valid("3f2c1ab", "/../../x"));
        assert_false(fetch_file_name_is_valid("3f2c1ab", ".tar\n.gz"));
        assert_false(fetch_file_name_is_valid("3f2c1ab", NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sidecar_good),
                cmocka_unit_test(test_sidecar_bad),
                cmocka_unit_test(test_file_name),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
