/* service.c: a service at run time: directories, users, state, the poll
 * timer with jitter and exponential backoff. */
#define _GNU_SOURCE
#include "supervisor/service.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/fs-util.h"
#include "common/log.h"
#include "supervisor/manager.h"
#include "supervisor/pipeline.h"
#include "common/util.h"

#define BACKOFF_CAP_USEC (60 * 60 * USEC_PER_SEC)
#define BACKOFF_MAX_SHIFT 10

static int resolve_user(const char *spec, uid_t *ret_uid, gid_t *ret_gid) {
        _cleanup_free_ char *user = strdup(spec);
        struct passwd *pw;
        struct group *gr;
        char *group;

        if (!user)
                return -ENOMEM;
        group = strchr(user, ':');
        if (group)
                *group++ = '\0';
        pw = getpwnam(user);
        if (!pw)
                return -ESRCH;
        *ret_uid = pw->pw_uid;
        *ret_gid = pw->pw_gid;
        if (group) {
                gr = getgrnam(group);
                if (!gr)
                        return -ESRCH;
                *ret_gid = gr->gr_gid;
        }
        return 0;
}

static int resolve_users(Service *s) {
        const char *worker_user = manager_config(s->manager)->agent.worker_user;
        const char *owner = s->cfg->owner ?: worker_user;

        s->drop = geteuid() == 0;
        if (!s->drop)
                return 0;
        if (resolve_user(worker_user, &s->worker_uid, &s->worker_gid) < 0)
                return log_error_errno(-ESRCH, "%s: worker_user \"%s\" does not exist", s->name, worker_user);
        if (resolve_user(owner, &s->owner_uid, &s->owner_gid) < 0)
                return log_error_errno(-ESRCH, "%s: owner \"%s\" does not exist", s->name, owner);
        if (s->worker_uid == 0 || s->owner_uid == 0)
                return log_error_errno(-EPERM, "%s: worker_user and owner must not be root", s->name);
        return 0;
}

static int prepare_dirs(Service *s) {
        const char *state_dir = manager_config(s->manager)->agent.state_dir;
        int r;

        snprintf(s->state_path, sizeof s->state_path, "%s/%s/state.json", state_dir, s->name);
        snprintf(s->downloads_dir, sizeof s->downloads_dir, "%s/%s/downloads", state_dir, s->name);
        snprintf(s->releases_dir, sizeof s->releases_dir, "%s/releases", s->cfg->root);
        if ((r = mkdir_p(s->downloads_dir, 0750)) < 0 || (r = mkdir_p(s->cfg->root, 0755)) < 0)
                return log_error_errno(r, "%s: creating %s or %s: %m", s->name, s->downloads_dir, s->cfg->root);
        if (s->drop && chown(s->downloads_dir, s->worker_uid, s->worker_gid) < 0)
                return log_error_errno(-errno, "%s: chown %s: %m", s->name, s->downloads_dir);
        return 0;
}

/* The current symlink is the truth; state.json follows it. */
static int load_state(Service *s) {
        _cleanup_free_ char *error = NULL, *current = NULL;
        _cleanup_close_ int root_fd = open(s->cfg->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r;

        r = state_load(s->state_path, &s->state, &error);
        if (r < 0)
                return log_error_errno(r, "%s: %s", s->name, error ?: "cannot load state");
        if (root_fd >= 0)
                (void) release_link_sha(root_fd, "current", &current);
        if (!streq_ptr(current, s->state->current) && state_set(&s->state->current, current) < 0)
                return -ENOMEM;
        return 0;
}

int service_new(Manager *m, const ServiceConfig *cfg, Service **ret) {
        Service *s = calloc(1, sizeof *s);
        int r;

        if (!s || !(s->name = strdup(cfg->name))) {
                free(s);
                return -ENOMEM;
        }
        s->manager = m;
        s->cfg = cfg;
        s->pending_kind = -1;
        s->needs_cleanup = true; /* the agent that ran before may have been killed mid-step */
        snprintf(s->activity, sizeof s->activity, "starting");
        if ((r = resolve_users(s)) < 0 || (r = prepare_dirs(s)) < 0 || (r = load_state(s)) < 0) {
                service_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

Service *service_free(Service *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->timer);
        state_free(s->state);
        free(s->pending_sha);
        free(s->pending_reason);
        free(s->saved_state);
        free(s->name);
        free(s);
        return NULL;
}

/* Written only when it changed: an idle poll costs no fsync. */
int service_save_state(Service *s) {
        char *text = state_format(s->state);
        int r;

        if (!text)
                return log_error_errno(-ENOMEM, "%s: saving state: %m", s->name);
        if (streq_ptr(text, s->saved_state)) {
                free(text);
                return 0;
        }
        r = state_write(text, s->state_path);
        if (r < 0) {
                free(text);
                return log_error_errno(r, "%s: saving %s: %m", s->name, s->state_path);
        }
        free(s->saved_state);
        s->saved_state = text;
        return 0;
}

void service_set_activity(Service *s, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->activity, sizeof s->activity, fmt, ap);
        va_end(ap);
        manager_status_changed(s->manager);
}

/* poll_interval, doubled per failure in a row up to a cap, then spread by
 * +-poll_jitter so a fleet does not hit S3 in lockstep. */
uint64_t service_poll_delay(const Service *s) {
        const AgentConfig *a = &manager_config(s->manager)->agent;
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
                return sd_event_add_time_relative(manager_event(s->manager), &s->timer, CLOCK_MONOTONIC, delay,
                                                  0, on_timer, s);
        (void) sd_event_source_set_time_relative(s->timer, delay);
        return sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static int start(Service *s, PipelineKind kind, const char *sha, const char *reason) {
        int r;

        s->seq++;
        s->last_poll_usec = now_usec(CLOCK_REALTIME);
        r = pipeline_start(s, kind, sha, reason);
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

int service_request(Service *s, int kind, const char *sha, const char *reason) {
        int r;

        if (s->pipeline || pipeline_needs_recovery(s->state)) {
                if (s->pending_kind >= 0)
                        return -EBUSY;
                if (state_set(&s->pending_sha, sha) < 0 || state_set(&s->pending_reason, reason) < 0)
                        return -ENOMEM;
                s->pending_kind = kind;
                return s->pipeline ? 0 : service_poll(s);
        }
        r = start(s, (PipelineKind) kind, sha, reason);
        return r < 0 ? r : 0;
}

/* The operator's request that waited for the pipeline that just ended. */
static bool start_pending(Service *s) {
        _cleanup_free_ char *sha = TAKE_PTR(s->pending_sha), *reason = TAKE_PTR(s->pending_reason);
        int kind = s->pending_kind;

        if (kind < 0)
                return false;
        s->pending_kind = -1;
        (void) start(s, (PipelineKind) kind, sha, reason);
        return true;
}

void service_pipeline_done(Service *s, const PipelineResult *res) {
        /* nothing published yet (-ENOENT) is no failure to back off from */
        if (res->r < 0 && res->r != -ECANCELED && res->r != -ENOENT)
                s->failures++;
        else if (res->r >= 0 || res->r == -ENOENT)
                s->failures = 0;
        if (res->r >= 0)
                service_set_activity(s, "idle at %s", s->state->current ?: "nothing");
        else
                service_set_activity(s, "failed (%u in a row) at %s", s->failures, s->state->current ?: "nothing");
        (void) service_save_state(s);
        manager_pipeline_ended(s->manager, s, s->seq, res);
}

void service_emit(Service *s, const char *step, uint64_t bytes, uint64_t total) {
        manager_pipeline_progress(s->manager, s, s->seq, step, bytes, total);
}

void service_next(Service *s) {
        if (!start_pending(s))
                (void) service_schedule(s, service_poll_delay(s));
}
