/* worker.c: supervisor side of a step. Forks, execs /proc/self/exe
 * --worker STEP with a SOCK_SEQPACKET socket on fd 3, sends the job,
 * collects progress and the result, and turns every way a worker can fail
 * (crash, timeout, garbage, silence) into one explained error. */
#define _GNU_SOURCE
#include "worker.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "job.h"
#include "log.h"
#include "util.h"

#define WORKER_KILL_GRACE_USEC (2 * USEC_PER_SEC)

void worker_outcome_done(WorkerOutcome *o) {
        json_decref(o->result);
        free(o->error);
        *o = (WorkerOutcome) {};
}

static void reset_signals(void) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t all;

        for (int sig = 1; sig < _NSIG; sig++)
                (void) sigaction(sig, &sa, NULL);
        sigemptyset(&all);
        (void) sigprocmask(SIG_SETMASK, &all, NULL);
}

/* In the child between fork and exec: only async-signal-safe calls. */
_Noreturn static void exec_worker(const char *step, int fd, pid_t parent) {
        char *argv[] = { (char *) "deploy-agent", (char *) "--worker", (char *) step, NULL };

        (void) setpgid(0, 0);
        reset_signals();
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                _exit(127);
        if (fd == WORKER_FD) {
                if (fcntl(fd, F_SETFD, 0) < 0)
                        _exit(127);
        } else if (dup2(fd, WORKER_FD) < 0)
                _exit(127);
        if (close_range(WORKER_FD + 1, ~0U, 0) < 0)
                _exit(127);
        execv("/proc/self/exe", argv);
        _exit(127);
}

static int spawn(const char *step, pid_t *ret_pid, int *ret_fd) {
        int sv[2];
        pid_t parent = getpid(), pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (pid == 0)
                exec_worker(step, sv[1], parent);
        (void) setpgid(pid, pid); /* also done by the child: no race either way */
        close(sv[1]);
        *ret_pid = pid;
        *ret_fd = sv[0];
        return 0;
}

static int send_job(int fd, const char *step, json_t *job, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t n;

        if (json_object_set_new(job, "step", json_string(step)) < 0)
                return -ENOMEM;
        text = json_dumps(job, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        n = strlen(text);
        if (n > WORKER_MESSAGE_MAX)
                return error_set(ret_error, -E2BIG, "%s job is too large (%zu bytes)", step, n);
        if (send(fd, text, n, MSG_NOSIGNAL) < 0)
                return error_set(ret_error, -errno, "%s worker: cannot send job: %s", step, strerror(errno));
        return 0;
}

static char *describe_status(const char *step, int status) {
        if (WIFSIGNALED(status))
                return strdup_printf("%s worker killed by SIG%s", step, sigabbrev_np(WTERMSIG(status)) ?: "?");
        if (WIFEXITED(status))
                return strdup_printf("%s worker exited with status %d without a result", step, WEXITSTATUS(status));
        return strdup_printf("%s worker ended abnormally", step);
}

typedef struct Run {
        const char *step;
        pid_t pid;
        int fd;
        uint64_t deadline;
        worker_progress_cb progress;
        void *userdata;
        json_t *result;
        char *error;
        struct rusage usage;
} Run;

/* One message from the worker: progress (handled) or the result (kept). */
static int handle_message(Run *run, const char *buf, ssize_t n) {
        json_error_t jerr;
        json_t *msg, *progress;

        if (n > WORKER_MESSAGE_MAX)
                return error_set(&run->error, -EBADMSG, "%s worker sent an oversized message", run->step);
        msg = json_loadb(buf, (size_t) n, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(msg)) {
                json_decref(msg);
                return error_set(&run->error, -EBADMSG, "%s worker sent garbage: %s", run->step,
                                 msg ? "not an object" : jerr.text);
        }
        progress = json_object_get(msg, "progress");
        if (json_is_object(progress) && !run->result) {
                if (run->progress)
                        run->progress(job_uint64(progress, "bytes", 0), job_uint64(progress, "total", 0),
                                      run->userdata);
                json_decref(msg);
                return 0;
        }
        if (run->result || !json_is_boolean(json_object_get(msg, "ok"))) {
                json_decref(msg);
                return error_set(&run->error, -EBADMSG, "%s worker broke protocol", run->step);
        }
        run->result = msg;
        return 0;
}

/* Read messages until EOF or the deadline. */
static int collect(Run *run) {
        static char buf[WORKER_MESSAGE_MAX + 1];

        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = run->fd, .events = POLLIN };
                int timeout_ms, k;
                ssize_t n;

                if (now >= run->deadline)
                        return -ETIMEDOUT;
                timeout_ms = (int) ((run->deadline - now + 999) / 1000);
                k = poll(&p, 1, timeout_ms);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        continue;
                n = recv(run->fd, buf, sizeof buf, MSG_TRUNC | MSG_DONTWAIT);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : 0; /* 0: the worker closed its end */
                int r = handle_message(run, buf, n);
                if (r < 0)
                        return r;
        }
}

/* Wait for the worker until deadline; then SIGTERM its group, then SIGKILL. */
static int reap(Run *run, int *ret_status) {
        bool termed = false;

        for (;;) {
                pid_t p = wait4(run->pid, ret_status, WNOHANG, &run->usage);
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                if (p == run->pid)
                        return 0;
                if (p < 0 && errno != EINTR)
                        return -errno;
                if (now >= run->deadline && !termed) {
                        (void) kill(-run->pid, SIGTERM);
                        termed = true;
                        run->deadline = now + WORKER_KILL_GRACE_USEC;
                } else if (now >= run->deadline) {
                        (void) kill(-run->pid, SIGKILL);
                        run->deadline = UINT64_MAX;
                }
                (void) usleep(5000);
        }
}

static uint64_t timeval_usec(const struct timeval *tv) {
        return (uint64_t) tv->tv_sec * USEC_PER_SEC + (uint64_t) tv->tv_usec;
}

static void finish_outcome(Run *run, WorkerOutcome *o) {
        json_t *err = json_object_get(run->result, "error");

        o->result = TAKE_PTR(run->result);
        o->ok = json_is_true(json_object_get(o->result, "ok"));
        o->bad = job_bool(o->result, "bad", false);
        if (!o->ok)
                o->error = strdup_printf("%s: %s", run->step,
                                         json_is_string(err) ? json_string_value(err) : "failed without a reason");
}

int worker_run(const char *step, json_t *job, uint64_t timeout_usec,
               worker_progress_cb progress, void *userdata, WorkerOutcome *ret_outcome) {
        Run run = {
                .step = step, .fd = -1, .progress = progress, .userdata = userdata,
                .deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec,
        };
        int status = 0, r, k;

        *ret_outcome = (WorkerOutcome) {};
        r = spawn(step, &run.pid, &run.fd);
        if (r < 0)
                return error_set(&ret_outcome->error, r, "%s worker: cannot start: %s", step, strerror(-r));
        r = send_job(run.fd, step, job, &run.error);
        if (r >= 0)
                r = collect(&run);
        if (r == -ETIMEDOUT)
                error_set(&run.error, r, "%s worker timed out after %llus", step,
                          (unsigned long long) (timeout_usec / USEC_PER_SEC));
        if (r < 0)
                run.deadline = 0; /* kill now */
        close(run.fd);
        k = reap(&run, &status);
        ret_outcome->max_rss_kib = (uint64_t) run.usage.ru_maxrss;
        ret_outcome->cpu_usec = timeval_usec(&run.usage.ru_utime) + timeval_usec(&run.usage.ru_stime);
        if (r >= 0 && k < 0)
                r = error_set(&run.error, k, "%s worker: waitpid: %s", step, strerror(-k));
        if (r >= 0 && !run.result) {
                r = -EPROTO;
                run.error = describe_status(step, status);
        } else if (r >= 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                log_warning("%s worker ended with status 0x%x after sending its result", step, (unsigned) status);
        if (r < 0) {
                json_decref(run.result);
                ret_outcome->error = run.error ? run.error : strdup(strerror(-r));
                return r;
        }
        free(run.error);
        finish_outcome(&run, ret_outcome);
        return 0;
}
