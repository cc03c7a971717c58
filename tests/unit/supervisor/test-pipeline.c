/* test-pipeline.c: the pipeline's state machine against a fake worker
 * pool: every step succeeding, failing, blamed on the artifact, crashing,
 * timing out, refused, or stopped, with and without auto_rollback, for
 * each kind of pipeline; then the state, bad marks and history that
 * follow. Pipelines are started the way the daemon starts them
 * (service_poll, service_request), so the service's side is covered too. */
#include "supervisor-fixture.h"

#include "supervisor/pipeline.h"
#include "supervisor/service-poll.h"

#define FULL "discover fetch unpack activate restart prune"
#define ROLLBACK_SEQ "discover fetch unpack activate restart activate restart"

typedef struct Case {
        const char *name;
        PipelineKind kind;             /* AUTO, DEPLOY (of NEW), ROLLBACK (to OLD), RECOVER */
        bool previous;                 /* OLD is current (and on disk) before */
        bool restart, auto_rollback;
        int fail_at;                   /* the step (0-based start number) that fails; -1 none */
        Outcome how;
        /* what follows */
        const char *steps;             /* started, in order */
        int r;
        const char *current;
        const char *bad;               /* the one sha marked bad, or NULL */
        const char *history;           /* "outcome:sha ..." oldest first */
        const char *in_flight;         /* the step left for recovery, or NULL */
        bool unhealthy;                /* the new build's restart fails too, before fail_at */
} Case;

#define AUTO(name, rb, at, how, steps, r, cur, bad, hist, infl) \
        { name, PIPELINE_AUTO, true, true, rb, at, how, steps, r, cur, bad, hist, infl, false }

/* the new build is unhealthy, then the rollback meets trouble at step at */
#define ROLLBACK_TROUBLE(name, at, how, steps, cur) \
        { name, PIPELINE_AUTO, true, true, true, at, how, steps, -EIO, cur, NEW, "rolled-back:" NEW, NULL, true }

/* the new build is unhealthy, then the rollback's worker ends without a
 * verdict: the record stays, nothing is marked until the rollback is done */
#define ROLLBACK_UNFINISHED(name, at, how, steps, cur) \
        { name, PIPELINE_AUTO, true, true, true, at, how, steps, -EIO, cur, NULL, "", "rollback", true }

static const Case cases[] = {
        AUTO("all well", true, -1, OUTCOME_OK, FULL, 0, NEW, NULL, "deployed:" NEW, NULL),
        AUTO("all well, no auto_rollback", false, -1, OUTCOME_OK, FULL, 0, NEW, NULL, "deployed:" NEW, NULL),

        /* before the swap: nothing changes but last_error; a blamed artifact is marked bad */
        AUTO("discover fails", true, 0, OUTCOME_FAIL, "discover", -EIO, OLD, NULL, "", NULL),
        AUTO("discover crashes", true, 0, OUTCOME_CRASH, "discover", -EIO, OLD, NULL, "", NULL),
        AUTO("discover times out", true, 0, OUTCOME_TIMEOUT, "discover", -EIO, OLD, NULL, "", NULL),
        AUTO("discover refused", true, 0, OUTCOME_OK, "", -ECANCELED, OLD, NULL, "", NULL),
        AUTO("fetch fails", true, 1, OUTCOME_FAIL, "discover fetch", -EIO, OLD, NULL, "", NULL),
        AUTO("fetch bad", true, 1, OUTCOME_BAD, "discover fetch", -EIO, OLD, NEW, "rejected:" NEW, NULL),
        AUTO("fetch bad, no auto_rollback", false, 1, OUTCOME_BAD, "discover fetch", -EIO, OLD, NEW, "rejected:" NEW, NULL),
        AUTO("fetch crashes", true, 1, OUTCOME_CRASH, "discover fetch", -EIO, OLD, NULL, "", NULL),
        AUTO("fetch times out", true, 1, OUTCOME_TIMEOUT, "discover fetch", -EIO, OLD, NULL, "", NULL),
        AUTO("fetch refused", true, 1, OUTCOME_OK, "discover", -ECANCELED, OLD, NULL, "", NULL),
        AUTO("unpack fails", true, 2, OUTCOME_FAIL, "discover fetch unpack", -EIO, OLD, NULL, "", NULL),
        AUTO("unpack bad", true, 2, OUTCOME_BAD, "discover fetch unpack", -EIO, OLD, NEW, "rejected:" NEW, NULL),
        AUTO("unpack crashes", true, 2, OUTCOME_CRASH, "discover fetch unpack", -EIO, OLD, NULL, "", NULL),
        AUTO("unpack times out", false, 2, OUTCOME_TIMEOUT, "discover fetch unpack", -EIO, OLD, NULL, "", NULL),
        AUTO("activate fails", true, 3, OUTCOME_FAIL, "discover fetch unpack activate", -EIO, OLD, NULL, "", NULL),
        AUTO("activate crashes", true, 3, OUTCOME_CRASH, "discover fetch unpack activate", -EIO, OLD, NULL, "", NULL),
        AUTO("activate times out", false, 3, OUTCOME_TIMEOUT, "discover fetch unpack activate", -EIO, OLD, NULL, "", NULL),
        AUTO("activate refused", true, 3, OUTCOME_OK, "discover fetch unpack", -ECANCELED, OLD, NULL, "", NULL),

        /* after the swap: an unhealthy build is rolled back, or left and marked */
        AUTO("restart fails", true, 4, OUTCOME_FAIL, ROLLBACK_SEQ, -EIO, OLD, NEW, "rolled-back:" NEW, NULL),
        AUTO("restart fails, no auto_rollback", false, 4, OUTCOME_FAIL, "discover fetch unpack activate restart", -EIO,
             NEW, NEW, "failed:" NEW, NULL),
        /* no verdict: nothing is marked, the next poll checks again */
        AUTO("restart crashes", true, 4, OUTCOME_CRASH, "discover fetch unpack activate restart", -EIO, NEW, NULL, "",
             "restart"),
        AUTO("restart crashes, no auto_rollback", false, 4, OUTCOME_CRASH, "discover fetch unpack activate restart",
             -EIO, NEW, NULL, "", "restart"),
        AUTO("restart times out", true, 4, OUTCOME_TIMEOUT, "discover fetch unpack activate restart", -EIO, NEW, NULL,
             "", "restart"),
        AUTO("restart times out, no auto_rollback", false, 4, OUTCOME_TIMEOUT, "discover fetch unpack activate restart",
             -EIO, NEW, NULL, "", "restart"),
        /* systemd refused the restart, the unit missing or masked: the host's
         * fault. Rolled back, but not marked bad: the next poll tries again.
         * With nothing to roll back to, it stays and is checked again. */
        AUTO("restart: unit gone", true, 4, OUTCOME_UNIT_GONE, ROLLBACK_SEQ, -EIO, OLD, NULL, "rolled-back:" NEW, NULL),
        AUTO("restart: unit gone, no auto_rollback", false, 4, OUTCOME_UNIT_GONE,
             "discover fetch unpack activate restart", -EIO, NEW, NULL, "", "restart"),
        { "first deploy, unit gone", PIPELINE_AUTO, false, true, true, 4, OUTCOME_UNIT_GONE,
          "discover fetch unpack activate restart", -EIO, NEW, NULL, "", "restart", false },
        /* refused after the swap: the record stays, the next poll checks or rolls back */
        AUTO("restart refused", true, 4, OUTCOME_OK, "discover fetch unpack activate", -ECANCELED, NEW, NULL, "",
             "restart"),
        ROLLBACK_TROUBLE("rollback fails", 5, OUTCOME_FAIL, "discover fetch unpack activate restart activate", NEW),
        ROLLBACK_UNFINISHED("rollback crashes", 5, OUTCOME_CRASH, "discover fetch unpack activate restart activate",
                            NEW),
        ROLLBACK_UNFINISHED("rollback times out", 5, OUTCOME_TIMEOUT,
                            "discover fetch unpack activate restart activate", NEW),
        /* a pool that refuses only does so when shutting down (or out of memory) */
        { "rollback refused", PIPELINE_AUTO, true, true, true, 5, OUTCOME_OK, "discover fetch unpack activate restart",
          -ECANCELED, NEW, NULL, "", "rollback", true },
        ROLLBACK_TROUBLE("rollback restart fails", 6, OUTCOME_FAIL, ROLLBACK_SEQ, OLD),
        ROLLBACK_UNFINISHED("rollback restart crashes", 6, OUTCOME_CRASH, ROLLBACK_SEQ, OLD),
        ROLLBACK_UNFINISHED("rollback restart times out", 6, OUTCOME_TIMEOUT, ROLLBACK_SEQ, OLD),
        { "rollback restart refused", PIPELINE_AUTO, true, true, true, 6, OUTCOME_OK,
          "discover fetch unpack activate restart activate", -ECANCELED, OLD, NULL, "", "rollback", true },
        { "rollback, its restart refused", PIPELINE_ROLLBACK, true, true, true, 1, OUTCOME_OK, "activate", -ECANCELED,
          OLD, NEW, "", "restart", false },

        /* prune is housekeeping: its failure fails nothing */
        AUTO("prune fails", true, 5, OUTCOME_FAIL, FULL, 0, NEW, NULL, "deployed:" NEW, NULL),
        AUTO("prune crashes", false, 5, OUTCOME_CRASH, FULL, 0, NEW, NULL, "deployed:" NEW, NULL),
        AUTO("prune times out", true, 5, OUTCOME_TIMEOUT, FULL, 0, NEW, NULL, "deployed:" NEW, NULL),

        /* nothing published yet: no failure to back off from, unless nothing runs */
        AUTO("nothing published", true, 0, OUTCOME_NOT_FOUND, "discover", 0, OLD, NULL, "", NULL),
        { "nothing published, nothing deployed", PIPELINE_AUTO, false, true, true, 0, OUTCOME_NOT_FOUND, "discover",
          -ENOENT, NULL, NULL, "", NULL, false },

        /* the first deploy has nothing to roll back to */
        { "first deploy", PIPELINE_AUTO, false, true, true, -1, OUTCOME_OK, FULL, 0, NEW, NULL, "deployed:" NEW, NULL, false },
        { "first deploy unhealthy", PIPELINE_AUTO, false, true, true, 4, OUTCOME_FAIL,
          "discover fetch unpack activate restart", -EIO, NEW, NEW, "failed:" NEW, NULL, false },

        /* no unit, no health check: nothing to restart */
        { "no restart", PIPELINE_AUTO, true, false, true, -1, OUTCOME_OK, "discover fetch unpack activate prune", 0, NEW,
          NULL, "deployed:" NEW, NULL, false },
        { "no restart, activate fails", PIPELINE_AUTO, true, false, true, 3, OUTCOME_FAIL,
          "discover fetch unpack activate", -EIO, OLD, NULL, "", NULL, false },

        /* an operator's deploy of NEW: no discovery */
        { "deploy", PIPELINE_DEPLOY, true, true, true, -1, OUTCOME_OK, "fetch unpack activate restart prune", 0, NEW,
          NULL, "deployed:" NEW, NULL, false },
        { "deploy unhealthy", PIPELINE_DEPLOY, true, true, true, 3, OUTCOME_FAIL,
          "fetch unpack activate restart activate restart", -EIO, OLD, NEW, "rolled-back:" NEW, NULL, false },
        { "deploy bad", PIPELINE_DEPLOY, true, true, false, 0, OUTCOME_BAD, "fetch", -EIO, OLD, NEW, "rejected:" NEW,
          NULL, false },

        /* an operator's rollback from NEW to OLD: NEW is marked bad first */
        { "rollback", PIPELINE_ROLLBACK, true, true, true, -1, OUTCOME_OK, "activate restart prune", 0, OLD, NEW,
          "deployed:" OLD, NULL, false },
        { "rollback unhealthy", PIPELINE_ROLLBACK, true, true, true, 1, OUTCOME_FAIL, "activate restart", -EIO, OLD, NEW,
          "", NULL, false },
        { "rollback, activate fails", PIPELINE_ROLLBACK, true, true, true, 0, OUTCOME_FAIL, "activate", -EIO, NEW, NEW,
          "", NULL, false },
        { "rollback crashes in restart", PIPELINE_ROLLBACK, true, true, false, 1, OUTCOME_CRASH, "activate restart",
          -EIO, OLD, NEW, "", "restart", false },
};

/* Steps of a case as the pipeline meets them; NEW on disk only for a rollback. */
static void setup(Fixture *x, const Case *c) {
        ServiceState *st = x->s->state;

        if (c->previous) {
                assert_int_equal(state_set(&st->current, OLD), 0);
                fixture_release(x, OLD);
        }
        if (c->kind == PIPELINE_ROLLBACK) {
                assert_int_equal(state_set(&st->current, NEW), 0);
                assert_int_equal(state_set(&st->previous, OLD), 0);
                fixture_release(x, NEW);
        }
        if (c->fail_at >= 0 && c->how == OUTCOME_OK)
                x->fake.refuse_at = c->fail_at;
}

static int start(Fixture *x, const Case *c) {
        switch (c->kind) {
        case PIPELINE_DEPLOY: return service_request(x->s, PIPELINE_DEPLOY, NEW, NULL);
        case PIPELINE_ROLLBACK: return service_request(x->s, PIPELINE_ROLLBACK, OLD, "rolled back by a test");
        default: return service_poll(x->s);
        }
}

/* Answer every step: the one at fail_at the case's way, the others well. */
static void drive(Fixture *x, const Case *c) {
        bool restarted = false;

        while (x->fake.pending) {
                int at = (int) x->fake.n_started - 1;
                bool health = c->unhealthy && !restarted && streq(x->fake.step, "restart");

                restarted = restarted || streq(x->fake.step, "restart");
                fake_complete(&x->fake, at == c->fail_at ? c->how : health ? OUTCOME_FAIL : OUTCOME_OK);
        }
}

static void history_text(const ServiceState *st, char *buf, size_t size) {
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < st->n_history && n < size; i++)
                n += (size_t) snprintf(buf + n, size - n, "%s%s:%s", i ? " " : "", st->history[i].outcome,
                                       st->history[i].sha);
}

/* current before the pipeline */
static const char *initial(const Case *c) {
        return c->kind == PIPELINE_ROLLBACK ? NEW : c->previous ? OLD : NULL;
}

static void check(Fixture *x, const Case *c) {
        const ServiceState *st = x->s->state;
        char history[512];

        print_message("%s\n", c->name);
        assert_string_equal(x->fake.started, c->steps);
        assert_int_equal(x->ended.n, 1);
        assert_int_equal(x->ended.r, c->r);
        assert_null(x->s->pipeline);
        if (c->current)
                assert_string_equal(st->current, c->current);
        else
                assert_null(st->current);
        assert_int_equal(st->n_bad, c->bad ? 1 : 0);
        if (c->bad)
                assert_string_equal(st->bad[0].sha, c->bad);
        history_text(st, history, sizeof history);
        assert_string_equal(history, c->history);
        if (c->in_flight)
                assert_string_equal(st->in_flight_step, c->in_flight);
        else
                assert_null(st->in_flight_step);
        /* last_error says why, exactly when it failed */
        if (c->r < 0)
                assert_non_null(st->last_error);
        else
                assert_null(st->last_error);
        assert_int_equal(x->ended.changed, !streq_ptr(c->current, initial(c)));
        /* an operator's deploy pins the service to what it deployed */
        if (c->kind == PIPELINE_DEPLOY && c->r == 0)
                assert_string_equal(st->pinned, NEW);
}

/* What was saved is what is in memory: a crash now loses nothing. */
static void check_saved(Fixture *x) {
        _cleanup_state_ ServiceState *disk = NULL;
        _cleanup_free_ char *mem = state_format(x->s->state), *saved = NULL;

        assert_int_equal(state_load(x->s->state_path, &disk, NULL), 0);
        saved = state_format(disk);
        assert_string_equal(saved, mem);
}

static void test_cases(void **unused) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                FixtureOptions o = { .restart = c->restart, .auto_rollback = c->auto_rollback };
                Fixture *x = fixture_new(&o);
                int r;

                setup(x, c);
                r = start(x, c);
                drive(x, c);
                /* a step refused at once ends the pipeline inside the call */
                assert_int_equal(r, 0);
                check(x, c);
                check_saved(x);
                fixture_free(x);
        }
}

/* A crash during restart leaves in_flight; the next poll finishes it. */
static void test_recover_after_restart_crash(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true };
        Fixture *x = fixture_new(&o);

        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        fixture_release(x, OLD);
        assert_int_equal(service_poll(x->s), 0);
        for (int i = 0; i < 4; i++)
                fake_complete(&x->fake, OUTCOME_OK);
        fake_complete(&x->fake, OUTCOME_CRASH);
        assert_true(pipeline_needs_recovery(x->s->state));
        assert_int_equal(x->s->failures, 1);

        /* recovery checks the release again: healthy now */
        assert_int_equal(service_poll(x->s), 0);
        assert_string_equal(x->fake.step, "restart");
        fake_complete(&x->fake, OUTCOME_OK);
        assert_string_equal(x->fake.step, "prune");
        fake_complete(&x->fake, OUTCOME_OK);
        assert_int_equal(x->ended.r, 0);
        assert_int_equal(x->ended.n, 2);
        assert_int_equal(x->s->failures, 0);
        assert_string_equal(x->s->state->current, NEW);
        assert_null(x->s->state->in_flight_step);
        assert_false(pipeline_needs_recovery(x->s->state));
        fixture_free(x);
}

/* An agent killed during the rollback finishes it when it starts again. */
static void test_recover_rollback(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true };
        Fixture *x = fixture_new(&o);
        ServiceState *st = x->s->state;

        assert_int_equal(state_set(&st->current, NEW), 0);
        assert_int_equal(state_set(&st->in_flight_step, "rollback"), 0);
        assert_int_equal(state_set(&st->in_flight_sha, NEW), 0);
        assert_int_equal(state_set(&st->in_flight_previous, OLD), 0);
        assert_true(pipeline_needs_recovery(st));
        /* an operator's request waits behind the recovery */
        assert_int_equal(service_request_seq(x->s), 2);
        assert_int_equal(service_poll(x->s), 0);
        drive(x, &(Case) { .fail_at = -1 });
        assert_string_equal(x->fake.started, "activate restart");
        assert_int_equal(x->ended.r, -EIO);
        assert_string_equal(st->current, OLD);
        assert_int_equal(st->n_bad, 1);
        assert_string_equal(st->bad[0].sha, NEW);
        assert_string_equal(st->bad[0].reason, "interrupted during its rollback");
        assert_null(st->in_flight_step);
        fixture_free(x);
}

/* The pool refused the rollback of an unhealthy build (the agent was
 * shutting down): the next pass, here the next start, rolls it back. */
static void test_rollback_refused_then_recovered(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true };
        Fixture *x = fixture_new(&o);
        ServiceState *st = x->s->state;
        const Case c = { .previous = true, .fail_at = 5, .how = OUTCOME_OK, .unhealthy = true };

        setup(x, &c);
        assert_int_equal(service_poll(x->s), 0);
        drive(x, &c);
        assert_int_equal(x->ended.r, -ECANCELED);
        assert_string_equal(st->current, NEW);
        assert_true(pipeline_needs_recovery(st));
        assert_non_null(strstr(st->last_error, "restart: it broke"));
        check_saved(x);

        x->fake.refuse_at = -1;
        x->fake.started[0] = '\0';
        x->fake.n_started = 0;
        assert_int_equal(service_poll(x->s), 0);
        drive(x, &(Case) { .fail_at = -1 });
        assert_string_equal(x->fake.started, "activate restart");
        assert_int_equal(x->ended.n, 2);
        assert_int_equal(x->ended.r, -EIO);
        assert_string_equal(st->current, OLD);
        assert_int_equal(st->n_bad, 1);
        assert_string_equal(st->bad[0].sha, NEW);
        assert_null(st->in_flight_step);
        fixture_free(x);
}

/* The unit masked or removed between the check before the swap and
 * RestartUnit: the restart, and the rollback's restart after it, are
 * refused by systemd. Rolled back, not marked bad, no record left: once the
 * unit is back, the next poll deploys NEW without an operator. */
static void test_unit_gone_after_the_check(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true };
        Fixture *x = fixture_new(&o);
        ServiceState *st = x->s->state;
        char history[512];

        setup(x, &(Case) { .previous = true, .fail_at = -1 });
        assert_int_equal(service_poll(x->s), 0);
        while (x->fake.pending)
                fake_complete(&x->fake, streq(x->fake.step, "restart") ? OUTCOME_UNIT_GONE : OUTCOME_OK);
        assert_string_equal(x->fake.started, ROLLBACK_SEQ);
        assert_int_equal(x->ended.r, -EIO);
        assert_string_equal(st->current, OLD);
        assert_int_equal(st->n_bad, 0);
        assert_null(st->in_flight_step);
        assert_non_null(strstr(st->last_error, "restart: it broke"));
        check_saved(x);

        x->fake.started[0] = '\0';
        x->fake.n_started = 0;
        assert_int_equal(service_poll(x->s), 0);
        drive(x, &(Case) { .fail_at = -1 });
        assert_string_equal(x->fake.started, FULL);
        assert_int_equal(x->ended.r, 0);
        assert_string_equal(st->current, NEW);
        assert_int_equal(st->n_bad, 0);
        history_text(st, history, sizeof history);
        assert_string_equal(history, "rolled-back:" NEW " deployed:" NEW);
        fixture_free(x);
}

/* The rollback's worker, or the restart after it, ends without a verdict
 * (crashed, killed, timed out): the unhealthy build may still be current,
 * so the record stays and the next poll finishes the rollback. */
static void test_rollback_unfinished_then_recovered(void **unused) {
        static const char *const errors[] = { "worker killed by SIGSEGV", "worker killed by SIGKILL",
                                              "worker timed out after 60s" };

        for (int at = 5; at <= 6; at++)
                for (size_t e = 0; e < ELEMENTSOF(errors); e++) {
                        FixtureOptions o = { .restart = true, .auto_rollback = true };
                        Fixture *x = fixture_new(&o);
                        ServiceState *st = x->s->state;
                        char history[512], error[64];

                        setup(x, &(Case) { .previous = true, .fail_at = -1 });
                        assert_int_equal(service_poll(x->s), 0);
                        while ((int) x->fake.n_started - 1 < at)
                                fake_complete(&x->fake, streq(x->fake.step, "restart") &&
                                                                x->fake.n_started == 5 ? OUTCOME_FAIL : OUTCOME_OK);
                        /* what the real pool hands over for a worker with no result */
                        x->fake.pending = false;
                        *x->fake.slot = NULL;
                        snprintf(error, sizeof error, "%s", errors[e]);
                        x->fake.done(&(WorkerOutcome) { .error = error }, x->fake.userdata);
                        json_decref(x->fake.job);
                        x->fake.job = NULL;
                        assert_int_equal(x->ended.n, 1);
                        assert_int_equal(x->ended.r, -EIO);
                        assert_string_equal(st->current, at == 5 ? NEW : OLD);
                        assert_int_equal(st->n_bad, 0);
                        assert_int_equal(st->n_history, 0);
                        assert_string_equal(st->in_flight_step, "rollback");
                        assert_true(pipeline_needs_recovery(st));
                        assert_non_null(strstr(st->last_error, errors[e]));
                        check_saved(x);

                        x->fake.started[0] = '\0';
                        x->fake.n_started = 0;
                        assert_int_equal(service_poll(x->s), 0);
                        drive(x, &(Case) { .fail_at = -1 });
                        /* an activate that ended anyhow leaves files to clean first */
                        assert_string_equal(x->fake.started, at == 5 ? "cleanup activate restart" : "activate restart");
                        assert_int_equal(x->ended.n, 2);
                        assert_int_equal(x->ended.r, -EIO);
                        assert_string_equal(st->current, OLD);
                        assert_int_equal(st->n_bad, 1);
                        assert_string_equal(st->bad[0].sha, NEW);
                        history_text(st, history, sizeof history);
                        assert_string_equal(history, "rolled-back:" NEW);
                        assert_null(st->in_flight_step);
                        check_saved(x);
                        fixture_free(x);
                }
}

/* Shutting down: the step is stopped, its record kept for the next start. */
static void test_stop(void **unused) {
        static const char *const steps[] = { "discover", "fetch", "unpack", "activate", "restart", "prune" };

        for (size_t at = 0; at < ELEMENTSOF(steps); at++) {
                FixtureOptions o = { .restart = true, .auto_rollback = true };
                Fixture *x = fixture_new(&o);

                assert_int_equal(state_set(&x->s->state->current, OLD), 0);
                fixture_release(x, OLD);
                assert_int_equal(service_poll(x->s), 0);
                for (size_t i = 0; i < at; i++)
                        fake_complete(&x->fake, OUTCOME_OK);
                assert_string_equal(x->fake.step, steps[at]);
                pipeline_stop(x->s->pipeline);
                assert_int_equal(x->fake.n_stops, 1);
                fake_complete(&x->fake, OUTCOME_STOPPED);
                assert_int_equal(x->ended.r, -ECANCELED);
                assert_int_equal(x->s->failures, 0);
                assert_string_equal(x->s->state->last_error, "stopped: the agent is shutting down");
                /* discover records nothing: there is nothing to recover */
                if (at == 0)
                        assert_null(x->s->state->in_flight_step);
                else
                        assert_string_equal(x->s->state->in_flight_step, steps[at]);
                fixture_free(x);
        }
}

/* Polls: a failure counts for the backoff, success clears it; a pinned
 * or paused service starts nothing; a running one refuses. */
static void test_poll_and_failures(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true };
        Fixture *x = fixture_new(&o);

        for (unsigned i = 1; i <= 3; i++) {
                assert_int_equal(service_poll(x->s), 0);
                assert_int_equal(service_poll(x->s), -EBUSY);
                fake_complete(&x->fake, OUTCOME_CRASH);
                assert_int_equal(x->s->failures, i);
                assert_int_equal(x->ended.seq, i);
        }
        assert_int_equal(service_poll(x->s), 0);
        drive(x, &(Case) { .fail_at = -1 });
        assert_int_equal(x->ended.r, 0);
        assert_int_equal(x->s->failures, 0);
        assert_string_equal(x->s->state->current, NEW);

        x->s->state->paused = true;
        assert_int_equal(service_poll(x->s), 0);
        assert_false(x->fake.pending);
        x->s->state->paused = false;
        assert_int_equal(state_set(&x->s->state->pinned, OLD), 0);
        assert_int_equal(service_poll(x->s), 0);
        assert_false(x->fake.pending);
        assert_int_equal(x->ended.n, 4);
        fixture_free(x);
}

/* A target marked bad is not deployed again; its pointer is settled. */
static void test_bad_target_skipped(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true };
        Fixture *x = fixture_new(&o);

        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        assert_int_equal(state_mark_bad(x->s->state, NEW, NULL, "earlier", 1), 0);
        assert_int_equal(service_poll(x->s), 0);
        fake_complete(&x->fake, OUTCOME_OK);
        assert_false(x->fake.pending);
        assert_int_equal(x->ended.r, 0);
        assert_false(x->ended.changed);
        assert_string_equal(x->s->state->current, OLD);
        fixture_free(x);
}

/* With fleet_prefix set, a pipeline ends with the report step: after a
 * rollback it writes the bad marker; a report that fails changes nothing of
 * the pipeline's outcome and the marker is written at the next poll. */
static void test_fleet_report_after_rollback(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true, .fleet = true };
        Fixture *x = fixture_new(&o);
        json_t *job;

        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        fixture_release(x, OLD);
        assert_int_equal(service_poll(x->s), 0);
        while (x->fake.pending && !streq(x->fake.step, "report"))
                fake_complete(&x->fake, streq(x->fake.step, "restart") && !strstr(x->fake.started, "activate restart activate")
                                                ? OUTCOME_FAIL : OUTCOME_OK);
        assert_string_equal(x->fake.started, "discover fetch unpack activate restart activate restart report");
        job = json_object_get(x->fake.job, "report");
        assert_string_equal(json_string_value(json_object_get(job, "bad_sha")), NEW);
        assert_string_equal(json_string_value(json_object_get(job, "host_id")), "host-1");
        assert_non_null(strstr(json_string_value(json_object_get(job, "status")), "\"state\":\"failed\""));
        fake_complete(&x->fake, OUTCOME_FAIL); /* S3 down for the report */
        assert_false(x->fake.pending);
        assert_true(x->ended.r < 0);
        assert_non_null(strstr(x->ended.error, "rolled back"));
        assert_string_equal(state_first_unreported(x->s->state)->sha, NEW);

        /* the next poll: NEW is bad here (no wave, no breaker), the marker goes out */
        x->fake.started[0] = '\0';
        x->fake.n_started = 0;
        assert_int_equal(service_poll(x->s), 0);
        fake_complete(&x->fake, OUTCOME_OK);
        assert_string_equal(x->fake.started, "discover report");
        assert_string_equal(json_string_value(json_object_get(json_object_get(x->fake.job, "report"), "bad_sha")), NEW);
        fake_complete(&x->fake, OUTCOME_OK);
        assert_null(state_first_unreported(x->s->state));
        assert_int_equal(x->ended.r, 0);

        /* nothing changed since: no report until the heartbeat is due */
        x->fake.started[0] = '\0';
        x->fake.n_started = 0;
        assert_int_equal(service_poll(x->s), 0);
        fake_complete(&x->fake, OUTCOME_OK);
        assert_string_equal(x->fake.started, "discover");
        assert_false(x->fake.pending);
        fixture_free(x);
}

/* The report never changes the pipeline's outcome: a report worker whose
 * result is invalid, or that crashes or times out, leaves the restart's
 * verdict-less end as it was, its in-flight record kept for recovery. */
static void test_fleet_report_broken_keeps_outcome(void **unused) {
        for (int how = 0; how < 3; how++) {
                FixtureOptions o = { .restart = true, .auto_rollback = true, .fleet = true };
                Fixture *x = fixture_new(&o);
                char error[256];

                assert_int_equal(state_set(&x->s->state->current, OLD), 0);
                fixture_release(x, OLD);
                assert_int_equal(service_poll(x->s), 0);
                while (x->fake.pending && !streq(x->fake.step, "restart"))
                        fake_complete(&x->fake, OUTCOME_OK);
                fake_complete(&x->fake, OUTCOME_CRASH);
                assert_string_equal(x->fake.step, "report");
                assert_non_null(x->s->state->last_error);
                snprintf(error, sizeof error, "%s", x->s->state->last_error);
                if (how == 0) { /* a result that does not decode */
                        worker_done_cb done = x->fake.done;
                        WorkerOutcome out = { .ok = true,
                                              .result = json_pack("{s:b,s:{s:i}}", "ok", 1, "result", "bogus", 1) };

                        x->fake.pending = false;
                        *x->fake.slot = NULL;
                        done(&out, x->fake.userdata);
                        json_decref(out.result);
                        json_decref(x->fake.job);
                        x->fake.job = NULL;
                } else
                        fake_complete(&x->fake, how == 1 ? OUTCOME_CRASH : OUTCOME_TIMEOUT);
                assert_false(x->fake.pending);
                assert_int_equal(x->ended.n, 1);
                assert_int_equal(x->ended.r, -EIO);
                assert_string_equal(x->s->state->current, NEW);
                assert_string_equal(x->s->state->last_error, error);
                assert_string_equal(x->s->state->in_flight_step, "restart");
                assert_true(pipeline_needs_recovery(x->s->state));
                fixture_free(x);
        }
}

/* A report job that cannot be built ends the pipeline as it was, and
 * says why (a silent report would leave the operator guessing). */
static void test_fleet_report_job_fails(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true, .fleet = true };
        Fixture *x = fixture_new(&o);
        _cleanup_fclose_ FILE *err = tmpfile();
        char text[4096] = "";
        int saved = dup(STDERR_FILENO);

        assert_non_null(err);
        assert_true(saved >= 0);
        assert_int_equal(state_set(&x->s->state->current, OLD), 0);
        assert_int_equal(state_mark_bad(x->s->state, NEW, NULL, "earlier", 1), 0);
        /* not UTF-8: the status document cannot be built */
        assert_int_equal(state_set(&x->s->fleet.zone, "\xff"), 0);
        log_set_max_level(LOG_WARNING);
        fflush(stderr);
        assert_int_equal(dup2(fileno(err), STDERR_FILENO), STDERR_FILENO);
        assert_int_equal(service_poll(x->s), 0);
        fake_complete(&x->fake, OUTCOME_OK);
        fflush(stderr);
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        log_set_max_level(getenv("TEST_VERBOSE") ? LOG_DEBUG : LOG_CRIT);
        assert_false(x->fake.pending);
        assert_string_equal(x->fake.started, "discover");
        assert_int_equal(x->ended.r, 0);
        rewind(err);
        assert_true(fread(text, 1, sizeof text - 1, err) > 0);
        assert_non_null(strstr(text, "fleet report: building its job"));
        fixture_free(x);
}

/* A release already on disk is activated without downloading it. */
static void test_release_on_disk(void **unused) {
        FixtureOptions o = { .restart = false, .auto_rollback = true };
        Fixture *x = fixture_new(&o);

        fixture_release(x, NEW);
        assert_int_equal(service_poll(x->s), 0);
        drive(x, &(Case) { .fail_at = -1 });
        assert_string_equal(x->fake.started, "discover activate prune");
        assert_string_equal(x->s->state->current, NEW);
        fixture_free(x);
}

/* An operator's request while a pipeline runs waits for it; a second is refused. */
static void test_request_queued(void **unused) {
        FixtureOptions o = { .restart = false, .auto_rollback = true };
        Fixture *x = fixture_new(&o);

        assert_int_equal(service_poll(x->s), 0);
        assert_int_equal(service_request_seq(x->s), 2);
        assert_int_equal(service_request(x->s, PIPELINE_DEPLOY, OLD, NULL), 0);
        assert_int_equal(service_request(x->s, PIPELINE_DEPLOY, OLD, NULL), -EBUSY);
        fake_complete(&x->fake, OUTCOME_NOT_FOUND);
        assert_int_equal(x->ended.r, -ENOENT);
        service_next(x->s);            /* what the manager does when a pipeline ended */
        assert_string_equal(x->fake.step, "fetch");
        drive(x, &(Case) { .fail_at = -1 });
        assert_int_equal(x->ended.seq, 2);
        assert_int_equal(x->ended.r, 0);
        assert_string_equal(x->s->state->current, OLD);
        assert_string_equal(x->s->state->pinned, OLD);
        assert_int_equal(x->s->pending_kind, _PIPELINE_KIND_NONE);
        fixture_free(x);
}

/* The first pass after the start begins with a cleanup; later passes do
 * not, until a step that writes files fails. */
static void test_cleanup_after_start_and_failures(void **unused) {
        FixtureOptions o = { .restart = false, .auto_rollback = true };
        Fixture *x = fixture_new(&o);

        x->s->needs_cleanup = true;    /* as service_new() leaves it */
        assert_int_equal(service_poll(x->s), 0);
        assert_string_equal(x->fake.step, "cleanup");
        assert_null(x->s->state->in_flight_step);
        fake_complete(&x->fake, OUTCOME_OK);
        assert_string_equal(x->fake.step, "discover");
        fake_complete(&x->fake, OUTCOME_NOT_FOUND);
        assert_false(x->s->needs_cleanup);
        assert_int_equal(service_poll(x->s), 0);
        assert_string_equal(x->fake.step, "discover");
        fake_complete(&x->fake, OUTCOME_CRASH);     /* discover writes nothing */
        assert_false(x->s->needs_cleanup);
        assert_int_equal(service_poll(x->s), 0);
        fake_complete(&x->fake, OUTCOME_OK);
        fake_complete(&x->fake, OUTCOME_CRASH);     /* fetch */
        assert_true(x->s->needs_cleanup);
        assert_int_equal(service_poll(x->s), 0);
        assert_string_equal(x->fake.step, "cleanup");
        drive(x, &(Case) { .fail_at = -1 });
        assert_string_equal(x->fake.started, "cleanup discover" " discover" " discover fetch"
                                             " cleanup discover fetch unpack activate prune");
        assert_int_equal(x->ended.r, 0);
        assert_string_equal(x->s->state->current, NEW);
        fixture_free(x);
}

/* A failed cleanup does not hold up the deploy; it is tried again at the
 * next pass. A recovery's record outlives the cleanup before it. */
static void test_cleanup_failed_and_before_recovery(void **unused) {
        FixtureOptions o = { .restart = true, .auto_rollback = true };
        Fixture *x = fixture_new(&o);
        ServiceState *st = x->s->state;

        x->s->needs_cleanup = true;
        assert_int_equal(state_set(&st->current, NEW), 0);
        assert_int_equal(state_set(&st->in_flight_step, "restart"), 0);
        assert_int_equal(state_set(&st->in_flight_sha, NEW), 0);
        assert_int_equal(state_set(&st->in_flight_previous, OLD), 0);
        assert_int_equal(service_poll(x->s), 0);
        assert_string_equal(x->fake.step, "cleanup");
        fake_complete(&x->fake, OUTCOME_FAIL);
        assert_true(x->s->needs_cleanup);
        assert_string_equal(st->in_flight_step, "restart");
        drive(x, &(Case) { .fail_at = -1 });
        assert_string_equal(x->fake.started, "cleanup restart prune");
        assert_int_equal(x->ended.r, 0);
        assert_null(st->in_flight_step);
        assert_int_equal(service_poll(x->s), 0);
        assert_string_equal(x->fake.step, "cleanup");
        drive(x, &(Case) { .fail_at = -1 });
        assert_false(x->s->needs_cleanup);
        fixture_free(x);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cases),
                cmocka_unit_test(test_recover_after_restart_crash),
                cmocka_unit_test(test_recover_rollback),
                cmocka_unit_test(test_rollback_refused_then_recovered),
                cmocka_unit_test(test_rollback_unfinished_then_recovered),
                cmocka_unit_test(test_unit_gone_after_the_check),
                cmocka_unit_test(test_stop),
                cmocka_unit_test(test_poll_and_failures),
                cmocka_unit_test(test_bad_target_skipped),
                cmocka_unit_test(test_fleet_report_after_rollback),
                cmocka_unit_test(test_fleet_report_broken_keeps_outcome),
                cmocka_unit_test(test_fleet_report_job_fails),
                cmocka_unit_test(test_release_on_disk),
                cmocka_unit_test(test_request_queued),
                cmocka_unit_test(test_cleanup_after_start_and_failures),
                cmocka_unit_test(test_cleanup_failed_and_before_recovery),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
