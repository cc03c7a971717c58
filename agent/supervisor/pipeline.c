/* pipeline.c: the supervisor's side of one deploy. It builds each step's
 * job from the config, runs it in a worker, moves to the next step when
 * the worker reports, and records every step in state.json before it
 * runs. It never touches the artifact's bytes itself. */
#define _GNU_SOURCE
#include "supervisor/pipeline.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "common/fs-space.h"
#include "common/fs-util.h"
#include "common/log.h"
#include "supervisor/fleet.h"
#include "supervisor/pipeline-jobs.h"
#include "common/util.h"
#include "supervisor/worker-pool.h"

typedef enum Step {
        STEP_CLEANUP,                  /* leftovers of killed steps, before anything else */
        STEP_DISCOVER,
        STEP_FETCH,
        STEP_UNPACK,
        STEP_ACTIVATE,
        STEP_RESTART,
        STEP_ROLLBACK,                 /* activate the previous release again */
        STEP_ROLLBACK_RESTART,
        STEP_PRUNE,
        STEP_REPORT,                   /* this host's fleet objects, as the pipeline ends */
        _STEP_MAX,
} Step;

static const char *const step_names[_STEP_MAX] = {
        [STEP_CLEANUP] = "cleanup", [STEP_DISCOVER] = "discover", [STEP_FETCH] = "fetch",
        [STEP_UNPACK] = "unpack", [STEP_ACTIVATE] = "activate", [STEP_RESTART] = "restart",
        [STEP_ROLLBACK] = "rollback",
        [STEP_ROLLBACK_RESTART] = "rollback-restart", [STEP_PRUNE] = "prune", [STEP_REPORT] = "report",
};

/* The worker step each runs. */
static const WorkerStep step_workers[_STEP_MAX] = {
        [STEP_CLEANUP] = WORKER_STEP_CLEANUP,
        [STEP_DISCOVER] = WORKER_STEP_DISCOVER, [STEP_FETCH] = WORKER_STEP_FETCH,
        [STEP_UNPACK] = WORKER_STEP_UNPACK, [STEP_ACTIVATE] = WORKER_STEP_ACTIVATE,
        [STEP_RESTART] = WORKER_STEP_RESTART, [STEP_ROLLBACK] = WORKER_STEP_ACTIVATE,
        [STEP_ROLLBACK_RESTART] = WORKER_STEP_RESTART, [STEP_PRUNE] = WORKER_STEP_PRUNE,
        [STEP_REPORT] = WORKER_STEP_REPORT,
};

struct Pipeline {
        Service *service;
        PipelineKind kind;
        Step step;
        Step after_cleanup;            /* the step the cleanup runs before */
        Worker *worker;
        Target target;                 /* the build being deployed */
        char *previous;                /* what was current before the swap */
        char *failure;                 /* why the new build failed after the swap */
        bool host_fault;               /* ...and it was the host's fault: the build is not marked bad */
        WorkerJob job;                 /* of the running step, to hold its result against */
        char *initial;                 /* current when the pipeline started */
        uint64_t progress_mark;
        bool stopped;                  /* the agent is shutting down */
        bool reported;                 /* the report step ran (or was not wanted) */
        int end_r;                     /* how the pipeline ended, while the report runs */
        bool end_keep_in_flight;
        pipeline_done_cb done;
};

static void run_step(Pipeline *p, Step step);
static void run_first(Pipeline *p, Step step);
static void restart_unfinished(Pipeline *p, const char *error);

const char *pipeline_step_name(const Pipeline *p) {
        return step_names[p->step];
}

static Pipeline *pipeline_free(Pipeline *p) {
        pipeline_target_done(&p->target);
        free(p->previous);
        free(p->failure);
        worker_job_done(&p->job);
        free(p->initial);
        free(p);
        return NULL;
}

static int set_in_flight(Pipeline *p, const char *step) {
        ServiceState *st = p->service->state;

        if (state_set(&st->in_flight_step, step) < 0 ||
            state_set(&st->in_flight_sha, step ? p->target.sha : NULL) < 0 ||
            state_set(&st->in_flight_previous, step ? p->previous : NULL) < 0 ||
            state_set(&st->in_flight_etag, step ? p->target.etag : NULL) < 0)
                return -ENOMEM;
        return service_save_state(p->service);
}

/* Hand the result to the service (which may start the next pipeline or,
 * after a reload, be freed), then free p. First, where the fleet wants it,
 * the report step writes this host's status and bad markers; its outcome
 * never changes the pipeline's (docs/design.md, "Fleet"). */
static void end(Pipeline *p, int r, bool keep_in_flight) {
        Service *s = p->service;

        if (!p->reported)
                fleet_on_pass_end(s, r);
        if (!p->reported && !p->stopped && fleet_report_wanted(s)) {
                p->reported = true;
                p->end_r = r;
                p->end_keep_in_flight = keep_in_flight;
                return run_step(p, STEP_REPORT);
        }
        p->reported = true;
        PipelineResult res = {
                .r = r,
                .changed = !streq_ptr(p->initial, s->state->current),
                .sha = s->state->current,
                .previous = p->initial,
                .error = r < 0 ? s->state->last_error : NULL,
        };

        /* deploy --sha pins the service there, once the build runs */
        if (p->kind == PIPELINE_DEPLOY && r >= 0)
                (void) state_set(&s->state->pinned, p->target.sha);
        if (!keep_in_flight)
                (void) set_in_flight(p, NULL);
        s->pipeline = NULL;
        log_set_context(NULL, NULL, NULL); /* the context points into p and s */
        p->done(s, &res);
        pipeline_free(p);
}

static void finish(Pipeline *p, int r) {
        end(p, r, false);
}

/* The report step ended, written or not: a failed write is retried at the
 * next poll (fleet_report_wanted() still says so). */
static void reported(Pipeline *p, const ReportResult *res) {
        if (res)
                fleet_on_reported(p->service, &p->job.report, res);
        end(p, p->end_r, p->end_keep_in_flight);
}

static void fail(Pipeline *p, int r, const char *error) {
        Service *s = p->service;

        log_event(LOG_ERR, LOG_MID_FAILED, "%s: %s", s->name, error);
        (void) state_set(&s->state->last_error, error);
        finish(p, r < 0 ? r : -EIO);
}

/* The in-flight record is what crash recovery relies on: no step runs
 * without it. Say which file, why, and how full its file system is. */
static void fail_unsaved(Pipeline *p, Step step, int r) {
        char space[FS_SPACE_TEXT_MAX];
        _cleanup_free_ char *msg = NULL;

        if (r == -ENOMEM)
                return fail(p, r, "cannot save the state: out of memory");
        service_describe_state_fs(p->service, space);
        msg = strdup_printf("%s: not started, the in-flight record cannot be saved: writing %s: %s (%s)",
                            step_names[step], p->service->state_path, strerror(-r), space);
        fail(p, r, msg ?: "cannot save the state");
}

static void remember_pointer(Pipeline *p);

static void mark_bad(Pipeline *p, const char *reason, const char *outcome) {
        ServiceState *st = p->service->state;
        uint64_t now = now_usec(CLOCK_REALTIME);

        remember_pointer(p);
        log_event(LOG_ERR, LOG_MID_BAD, "%s: marking %s bad: %s", p->service->name, p->target.sha, reason);
        (void) state_mark_bad(st, p->target.sha, p->target.etag, reason, now);
        /* the other hosts' breakers count it once bad/<sha>/<host_id> is written */
        if (p->service->cfg->fleet_prefix)
                state_set_unreported(st, p->target.sha, true);
        (void) state_add_history(st, p->target.sha, p->previous, outcome, reason, now);
}

/* The end of a build that failed after the swap: marked bad, unless
 * systemd refused the restart because the unit was missing or masked. That
 * says nothing about the build, so the next poll tries it again. */
static void mark_failed(Pipeline *p, const char *reason, const char *outcome) {
        if (!p->host_fault)
                return mark_bad(p, reason, outcome);
        log_warning("%s: %s not marked bad: the unit could not be restarted; trying it again at the next poll",
                    p->service->name, p->target.sha);
        (void) state_add_history(p->service->state, p->target.sha, p->previous, outcome, reason,
                                 now_usec(CLOCK_REALTIME));
}

/* ---- step results ---- */

static void on_progress(uint64_t bytes, uint64_t total, void *userdata) {
        Pipeline *p = userdata;
        uint64_t quarter;

        if (total == 0)
                return;
        service_set_activity(p->service, "fetching %s (%llu%%)", p->target.sha,
                             (unsigned long long) (bytes * 100 / total));
        service_emit(p->service, "fetch", bytes, total);
        quarter = bytes * 4 / total;
        if (quarter > p->progress_mark) {
                p->progress_mark = quarter;
                log_info("%s: fetch: %llu of %llu bytes (%llu%%)", p->service->name, (unsigned long long) bytes,
                         (unsigned long long) total, (unsigned long long) (bytes * 100 / total));
        }
}

bool pipeline_checks_health(const ServiceConfig *c) {
        return (c->unit && c->restart_mode != RESTART_NONE) || c->health_url || c->health_command;
}

/* The pointer's ETag is kept only once the build it names is settled
 * (deployed, current, or bad): until then a 304 must not end the retries. */
static void remember_pointer(Pipeline *p) {
        if (p->target.pointer_etag)
                (void) state_set(&p->service->state->pointer_etag, p->target.pointer_etag);
}

/* How old the target is for min_age. The wall clock is read once, when the
 * build is first seen (LastModified is S3's wall clock: nothing else to
 * compare it with); from then on its age grows with CLOCK_MONOTONIC. A
 * wall clock set back by hours would otherwise hold the build back by as
 * much, one set forward would take it at once. */
static uint64_t target_age_usec(Service *s, const Target *t) {
        uint64_t wall = now_usec(CLOCK_REALTIME), mono = now_usec(CLOCK_MONOTONIC);
        uint64_t wall_age = wall > t->last_modified_usec ? wall - t->last_modified_usec : 0;

        if (!streq_ptr(s->aging_sha, t->sha) || s->aging_modified_usec != t->last_modified_usec) {
                free(s->aging_sha);
                s->aging_sha = strdup(t->sha);
                if (!s->aging_sha)
                        return wall_age;
                s->aging_modified_usec = t->last_modified_usec;
                s->aging_first_mono_usec = mono;
                s->aging_first_age_usec = wall_age;
        }
        return s->aging_first_age_usec + (mono - s->aging_first_mono_usec);
}

/* 1: deploy the target; 0: nothing to do (logged why). */
static int should_deploy(Pipeline *p) {
        Service *s = p->service;
        const BadRelease *bad;

        if (streq_ptr(p->target.sha, s->state->current)) {
                log_debug("%s: %s is already current", s->name, p->target.sha);
                return 0;
        }
        if (fleet_is_halted(s, p->target.sha)) {
                log_info("%s: the rollout of %s is halted by the fleet's breaker; staying on %s", s->name,
                         p->target.sha, s->state->current ?: "nothing");
                return 0;
        }
        bad = state_find_bad(s->state, p->target.sha, p->target.etag);
        if (bad) {
                log_info("%s: newest build %s is marked bad (%s); staying on %s", s->name, p->target.sha,
                         strempty(bad->reason), s->state->current ?: "nothing");
                return 0;
        }
        if (target_age_usec(s, &p->target) < s->cfg->min_age_usec) {
                log_info("%s: %s is younger than min_age; not ready yet", s->name, p->target.sha);
                return 0;
        }
        return 1;
}

static void on_cleaned(Pipeline *p, const CleanupResult *res) {
        Service *s = p->service;

        if (res->removed > 0)
                log_info("%s: cleanup: removed %llu leftover%s of interrupted steps", s->name,
                         (unsigned long long) res->removed, res->removed == 1 ? "" : "s");
        if (res->complete)
                s->needs_cleanup = false;
        run_step(p, p->after_cleanup);
}

/* The pointer's rollout holds this host back: its wave is not open, the
 * rollout is paused, or the breaker halted it. The running release stays;
 * only a halted build is settled (its pointer may then answer 304). */
static void rollout_held(Pipeline *p, const DiscoverResult *res) {
        Service *s = p->service;

        if (res->rollout.halted)
                (void) state_set(&s->state->pointer_etag, res->pointer_etag);
        else
                log_debug("%s: %s", s->name, res->reason);
        finish(p, s->state->current ? 0 : -ENOENT);
}

static void on_discovered(Pipeline *p, const DiscoverResult *res) {
        Service *s = p->service;
        int r;

        r = pipeline_target_from_result(res, &p->target);
        if (r >= 0)
                r = fleet_on_discovered(s, res);
        if (r < 0)
                return fail(p, r, "discover: invalid result from worker");
        if (!res->found && !res->not_modified && res->rollout.set)
                return rollout_held(p, res);
        /* from here on the messages are about that build: journalctl DEPLOY_SHA= finds them */
        log_set_context(s->name, p->target.sha, step_names[p->step]);
        if (res->not_modified)
                return log_debug("%s: pointer unchanged", s->name), finish(p, 0);
        if (!p->target.sha) {
                if (s->state->current)
                        return log_info("%s: no build under s3://%s/%s; staying on %s", s->name, s->cfg->bucket,
                                        s->cfg->prefix, s->state->current), finish(p, 0);
                return fail(p, -ENOENT, "no build published yet under the configured bucket and prefix");
        }
        log_info("%s: discover: newest is %s (s3://%s/%s)", s->name, p->target.sha, s->cfg->bucket, p->target.key);
        if (should_deploy(p) == 0) {
                if (streq_ptr(p->target.sha, s->state->current) || state_find_bad(s->state, p->target.sha, p->target.etag) ||
                    fleet_is_halted(s, p->target.sha))
                        remember_pointer(p); /* settled: the next poll may be a 304 */
                return finish(p, s->state->current ? 0 : -ENOENT);
        }
        if (state_set(&p->previous, s->state->current) < 0)
                return fail(p, -ENOMEM, "out of memory");
        run_step(p, release_dir_exists(s->releases_dir, p->target.sha) ? STEP_ACTIVATE : STEP_FETCH);
}

/* The download is where the job said, under the name the supervisor chose:
 * the result carries no path to follow. */
static void on_fetched(Pipeline *p, const FetchResult *res) {
        log_info("%s: fetch: %s, %llu bytes, sha256 %s verified", p->service->name, p->target.key,
                 (unsigned long long) res->size, res->sha256);
        run_step(p, STEP_UNPACK);
}

static void on_unpacked(Pipeline *p, const UnpackResult *res) {
        log_info("%s: unpack: %s/%s (%llu entries, %llu bytes)", p->service->name, p->service->releases_dir,
                 p->target.sha, (unsigned long long) res->entries, (unsigned long long) res->bytes);
        run_step(p, STEP_ACTIVATE);
}

/* The new build runs (and, where configured, proved healthy). */
static void deployed(Pipeline *p) {
        Service *s = p->service;

        log_event(LOG_INFO, LOG_MID_DEPLOYED, "%s: deployed %s (was %s)", s->name, p->target.sha,
                  p->previous ?: "nothing");
        remember_pointer(p);
        (void) state_set(&s->state->last_error, NULL);
        (void) state_add_history(s->state, p->target.sha, p->previous, "deployed",
                                 p->kind == PIPELINE_ROLLBACK ? "rollback by an operator" :
                                 p->kind == PIPELINE_DEPLOY ? "deploy by an operator" : NULL,
                                 now_usec(CLOCK_REALTIME));
        if (p->kind == PIPELINE_DEPLOY)
                state_unmark_bad(s->state, p->target.sha); /* an operator's word overrides it */
        run_step(p, STEP_PRUNE);
}

static void on_activated(Pipeline *p, const ActivateResult *res) {
        Service *s = p->service;

        log_info("%s: activate: current -> releases/%s (was %s)", s->name, p->target.sha, p->previous ?: "nothing");
        if (res->warning)
                log_warning("%s: %s", s->name, res->warning);
        if (state_set(&s->state->current, p->target.sha) < 0 || state_set(&s->state->previous, p->previous) < 0)
                return fail(p, -ENOMEM, "out of memory");
        if (pipeline_checks_health(s->cfg))
                return run_step(p, STEP_RESTART);
        deployed(p);
}

static void on_restarted(Pipeline *p, const RestartResult *res) {
        log_info("%s: %s is healthy (%s)", p->service->name, p->target.sha, res->detail);
        deployed(p);
}

/* The new build failed after the swap: go back, or stay and say so. */
static void after_swap_failed(Pipeline *p, const char *error) {
        Service *s = p->service;

        free(p->failure);
        p->failure = strdup(error);
        if (!p->failure)
                return fail(p, -ENOMEM, "out of memory");
        log_error("%s: %s", s->name, error);
        if (p->kind == PIPELINE_ROLLBACK)
                return fail(p, -EIO, "the release rolled back to is not healthy either");
        if (p->previous && state_find_bad(s->state, p->previous, NULL))
                p->previous = mfree(p->previous); /* never go back to a build known bad */
        if (p->host_fault && (!s->cfg->auto_rollback || !p->previous))
                return restart_unfinished(p, error); /* stays current; restarted again at the next poll */
        if (!s->cfg->auto_rollback || !p->previous) {
                mark_bad(p, error, "failed");
                return fail(p, -EIO, !p->previous ? "no previous release to roll back to"
                                                  : "auto_rollback = no: leaving the failed release active");
        }
        log_event(LOG_WARNING, LOG_MID_ROLLBACK, "%s: rolling back from %s to %s", s->name, p->target.sha,
                  p->previous);
        run_step(p, STEP_ROLLBACK);
}

static void rolled_back(Pipeline *p) {
        _cleanup_free_ char *msg = strdup_printf("rolled back to %s: %s", p->previous, strempty(p->failure));

        mark_failed(p, p->failure ?: "failed after activation", "rolled-back");
        fail(p, -EIO, msg ?: "rolled back");
}

static void on_rolled_back(Pipeline *p) {
        Service *s = p->service;

        log_info("%s: rollback: current -> releases/%s", s->name, p->previous);
        if (state_set(&s->state->current, p->previous) < 0 || state_set(&s->state->previous, p->target.sha) < 0)
                return fail(p, -ENOMEM, "out of memory");
        if (pipeline_checks_health(s->cfg))
                return run_step(p, STEP_ROLLBACK_RESTART);
        rolled_back(p);
}

static void on_rollback_restarted(Pipeline *p) {
        log_info("%s: %s is healthy again after the rollback", p->service->name, p->previous);
        rolled_back(p);
}

static void on_pruned(Pipeline *p, const PruneResult *res) {
        uint64_t n = res->removed;

        if (n > 0)
                log_info("%s: prune: removed %llu old release%s", p->service->name, (unsigned long long) n,
                         n == 1 ? "" : "s");
        finish(p, p->failure ? -EIO : 0);
}

/* The restart worker ended without a verdict (killed, crashed, timed out):
 * that says nothing about the release, so it is not marked bad. The
 * in-flight record stays: the next poll checks the release again, as after
 * a crash of the agent, and keeps it or rolls it back. */
static void restart_unfinished(Pipeline *p, const char *error) {
        Service *s = p->service;

        log_event(LOG_ERR, LOG_MID_FAILED, "%s: %s; checking %s again at the next poll", s->name, error,
                  p->target.sha);
        (void) state_set(&s->state->last_error, error);
        end(p, -EIO, true);
}

/* Steps after the swap: what runs is unproven, or known unhealthy. */
static bool after_swap(Step step) {
        return step == STEP_RESTART || step == STEP_ROLLBACK || step == STEP_ROLLBACK_RESTART;
}

/* A step after the swap did not run to a verdict: the pool refused it, or
 * the rollback's worker (or the restart after it) crashed, was killed or
 * timed out. The pool refuses only while the agent shuts down or when
 * memory runs out, so a retry now would meet the same refusal; a worker
 * without a verdict says nothing about either build. The in-flight record
 * stays instead: the next poll, or the next start of the agent, runs the
 * recovery before anything else and checks the release again or finishes
 * the rollback. Ending here with the record cleared would leave an
 * unhealthy build current, unmarked, with nothing left to roll it back.
 * The recovery marks it bad once it is rolled back. */
static void after_swap_unfinished(Pipeline *p, int r, const char *error) {
        Service *s = p->service;
        bool rolling_back = p->step != STEP_RESTART;
        _cleanup_free_ char *msg = p->failure ? strdup_printf("%s; %s", p->failure, error) : NULL;

        log_event(LOG_ERR, LOG_MID_FAILED, "%s: %s; %s at the next poll", s->name, msg ?: error,
                  rolling_back ? "retrying the rollback" : "checking it again");
        (void) state_set(&s->state->last_error, msg ?: error);
        end(p, r, true);
}

/* A step failed: what that means depends on where we are. */
static void on_step_failed(Pipeline *p, const WorkerOutcome *o) {
        const char *error = o->error ?: "failed";

        switch (p->step) {
        case STEP_CLEANUP:
                /* leftovers waste space but break nothing: deploy anyway */
                log_warning("%s: %s", p->service->name, error);
                return run_step(p, p->after_cleanup);
        case STEP_FETCH:
        case STEP_UNPACK:
                if (o->bad)
                        mark_bad(p, error, "rejected");
                return fail(p, -EIO, error);
        case STEP_RESTART:
                if (!o->result)
                        return restart_unfinished(p, error);
                p->host_fault = !o->bad; /* the restart worker's verdict on the release */
                return after_swap_failed(p, error);
        case STEP_ROLLBACK:
        case STEP_ROLLBACK_RESTART:
                if (!o->result)
                        return after_swap_unfinished(p, -EIO, error);
                mark_failed(p, p->failure ?: error, "rolled-back");
                return fail(p, -EIO, error);
        case STEP_PRUNE:
                log_warning("%s: %s", p->service->name, error); /* a full disk later beats a failed deploy now */
                return finish(p, p->failure ? -EIO : 0);
        case STEP_REPORT:
                log_warning("%s: fleet report: %s; retrying at the next poll", p->service->name, error);
                return reported(p, NULL);
        default:
                return fail(p, -EIO, error);
        }
}

/* Shutting down: leave the in-flight record for the next start. */
static void abandon(Pipeline *p) {
        Service *s = p->service;

        log_info("%s: stopped during %s", s->name, step_names[p->step]);
        (void) state_set(&s->state->last_error, "stopped: the agent is shutting down");
        end(p, -ECANCELED, true);
}

/* A worker's reply is input, never a fact: decoded strictly and held
 * against the job before anything acts on it (docs/design.md, "Security
 * model"). Then the step's handler. */
static void on_step_result(Pipeline *p, json_t *msg) {
        _cleanup_free_ char *why = NULL, *error = NULL;
        WorkerResult res = {};
        int r;

        r = worker_result_decode(msg, step_workers[p->step], &res, &why);
        if (r >= 0)
                r = worker_result_check(&p->job, &res, &why);
        if (r < 0) {
                worker_result_done(&res);
                error = strdup_printf("%s: invalid result from the worker: %s", step_names[p->step],
                                      why ?: strerror(-r));
                /* the report never changes the pipeline's outcome, nor the
                 * in-flight record crash recovery relies on */
                if (p->step == STEP_REPORT) {
                        log_warning("%s: fleet report: %s; retrying at the next poll", p->service->name,
                                    error ?: "invalid result from the worker");
                        return reported(p, NULL);
                }
                return fail(p, -EPROTO, error ?: "invalid result from the worker");
        }
        switch (p->step) {
        case STEP_CLEANUP: on_cleaned(p, &res.cleanup); break;
        case STEP_DISCOVER: on_discovered(p, &res.discover); break;
        case STEP_FETCH: on_fetched(p, &res.fetch); break;
        case STEP_UNPACK: on_unpacked(p, &res.unpack); break;
        case STEP_ACTIVATE: on_activated(p, &res.activate); break;
        case STEP_RESTART: on_restarted(p, &res.restart); break;
        case STEP_ROLLBACK: on_rolled_back(p); break;
        case STEP_ROLLBACK_RESTART: on_rollback_restarted(p); break;
        case STEP_PRUNE: on_pruned(p, &res.prune); break;
        case STEP_REPORT: reported(p, &res.report); break;
        default: abort();
        }
        worker_result_done(&res); /* p may be gone; res is ours */
}

static void on_step_done(WorkerOutcome *o, void *userdata) {
        Pipeline *p = userdata;

        p->worker = NULL;
        log_set_context(p->service->name, p->target.sha, step_names[p->step]);
        if (p->stopped)
                return abandon(p);
        log_debug("%s: %s worker: peak RSS %llu KiB, CPU %llu ms, wall %llu ms", p->service->name,
                  worker_step_to_string(step_workers[p->step]), (unsigned long long) o->max_rss_kib,
                  (unsigned long long) (o->cpu_usec / USEC_PER_MSEC),
                  (unsigned long long) (o->wall_usec / USEC_PER_MSEC));
        if (!o->ok && p->step != STEP_DISCOVER && p->step != STEP_RESTART && p->step != STEP_ROLLBACK_RESTART &&
            p->step != STEP_REPORT)
                p->service->needs_cleanup = true; /* a step that writes files ended anyhow */
        if (!o->ok)
                return on_step_failed(p, o);
        on_step_result(p, o->result);
}

/* ---- running steps ---- */

/* Into p->job (the previous step's is released) and *ret_msg. */
static int build_job(Pipeline *p, Step step, json_t **ret_msg) {
        Service *s = p->service;

        worker_job_done(&p->job);
        switch (step) {
        case STEP_CLEANUP: return pipeline_job_cleanup(s, &p->job, ret_msg);
        case STEP_DISCOVER: return pipeline_job_discover(s, &p->job, ret_msg);
        case STEP_FETCH: return pipeline_job_fetch(s, &p->target, &p->job, ret_msg);
        case STEP_UNPACK: return pipeline_job_unpack(s, p->target.sha, &p->job, ret_msg);
        case STEP_ACTIVATE: return pipeline_job_activate(s, p->target.sha, true, &p->job, ret_msg);
        case STEP_ROLLBACK: return pipeline_job_activate(s, p->previous, false, &p->job, ret_msg);
        case STEP_RESTART: return pipeline_job_restart(s, p->target.sha, &p->job, ret_msg);
        case STEP_ROLLBACK_RESTART: return pipeline_job_restart(s, p->previous, &p->job, ret_msg);
        case STEP_PRUNE: return pipeline_job_prune(s, &p->job, ret_msg);
        case STEP_REPORT: return pipeline_job_report(s, &p->job, ret_msg);
        default: abort();
        }
}

static void run_step(Pipeline *p, Step step) {
        Service *s = p->service;
        json_t *job = NULL;
        int r;

        p->step = step;
        p->progress_mark = 0;
        log_set_context(s->name, p->target.sha, step_names[step]);
        r = build_job(p, step, &job);
        if (r < 0 && step == STEP_REPORT) {
                log_warning("%s: fleet report: building its job: %s; retrying at the next poll", s->name, strerror(-r));
                return reported(p, NULL); /* never a deploy's failure */
        }
        if (r < 0)
                return fail(p, r, r == -ENOMEM ? "building a job: out of memory" : "building a job: invalid job");
        /* rollback steps record the step that decides recovery: "rollback";
         * cleanup and discovery leave nothing to recover (a recovery's record
         * must outlive its cleanup), and an idle poll writes nothing */
        r = step == STEP_CLEANUP || step == STEP_DISCOVER || step == STEP_REPORT ? 0 :
            set_in_flight(p, step == STEP_ROLLBACK_RESTART ? "rollback" : step_names[step]);
        if (r < 0) {
                json_decref(job);
                return fail_unsaved(p, step, r);
        }
        service_set_activity(s, "%s %s", step_names[step], p->target.sha ?: "");
        service_emit(s, step_names[step], 0, 0);
        /* the last use of p here: a worker that cannot start ends the step
         * (and may free p) before this returns */
        r = s->workers->start(s->workers->impl, worker_step_to_string(step_workers[step]), job,
                              s->cfg->step_timeout_usec, on_progress, on_step_done, p, &p->worker);
        json_decref(job);
        if (r < 0) {
                _cleanup_free_ char *msg = strdup_printf("%s: cannot start worker: %s", step_names[step], strerror(-r));
                if (step == STEP_REPORT)
                        return reported(p, NULL);
                if (after_swap(step))
                        return after_swap_unfinished(p, r, msg ?: "cannot start worker");
                return fail(p, r, msg ?: "cannot start worker");
        }
}

/* The first step of a pass: after the agent started, or after a step that
 * writes files failed or was killed, a cleanup runs before it. The pass
 * that follows may find nothing new and run no unpack or prune, which
 * would otherwise be the only steps to remove staging and trash dirs. */
static void run_first(Pipeline *p, Step step) {
        if (!p->service->needs_cleanup)
                return run_step(p, step);
        p->after_cleanup = step;
        run_step(p, STEP_CLEANUP);
}

bool pipeline_current_unproven(const ServiceState *st) {
        return pipeline_needs_recovery(st) || streq_ptr(st->in_flight_step, step_names[STEP_ROLLBACK_RESTART]);
}

bool pipeline_needs_recovery(const ServiceState *st) {
        if (!st->in_flight_step || !st->in_flight_sha)
                return false;
        if (streq(st->in_flight_step, "rollback"))
                return st->in_flight_previous != NULL;
        /* swapped but not yet proven healthy */
        return (streq(st->in_flight_step, "activate") || streq(st->in_flight_step, "restart")) &&
               streq_ptr(st->current, st->in_flight_sha);
}

static int start_recovery(Pipeline *p) {
        ServiceState *st = p->service->state;
        bool rolling_back = streq(st->in_flight_step, "rollback");

        if (state_set(&p->target.sha, st->in_flight_sha) < 0 || state_set(&p->previous, st->in_flight_previous) < 0 ||
            state_set(&p->target.etag, st->in_flight_etag) < 0)
                return -ENOMEM;
        log_set_context(p->service->name, p->target.sha, NULL); /* journalctl DEPLOY_SERVICE= finds it */
        log_warning("%s: the agent stopped during %s of %s; %s", p->service->name, st->in_flight_step,
                    p->target.sha, rolling_back ? "finishing the rollback" : "checking it again");
        if (rolling_back) {
                p->failure = strdup("interrupted during its rollback");
                run_first(p, STEP_ROLLBACK);
        } else
                run_first(p, pipeline_checks_health(p->service->cfg) ? STEP_RESTART : STEP_PRUNE);
        return 0;
}

/* An operator named the sha: no discovery, straight to what is missing. */
static int start_operator(Pipeline *p, const char *sha, const char *reason) {
        Service *s = p->service;
        const ServiceConfig *c = s->cfg;

        if (!sha_is_valid(sha))
                return -EINVAL;
        if (state_set(&p->target.sha, sha) < 0 || state_set(&p->previous, s->state->current) < 0 ||
            !(p->target.key = strdup_printf("%s%s%s", c->prefix, sha, c->suffix)))
                return -ENOMEM;
        log_info("%s: %s of %s requested", s->name, p->kind == PIPELINE_ROLLBACK ? "rollback" : "deploy", sha);
        /* what is current now, not when the request came: a deploy may have
         * run in between */
        if (p->kind == PIPELINE_ROLLBACK && s->state->current && !streq(s->state->current, sha)) {
                log_event(LOG_WARNING, LOG_MID_BAD, "%s: %s marked bad: %s", s->name, s->state->current,
                          strempty(reason));
                if (state_mark_bad(s->state, s->state->current, NULL, reason ?: "rolled back", now_usec(CLOCK_REALTIME)) < 0)
                        return -ENOMEM;
        }
        if (streq_ptr(sha, s->state->current)) {
                finish(p, 0);
                return 0;
        }
        run_first(p, p->kind == PIPELINE_ROLLBACK || release_dir_exists(s->releases_dir, p->target.sha) ?
                     STEP_ACTIVATE : STEP_FETCH);
        return 0;
}

int pipeline_start(Service *s, PipelineKind kind, const char *sha, const char *reason, pipeline_done_cb done) {
        Pipeline *p;
        int r;

        if (s->pipeline)
                return -EBUSY;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->service = s;
        p->kind = kind;
        p->done = done;
        if (state_set(&p->initial, s->state->current) < 0)
                return pipeline_free(p), -ENOMEM;
        s->pipeline = p;
        if (kind == PIPELINE_AUTO) {
                run_first(p, STEP_DISCOVER);
                return 0;
        }
        r = kind == PIPELINE_RECOVER ? start_recovery(p) : start_operator(p, sha, reason);
        if (r < 0) {
                s->pipeline = NULL;
                pipeline_free(p);
        }
        return r;
}

void pipeline_stop(Pipeline *p) {
        p->stopped = true;
        if (p->worker)
                p->service->workers->stop(p->service->workers->impl, p->worker);
}
