/* service.c: a service at run time: directories, users, state.json, and
 * what it tells its owner (activity, pipeline progress). */
#define _GNU_SOURCE
#include "supervisor/service.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include "common/fs-space.h"
#include "common/fs-util.h"
#include "common/log.h"
#include "common/util.h"

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
        const char *worker_user = s->config->agent.worker_user;
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

static int prepare_state_dir(Service *s) {
        int r = mkdir_p(s->downloads_dir, 0750);

        if (r < 0)
                return log_error_errno(r, "%s: creating %s: %m", s->name, s->downloads_dir);
        if (s->drop && chown(s->downloads_dir, s->worker_uid, s->worker_gid) < 0)
                return log_error_errno(-errno, "%s: chown %s: %m", s->name, s->downloads_dir);
        return 0;
}

/* The root is made at start only: one removed later stays removed (unpack
 * says so), see docs/design.md, "Failure handling". */
static int prepare_dirs(Service *s) {
        const char *state_dir = s->config->agent.state_dir;
        int r;

        snprintf(s->state_path, sizeof s->state_path, "%s/%s/state.json", state_dir, s->name);
        snprintf(s->downloads_dir, sizeof s->downloads_dir, "%s/%s/downloads", state_dir, s->name);
        snprintf(s->releases_dir, sizeof s->releases_dir, "%s/releases", s->cfg->root);
        if ((r = prepare_state_dir(s)) < 0)
                return r;
        if ((r = mkdir_p(s->cfg->root, 0755)) < 0)
                return log_error_errno(r, "%s: creating %s: %m", s->name, s->cfg->root);
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

int service_new(const ServiceContext *ctx, const ServiceConfig *cfg, Service **ret) {
        Service *s = calloc(1, sizeof *s);
        int r;

        if (!s || !(s->name = strdup(cfg->name))) {
                free(s);
                return -ENOMEM;
        }
        s->cfg = cfg;
        s->config = ctx->config;
        s->event = ctx->event;
        s->workers = ctx->workers;
        s->callbacks = ctx->callbacks;
        s->pending_kind = _PIPELINE_KIND_NONE;
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
        fleet_done(&s->fleet);
        free(s->pending_sha);
        free(s->pending_reason);
        free(s->saved_state);
        free(s->aging_sha);
        free(s->name);
        free(s);
        return NULL;
}

void service_describe_state_fs(const Service *s, char buf[static FS_SPACE_TEXT_MAX]) {
        char dir[sizeof s->state_path];
        char *slash;

        snprintf(dir, sizeof dir, "%s", s->state_path);
        slash = strrchr(dir, '/');
        if (slash && slash != dir)
                *slash = '\0';
        fs_space_describe(dir, 0, buf);
}

/* The state dir is the agent's own (systemd's StateDirectory= would make it
 * again at the next start anyway): one removed while the agent runs is
 * made again, with the downloads dir, and the write retried once. What it
 * held is lost but for what the current symlink says. */
static int write_state(Service *s, const char *text) {
        int r = state_write(text, s->state_path);

        if (r != -ENOENT)
                return r;
        log_warning("%s: %s is gone: making its directory again (history and bad builds are lost)",
                    s->name, s->state_path);
        r = prepare_state_dir(s);
        return r < 0 ? r : state_write(text, s->state_path);
}

/* Written only when it changed: an idle poll costs no fsync. */
int service_save_state(Service *s) {
        char space[FS_SPACE_TEXT_MAX];
        char *text = state_format(s->state);
        int r;

        if (!text)
                return log_error_errno(-ENOMEM, "%s: saving state: %m", s->name);
        if (streq_ptr(text, s->saved_state)) {
                free(text);
                return 0;
        }
        r = write_state(s, text);
        if (r < 0) {
                free(text);
                service_describe_state_fs(s, space);
                return log_error_errno(r, "%s: saving %s: %m (%s)", s->name, s->state_path, space);
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
        if (s->callbacks->activity_changed)
                s->callbacks->activity_changed(s, s->callbacks->userdata);
}

void service_emit(Service *s, const char *step, uint64_t bytes, uint64_t total) {
        if (s->callbacks->pipeline_progress)
                s->callbacks->pipeline_progress(s, s->seq, step, bytes, total, s->callbacks->userdata);
}

