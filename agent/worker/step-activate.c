/* step-activate.c: pre_activate hook, atomic swap of ROOT/current to
 * releases/<sha> (symlink under a temp name, rename over current, fsync
 * the directory), then post_activate. Before any of it, the unit the
 * restart step will restart must be one systemd can restart. Runs as root. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/command.h"
#include "common/fs-util.h"
#include "common/log.h"
#include "worker/steps.h"
#include "common/util.h"

typedef struct Activation {
        const char *service;
        const char *root;
        const char *sha;
        char *previous;                /* NULL: first deploy */
        char release_dir[PATH_MAX];
        uint64_t hook_timeout_usec;
} Activation;

static int run_hook(const Activation *a, const char *name, const char *cmd, char **ret_error) {
        _cleanup_free_ char *e_service = strdup_printf("DEPLOY_SERVICE=%s", a->service);
        _cleanup_free_ char *e_sha = strdup_printf("DEPLOY_SHA=%s", a->sha);
        _cleanup_free_ char *e_dir = strdup_printf("DEPLOY_RELEASE_DIR=%s", a->release_dir);
        _cleanup_free_ char *e_prev = strdup_printf("DEPLOY_PREVIOUS_SHA=%s", strempty(a->previous));
        char *env[] = { e_service, e_sha, e_dir, e_prev, NULL };
        char buf[64];
        int status = 0, r;

        if (isempty(cmd))
                return 0;
        if (!e_service || !e_sha || !e_dir || !e_prev)
                return -ENOMEM;
        log_info("%s: running %s hook", a->service, name);
        r = command_run(cmd, a->release_dir, env, a->hook_timeout_usec, &status);
        if (r == -ETIMEDOUT)
                return error_set(ret_error, r, "%s hook timed out after %llus", name,
                                 (unsigned long long) (a->hook_timeout_usec / USEC_PER_SEC));
        if (r == -ECHILD)
                return error_set(ret_error, r, "%s hook %s", name, command_describe_status(status, buf, sizeof buf));
        if (r < 0)
                return error_set(ret_error, r, "%s hook: cannot run: %s", name, strerror(-r));
        return 0;
}

/* Point root/current at releases/<sha>: no instant without a complete
 * target, since rename(2) replaces the old link atomically. */
static int swap_current(int root_fd, const char *sha, char **ret_error) {
        char target[PATH_MAX], tmp[64];
        uint64_t rnd;

        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                return error_set(ret_error, -EIO, "getrandom failed");
        snprintf(target, sizeof target, "releases/%s", sha);
        snprintf(tmp, sizeof tmp, ".current.tmp-%016llx", (unsigned long long) rnd);
        if (symlinkat(target, root_fd, tmp) < 0)
                return error_set(ret_error, -errno, "symlink %s: %s", tmp, strerror(errno));
        if (renameat(root_fd, tmp, root_fd, "current") < 0) {
                int r = -errno;
                (void) unlinkat(root_fd, tmp, 0);
                return error_set(ret_error, r, "rename %s over current: %s", tmp, strerror(-r));
        }
        if (fsync(root_fd) < 0)
                return error_set(ret_error, -errno, "fsync %s: %s", "root", strerror(errno));
        return 0;
}

static int check_release(int root_fd, const char *sha, char **ret_error) {
        char rel[PATH_MAX];
        struct stat st;

        snprintf(rel, sizeof rel, "releases/%s", sha);
        if (fstatat(root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return error_set(ret_error, -errno, "release %s: %s", rel, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return error_set(ret_error, -ENOTDIR, "release %s is not a directory", rel);
        return 0;
}

static int result(const Activation *a, bool changed, const char *warning, ActivateResult *ret) {
        *ret = (ActivateResult) {
                .sha = strdup(a->sha),
                .changed = changed,
                .previous = a->previous ? strdup(a->previous) : NULL,
                .warning = warning ? strdup(warning) : NULL,
        };
        if (!ret->sha || (a->previous && !ret->previous) || (warning && !ret->warning))
                return -ENOMEM;
        return 0;
}

int step_activate(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        const ActivateJob *j = &job->activate;
        _cleanup_free_ char *post_error = NULL;
        _cleanup_close_ int root_fd = -1;
        Activation a = {
                .service = job->service,
                .root = j->root,
                .sha = j->sha,
                .hook_timeout_usec = j->hook_timeout_usec,
        };
        int r;

        root_fd = open(a.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return error_set(ret_error, -errno, "open %s: %s", a.root, strerror(errno));
        /* A missing or masked unit is the host's fault: swapping now would
         * only see RestartUnit refused and the release rolled back. Not
         * swapping leaves current as it is, and the next poll tries again
         * (docs/design.md, "Failure handling"). */
        r = j->unit ? restart_check_unit(j->unit, ret_error) : 0;
        if (r < 0)
                return r;
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_set(ret_error, r, "cannot drop privileges");
        r = check_release(root_fd, a.sha, ret_error);
        if (r < 0)
                return r;
        snprintf(a.release_dir, sizeof a.release_dir, "%s/releases/%s", a.root, a.sha);
        (void) release_link_sha(root_fd, "current", &a.previous);
        if (streq_ptr(a.previous, a.sha)) {
                r = result(&a, false, NULL, &ret->activate);
                free(a.previous);
                return r;
        }
        (void) rm_rf_prefixed_at(root_fd, ".current.tmp-"); /* a run killed mid-swap */
        r = run_hook(&a, "pre_activate", j->pre_activate, ret_error);
        if (r >= 0)
                r = swap_current(root_fd, a.sha, ret_error);
        if (r >= 0 && run_hook(&a, "post_activate", j->post_activate, &post_error) < 0)
                log_warning("%s: %s (the release stays active)", a.service, post_error);
        if (r >= 0)
                r = result(&a, true, post_error, &ret->activate);
        free(a.previous);
        return r;
}
