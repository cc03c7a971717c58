/* supervisor-fixture.h: what the supervisor's unit tests share: a scratch
 * directory (in /tmp: the config refuses roots and state_dir under /dev,
 * /dev/shm included), a config loaded from text, a service built on a fake
 * worker pool, and the fake itself. Included by one test program each, so its functions
 * are static inline (not every test uses all). The fake answers through the
 * worker_done_cb the real pool uses: outcome() is the one place that knows
 * what a worker's result looks like. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/fs-util.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "supervisor/service.h"
#include "protocol/worker-job.h"
#include "protocol/worker-result.h"
#include "supervisor/worker-pool.h"

#define NEW "1111111"
#define OLD "0000000"

/* ---- scratch directory ---- */

static inline char *fixture_mkdtemp(void) {
        char dir[] = "/tmp/test-supervisor-XXXXXX";

        assert_non_null(mkdtemp(dir));
        return strdup(dir);
}

static inline void fixture_rmdir(const char *dir) {
        assert_int_equal(rm_rf_at(AT_FDCWD, dir), 0);
}

static inline void fixture_quiet(void) {
        /* the pipeline logs every failure it is made to meet */
        log_set_max_level(getenv("TEST_VERBOSE") ? LOG_DEBUG : LOG_CRIT);
}

/* ---- config ---- */

typedef struct FixtureOptions {
        bool restart;                  /* a unit to restart (and check) */
        bool auto_rollback;
        unsigned jitter_percent;
        const char *poll_interval;     /* "60s" unless set */
        bool fleet;                    /* host_id and fleet_prefix set */
} FixtureOptions;

static inline Config *fixture_config(const char *dir, const FixtureOptions *o) {
        _cleanup_free_ char *path = strdup_printf("%s/deploy.ini", dir), *error = NULL;
        _cleanup_fclose_ FILE *f = fopen(path, "we");
        Config *cfg = NULL;

        assert_non_null(f);
        fprintf(f, "[agent]\n%sstate_dir = %s/state\nsocket = %s/control.sock\nworker_user = nobody\n"
                   "admin_group =\npoll_interval = %s\npoll_jitter = %u%%\nmax_workers = 2\n"
                   "[s3]\nregion = us-east-1\n"
                   "[service \"web\"]\nbucket = artifacts\nprefix = web/\nroot = %s/root\nowner = nobody\n"
                   "auto_rollback = %s\n%s%s",
                o->fleet ? "host_id = host-1\n" : "", dir, dir, o->poll_interval ?: "60s", o->jitter_percent, dir, o->auto_rollback ? "yes" : "no",
                o->restart ? "unit = web.service\nrestart_mode = restart\n" : "",
                o->fleet ? "fleet_prefix = fleet/\n" : "");
        assert_int_equal(fflush(f), 0);
        if (config_load(path, &cfg, &error) < 0)
                fail_msg("config: %s", error ?: "?");
        return cfg;
}

/* ---- the fake pool ---- */

typedef enum Outcome {
        OUTCOME_OK,
        OUTCOME_FAIL,                  /* the step says no: {"ok":false,"error":...} */
        OUTCOME_BAD,                   /* ... and blames the artifact */
        OUTCOME_UNIT_GONE,             /* restart: systemd refused, the unit is missing or masked */
        OUTCOME_CRASH,                 /* killed, no result */
        OUTCOME_TIMEOUT,               /* killed at its deadline, no result */
        OUTCOME_STOPPED,               /* stopped by pipeline_stop(), no result */
        OUTCOME_NOT_FOUND,             /* discover: nothing published */
} Outcome;

typedef struct Fake {
        bool pending;                  /* a step waits for its outcome */
        char step[32];
        json_t *job;
        worker_done_cb done;
        void *userdata;
        Worker **slot;
        char started[256];             /* every step started, space separated */
        unsigned n_started;
        int refuse_at;                 /* start number that is refused (-1: none) */
        unsigned n_stops;
        WorkerRunner runner;
} Fake;

static inline int fake_start(void *impl, const char *step, json_t *job, uint64_t timeout_usec,
                      worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **slot) {
        Fake *f = impl;

        assert_false(f->pending); /* one step at a time */
        if ((int) f->n_started == f->refuse_at) {
                f->n_started++;
                return -ECANCELED;
        }
        snprintf(f->started + strlen(f->started), sizeof f->started - strlen(f->started), "%s%s",
                 f->n_started ? " " : "", step);
        f->n_started++;
        f->pending = true;
        snprintf(f->step, sizeof f->step, "%s", step);
        f->job = json_incref(job);
        f->done = done;
        f->userdata = userdata;
        f->slot = slot;
        *slot = (Worker *) f;          /* a handle the pipeline only hands back */
        return 0;
}

static inline void fake_stop(void *impl, Worker *w) {
        Fake *f = impl;

        assert_ptr_equal(w, f);
        f->n_stops++;
}

static inline void fake_init(Fake *f) {
        *f = (Fake) { .refuse_at = -1 };
        f->runner = (WorkerRunner) { .start = fake_start, .stop = fake_stop, .impl = f };
}

/* The reply of a worker of this step that did its job well: it answers
 * the typed job it was sent (the same sha and key), as the supervisor
 * checks (protocol/worker-result.h). */
static inline void fill_result(const WorkerJob *j, WorkerResult *r, char **key) {
        switch (j->step) {
        case WORKER_STEP_DISCOVER:
                *key = strdup_printf("%s%s%s", j->discover.prefix, NEW, j->discover.suffix);
                r->discover = (DiscoverResult) { .found = true, .sha = NEW, .key = *key, .etag = "\"e-new\"" };
                break;
        case WORKER_STEP_FETCH:
                r->fetch = (FetchResult) {
                        .sha = j->fetch.sha, .key = j->fetch.key, .size = 10,
                        .sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                        .downloaded = 10, .checksum_verified = j->fetch.checksum == CHECKSUM_REQUIRED,
                        .signature_verified = j->fetch.public_key != NULL,
                };
                break;
        case WORKER_STEP_UNPACK:
                r->unpack = (UnpackResult) { .sha = j->unpack.sha, .entries = 1, .bytes = 1 };
                break;
        case WORKER_STEP_ACTIVATE:
                r->activate = (ActivateResult) { .sha = j->activate.sha, .changed = true };
                break;
        case WORKER_STEP_RESTART:
                r->restart = (RestartResult) { .sha = j->restart.sha, .detail = "active" };
                break;
        case WORKER_STEP_CLEANUP:
                r->cleanup = (CleanupResult) { .complete = true };
                break;
        case WORKER_STEP_REPORT:
                r->report = (ReportResult) { .status_written = j->report.status != NULL,
                                             .bad_written = j->report.bad_sha != NULL };
                break;
        default:
                r->prune = (PruneResult) {};
        }
}

static inline json_t *ok_result(const char *step, json_t *job, bool found) {
        _cleanup_free_ char *key = NULL;
        WorkerResult r = { .step = (WorkerStep) worker_step_from_string(step) };
        WorkerJob j = {};
        json_t *msg = NULL;

        if (!job) /* no job to answer: the envelope alone, for test-worker-pool.c */
                return json_pack("{s:b,s:{}}", "ok", 1, "result");
        assert_int_equal(worker_job_decode(job, r.step, &j, NULL), 0);
        if (found)
                fill_result(&j, &r, &key);
        assert_int_equal(worker_result_encode(&r, &msg), 0);
        worker_job_done(&j);
        return msg;
}

/* What the real pool hands the done callback for each way a step ends
 * (worker_reading_finish(); test-worker-pool.c checks that they agree). */
static inline WorkerOutcome outcome(const char *step, json_t *job, Outcome how) {
        switch (how) {
        case OUTCOME_OK:
                return (WorkerOutcome) { .result = ok_result(step, job, true), .ok = true };
        case OUTCOME_NOT_FOUND:
                return (WorkerOutcome) { .result = ok_result(step, job, false), .ok = true };
        case OUTCOME_FAIL:
        case OUTCOME_BAD:
        case OUTCOME_UNIT_GONE: {
                /* a restart's failure is its verdict on the release, unless
                 * systemd refused for the host's sake (step-restart.c) */
                bool bad = how == OUTCOME_BAD || (how == OUTCOME_FAIL && streq(step, "restart"));
                return (WorkerOutcome) {
                        .result = json_pack("{s:b,s:s,s:b}", "ok", 0, "error", "it broke", "bad", bad),
                        .bad = bad, .error = strdup_printf("%s: it broke", step),
                };
        }
        case OUTCOME_CRASH:
                return (WorkerOutcome) { .error = strdup_printf("%s worker killed by SIGSEGV", step) };
        case OUTCOME_TIMEOUT:
                return (WorkerOutcome) { .error = strdup_printf("%s worker timed out after 60s", step) };
        case OUTCOME_STOPPED:
                return (WorkerOutcome) { .error = strdup_printf("%s worker stopped", step) };
        }
        abort();
}

/* End the pending step the way the real pool does: the slot is cleared,
 * then done runs (and may start the next step, or end the pipeline). */
static inline void fake_complete(Fake *f, Outcome how) {
        WorkerOutcome o;
        worker_done_cb done = f->done;
        void *userdata = f->userdata;
        json_t *job = f->job;

        assert_true(f->pending);
        o = outcome(f->step, job, how);
        f->pending = false;
        f->job = NULL;
        *f->slot = NULL;
        done(&o, userdata);
        json_decref(o.result);
        free(o.error);
        json_decref(job);
}

/* ---- a service on the fake ---- */

typedef struct Ended {
        unsigned n;                    /* pipelines ended */
        unsigned seq;
        int r;
        bool changed;
        char *sha, *previous, *error;
} Ended;

static inline void ended_clear(Ended *e) {
        free(e->sha);
        free(e->previous);
        free(e->error);
        *e = (Ended) {};
}

static inline void on_ended(Service *s, unsigned seq, const PipelineResult *res, void *userdata) {
        Ended *e = userdata;
        unsigned n = e->n;

        ended_clear(e);
        *e = (Ended) {
                .n = n + 1, .seq = seq, .r = res->r, .changed = res->changed,
                .sha = res->sha ? strdup(res->sha) : NULL, .previous = res->previous ? strdup(res->previous) : NULL,
                .error = res->error ? strdup(res->error) : NULL,
        };
}

typedef struct Fixture {
        char *dir;
        Config *cfg;
        sd_event *event;
        Fake fake;
        Ended ended;
        ServiceCallbacks callbacks;
        Service *s;
} Fixture;

static inline Fixture *fixture_new(const FixtureOptions *o) {
        Fixture *x = calloc(1, sizeof *x);

        assert_non_null(x);
        fixture_quiet();
        x->dir = fixture_mkdtemp();
        x->cfg = fixture_config(x->dir, o);
        assert_int_equal(sd_event_new(&x->event), 0);
        fake_init(&x->fake);
        x->callbacks = (ServiceCallbacks) { .pipeline_ended = on_ended, .userdata = &x->ended };
        ServiceContext ctx = { .event = x->event, .workers = &x->fake.runner, .config = x->cfg,
                               .callbacks = &x->callbacks };
        assert_int_equal(service_new(&ctx, &x->cfg->services[0], &x->s), 0);
        /* the cleanup that begins the first pass has tests of its own
         * (test-pipeline.c); elsewhere it would only lengthen the steps */
        x->s->needs_cleanup = false;
        return x;
}

/* A release directory, as unpack leaves it. */
static inline void fixture_release(Fixture *x, const char *sha) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", x->s->releases_dir, sha);

        assert_int_equal(mkdir_p(path, 0755), 0);
}

static inline void fixture_free(Fixture *x) {
        assert_false(x->fake.pending);
        service_free(x->s);
        sd_event_unref(x->event);
        config_free(x->cfg);
        ended_clear(&x->ended);
        fixture_rmdir(x->dir);
        free(x->dir);
        free(x);
}
