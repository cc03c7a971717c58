/* test-state.c: state.json round trip, bad-list matching, caps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor/state.h"
#include "common/util.h"

static char *tmp_path(void) {
        char dir[] = "/tmp/test-state-XXXXXX";

        assert_non_null(mkdtemp(dir));
        return strdup_printf("%s/state.json", dir);
}

static void test_missing_file_is_empty(void **unused) {
        _cleanup_free_ char *path = tmp_path();
        ServiceState *s = NULL;

        assert_int_equal(state_load(path, &s, NULL), 0);
        assert_null(s->current);
        assert_int_equal(s->n_bad, 0);
        assert_int_equal(s->n_history, 0);
        state_free(s);
}

static void test_round_trip(void **unused) {
        _cleanup_free_ char *path = tmp_path();
        ServiceState *s = calloc(1, sizeof *s), *t = NULL;

        assert_int_equal(state_set(&s->current, "3f2c1ab"), 0);
        assert_int_equal(state_set(&s->previous, "9ab0123"), 0);
        assert_int_equal(state_set(&s->in_flight_step, "activate"), 0);
        assert_int_equal(state_set(&s->in_flight_previous, "9ab0123"), 0);
        assert_int_equal(state_set(&s->in_flight_etag, "etag-3f2c"), 0);
        assert_int_equal(state_set(&s->pointer_etag, "\"abc\""), 0);
        assert_int_equal(state_set(&s->pinned, "3f2c1ab"), 0);
        s->paused = true;
        assert_int_equal(state_mark_bad(s, "deadbee", "etag1", "sha256 mismatch", 42), 0);
        assert_int_equal(state_add_history(s, "3f2c1ab", "9ab0123", "deployed", NULL, 43), 0);
        assert_int_equal(state_save(s, path), 0);

        assert_int_equal(state_load(path, &t, NULL), 0);
        assert_string_equal(t->current, "3f2c1ab");
        assert_string_equal(t->previous, "9ab0123");
        assert_string_equal(t->in_flight_step, "activate");
        assert_string_equal(t->in_flight_previous, "9ab0123");
        assert_string_equal(t->in_flight_etag, "etag-3f2c");
        assert_string_equal(t->pointer_etag, "\"abc\"");
        assert_string_equal(t->pinned, "3f2c1ab");
        assert_true(t->paused);
        assert_int_equal(t->n_bad, 1);
        assert_string_equal(t->bad[0].reason, "sha256 mismatch");
        assert_int_equal(t->bad[0].when_usec, 42);
        assert_int_equal(t->n_history, 1);
        assert_string_equal(t->history[0].outcome, "deployed");
        assert_null(t->history[0].message);
        state_free(s);
        state_free(t);
}

/* A bad mark whose fleet marker is not written yet survives a restart of
 * the agent; once written, state.json looks as it did before the fleet. */
static void test_fleet_unreported(void **unused) {
        _cleanup_free_ char *path = tmp_path(), *text = NULL;
        ServiceState *s = calloc(1, sizeof *s), *t = NULL;

        assert_int_equal(state_mark_bad(s, "deadbee", NULL, "health", 42), 0);
        assert_int_equal(state_mark_bad(s, "c0ffee1", NULL, "rejected", 43), 0);
        assert_null(state_first_unreported(s));
        state_set_unreported(s, "c0ffee1", true);
        assert_string_equal(state_first_unreported(s)->sha, "c0ffee1");
        assert_int_equal(state_save(s, path), 0);
        assert_int_equal(state_load(path, &t, NULL), 0);
        assert_false(t->bad[0].unreported);
        assert_true(t->bad[1].unreported);
        state_set_unreported(t, "c0ffee1", false);
        assert_null(state_first_unreported(t));
        text = state_format(t);
        assert_non_null(text);
        assert_null(strstr(text, "fleet_unreported"));
        state_free(s);
        state_free(t);
}

static void test_bad_matches_etag(void **unused) {
        ServiceState *s = calloc(1, sizeof *s);

        assert_int_equal(state_mark_bad(s, "deadbee", "etag1", "r", 1), 0);
        assert_non_null(state_find_bad(s, "deadbee", "etag1"));
        assert_non_null(state_find_bad(s, "deadbee", NULL));
        /* a new object under the same key gets another chance */
        assert_null(state_find_bad(s, "deadbee", "etag2"));
        assert_null(state_find_bad(s, "cafe123", "etag1"));
        assert_int_equal(state_mark_bad(s, "cafe123", NULL, "rolled back by uid 0", 2), 0);
        assert_non_null(state_find_bad(s, "cafe123", "any"));
        state_free(s);
}

static void test_history_capped(void **unused) {
        ServiceState *s = calloc(1, sizeof *s);
        char sha[16];

        for (int i = 0; i < STATE_HISTORY_MAX + 10; i++) {
                snprintf(sha, sizeof sha, "%07x", i);
                assert_int_equal(state_add_history(s, sha, NULL, "deployed", NULL, (uint64_t) i), 0);
        }
        assert_int_equal(s->n_history, STATE_HISTORY_MAX);
        assert_string_equal(s->history[0].sha, "000000a");          /* oldest dropped */
        assert_int_equal(s->history[STATE_HISTORY_MAX - 1].when_usec, STATE_HISTORY_MAX + 9);
        state_free(s);
}

static void test_corrupt_file_is_an_error(void **unused) {
        _cleanup_free_ char *path = tmp_path();
        _cleanup_free_ char *error = NULL;
        ServiceState *s = NULL;
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fputs("{\"current\": 12", f);
        fclose(f);
        assert_true(state_load(path, &s, &error) < 0);
        assert_null(s);
        assert_non_null(strstr(error, path));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_file_is_empty),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_bad_matches_etag),
                cmocka_unit_test(test_fleet_unreported),
                cmocka_unit_test(test_history_capped),
                cmocka_unit_test(test_corrupt_file_is_an_error),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
