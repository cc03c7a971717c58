/* test-fleet.c: deployctl's --waves parser and the fleet exit codes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ctl/fleet.h"
#include "ctl/fleet-print.h"
#include "common/util.h"

static void check_waves(const char *s, const unsigned *want, size_t n) {
        unsigned waves[ROLLOUT_WAVES_MAX];
        size_t got = 0;
        char *error = NULL;

        assert_int_equal(fleet_parse_waves(s, waves, &got, &error), 0);
        assert_null(error);
        assert_int_equal(got, n);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(waves[i], want[i]);
}

static void check_bad(const char *s, const char *why) {
        unsigned waves[ROLLOUT_WAVES_MAX];
        size_t got = 0;
        char *error = NULL;

        assert_int_equal(fleet_parse_waves(s, waves, &got, &error), -EINVAL);
        assert_non_null(error);
        assert_non_null(strstr(error, why));
        free(error);
}

static void test_waves(void **state) {
        check_waves("5%,25%,100%", (const unsigned[]) { 500, 2500, 10000 }, 3);
        check_waves("100%", (const unsigned[]) { 10000 }, 1);
        check_waves("0.5%,12.25,100", (const unsigned[]) { 50, 1225, 10000 }, 3);
        check_waves("0.01%,99.99%,100.00%", (const unsigned[]) { 1, 9999, 10000 }, 3);
        check_waves("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,100",
                    (const unsigned[]) { 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400,
                                         1500, 10000 }, 16);
}

static void test_waves_refused(void **state) {
        check_bad("", "percentage");
        check_bad("5%,,100%", "percentage");
        check_bad("5%,25%,", "percentage");
        check_bad("0%,100%", "percentage");
        check_bad("0.001%,100%", "two decimals");
        check_bad("101%", "percentage");
        check_bad("100.01%", "percentage");
        check_bad("-5%,100%", "percentage");
        check_bad("5%%,100%", "percentage");
        check_bad("5 %,100%", "percentage");
        check_bad("25%,5%,100%", "ascending");
        check_bad("5%,5%,100%", "ascending");
        check_bad("5%,50%", "end with 100%");
        check_bad("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,100", "at most 16");
        check_bad("99999999999999999999%,100%", "percentage");
}

/* Hosts' words reach the terminal as printable ASCII, cut without splitting
 * a UTF-8 sequence (anything not ASCII is '?'). */
static void test_printable(void **state) {
        char buf[8];

        assert_string_equal(printable_copy(buf, sizeof buf, "ok\x1b[2Jx"), "ok?[2Jx");
        assert_string_equal(printable_copy(buf, sizeof buf, "a\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), "a??????");
        assert_string_equal(printable_copy(buf, sizeof buf, "tab\there\n"), "tab?her");
        assert_string_equal(printable_copy(buf, sizeof buf, NULL), "");
        assert_string_equal(printable_copy(buf, 1, "x"), "");
}

static void test_print_escapes(void **state) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        json_t *report = json_pack(
                "{s:{s:b,s:b,s:s,s:i,s:i,s:[{s:s,s:s,s:s}]},s:{s:{s:i}},s:[{s:s,s:s,s:s,s:s}],s:[],s:[]}",
                "breaker", "halted", 1, "aborted", 0, "sha", "abc1234", "failures", 1, "max_failures", 1,
                "hosts", "host_id", "web-1", "time", "t\x1b]0;x\x07", "reason", "boom\x1b[31m",
                "builds", "abc1234\x1b[1m", "idle\r", 1,
                "failed", "host_id", "web-1", "state", "fail\x1b[0m", "current", "abc", "last_error", "e\x1b[2J\xc3\xa9",
                "stale", "unreadable");

        assert_non_null(report);
        assert_non_null(f);
        fleet_print_status(report, f);
        assert_int_equal(fclose(f), 0);
        json_decref(report);
        for (const char *p = text; *p; p++)
                if ((*p < 0x20 && *p != '\n') || *p > 0x7e)
                        fail_msg("byte 0x%02x at %zu in:\n%s", (unsigned char) *p, (size_t) (p - text), text);
        assert_non_null(strstr(text, "boom?[31m"));
        assert_non_null(strstr(text, "e?[2J??"));
}

static void test_exit_codes(void **state) {
        assert_int_equal(fleet_exit_code(0), 0);
        assert_int_equal(fleet_exit_code(S3_CONDITION_FAILED), FLEET_EXIT_CONFLICT);
        assert_int_equal(fleet_exit_code(-EDESTADDRREQ), FLEET_EXIT_REFUSED);
        assert_int_equal(fleet_exit_code(-EINVAL), 2);
        assert_int_equal(fleet_exit_code(-ENOENT), 3);
        assert_int_equal(fleet_exit_code(-EACCES), 4);
        assert_int_equal(fleet_exit_code(-EIO), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_waves),
                cmocka_unit_test(test_waves_refused),
                cmocka_unit_test(test_exit_codes),
                cmocka_unit_test(test_printable),
                cmocka_unit_test(test_print_escapes),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
