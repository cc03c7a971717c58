/* test-service-poll.c: when a service polls: poll_interval, doubled per
 * failure in a row up to an hour, spread by +-poll_jitter; the timer that
 * starts a pass, and re-arms itself when nothing could start. */
#include "supervisor-fixture.h"

#include "supervisor/service-poll.h"

#define SEC USEC_PER_SEC

static uint64_t delay_after(Fixture *x, unsigned failures) {
        x->s->failures = failures;
        return service_poll_delay(x->s);
}

static void test_backoff_without_jitter(void **unused) {
        FixtureOptions o = { .jitter_percent = 0 };
        Fixture *x = fixture_new(&o);

        assert_int_equal(delay_after(x, 0), 60 * SEC);
        assert_int_equal(delay_after(x, 1), 120 * SEC);
        assert_int_equal(delay_after(x, 2), 240 * SEC);
        assert_int_equal(delay_after(x, 5), 1920 * SEC);
        /* capped at an hour, however long the run of failures */
        assert_int_equal(delay_after(x, 6), 3600 * SEC);
        assert_int_equal(delay_after(x, 10), 3600 * SEC);
        assert_int_equal(delay_after(x, 11), 3600 * SEC);
        assert_int_equal(delay_after(x, 1000), 3600 * SEC);
        fixture_free(x);
}

/* A poll_interval above the cap is never shortened by a failure. */
static void test_backoff_interval_above_cap(void **unused) {
        FixtureOptions o = { .jitter_percent = 0, .poll_interval = "2h" };
        Fixture *x = fixture_new(&o);

        assert_int_equal(delay_after(x, 0), 7200 * SEC);
        assert_int_equal(delay_after(x, 1), 7200 * SEC);
        assert_int_equal(delay_after(x, 30), 7200 * SEC);
        fixture_free(x);
}

/* Every delay within +-spread of the base, and both sides of it seen: a
 * fleet started together drifts apart. 2000 draws: the chance that all
 * fall on one side is 2^-2000. */
static void check_spread(Fixture *x, unsigned failures, uint64_t base, uint64_t spread) {
        uint64_t lo = UINT64_MAX, hi = 0;

        for (int i = 0; i < 2000; i++) {
                uint64_t d = delay_after(x, failures);
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
        }
        assert_in_range(lo, base - spread, base - 1);
        assert_in_range(hi, base + 1, base + spread);
        /* and most of the window is used */
        assert_true(lo < base - spread / 2);
        assert_true(hi > base + spread / 2);
}

static void test_jitter(void **unused) {
        FixtureOptions o = { .jitter_percent = 20 };
        Fixture *x = fixture_new(&o);

        check_spread(x, 0, 60 * SEC, 12 * SEC);
        check_spread(x, 3, 480 * SEC, 96 * SEC);
        check_spread(x, 50, 3600 * SEC, 720 * SEC);
        fixture_free(x);
}

static void test_jitter_full(void **unused) {
        FixtureOptions o = { .jitter_percent = 100, .poll_interval = "10s" };
        Fixture *x = fixture_new(&o);

        check_spread(x, 0, 10 * SEC, 10 * SEC);
        fixture_free(x);
}

/* Poll now: at once, not within sd-event's default accuracy (250 ms). */
static void poll_now(Fixture *x) {
        assert_int_equal(service_schedule(x->s, 0), 0);
        assert_int_equal(sd_event_source_set_time_accuracy(x->s->timer, 1), 0);
        assert_true(sd_event_run(x->event, 5 * SEC) > 0);
}

/* The armed timer's deadline, relative to now. */
static uint64_t timer_in(Fixture *x) {
        uint64_t when;

        assert_non_null(x->s->timer);
        assert_int_equal(sd_event_source_get_time(x->s->timer, &when), 0);
        return when - now_usec(CLOCK_MONOTONIC);
}

/* The timer starts a pass; when it ends, the next poll is armed at the
 * backed-off delay. */
static void test_timer_starts_a_pass(void **unused) {
        FixtureOptions o = { .jitter_percent = 0, .restart = true };
        Fixture *x = fixture_new(&o);

        poll_now(x);
        assert_true(x->fake.pending);
        assert_string_equal(x->fake.step, "discover");
        fake_complete(&x->fake, OUTCOME_CRASH);
        assert_int_equal(x->s->failures, 1);
        service_next(x->s);            /* as the manager does */
        assert_in_range(timer_in(x), 110 * SEC, 120 * SEC);

        x->s->failures = 0;
        service_next(x->s);
        assert_in_range(timer_in(x), 50 * SEC, 60 * SEC);
        fixture_free(x);
}

/* What status shows of the timer: no next poll while a pass runs, then
 * the armed deadline; after a failure, the activity names the release that
 * stays current, and does not read as if that release had failed. */
static void test_next_poll_and_activity(void **unused) {
        FixtureOptions o = { .jitter_percent = 0, .restart = true };
        Fixture *x = fixture_new(&o);
        uint64_t when;

        assert_int_equal(service_next_poll_usec(x->s), 0);
        poll_now(x);
        assert_true(x->fake.pending);
        assert_int_equal(service_next_poll_usec(x->s), 0);
        fake_complete(&x->fake, OUTCOME_CRASH);
        assert_string_equal(x->s->activity, "at nothing; the last pass failed (1 in a row)");
        service_next(x->s);
        assert_int_equal(sd_event_source_get_time(x->s->timer, &when), 0);
        assert_int_equal(service_next_poll_usec(x->s), when);
        assert_in_range(timer_in(x), 110 * SEC, 120 * SEC);
        fixture_free(x);
}

/* Paused: the timer fires, nothing starts, it is armed again. */
static void test_timer_paused(void **unused) {
        FixtureOptions o = { .jitter_percent = 0 };
        Fixture *x = fixture_new(&o);

        x->s->state->paused = true;
        poll_now(x);
        assert_false(x->fake.pending);
        assert_int_equal(x->ended.n, 0);
        assert_in_range(timer_in(x), 50 * SEC, 60 * SEC);
        fixture_free(x);
}

/* What the manager does when a pipeline ended, besides telling clients. */
static void on_ended_then_next(Service *s, unsigned seq, const PipelineResult *res, void *userdata) {
        on_ended(s, seq, res, userdata);
        service_next(s);
}

/* An operator's request queued behind a pass that then cannot start (here
 * a sha the control socket would have refused) ends at once, under its own
 * number, so the client waiting for it hears why and the owner re-arms the
 * poll (and applies a reload that waited for it). */
static void test_queued_request_cannot_start(void **unused) {
        FixtureOptions o = { .jitter_percent = 0 };
        Fixture *x = fixture_new(&o);

        x->callbacks.pipeline_ended = on_ended_then_next;
        assert_int_equal(service_poll(x->s), 0);
        assert_int_equal(service_request_seq(x->s), 2);
        assert_int_equal(service_request(x->s, PIPELINE_DEPLOY, "not-a-sha", NULL), 0);
        fake_complete(&x->fake, OUTCOME_NOT_FOUND);
        assert_false(x->fake.pending);
        assert_null(x->s->pipeline);
        assert_int_equal(x->ended.n, 2);
        assert_int_equal(x->ended.seq, 2);
        assert_int_equal(x->ended.r, -EINVAL);
        assert_non_null(x->ended.error);
        assert_int_equal(x->s->pending_kind, _PIPELINE_KIND_NONE);
        /* the next poll is armed, backed off by that one failure */
        assert_int_equal(x->s->failures, 1);
        assert_true(sd_event_source_get_enabled(x->s->timer, NULL) > 0);
        assert_in_range(timer_in(x), 110 * SEC, 120 * SEC);
        fixture_free(x);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_backoff_without_jitter),
                cmocka_unit_test(test_backoff_interval_above_cap),
                cmocka_unit_test(test_jitter),
                cmocka_unit_test(test_jitter_full),
                cmocka_unit_test(test_timer_starts_a_pass),
                cmocka_unit_test(test_next_poll_and_activity),
                cmocka_unit_test(test_timer_paused),
                cmocka_unit_test(test_queued_request_cannot_start),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
