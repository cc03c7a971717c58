/* test-fs-space.c: the figures and names a full or read-only disk is reported with. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <string.h>

#include "common/fs-space.h"

static void test_format_bytes(void **state) {
        static const struct { uint64_t n; const char *s; } cases[] = {
                { 0, "0B" }, { 1023, "1023B" }, { 1024, "1.0K" }, { 1536, "1.5K" },
                { 12 << 20, "12.0M" }, { UINT64_C(3) << 30, "3.0G" }, { UINT64_MAX, "16.0E" },
        };
        char buf[16];

        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                fs_format_bytes(cases[i].n, buf);
                assert_string_equal(buf, cases[i].s);
        }
}

static void test_mount_point(void **state) {
        char buf[PATH_MAX];

        fs_mount_point("/", buf, sizeof buf);
        assert_string_equal(buf, "/");
        /* /proc is its own mount wherever these tests run */
        fs_mount_point("/proc/self", buf, sizeof buf);
        assert_string_equal(buf, "/proc");
        /* a relative path is not walked: it is named as given */
        fs_mount_point("relative/dir", buf, sizeof buf);
        assert_string_equal(buf, "relative/dir");
}

static void test_describe(void **state) {
        char buf[FS_SPACE_TEXT_MAX];

        fs_space_describe("/proc/self", 0, buf);
        assert_non_null(strstr(buf, " at /proc: "));
        assert_non_null(strstr(buf, " free of "));
        assert_null(strstr(buf, "needs"));
        fs_space_describe("/", 40 << 20, buf);
        assert_non_null(strstr(buf, "; needs 40.0M"));
        fs_space_describe("/nonexistent/deploy-agent-test", 0, buf);
        assert_string_equal(buf, "cannot statfs /nonexistent/deploy-agent-test: No such file or directory");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_format_bytes),
                cmocka_unit_test(test_mount_point),
                cmocka_unit_test(test_describe),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
