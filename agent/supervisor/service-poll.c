/* service-poll.c: the poll timer (interval, exponential backoff after
 * failures, jitter), crash recovery before anything else, and the
 * operator's requests queued behind the running pipeline. */
#define _GNU_SOURCE
#include "supervisor/service-poll.h"

#include <sys/random.h>

#include "common/log.h"
#include "supervisor/pipeline.h"
#include "common/util.h"

#define BACKOFF_CAP_USEC (60 * 60 * USEC_PER_SEC)
#define BACKOFF_MAX_SHIFT 10

/* poll_interval, doubled per failure in a row up to a cap, then spread by
 * +-poll_jitter so a fleet does not hit S3 in lockstep. */
uint64_t service_poll_delay(const Service *s) {
        const AgentConfig *a = &s->config->agent;
        unsigned shift = s->failures < BACKOFF_MAX_SHIFT ? s->failures : BACKOFF_MAX_SHIFT;
        uint64_t delay = a->poll_interval_usec << shift, spread, rnd = 0;

        if (s->failures > 0 && delay > BACKOFF_CAP_USEC)
                delay = a->poll_interval_usec > BACKOFF_CAP_USEC ? a->poll_interval_usec : BACKOFF_CAP_USEC;
        spread = delay / 100 * a->poll_jitter_percent;
        if (spread == 0 || getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                return delay;
        return delay - spread + rnd % (2 * spread + 1);
}

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Service *s = userdata;

        (void) service_poll(s);
        /* nothing started (busy, paused, pinned, or it could not start):
         * keep ticking; a pipeline that runs re-arms the timer when it ends */
        if (!s->pipeline)
                (void) service_schedule(s, service_poll_delay(s));
        return 0;
}

int service_schedule(Service *s, uint64_t delay) {
        if (!s->timer)
                return sd_event_add_time_relative(s->event, &s->timer, CLOCK_MONOTONIC, delay, 0, on_timer, s);
        (void) sd_event_source_set_time_relative(s->timer, delay);
        return sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

uint64_t service_next_poll_usec(const Service *s) {
        uint64_t usec = 0;
        int enabled = SD_EVENT_OFF;

        if (s->pipeline || !s->timer || sd_event_source_get_enabled(s->timer, &enabled) < 0 ||
            enabled == SD_EVENT_OFF || sd_event_source_get_time(s->timer, &usec) < 0)
                return 0;
        return usec;
}

/* The pipeline ended: count failures for the backoff, then tell the owner. */
static void pipeline_done(Service *s, const PipelineResult *res) {
        /* nothing published yet (-ENOENT) is no failure to back off from */
        if (res->r < 0 && res->r != -ECANCELED && res->r != -ENOENT)
                s->failures++;
        else if (res->r >= 0 || res->r == -ENOENT)
                s->failures = 0;
        if (res->r >= 0)
                service_set_activity(s, "idle at %s", s->state->current ?: "nothing");
        else
                /* the release that failed is not the one at current (a rollback
                 * brought the old one back): say which one stays */
                service_set_activity(s, "at %s; the last pass failed (%u in a row)", s->state->current ?: "nothing",
                                     s->failures);
        (void) service_save_state(s);
        if (s->callbacks->pipeline_ended)
                s->callbacks->pipeline_ended(s, s->seq, res, s->callbacks->userdata);
}

static int start(Service *s, PipelineKind kind, const char *sha, const char *reason) {
        int r;

        s->seq++;
        s->last_poll_usec = now_usec(CLOCK_REALTIME);
        r = pipeline_start(s, kind, sha, reason, pipeline_done);
        if (r < 0)
                log_error_errno(r, "%s: cannot start a deploy: %m", s->name);
        return r;
}

int service_poll(Service *s) {
        if (s->pipeline)
                return -EBUSY;
        if (pipeline_needs_recovery(s->state))
                return start(s, PIPELINE_RECOVER, NULL, NULL);
        if (s->state->paused || s->state->pinned) {
                log_debug("%s: %s; no automatic deploy", s->name, s->state->paused ? "paused" : "pinned");
                return 0;
        }
        return start(s, PIPELINE_AUTO, NULL, NULL);
}

unsigned service_request_seq(const Service *s) {
        if (!s->pipeline && pipeline_needs_recovery(s->state))
                return s->seq + 2;
        return s->seq + 1;
}

int service_request(Service *s, PipelineKind kind, const char *sha, const char *reason) {
        int r;

        if (s->pipeline || pipeline_needs_recovery(s->state)) {
                if (s->pending_kind != _PIPELINE_KIND_NONE)
                        return -EBUSY;
                if (state_set(&s->pending_sha, sha) < 0 || state_set(&s->pending_reason, reason) < 0)
                        return -ENOMEM;
                s->pending_kind = kind;
                return s->pipeline ? 0 : service_poll(s);
        }
        r = start(s, kind, sha, reason);
        return r < 0 ? r : 0;
}

/* A queued request that cannot start ends as a pipeline that failed at
 * once, under the number it was given: the client waiting for it hears
 * why, and the owner does what it does after every pipeline (arms the next
 * poll, applies a reload that waited, frees the config it replaced). */
static void pending_failed(Service *s, int r) {
        _cleanup_free_ char *error = strdup_printf("cannot start: %s", strerror(-r));
        PipelineResult res = {
                .r = r, .sha = s->state->current, .previous = s->state->current, .error = error ?: "cannot start",
        };

        pipeline_done(s, &res);
}

/* The operator's request that waited for the pipeline that just ended. */
static bool start_pending(Service *s) {
        _cleanup_free_ char *sha = TAKE_PTR(s->pending_sha), *reason = TAKE_PTR(s->pending_reason);
        PipelineKind kind = s->pending_kind;
        int r;

        if (kind == _PIPELINE_KIND_NONE)
                return false;
        s->pending_kind = _PIPELINE_KIND_NONE;
        r = start(s, kind, sha, reason);
        if (r < 0)
                pending_failed(s, r); /* s may be freed from here */
        return true;
}

void service_next(Service *s) {
        if (!start_pending(s))
                (void) service_schedule(s, service_poll_delay(s));
}
