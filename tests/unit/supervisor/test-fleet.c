/* test-fleet.c: the supervisor's side of the fleet (supervisor/fleet.c):
 * which builds a discover job calls settled, and the words this host's
 * status uses. */
#include "supervisor-fixture.h"

#include "supervisor/fleet.h"

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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_settled_bad_by_etag),
                cmocka_unit_test(test_settled_fits),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
