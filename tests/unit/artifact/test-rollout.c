/* test-rollout.c: the rollout policy in a pointer body, and which of 1,000
 * simulated hosts each wave admits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact/discover.h"
#include "artifact/rollout.h"
#include "common/util.h"

#define SHA "3f2c1ab"
#define SHA40 "3f2c1ab0d1e2f3a4b5c6d7e8f90123456789abcd"
#define N_HOSTS 1000
#define SEC USEC_PER_SEC

static int parse(const char *body, RolloutPolicy *p, char **error) {
        return rollout_parse(body, strlen(body), p, error);
}

static void test_rollout_plain_pointer(void **state) {
        static const char *const plain[] = { SHA, SHA "\n", SHA "\r\n", SHA " rollout=25 future=field\n", SHA40 "\n\n" };
        RolloutPolicy p;

        for (size_t i = 0; i < ELEMENTSOF(plain); i++) {
                _cleanup_free_ char *error = NULL;

                assert_int_equal(parse(plain[i], &p, &error), 0);
                assert_true(streq(p.sha, SHA) || streq(p.sha, SHA40));
                assert_false(p.has_waves);
                assert_false(p.paused);
                assert_int_equal(p.max_failures, 1);
                assert_string_equal(p.previous, "");
                assert_true(rollout_admits(&p, "any-host", false, 0));
        }
}

/* Line 1 as discover_parse_pointer() reads it: trailing text on an old
 * pointer is still accepted when no policy line follows. */
static void test_rollout_first_line_as_discover(void **state) {
        static const char *const ok[] = { SHA, SHA "\n", SHA " build.tar.gz\n", SHA " x\n\n  \n", SHA "\r\n" };
        static const char *const bad[] = { "", "abc12", SHA "x\n", "ABC1234\n", " " SHA "\n" };
        char sha[41];

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                _cleanup_free_ char *error = NULL;
                RolloutPolicy p;

                assert_int_equal(discover_parse_pointer(ok[i], strlen(ok[i]), sha), 0);
                assert_int_equal(rollout_parse(ok[i], strlen(ok[i]), &p, &error), 0);
                assert_string_equal(p.sha, sha);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *error = NULL;
                RolloutPolicy p;

                assert_int_equal(discover_parse_pointer(bad[i], strlen(bad[i]), sha), -EBADMSG);
                assert_int_equal(rollout_parse(bad[i], strlen(bad[i]), &p, &error), -EBADMSG);
        }
}

static void test_rollout_full(void **state) {
        const char *body = SHA40 "\nstarted=1800000000\nwaves=500,2500,10000\nwave_interval=900\n"
                           "max_failures=3\npaused=no\nprevious=aaaaaaa\n";
        _cleanup_free_ char *error = NULL, *text = NULL;
        RolloutPolicy p;
        char sha[41];

        assert_int_equal(parse(body, &p, &error), 0);
        assert_string_equal(p.sha, SHA40);
        assert_true(p.has_waves);
        assert_int_equal(p.started_usec, UINT64_C(1800000000) * SEC);
        assert_int_equal(p.n_waves, 3);
        assert_int_equal(p.waves[0], 500);
        assert_int_equal(p.waves[2], 10000);
        assert_int_equal(p.wave_interval_usec, 900 * SEC);
        assert_int_equal(p.max_failures, 3);
        assert_false(p.paused);
        assert_string_equal(p.previous, "aaaaaaa");
        /* The format deployctl writes is the format it reads... */
        text = rollout_format(&p);
        assert_non_null(text);
        assert_string_equal(text, body);
        /* ...and an agent that knows nothing of policies still reads the sha. */
        assert_int_equal(discover_parse_pointer(body, strlen(body), sha), 0);
        assert_string_equal(sha, SHA40);
}

static void assert_round_trip(const RolloutPolicy *p) {
        _cleanup_free_ char *text = rollout_format(p), *error = NULL;
        RolloutPolicy q;

        assert_non_null(text);
        assert_int_equal(parse(text, &q, &error), 0);
        assert_string_equal(p->sha, q.sha);
        assert_int_equal(p->has_waves, q.has_waves);
        assert_int_equal(p->started_usec, q.started_usec);
        assert_int_equal(p->n_waves, q.n_waves);
        assert_memory_equal(p->waves, q.waves, p->n_waves * sizeof p->waves[0]);
        assert_int_equal(p->wave_interval_usec, q.wave_interval_usec);
        assert_int_equal(p->max_failures, q.max_failures);
        assert_int_equal(p->paused, q.paused);
        assert_string_equal(p->previous, q.previous);
}

static void test_rollout_round_trip(void **state) {
        RolloutPolicy p = { .sha = SHA, .max_failures = 1 };

        assert_round_trip(&p);
        p.paused = true;
        assert_round_trip(&p);
        strcpy(p.previous, SHA40);
        p.max_failures = 7;
        assert_round_trip(&p);
        p.has_waves = true;
        p.started_usec = 12 * SEC;
        p.wave_interval_usec = 1 * SEC;
        for (size_t i = 0; i < ROLLOUT_WAVES_MAX; i++)
                p.waves[i] = (unsigned) (i + 1) * 625;
        p.n_waves = ROLLOUT_WAVES_MAX;
        assert_round_trip(&p);
        p.paused = false;
        p.waves[0] = 10000;
        p.n_waves = 1;
        assert_round_trip(&p);
}

/* Every malformed body, and the line and key its error must name. */
static void test_rollout_malformed(void **state) {
        static const struct {
                const char *body;
                const char *error;
        } bad[] = {
                { "", "line 1" },
                { "3f2c1a\n", "line 1" },
                { "3F2C1AB\n", "line 1" },
                { " " SHA "\n", "line 1" },
                { SHA "x\n", "line 1" },
                { SHA "\nrollout\n", "line 2: rollout: not key=value" },
                { SHA "\ncolor=blue\n", "line 2: color: unknown key" },
                { SHA "\n=1\n", "line 2: : unknown key" },
                { SHA "\npaused=no\npaused=no\n", "line 3: paused: duplicate key" },
                { SHA "\npaused=maybe\n", "line 2: paused: not yes or no" },
                { SHA "\npaused=\n", "line 2: paused: not yes or no" },
                { SHA "\nstarted=-1\n", "line 2: started: not unix seconds" },
                { SHA "\nstarted=1e9\n", "line 2: started: not unix seconds" },
                { SHA "\nstarted= 5\n", "line 2: started: not unix seconds" },
                { SHA "\nstarted=99999999999999999999\n", "line 2: started: not unix seconds" },
                { SHA "\nwave_interval=0\n", "line 2: wave_interval: not a number of seconds >= 1" },
                { SHA " paused=yes\nmax_failures=2\n", "line 1: text after the sha" },
                { SHA "\tbuild.tar.gz\npaused=yes\n", "line 1: text after the sha" },
                { SHA "\nwave_interval=10000000000000\n", "line 2: wave_interval: more than a year" },
                { SHA "\nwave_interval=31536001\n", "line 2: wave_interval: more than a year" },
                { SHA "\nstarted=253402300800\n", "line 2: started: after the year 9999" },
                { SHA "\nmax_failures=0\n", "line 2: max_failures: not a number >= 1" },
                { SHA "\nmax_failures=4294967296\n", "line 2: max_failures: not a number >= 1" },
                { SHA "\nprevious=XYZ\n", "line 2: previous: not a sha" },
                { SHA "\nprevious=" SHA40 "0\n", "line 2: previous: not a sha" },
                { SHA "\nwaves=\n", "line 2: waves: each wave is 1..10000" },
                { SHA "\nwaves=0,10000\n", "line 2: waves: each wave is 1..10000" },
                { SHA "\nwaves=500,,10000\n", "line 2: waves: each wave is 1..10000" },
                { SHA "\nwaves=500,10001\n", "line 2: waves: each wave is 1..10000" },
                { SHA "\nwaves=10000,10000\n", "line 2: waves: waves must be strictly ascending" },
                { SHA "\nwaves=5000,500,10000\n", "line 2: waves: waves must be strictly ascending" },
                { SHA "\nwaves=500,5000\n", "line 2: waves: the last wave must be 10000" },
                { SHA "\nwaves=5%,100%\n", "line 2: waves: each wave is 1..10000" },
                { SHA "\nwaves=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,10000\n", "line 2: waves: more than 16 waves" },
                { SHA "\nwaves=10000\nwave_interval=60\n", "waves without started" },
                { SHA "\nwaves=10000\nstarted=60\n", "waves without wave_interval" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *error = NULL;
                RolloutPolicy p = { .sha = "untouched" };

                assert_int_equal(parse(bad[i].body, &p, &error), -EBADMSG);
                assert_non_null(error);
                if (!strstr(error, bad[i].error))
                        fail_msg("body %zu: error \"%s\" does not say \"%s\"", i, error, bad[i].error);
                assert_string_equal(p.sha, "untouched");
        }
}

static void test_rollout_nul_and_size(void **state) {
        _cleanup_free_ char *error = NULL, *big = NULL;
        RolloutPolicy p;

        assert_int_equal(rollout_parse(SHA "\npaused=no\0", 18, &p, &error), -EBADMSG);
        big = malloc(ROLLOUT_BODY_MAX + 2);
        assert_non_null(big);
        memset(big, '\n', ROLLOUT_BODY_MAX + 2);
        memcpy(big, SHA, strlen(SHA));
        assert_int_equal(rollout_parse(big, ROLLOUT_BODY_MAX + 1, &p, &error), -EBADMSG);
        assert_int_equal(rollout_parse(big, ROLLOUT_BODY_MAX, &p, &error), 0);
}

static RolloutPolicy waves_policy(const char *sha) {
        RolloutPolicy p = {
                .has_waves = true, .started_usec = 1000 * SEC, .waves = { 1000, 5000, 10000 }, .n_waves = 3,
                .wave_interval_usec = 60 * SEC, .max_failures = 1,
        };

        snprintf(p.sha, sizeof p.sha, "%s", sha);
        return p;
}

static void host_id(size_t i, char buf[static 32]) {
        snprintf(buf, 32, "i-%017zx", i * 2654435761u);
}

static void test_rollout_open_wave(void **state) {
        RolloutPolicy p = waves_policy(SHA);

        assert_int_equal(rollout_open_wave(&p, 0), 0);          /* clock behind: the first wave */
        assert_int_equal(rollout_open_wave(&p, 999 * SEC), 0);
        assert_int_equal(rollout_open_wave(&p, 1000 * SEC), 0);
        assert_int_equal(rollout_open_wave(&p, 1060 * SEC - 1), 0);
        assert_int_equal(rollout_open_wave(&p, 1060 * SEC), 1);
        assert_int_equal(rollout_open_wave(&p, 1120 * SEC), 2);
        assert_int_equal(rollout_open_wave(&p, UINT64_MAX), 2);
        assert_int_equal(rollout_wave_opens_usec(&p, 0), 1000 * SEC);
        assert_int_equal(rollout_wave_opens_usec(&p, 2), 1120 * SEC);
        assert_int_equal(rollout_wave_of_bucket(&p, 999), 0);
        assert_int_equal(rollout_wave_of_bucket(&p, 1000), 1);
        assert_int_equal(rollout_wave_of_bucket(&p, 9999), 2);
}

/* The test: over 1,000 hosts each wave admits its share within 1.5
 * points, a host admitted once stays admitted, and the first wave depends
 * on the build. */
static void test_rollout_thousand_hosts(void **state) {
        RolloutPolicy p = waves_policy(SHA40), q = waves_policy("b00c1e5");
        size_t same_first = 0, first_p = 0;

        for (size_t k = 0; k < p.n_waves; k++) {
                uint64_t now = rollout_wave_opens_usec(&p, k);
                size_t admitted = 0;

                for (size_t i = 0; i < N_HOSTS; i++) {
                        char id[32];
                        bool in = (host_id(i, id), rollout_admits(&p, id, false, now));

                        admitted += in;
                        /* monotone: in wave k means in every later wave; a host
                         * that enters at k is one whose bucket is under wave k */
                        for (size_t later = k; in && later < p.n_waves; later++)
                                assert_true(rollout_admits(&p, id, false, rollout_wave_opens_usec(&p, later)));
                        if (k > 0 && !rollout_admits(&p, id, false, now - 1))
                                assert_int_equal(rollout_wave_of_bucket(&p, rollout_bucket(id, p.sha)) == k, in);
                }
                if (labs((long) admitted * 10000 / N_HOSTS - (long) p.waves[k]) > 150)
                        fail_msg("wave %zu admits %zu of %d hosts, not %u bp", k, admitted, N_HOSTS, p.waves[k]);
        }
        for (size_t i = 0; i < N_HOSTS; i++) {
                char id[32];
                bool a, b;

                host_id(i, id);
                a = rollout_admits(&p, id, false, p.started_usec);
                b = rollout_admits(&q, id, false, q.started_usec);
                first_p += a;
                same_first += a && b;
        }
        /* Independent draws: about 10% of the first wave is in both. */
        assert_true(same_first < first_p / 2);
}

static void test_rollout_canary_paused_clock(void **state) {
        RolloutPolicy p = waves_policy(SHA40);
        size_t early = 0;

        for (size_t i = 0; i < N_HOSTS; i++) {
                char id[32];

                host_id(i, id);
                assert_true(rollout_admits(&p, id, true, 0));
                assert_true(rollout_admits(&p, id, true, p.started_usec));
                /* a clock behind started sees the first wave, never more */
                assert_int_equal(rollout_admits(&p, id, false, 0), rollout_admits(&p, id, false, p.started_usec));
                early += rollout_admits(&p, id, false, 0);
        }
        assert_true(early > 0 && early < N_HOSTS / 5);
        p.paused = true;
        for (size_t i = 0; i < N_HOSTS; i++) {
                char id[32];

                host_id(i, id);
                assert_false(rollout_admits(&p, id, false, UINT64_MAX));
                assert_false(rollout_admits(&p, id, true, UINT64_MAX));
        }
}

/* The latest pointer allowed still gives wave times the worker protocol
 * carries (int64), and a policy built by hand saturates there. */
static void test_rollout_opens_fit_the_protocol(void **state) {
        const char *body = SHA "\nstarted=253402300799\nwaves=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,10000\n"
                           "wave_interval=31536000\n";
        _cleanup_free_ char *error = NULL;
        RolloutPolicy p;

        assert_int_equal(rollout_parse(body, strlen(body), &p, &error), 0);
        assert_true(rollout_wave_opens_usec(&p, 15) < ROLLOUT_USEC_NEVER);
        assert_true(rollout_wave_opens_usec(&p, SIZE_MAX) == ROLLOUT_USEC_NEVER);
        p.wave_interval_usec = UINT64_MAX / 2;
        assert_true(rollout_wave_opens_usec(&p, 1) == ROLLOUT_USEC_NEVER);
        p.started_usec = UINT64_MAX;
        assert_true(rollout_wave_opens_usec(&p, 0) == ROLLOUT_USEC_NEVER);
        assert_true(ROLLOUT_USEC_NEVER <= (uint64_t) INT64_MAX);
}

/* One character set for host ids and IMDS identity (credentials.c). */
static void test_rollout_host_id(void **state) {
        assert_true(rollout_host_id_is_valid("i-0abc.def_1"));
        assert_false(rollout_host_id_is_valid(NULL));
        assert_false(rollout_host_id_is_valid(""));
        assert_false(rollout_host_id_is_valid("_abort"));
        assert_false(rollout_host_id_is_valid(".x"));
        assert_false(rollout_host_id_is_valid("a/b"));
        assert_false(rollout_host_id_is_valid("a\x1b"));
        assert_true(identity_chars_valid("us-east-1a", 10));
        assert_false(identity_chars_valid("us east", 7));
        assert_false(identity_chars_valid("ab\0c", 4));
        for (int c = 1; c < 256; c++) {
                char s[2] = { (char) c, 'x' };

                assert_true(identity_chars_valid(s, 1) == rollout_host_id_is_valid((char[]){ 'a', (char) c, 0 }));
        }
}

static void test_rollout_bucket(void **state) {
        /* Pinned: deployctl, the tests and any other tool must compute the
         * same bucket: SHA-256("host-1\n3f2c1ab"), first 8 bytes, mod 10000. */
        assert_int_equal(rollout_bucket("host-1", SHA), 2960);
        assert_true(rollout_bucket("host-1", SHA) < ROLLOUT_BUCKETS);
        assert_int_not_equal(rollout_bucket("host-1", SHA), rollout_bucket("host-1", SHA40));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rollout_plain_pointer), cmocka_unit_test(test_rollout_full),
                cmocka_unit_test(test_rollout_round_trip),    cmocka_unit_test(test_rollout_malformed),
                cmocka_unit_test(test_rollout_nul_and_size),  cmocka_unit_test(test_rollout_open_wave),
                cmocka_unit_test(test_rollout_thousand_hosts), cmocka_unit_test(test_rollout_canary_paused_clock),
                cmocka_unit_test(test_rollout_bucket),        cmocka_unit_test(test_rollout_opens_fit_the_protocol),
                cmocka_unit_test(test_rollout_host_id),
                cmocka_unit_test(test_rollout_first_line_as_discover),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
