/* fleet.c: the supervisor's side of the fleet (docs/design.md, "Fleet"). */
#define _GNU_SOURCE
#include "supervisor/fleet.h"

#include <assert.h>
#include <jansson.h>

#include "common/json-util.h"
#include "common/log.h"
#include "common/util.h"
#include "supervisor/service.h"
#include "version.h"

/* Bad builds named in a discover job: the newest ones, the ones a pointer
 * may plausibly name again (an abort names the previous build). With the
 * current build and every halted one they must all fit in the job. */
#define SETTLED_BAD_MAX 7
static_assert(1 + FLEET_HALTED_MAX + SETTLED_BAD_MAX <= FLEET_SETTLED_MAX,
              "the current, halted and bad builds must fit in a discover job");

static void settle(FleetJob *j, const char *sha) {
        if (!sha || j->n_settled >= FLEET_SETTLED_MAX)
                return;
        for (size_t i = 0; i < j->n_settled; i++)
                if (streq(j->settled[i], sha))
                        return;
        snprintf(j->settled[j->n_settled++], sizeof j->settled[0], "%s", sha);
}

char *fleet_host_id(const Service *s) {
        return s->config->agent.host_id ?: s->fleet.host_id;
}

FleetJob fleet_discover_job(const Service *s) {
        const ServiceState *st = s->state;
        FleetJob j = {
                .prefix = s->cfg->fleet_prefix,
                .host_id = fleet_host_id(s),
                .canary = s->cfg->canary,
        };
        size_t n_bad = 0;

        settle(&j, st->current);
        for (size_t i = 0; i < s->fleet.n_halted; i++)
                settle(&j, s->fleet.halted[i].sha);
        /* the worker skips the rollout's admission for a settled build; a
         * build bad only as one object (an ETag) is taken again when
         * re-uploaded (state_find_bad()), so it must pass admission then */
        for (size_t i = st->n_bad; i-- > 0 && n_bad < SETTLED_BAD_MAX;)
                if (!st->bad[i].etag) {
                        settle(&j, st->bad[i].sha);
                        n_bad++;
                }
        return j;
}

bool fleet_is_halted(const Service *s, const char *sha) {
        for (size_t i = 0; sha && i < s->fleet.n_halted; i++)
                if (streq(s->fleet.halted[i].sha, sha))
                        return true;
        return false;
}

static int remember_halted(Service *s, const RolloutResult *ro) {
        ServiceFleet *f = &s->fleet;
        FleetHalted h = {};

        if (fleet_is_halted(s, ro->sha))
                return 0;
        log_event(LOG_WARNING, LOG_MID_BAD, "%s: the rollout of %s is halted by the fleet's breaker; not taking it: %s",
                  s->name, ro->sha, strempty(ro->halt));
        snprintf(h.sha, sizeof h.sha, "%s", ro->sha);
        h.halt = strdup(strempty(ro->halt));
        if (!h.halt)
                return -ENOMEM;
        if (f->n_halted == FLEET_HALTED_MAX) {
                free(f->halted[0].halt);
                memmove(f->halted, f->halted + 1, --f->n_halted * sizeof *f->halted);
        }
        f->halted[f->n_halted++] = h;
        return 0;
}

/* "taken" is said only of a build that is current (fleet_rollout_status()):
 * an admitted build may still be refused (bad here, younger than min_age)
 * or fail to deploy. */
static const char *rollout_word(const Service *s, const RolloutResult *ro) {
        if (ro->halted || fleet_is_halted(s, ro->sha))
                return "halted";
        if (ro->admitted)
                return "admitted";
        return ro->paused ? "paused" : "waiting";
}

const char *fleet_rollout_status(const Service *s) {
        const ServiceFleet *f = &s->fleet;

        if (!f->rollout_sha)
                return NULL;
        return streq_ptr(f->rollout_sha, s->state->current) ? "taken" : strempty(f->rollout_status);
}

int fleet_on_discovered(Service *s, const DiscoverResult *res) {
        ServiceFleet *f = &s->fleet;
        const RolloutResult *ro = &res->rollout;

        if (res->host_id && (state_set(&f->host_id, res->host_id) < 0 || state_set(&f->zone, res->zone) < 0))
                return -ENOMEM;
        if (res->host_id)
                log_info("%s: this host is %s%s%s in the fleet", s->name, f->host_id, f->zone ? " in " : "",
                         strempty(f->zone));
        if (res->not_modified || !ro->set)
                return 0;
        if (ro->halted && remember_halted(s, ro) < 0)
                return -ENOMEM;
        /* a waiting host polls often: say so when it changes, not each time */
        if (!res->found && res->reason && !ro->halted && !streq_ptr(res->reason, f->rollout_message))
                log_info("%s: %s", s->name, res->reason);
        if (state_set(&f->rollout_sha, ro->sha) < 0 ||
            state_set(&f->rollout_message, res->found ? NULL : res->reason) < 0)
                return -ENOMEM;
        f->rollout_status = rollout_word(s, ro);
        f->rollout_wave = ro->wave;
        return 0;
}

/* ---- the report ---- */

static json_t *rollout_json(const Service *s) {
        const ServiceFleet *f = &s->fleet;

        if (!f->rollout_sha)
                return json_null();
        return json_pack("{s:s,s:s,s:I}", "sha", f->rollout_sha, "status", fleet_rollout_status(s), "wave",
                         (json_int_t) f->rollout_wave);
}

void fleet_on_pass_end(Service *s, int r) {
        /* stopped or refused (-ECANCELED) says nothing of the host's health;
         * nothing published yet (-ENOENT) is no failure */
        if (r >= 0 || r == -ENOENT)
                s->fleet.failed = false;
        else if (r != -ECANCELED)
                s->fleet.failed = true;
}

/* "failed" says the last pass failed: last_error is kept until the next
 * deploy, so one transient S3 error would say so for days. */
static const char *state_word(const Service *s) {
        if (s->fleet.failed)
                return "failed";
        if (s->state->paused || s->state->pinned)
                return s->state->paused ? "paused" : "pinned";
        return s->state->current ? "ok" : "empty";
}

/* status/<host_id>.json without "time": what decides whether to write. */
static json_t *status_core(const Service *s) {
        const ServiceState *st = s->state;
        json_t *bad = json_array();

        for (size_t i = 0; bad && i < st->n_bad; i++)
                json_array_append_new(bad, json_string(st->bad[i].sha));
        return json_pack("{s:s,s:o,s:s,s:s,s:o,s:o,s:s,s:o,s:o,s:o,s:I}", "host_id", fleet_host_id(s),
                         "zone", json_string_or_null(s->fleet.zone), "service", s->name,
                         "agent_version", DEPLOY_AGENT_VERSION, "current", json_string_or_null(st->current),
                         "previous", json_string_or_null(st->previous), "state", state_word(s),
                         "last_error", json_string_or_null(st->last_error), "bad", bad, "rollout", rollout_json(s),
                         "status_interval_sec", (json_int_t) (s->cfg->status_interval_usec / USEC_PER_SEC));
}

static char *status_core_text(const Service *s) {
        json_auto_t *j = status_core(s);

        return j ? json_dumps(j, JSON_COMPACT) : NULL;
}

bool fleet_report_wanted(Service *s) {
        _cleanup_free_ char *core = NULL;
        const ServiceFleet *f = &s->fleet;

        if (!s->cfg->fleet_prefix || !fleet_host_id(s))
                return false;
        if (state_first_unreported(s->state))
                return true;
        if (f->reported_usec == 0 || now_usec(CLOCK_MONOTONIC) - f->reported_usec >= s->cfg->status_interval_usec)
                return true;
        core = status_core_text(s);
        return core && !streq_ptr(core, f->reported);
}

static char *marker_body(const Service *s, const BadRelease *b) {
        json_auto_t *j = NULL;
        char when[32];

        j = json_pack("{s:s,s:s,s:s,s:s}", "host_id", fleet_host_id(s), "sha", b->sha, "reason",
                      strempty(b->reason), "time", format_timestamp(b->when_usec, when));
        return j ? json_dumps(j, JSON_COMPACT) : NULL;
}

int fleet_report_fields(Service *s, char **ret_status, char **ret_bad_sha, char **ret_bad_body) {
        const BadRelease *b = state_first_unreported(s->state);
        json_auto_t *j = status_core(s);
        char when[32];

        if (!j || json_object_set_new(j, "time", json_string(format_timestamp(now_usec(CLOCK_REALTIME), when))) < 0)
                return -ENOMEM;
        *ret_status = json_dumps(j, JSON_COMPACT);
        *ret_bad_sha = b ? strdup(b->sha) : NULL;
        *ret_bad_body = b ? marker_body(s, b) : NULL;
        if (!*ret_status || (b && (!*ret_bad_sha || !*ret_bad_body)))
                return -ENOMEM;
        return 0;
}

void fleet_on_reported(Service *s, const ReportJob *job, const ReportResult *res) {
        ServiceFleet *f = &s->fleet;

        if (res->bad_written && job->bad_sha) {
                log_info("%s: wrote %sbad/%s/%s", s->name, job->fleet_prefix, job->bad_sha, job->host_id);
                state_set_unreported(s->state, job->bad_sha, false);
                (void) service_save_state(s);
        }
        if (res->status_written) {
                free(f->reported);
                f->reported = status_core_text(s);
                f->reported_usec = now_usec(CLOCK_MONOTONIC);
        }
        if (res->error)
                log_warning("%s: fleet report: %s; retrying at the next poll", s->name, res->error);
}
