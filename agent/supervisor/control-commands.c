/* control-commands.c: what each control command does (docs/design.md,
 * "Control protocol"). Reads are open to every peer; changes need an admin peer. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "supervisor/control-commands.h"
#include "common/fs-util.h"
#include "common/json-util.h"
#include "common/log.h"
#include "supervisor/fleet.h"
#include "supervisor/manager.h"
#include "supervisor/pipeline.h"
#include "supervisor/service.h"
#include "supervisor/service-poll.h"
#include "common/util.h"
#include "version.h"

typedef struct Request {
        Manager *manager;
        Client *client;
        const Peer *peer;
        json_t *req;
        Service *service;              /* when the command names one */
} Request;

typedef struct Command {
        const char *name;
        bool changes;                  /* needs an admin peer */
        bool needs_service;
        const char *fields[4];         /* allowed besides "cmd"; unused slots NULL */
        void (*run)(Request *r);
} Command;

static json_t *timestamp_json(uint64_t usec) {
        char buf[32];

        return usec ? json_string(format_timestamp(usec, buf)) : json_null();
}

/* When the current release was deployed: its newest "deployed" entry. */
static uint64_t deployed_since(const ServiceState *st) {
        for (size_t i = st->n_history; i-- > 0;)
                if (streq_ptr(st->history[i].outcome, "deployed") && streq_ptr(st->history[i].sha, st->current))
                        return st->history[i].when_usec;
        return 0;
}

static json_t *bad_json(const ServiceState *st) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < st->n_bad; i++)
                json_array_append_new(a, json_pack("{s:s,s:o,s:o}", "sha", st->bad[i].sha,
                                                   "reason", json_string_or_null(st->bad[i].reason),
                                                   "when", timestamp_json(st->bad[i].when_usec)));
        return a;
}

/* When the release at current began to run this time: its newest deploy,
 * or the newest rollback back to it. */
static const HistoryEntry *running_since(const ServiceState *st) {
        for (size_t i = st->n_history; st->current && i-- > 0;) {
                const HistoryEntry *h = &st->history[i];
                if ((streq_ptr(h->outcome, "deployed") && streq_ptr(h->sha, st->current)) ||
                    (streq_ptr(h->outcome, "rolled-back") && streq_ptr(h->previous, st->current)))
                        return h;
        }
        return NULL;
}

/* The build that failed since the last deploy (rolled back, left active
 * but failed, or rejected), or NULL: after a rollback, status must say
 * that the build which failed is not the one that runs. */
static const HistoryEntry *last_failure(const ServiceState *st) {
        if (st->n_history == 0 || streq_ptr(st->history[st->n_history - 1].outcome, "deployed"))
                return NULL;
        return &st->history[st->n_history - 1];
}

static json_t *last_failure_json(const ServiceState *st) {
        const HistoryEntry *h = last_failure(st);
        bool rolled_back = h && streq_ptr(h->outcome, "rolled-back");

        if (!h)
                return json_null();
        return json_pack("{s:o,s:o,s:o,s:o,s:o,s:b}", "sha", json_string_or_null(h->sha),
                         "outcome", json_string_or_null(h->outcome), "reason", json_string_or_null(h->message),
                         "when", timestamp_json(h->when_usec),
                         "rolled_back_to", json_string_or_null(rolled_back ? h->previous : NULL),
                         "bad", h->sha && state_find_bad(st, h->sha, NULL) != NULL);
}

/* "healthy": proven by its deploy or rollback; "checking": swapped, not
 * yet proven (or being rolled back from); "unhealthy": failed and left
 * active; "unchecked": nothing restarts or checks it. */
static json_t *health_json(const Service *s) {
        const ServiceState *st = s->state;

        if (!st->current)
                return json_null();
        if (pipeline_current_unproven(st))
                return json_string("checking");
        if (state_find_bad(st, st->current, NULL))
                return json_string("unhealthy");
        return json_string(pipeline_checks_health(s->cfg) ? "healthy" : "unchecked");
}

/* Where this host stands in the pointer's rollout, or null. */
static json_t *rollout_json(const Service *s) {
        const ServiceFleet *f = &s->fleet;
        json_t *halted = json_null();

        if (!f->rollout_sha)
                return json_null();
        for (size_t i = 0; i < f->n_halted; i++)
                if (streq(f->halted[i].sha, f->rollout_sha))
                        halted = json_string(f->halted[i].halt);
        return json_pack("{s:s,s:s,s:I,s:o,s:o}", "sha", f->rollout_sha,
                         "status", fleet_rollout_status(s),
                         "wave", (json_int_t) f->rollout_wave, "message", json_string_or_null(f->rollout_message),
                         "halted", halted);
}

/* What the agent does next, and when (docs/protocol.md, "status"). */
static int add_next_poll(json_t *o, const Service *s) {
        uint64_t at = service_next_poll_usec(s), now = now_usec(CLOCK_MONOTONIC), in = at > now ? at - now : 0;

        if (at == 0)
                return json_object_set_new(o, "next_poll", json_null()) |
                       json_object_set_new(o, "next_poll_in_sec", json_null());
        return json_object_set_new(o, "next_poll", timestamp_json(now_usec(CLOCK_REALTIME) + in)) |
               json_object_set_new(o, "next_poll_in_sec",
                                   json_integer((json_int_t) ((in + USEC_PER_SEC - 1) / USEC_PER_SEC)));
}

/* What runs and how it is, what failed, what comes next, and where this
 * host stands in the fleet. */
static int add_details(json_t *o, Service *s) {
        const HistoryEntry *since = running_since(s->state);

        if (json_object_set_new(o, "health", health_json(s)) < 0 ||
            json_object_set_new(o, "running_since", timestamp_json(since ? since->when_usec : 0)) < 0 ||
            json_object_set_new(o, "last_failure", last_failure_json(s->state)) < 0 || add_next_poll(o, s) < 0)
                return -ENOMEM;
        if (json_object_set_new(o, "host_id", json_string_or_null(fleet_host_id(s))) < 0 ||
            json_object_set_new(o, "zone", json_string_or_null(s->fleet.zone)) < 0 ||
            json_object_set_new(o, "rollout", rollout_json(s)) < 0)
                return -ENOMEM;
        return 0;
}

static json_t *service_json(Service *s) {
        const ServiceState *st = s->state;
        json_t *o;

        o = json_pack("{s:s,s:o,s:o,s:o,s:s,s:o,s:b,s:o,s:o,s:o,s:I,s:o}", "name", s->name,
                      "current", json_string_or_null(st->current), "previous", json_string_or_null(st->previous),
                      "since", timestamp_json(deployed_since(st)), "activity", s->activity,
                      "step", s->pipeline ? json_string(pipeline_step_name(s->pipeline)) : json_null(),
                      "paused", st->paused, "pinned", json_string_or_null(st->pinned),
                      "last_poll", timestamp_json(s->last_poll_usec), "last_error", json_string_or_null(st->last_error),
                      "failures", (json_int_t) s->failures, "bad", bad_json(st));
        if (o && add_details(o, s) < 0)
                o = (json_decref(o), NULL);
        return o;
}

static void cmd_status(Request *r) {
        uint64_t start = manager_start_usec(r->manager), now = now_usec(CLOCK_REALTIME);
        json_t *services = json_array();

        for (size_t i = 0; i < manager_n_services(r->manager); i++) {
                Service *s = manager_service(r->manager, i);
                if (!r->service || s == r->service)
                        json_array_append_new(services, service_json(s));
        }
        control_reply(r->client, json_pack("{s:b,s:{s:s,s:i,s:o,s:I},s:o}", "ok", 1, "agent",
                                           "version", DEPLOY_AGENT_VERSION, "pid", (int) getpid(),
                                           "started", timestamp_json(start),
                                           "uptime_sec", (json_int_t) ((now - start) / USEC_PER_SEC),
                                           "services", services));
}

static void cmd_version(Request *r) {
        const ServiceState *st = r->service->state;

        if (!st->current)
                return control_reply_error(r->client, "not_deployed", "%s: nothing deployed yet", r->service->name);
        control_reply(r->client, json_pack("{s:b,s:s,s:s,s:o}", "ok", 1, "service", r->service->name,
                                           "sha", st->current, "since", timestamp_json(deployed_since(st))));
}

static void cmd_history(Request *r) {
        const ServiceState *st = r->service->state;
        json_t *a = json_array();

        for (size_t i = 0; i < st->n_history; i++) {
                const HistoryEntry *h = &st->history[i];
                json_array_append_new(a, json_pack("{s:o,s:o,s:o,s:o,s:o}", "sha", json_string_or_null(h->sha),
                                                   "previous", json_string_or_null(h->previous),
                                                   "outcome", json_string_or_null(h->outcome),
                                                   "message", json_string_or_null(h->message),
                                                   "when", timestamp_json(h->when_usec)));
        }
        control_reply(r->client, json_pack("{s:b,s:s,s:o}", "ok", 1, "service", r->service->name, "history", a));
}

/* Start (or queue) an operator's pipeline; reply now, or when it ends.
 * The wait is registered first: a pipeline with nothing to do ends inside
 * service_request(). */
static void request_pipeline(Request *r, PipelineKind kind, const char *sha, const char *reason) {
        Service *s = r->service;
        bool wait = json_is_true(json_object_get(r->req, "wait"));
        int k;

        if (wait && control_client_wait(r->client, s->name, service_request_seq(s)) < 0)
                return control_reply_error(r->client, "failed", "out of memory");
        k = service_request(s, kind, sha, reason);
        if (k < 0) {
                control_client_unwait(r->client);
                return control_reply_error(r->client, k == -EBUSY ? "busy" : "failed", "%s: %s", s->name,
                                           k == -EBUSY ? "another operator request is already waiting"
                                                       : strerror(-k));
        }
        if (!wait)
                control_reply(r->client, json_pack("{s:b,s:b,s:s,s:b}", "ok", 1, "changed",
                                                   sha ? !streq_ptr(sha, s->state->current) : 0,
                                                   "service", s->name, "accepted", 1));
}

/* service_request() would refuse with -EBUSY: another operator request waits. */
static bool request_would_wait_busy(const Service *s) {
        return s->pending_kind != _PIPELINE_KIND_NONE && (s->pipeline || pipeline_needs_recovery(s->state));
}

static void cmd_deploy(Request *r) {
        ServiceState *st = r->service->state;
        const char *sha = json_string_value(json_object_get(r->req, "sha"));

        if (json_object_get(r->req, "sha") && !sha_is_valid(sha))
                return control_reply_error(r->client, "bad_request", "sha must be 7 to 40 lowercase hex digits");
        /* refuse before unpinning: a refused deploy must change nothing */
        if (request_would_wait_busy(r->service))
                return control_reply_error(r->client, "busy", "%s: another operator request is already waiting",
                                           r->service->name);
        /* without --sha: unpin; with it, the pipeline pins once the build runs */
        if ((!sha && state_set(&st->pinned, NULL) < 0) || service_save_state(r->service) < 0)
                return control_reply_error(r->client, "failed", "cannot save the state of %s", r->service->name);
        request_pipeline(r, sha ? PIPELINE_DEPLOY : PIPELINE_AUTO, sha, NULL);
}

/* The newest release on disk that is neither current nor bad. */
static char *newest_good_on_disk(const Service *s) {
        _cleanup_(closedirp) DIR *d = opendir(s->releases_dir);
        struct timespec best_time = {};
        char *best = NULL;
        struct dirent *de;

        while (d && (de = readdir(d))) {
                struct stat st;
                if (!sha_is_valid(de->d_name) || streq_ptr(de->d_name, s->state->current) ||
                    state_find_bad(s->state, de->d_name, NULL) ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (!best || st.st_mtim.tv_sec > best_time.tv_sec ||
                    (st.st_mtim.tv_sec == best_time.tv_sec && st.st_mtim.tv_nsec > best_time.tv_nsec)) {
                        free(best);
                        best = strdup(de->d_name);
                        best_time = st.st_mtim;
                }
        }
        return best;
}

static char *rollback_target(Request *r) {
        const char *to = json_string_value(json_object_get(r->req, "to"));
        const ServiceState *st = r->service->state;

        if (to)
                return release_dir_exists(r->service->releases_dir, to) ? strdup(to) : NULL;
        if (st->previous && !state_find_bad(st, st->previous, NULL) &&
            release_dir_exists(r->service->releases_dir, st->previous))
                return strdup(st->previous);
        return newest_good_on_disk(r->service);
}

static void cmd_rollback(Request *r) {
        ServiceState *st = r->service->state;
        const char *to = json_string_value(json_object_get(r->req, "to"));
        _cleanup_free_ char *target = NULL, *reason = NULL;

        if (json_object_get(r->req, "to") && !sha_is_valid(to))
                return control_reply_error(r->client, "bad_request", "to must be 7 to 40 lowercase hex digits");
        if (!st->current)
                return control_reply_error(r->client, "not_deployed", "%s: nothing deployed to roll back from",
                                           r->service->name);
        if (streq_ptr(to, st->current))
                return control_reply_error(r->client, "bad_request", "%s is already current", to);
        /* refuse before marking anything: a refused rollback must leave no bad mark */
        if (request_would_wait_busy(r->service))
                return control_reply_error(r->client, "busy", "%s: another operator request is already waiting",
                                           r->service->name);
        target = rollback_target(r);
        if (!target)
                return control_reply_error(r->client, "not_found", to ? "release %s is not on disk"
                                                                      : "no earlier good release on disk%s", strempty(to));
        /* the pipeline marks what is current when it starts: a deploy running now
         * may change that before the rollback gets its turn */
        reason = strdup_printf("rolled back by uid %u", (unsigned) r->peer->uid);
        if (!reason || state_set(&st->pinned, NULL) < 0 || service_save_state(r->service) < 0)
                return control_reply_error(r->client, "failed", "cannot save the state of %s", r->service->name);
        request_pipeline(r, PIPELINE_ROLLBACK, target, reason);
}

static void set_flags(Request *r, bool paused, bool unpin) {
        ServiceState *st = r->service->state;
        bool changed = st->paused != paused || (unpin && st->pinned);

        st->paused = paused;
        if (unpin)
                (void) state_set(&st->pinned, NULL);
        if (service_save_state(r->service) < 0)
                return control_reply_error(r->client, "failed", "cannot save the state of %s", r->service->name);
        log_info("%s: %s by uid %u", r->service->name, paused ? "paused" : "resumed", (unsigned) r->peer->uid);
        if (!paused)
                (void) service_poll(r->service);
        control_reply(r->client, json_pack("{s:b,s:b,s:s,s:b}", "ok", 1, "changed", changed,
                                           "service", r->service->name, "paused", paused));
}

static void cmd_pause(Request *r) {
        set_flags(r, true, false);
}

static void cmd_resume(Request *r) {
        set_flags(r, false, true);
}

static void cmd_check(Request *r) {
        for (size_t i = 0; i < manager_n_services(r->manager); i++) {
                Service *s = manager_service(r->manager, i);
                if (!r->service || s == r->service)
                        (void) service_poll(s); /* busy: it is checking already */
        }
        control_reply(r->client, json_pack("{s:b,s:b}", "ok", 1, "changed", 0));
}

static void cmd_reload(Request *r) {
        _cleanup_free_ char *error = NULL;

        manager_reload(r->manager, &error);
        if (error)
                return control_reply_error(r->client, "bad_config", "%s", error);
        control_reply(r->client, json_pack("{s:b,s:b}", "ok", 1, "changed", 1));
}

static const Command commands[] = {
        { "status", false, false, { "service" }, cmd_status },
        { "version", false, true, { "service" }, cmd_version },
        { "history", false, true, { "service" }, cmd_history },
        { "deploy", true, true, { "service", "sha", "wait" }, cmd_deploy },
        { "rollback", true, true, { "service", "to", "wait" }, cmd_rollback },
        { "pause", true, true, { "service" }, cmd_pause },
        { "resume", true, true, { "service" }, cmd_resume },
        { "check", true, false, { "service" }, cmd_check },
        { "reload", true, false, { NULL }, cmd_reload },
};

/* Whole-name comparison against the table: a key is untrusted bytes, so it
 * must not be searched for inside a list of names (an empty key matched
 * everywhere, a key with a blank matched two names at once). */
static bool field_allowed(const Command *cmd, const char *key) {
        if (streq(key, "cmd"))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(cmd->fields) && cmd->fields[i]; i++)
                if (streq(cmd->fields[i], key))
                        return true;
        return false;
}

/* Every field known and of its type; the service, when named, exists. */
static bool validate(Request *r, const Command *cmd) {
        const char *key, *name;
        json_t *v;

        json_object_foreach(r->req, key, v) {
                if (!field_allowed(cmd, key))
                        return control_reply_error(r->client, "bad_request", "%s: unknown field \"%.64s\"",
                                                   cmd->name, key), false;
                if (streq(key, "wait") ? !json_is_boolean(v) : !json_is_string(v))
                        return control_reply_error(r->client, "bad_request", "%s: field \"%s\" has the wrong type",
                                                   cmd->name, key), false;
        }
        name = json_string_value(json_object_get(r->req, "service"));
        if (cmd->needs_service && !name)
                return control_reply_error(r->client, "bad_request", "%s: needs \"service\"", cmd->name), false;
        r->service = manager_find_service(r->manager, name);
        if (name && !r->service)
                return control_reply_error(r->client, "unknown_service", "unknown service \"%.64s\"", name), false;
        return true;
}

void control_commands_dispatch(Client *cl, const Peer *peer, json_t *req, void *userdata) {
        const char *name = json_string_value(json_object_get(req, "cmd"));
        Request r = { .manager = userdata, .client = cl, .peer = peer, .req = req };
        const Command *cmd = NULL;

        for (size_t i = 0; name && i < ELEMENTSOF(commands); i++)
                if (streq(commands[i].name, name))
                        cmd = &commands[i];
        if (!cmd)
                return control_reply_error(cl, "unknown_command", name ? "unknown command \"%.64s\""
                                                                       : "request has no \"cmd\"%s", strempty(name));
        if (cmd->changes && !peer->admin) {
                log_warning("control: %s refused to uid %u (pid %d): not root or in admin_group", cmd->name,
                            (unsigned) peer->uid, (int) peer->pid);
                return control_reply_error(cl, "permission_denied", "%s needs root or the admin group", cmd->name);
        }
        if (!validate(&r, cmd))
                return;
        if (cmd->changes)
                log_info("control: %s%s%s by uid %u (pid %d)", cmd->name, r.service ? " " : "",
                         r.service ? r.service->name : "", (unsigned) peer->uid, (int) peer->pid);
        cmd->run(&r);
}
