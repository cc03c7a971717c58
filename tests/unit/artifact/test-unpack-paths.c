/* test-unpack-paths.c: the path table unpack checks entries against. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "artifact/unpack-paths.h"

static void test_normalize(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "a/b", "a/b" }, { "./a//b/", "a/b" }, { "./", "" }, { ".", "" },
                { "/a/./b/.", "a/b" }, { "a/.b/..c", "a/.b/..c" }, { "..", ".." },
        };
        char buf[32];

        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                int n = unpack_paths_normalize(cases[i].in, buf, sizeof buf);

                assert_int_equal(n, (int) strlen(cases[i].out));
                assert_string_equal(buf, cases[i].out);
        }
        assert_int_equal(unpack_paths_normalize("abcd", buf, 4), -ENAMETOOLONG);
        assert_int_equal(unpack_paths_normalize("abc", buf, 4), 3);
}

static void test_put_get(void **state) {
        UnpackPaths p;
        char name[32];

        assert_int_equal(unpack_paths_init(&p, 0), 0);
        /* past the first capacity: the table grows and keeps every type */
        for (int i = 0; i < 5000; i++) {
                snprintf(name, sizeof name, "d%d/f", i);
                assert_int_equal(unpack_paths_put(&p, unpack_paths_hash(&p, name, strlen(name)),
                                                  (UnpackPathType) (1 + i % 3)), 0);
        }
        for (int i = 0; i < 5000; i++) {
                snprintf(name, sizeof name, "d%d/f", i);
                assert_int_equal(unpack_paths_get(&p, unpack_paths_hash(&p, name, strlen(name))),
                                 1 + i % 3);
        }
        assert_int_equal(unpack_paths_get(&p, unpack_paths_hash(&p, "d5000/f", 7)), UNPACK_PATH_NONE);
        /* a path already there keeps its type */
        assert_int_equal(unpack_paths_put(&p, unpack_paths_hash(&p, "d0/f", 4), UNPACK_PATH_SYMLINK), 0);
        assert_int_equal(unpack_paths_get(&p, unpack_paths_hash(&p, "d0/f", 4)), UNPACK_PATH_DIR);
        assert_int_equal(p.count, 5000);
        unpack_paths_done(&p);
        assert_int_equal(unpack_paths_get(&p, unpack_paths_hash(&p, "d0/f", 4)), UNPACK_PATH_NONE);
}

static void test_full(void **state) {
        UnpackPaths p;

        assert_int_equal(unpack_paths_init(&p, 2), 0);
        assert_int_equal(unpack_paths_put(&p, unpack_paths_hash(&p, "a", 1), UNPACK_PATH_DIR), 0);
        assert_int_equal(unpack_paths_put(&p, unpack_paths_hash(&p, "b", 1), UNPACK_PATH_FILE), 0);
        assert_int_equal(unpack_paths_put(&p, unpack_paths_hash(&p, "b", 1), UNPACK_PATH_FILE), 0);
        assert_int_equal(unpack_paths_put(&p, unpack_paths_hash(&p, "c", 1), UNPACK_PATH_FILE), -E2BIG);
        unpack_paths_done(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_normalize),
                cmocka_unit_test(test_put_get),
                cmocka_unit_test(test_full),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
