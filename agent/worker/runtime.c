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

#include "common/log.h"
#include "common/util.h"
#include "worker/runtime.h"
#include "worker/confine.h"
#include "worker/debug-hostile.h"
#include "protocol/worker-result.h"

struct WorkerContext {
        const char *step;
        const WorkerJob *job;
        bool dropped;
        uint64_t last_progress_usec;
};

static int set_limit(int resource, uint64_t value) {
        struct rlimit rl;

        if (value == 0)
                return 0;
        rl.rlim_cur = rl.rlim_max = (rlim_t) value;
        return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

static int apply_limits(const WorkerLimits *limits) {
        struct rlimit no_core = {};
        int r = 0;

        if (setrlimit(RLIMIT_CORE, &no_core) < 0)
                return -errno;
        if ((r = set_limit(RLIMIT_CPU, limits->cpu_sec)) < 0 ||
            (r = set_limit(RLIMIT_AS, limits->as_bytes)) < 0 ||
            (r = set_limit(RLIMIT_FSIZE, limits->fsize_bytes)) < 0 ||
            (r = set_limit(RLIMIT_NOFILE, limits->nofile)) < 0)
                return r;
        return 0;
}

static int switch_user(const WorkerUser *run_as) {
        uid_t uid;
        gid_t gid;

        if (!run_as->set || geteuid() != 0)
                return 0;
        uid = run_as->uid;
        gid = run_as->gid;
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

        r = apply_limits(&w->job->limits);
        if (r < 0)
                return log_error_errno(r, "setrlimit: %m");
        r = confine_enter(w->step);
        if (r < 0)
                return r;
        r = switch_user(&w->job->run_as);
        if (r < 0)
                return log_error_errno(r, "dropping privileges: %m");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return log_error_errno(-errno, "PR_SET_NO_NEW_PRIVS: %m");
        r = confine_apply(w->step);
        if (r < 0)
                return r;
        w->dropped = true;
        return 0;
}

static void send_message(json_t *msg) {
        _cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);

        if (text && strlen(text) <= WORKER_MESSAGE_MAX)
                (void) send(WORKER_FD, text, strlen(text), MSG_NOSIGNAL);
}

void worker_send_progress(WorkerContext *w, uint64_t bytes, uint64_t total) {
        json_auto_t *msg = worker_progress_encode(bytes, total);

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

static json_t *reply(const WorkerResult *res) {
        json_t *msg = NULL;

        if (worker_result_encode(res, &msg) < 0)
                return worker_failure_encode("internal error: the step's result cannot be encoded", false);
#ifdef DEPLOY_AGENT_DEBUG
        if (res->step == WORKER_STEP_FETCH)
                debug_hostile_fetch_result(json_object_get(msg, "result"));
#endif
        return msg;
}

static json_t *run_step(step_fn fn, WorkerContext *w) {
        _cleanup_free_ char *error = NULL;
        WorkerResult res = { .step = w->job->step };
        json_t *msg;
        bool bad = false;
        int r;

        r = fn(w->job, w, &res, &bad, &error);
        if (r >= 0 && !w->dropped)
                msg = worker_failure_encode("internal error: step did not drop privileges", false);
        else if (r < 0)
                msg = worker_failure_encode(error ?: strerror(-r), bad);
        else
                msg = reply(&res);
        worker_result_done(&res);
        return msg;
}

/* The sha a job is about, for the journal's DEPLOY_SHA=. */
static const char *job_sha(const WorkerJob *j) {
        switch (j->step) {
        case WORKER_STEP_FETCH: return j->fetch.sha;
        case WORKER_STEP_UNPACK: return j->unpack.sha;
        case WORKER_STEP_ACTIVATE: return j->activate.sha;
        case WORKER_STEP_RESTART: return j->restart.sha;
        default: return NULL;
        }
}

/* A job that does not decode is answered with the reason: the supervisor
 * then says what was wrong instead of "exited without a result". */
static int decode_job(WorkerStep step, WorkerJob *ret) {
        _cleanup_free_ char *error = NULL, *msg = NULL;
        json_auto_t *job = read_job(), *failure = NULL;
        int r;

        if (!job)
                return log_error("no valid job on fd %d", WORKER_FD), -EBADMSG;
        r = worker_job_decode(job, step, ret, &error);
        if (r >= 0)
                return 0;
        msg = strdup_printf("invalid job: %s", error ?: strerror(-r));
        log_error("%s", strempty(msg));
        failure = worker_failure_encode(msg, false);
        if (failure)
                send_message(failure);
        return r;
}

int worker_main(const char *step_name, step_fn fn) {
        static char prefix[64];
        int step = worker_step_from_string(step_name);
        json_auto_t *result = NULL;
        WorkerContext w = { .step = step_name };
        WorkerJob job = {};
        struct stat st;

        snprintf(prefix, sizeof prefix, "worker %s", step_name);
        log_set_prefix(prefix);
        if (step < 0 || !fn)
                return log_error("unknown step \"%s\"", step_name), 2;
        if (fstat(WORKER_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
                return log_error("fd %d is not the supervisor's socket: run by deploy-agent only", WORKER_FD), 2;
        (void) signal(SIGXFSZ, SIG_IGN); /* RLIMIT_FSIZE: get EFBIG, not a signal */
        (void) signal(SIGPIPE, SIG_IGN);
        if (decode_job((WorkerStep) step, &job) < 0)
                return 2;
        w.job = &job;
        log_set_max_level(job.log_level);
        log_set_context(job.service, job_sha(&job), step_name);
        result = run_step(fn, &w);
        if (result)
                send_message(result);
        worker_job_done(&job);
        return 0;
}
