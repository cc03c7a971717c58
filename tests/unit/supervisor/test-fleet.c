/* test-fleet.c: the supervisor's side of the fleet (supervisor/fleet.c):
 * which builds a discover job calls settled, and the words this host's
 * status uses. */
#include "supervisor-fixture.h"

#include "supervisor/fleet.h"
#include "supervisor/service-poll.h"

static bool settled(const FleetJob *j, const char *sha) {
        for (size_t i = 0; i < j->n_settled; i++)
                if (streq(j->settled[i], sha))
                        return true;
        return false;
}

/* A build bad as any object is settled; one bad only as the object with
 * some ETag is not: re-uploaded, it must pass the rollout's admission
 * (waves, pause, the breaker) like any new build. */
static void test_settled_bad_by_etag(void **unused) {
        FixtureOptions o = { .fleet = true };
        Fixture *x = fixture_new(&o);
        FleetJob j;

        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        assert_int_equal(state_mark_bad(x->s->state, NEW, "\"e-new\"", "rejected", 1), 0);
        assert_int_equal(state_mark_bad(x->s->state, "abcdef1", NULL, "rolled back", 2), 0);
        j = fleet_discover_job(x->s);
        assert_true(settled(&j, OLD));
        assert_true(settled(&j, "abcdef1"));
        assert_false(settled(&j, NEW));
        fixture_free(x);
}

/* The current build, every halted one and the newest bad ones all fit:
 * nothing is dropped for want of room. */
static void test_settled_fits(void **unused) {
        FixtureOptions o = { .fleet = true };
        Fixture *x = fixture_new(&o);
        ServiceFleet *f = &x->s->fleet;
        char sha[16];
        FleetJob j;

        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        for (unsigned i = 0; i < FLEET_HALTED_MAX; i++) {
                snprintf(f->halted[i].sha, sizeof f->halted[i].sha, "aaaaaa%x", i);
                f->halted[i].halt = strdup("");
                f->n_halted++;
        }
        for (unsigned i = 0; i < 12; i++) {
                snprintf(sha, sizeof sha, "bbbbbb%x", i);
                assert_int_equal(state_mark_bad(x->s->state, sha, NULL, "rolled back", i + 1), 0);
        }
        j = fleet_discover_job(x->s);
        assert_true(j.n_settled <= FLEET_SETTLED_MAX);
        assert_true(settled(&j, OLD));
        for (unsigned i = 0; i < FLEET_HALTED_MAX; i++)
                assert_true(settled(&j, f->halted[i].sha));
        /* the newest bad ones, as many as fit */
        assert_true(settled(&j, "bbbbbbb"));
        assert_true(settled(&j, "bbbbbb5"));
        assert_false(settled(&j, "bbbbbb4"));
        assert_int_equal(j.n_settled, FLEET_SETTLED_MAX);
        fixture_free(x);
}

/* The status's "state" of this host now (the report's fields). */
static const char *state_now(Fixture *x, char *buf, size_t size) {
        _cleanup_free_ char *status = NULL, *bad_sha = NULL, *bad_body = NULL;
        json_auto_t *j = NULL;

        assert_int_equal(fleet_report_fields(x->s, &status, &bad_sha, &bad_body), 0);
        j = json_loads(status, 0, NULL);
        assert_non_null(j);
        snprintf(buf, size, "%s", strempty(json_string_value(json_object_get(j, "state"))));
        return buf;
}

/* "failed" says the last pass failed; one that succeeds after it says
 * "ok" again, though last_error stays until the next deploy. */
static void test_state_failed_then_ok(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true, .fleet = true };
        Fixture *x = fixture_new(&o);
        char word[32];

        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        assert_int_equal(state_mark_bad(x->s->state, NEW, NULL, "earlier", 1), 0);
        assert_int_equal(service_poll(x->s), 0);
        fake_complete(&x->fake, OUTCOME_FAIL); /* S3 down for the discover */
        assert_string_equal(x->fake.step, "report");
        assert_string_equal(state_now(x, word, sizeof word), "failed");
        fake_complete(&x->fake, OUTCOME_OK);
        assert_true(x->ended.r < 0);
        assert_int_equal(service_poll(x->s), 0);
        fake_complete(&x->fake, OUTCOME_OK); /* NEW is bad here: nothing to do */
        while (x->fake.pending)
                fake_complete(&x->fake, OUTCOME_OK);
        assert_int_equal(x->ended.r, 0);
        assert_non_null(x->s->state->last_error);
        assert_string_equal(state_now(x, word, sizeof word), "ok");
        fixture_free(x);
}

/* Admitted is not taken: a build its wave admits but that is bad here
 * (or too young, or failed) reads "admitted"; "taken" once it is current. */
static void test_rollout_admitted_not_taken(void **unused) {
        FixtureOptions o = { .fleet = true };
        Fixture *x = fixture_new(&o);
        DiscoverResult res = { .found = true, .sha = NEW,
                               .rollout = { .set = true, .sha = NEW, .n_waves = 2, .admitted = true } };

        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        assert_int_equal(state_mark_bad(x->s->state, NEW, NULL, "earlier", 1), 0);
        assert_int_equal(fleet_on_discovered(x->s, &res), 0);
        assert_string_equal(fleet_rollout_status(x->s), "admitted");
        assert_int_equal(state_set(&x->s->state->current, NEW), 0);
        assert_string_equal(fleet_rollout_status(x->s), "taken");
        res.rollout.admitted = false;
        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        assert_int_equal(fleet_on_discovered(x->s, &res), 0);
        assert_string_equal(fleet_rollout_status(x->s), "waiting");
        fixture_free(x);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_settled_bad_by_etag),
                cmocka_unit_test(test_settled_fits),
                cmocka_unit_test(test_state_failed_then_ok),
                cmocka_unit_test(test_rollout_admitted_not_taken),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
