/* runtime.c: the worker side of a step (`deploy-agent-worker --worker STEP`).
 * Reads the job from fd 3, runs the step, which acquires its fds and then
 * drops privileges through worker_drop_privileges(), and sends the result. */
#define _GNU_SOURCE
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "protocol/job.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/runtime.h"

struct WorkerContext {
        json_t *job;
        bool dropped;
        uint64_t last_progress_usec;
};

static int set_limit(int resource, const json_t *limits, const char *key) {
        json_t *v = json_object_get(limits, key);
        struct rlimit rl;

        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return 0;
        rl.rlim_cur = rl.rlim_max = (rlim_t) json_integer_value(v);
        return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

static int apply_limits(const json_t *limits) {
        struct rlimit no_core = {};
        int r = 0;

        if (setrlimit(RLIMIT_CORE, &no_core) < 0)
                return -errno;
        if ((r = set_limit(RLIMIT_CPU, limits, "cpu_sec")) < 0 ||
            (r = set_limit(RLIMIT_AS, limits, "as_bytes")) < 0 ||
            (r = set_limit(RLIMIT_FSIZE, limits, "fsize_bytes")) < 0 ||
            (r = set_limit(RLIMIT_NOFILE, limits, "nofile")) < 0)
                return r;
        return 0;
}

static int switch_user(const json_t *run_as) {
        uid_t uid;
        gid_t gid;

        if (!json_is_object(run_as) || geteuid() != 0)
                return 0;
        uid = (uid_t) job_uint64(run_as, "uid", 0);
        gid = (gid_t) job_uint64(run_as, "gid", 0);
        if (uid == 0)
                return -EPERM; /* never "drop" to root */
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                return -errno;
        if (setuid(0) == 0)
                return -EPERM; /* the drop did not stick */
        return 0;
}

int worker_drop_privileges(WorkerContext *w) {
        int r;

        r = apply_limits(json_object_get(w->job, "limits"));
        if (r < 0)
                return log_error_errno(r, "setrlimit: %m");
        r = switch_user(json_object_get(w->job, "run_as"));
        if (r < 0)
                return log_error_errno(r, "dropping privileges: %m");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return log_error_errno(-errno, "PR_SET_NO_NEW_PRIVS: %m");
        w->dropped = true;
        return 0;
}

static void send_message(json_t *msg) {
        _cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);

        if (text && strlen(text) <= WORKER_MESSAGE_MAX)
                (void) send(WORKER_FD, text, strlen(text), MSG_NOSIGNAL);
}

void worker_send_progress(WorkerContext *w, uint64_t bytes, uint64_t total) {
        json_auto_t *msg = json_pack("{s:{s:I,s:I}}", "progress", "bytes", (json_int_t) bytes,
                                     "total", (json_int_t) total);

        if (msg)
                send_message(msg);
}

static json_t *read_job(void) {
        static char buf[WORKER_MESSAGE_MAX + 1];
        json_error_t err;
        ssize_t n;

        do
                n = recv(WORKER_FD, buf, sizeof buf, MSG_TRUNC);
        while (n < 0 && errno == EINTR);
        if (n <= 0 || n > WORKER_MESSAGE_MAX)
                return NULL;
        return json_loadb(buf, (size_t) n, JSON_REJECT_DUPLICATES, &err);
}

static json_t *failure(const char *error, bool bad) {
        return json_pack("{s:b,s:s,s:b}", "ok", 0, "error", error ?: "unknown error", "bad", bad);
}

static json_t *run_step(step_fn fn, WorkerContext *w) {
        _cleanup_free_ char *error = NULL;
        json_t *result = NULL;
        bool bad = false;
        int r;

        r = fn(w->job, w, &result, &bad, &error);
        if (r >= 0 && !w->dropped) {
                json_decref(result);
                return failure("internal error: step did not drop privileges", false);
        }
        if (r < 0) {
                json_decref(result);
                return failure(error ?: strerror(-r), bad);
        }
        if (!result)
                result = json_object();
        json_object_set_new(result, "ok", json_true());
        return result;
}

int worker_main(const char *step, step_fn fn) {
        static char prefix[64];
        json_auto_t *result = NULL;
        WorkerContext w = {};
        struct stat st;

        snprintf(prefix, sizeof prefix, "worker %s", step);
        log_set_prefix(prefix);
        if (!fn)
                return log_error("unknown step \"%s\"", step), 2;
        if (fstat(WORKER_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
                return log_error("fd %d is not the supervisor's socket: run by deploy-agent only", WORKER_FD), 2;
        (void) signal(SIGXFSZ, SIG_IGN); /* RLIMIT_FSIZE: get EFBIG, not a signal */
        (void) signal(SIGPIPE, SIG_IGN);
        w.job = read_job();
        if (!json_is_object(w.job))
                return log_error("no valid job on fd %d", WORKER_FD), 2;
        log_set_max_level((int) job_uint64(w.job, "log_level", LOG_INFO));
        log_set_context(job_string(w.job, "service"), job_string(w.job, "sha"), step);
        result = run_step(fn, &w);
        send_message(result);
        json_decref(w.job);
        return 0;
}
