/* worker-pool.c: supervisor side of a step. vforks, execs
 * deploy-agent-worker --worker STEP with a SOCK_SEQPACKET socket on fd 3,
 * sends the job, then follows the worker on the event loop: its messages on the socket, its
 * exit through a pidfd, its deadline on a timer. Every way a worker can
 * fail (crash, timeout, garbage, silence) becomes one explained error.
 * The pool on top runs at most max_workers of them and queues the rest. */
#define _GNU_SOURCE
#include "supervisor/worker-pool.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "protocol/worker-protocol.h"
#include "common/log.h"
#include "paths.h"
#include "common/util.h"

#define WORKER_KILL_GRACE_USEC (2 * USEC_PER_SEC)
#define WORKER_EXE_FD (WORKER_FD + 1)


static int worker_exe_fd = -1;

static int open_beside_self(void) {
        char self[PATH_MAX], *slash;
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 32);

        if (n < 0)
                return -errno;
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (!slash)
                return -ENOENT;
        strcpy(slash + 1, "deploy-agent-worker");
        int fd = open(self, O_PATH | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int worker_binary_open(void) {
        int fd;

        if (worker_exe_fd >= 0)
                return 0;
        fd = open_beside_self();
        if (fd < 0)
                fd = open(LIBEXECDIR "/deploy-agent-worker", O_PATH | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        worker_exe_fd = fd;
        return 0;
}

int worker_binary_exec(char **argv) {
        int r = worker_binary_open();

        if (r < 0)
                return r;
        execveat(worker_exe_fd, "", argv, environ, AT_EMPTY_PATH);
        return -errno;
}

struct Worker {
        char *step;
        pid_t pid;
        int fd;                        /* our end of the socket, -1 after EOF */
        int pidfd;
        sd_event_source *io_source, *exit_source, *timer_source;
        uint64_t timeout_usec;
        worker_progress_cb progress;
        worker_done_cb done;
        void *userdata;
        WorkerReading reading;         /* its messages so far */
        bool stopping;                 /* SIGTERM sent; SIGKILL next */
        int status;
        struct rusage usage;
        uint64_t started_usec;         /* CLOCK_MONOTONIC */
};

static void reset_signals(void) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t none;

        for (int sig = 1; sig < _NSIG; sig++)
                (void) sigaction(sig, &sa, NULL);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
}

/* In the vfork child until exec: syscalls only, nothing that writes memory
 * the supervisor owns (the stack below our caller's frame is ours). */
_Noreturn static void exec_worker(char *step, int fd, pid_t parent) {
        char *argv[] = { (char *) "deploy-agent-worker", (char *) "--worker", step, NULL };

        (void) setpgid(0, 0);
        reset_signals();
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                _exit(127);
        if (fd == WORKER_FD) {
                if (fcntl(fd, F_SETFD, 0) < 0)
                        _exit(127);
        } else if (dup2(fd, WORKER_FD) < 0)
                _exit(127);
        if (dup2(worker_exe_fd, WORKER_EXE_FD) < 0 || fcntl(WORKER_EXE_FD, F_SETFD, FD_CLOEXEC) < 0)
                _exit(127);
        if (close_range(WORKER_EXE_FD + 1, ~0U, 0) < 0)
                _exit(127);
        execveat(WORKER_EXE_FD, "", argv, environ, AT_EMPTY_PATH);
        _exit(127);
}

static int spawn(Worker *w) {
        int sv[2];
        pid_t parent = getpid();

        if (worker_binary_open() < 0)
                return -ENOEXEC;
        /* blocking for the worker (it waits for its job), non-blocking for us */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        /* vfork: no copy of the supervisor's page tables for a child that
         * only makes syscalls before it execs (its own fd table and signal
         * handlers, so resetting them there touches nothing of ours) */
#ifdef __clang_analyzer__
        /* The analyzer flags vfork() itself and any call between it and
         * exec; exec_worker() makes only syscalls (see above), so this path
         * is analyzed as a fork(). */
        pid_t pid = fork();
#else
        pid_t pid = vfork();
#endif
        if (pid < 0) {
                int r = -errno;
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (pid == 0)
                exec_worker(w->step, sv[1], parent);
        w->pid = pid;
        (void) setpgid(w->pid, w->pid); /* also done by the child: no race either way */
        close(sv[1]);
        w->fd = sv[0];
        w->pidfd = pidfd_open(w->pid, 0);
        if (w->pidfd < 0) {
                int r = -errno;
                (void) kill(-w->pid, SIGKILL);
                (void) waitpid(w->pid, NULL, 0);
                return r;
        }
        return 0;
}

static int send_job(Worker *w, json_t *job) {
        _cleanup_free_ char *text = NULL;
        size_t n;

        if (json_object_set_new(job, "step", json_string(w->step)) < 0)
                return -ENOMEM;
        text = json_dumps(job, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        n = strlen(text);
        if (n > WORKER_MESSAGE_MAX)
                return -E2BIG;
        /* a fresh socket's buffer holds one message of this size */
        return send(w->fd, text, n, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* ---- reading a worker ---- */

void worker_reading_fail(WorkerReading *rd, const char *fmt, ...) {
        va_list ap;

        if (rd->error)
                return;
        va_start(ap, fmt);
        if (vasprintf(&rd->error, fmt, ap) < 0)
                rd->error = NULL;
        va_end(ap);
}

void worker_reading_timed_out(WorkerReading *rd, uint64_t timeout_usec) {
        worker_reading_fail(rd, "%s worker timed out after %llus", rd->step,
                            (unsigned long long) (timeout_usec / USEC_PER_SEC));
}

/* Progress is only shown: a count that is missing or not one reads as 0. */
static uint64_t progress_count(const json_t *progress, const char *key) {
        json_t *v = json_object_get(progress, key);

        return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t) json_integer_value(v) : 0;
}

/* Progress messages until the one result; anything else, or anything
 * after the result, breaks the protocol. */
WorkerMessage worker_reading_message(WorkerReading *rd, const char *buf, size_t n, uint64_t *ret_bytes,
                                     uint64_t *ret_total) {
        json_auto_t *msg = NULL;
        json_error_t jerr;
        json_t *progress;

        if (n > WORKER_MESSAGE_MAX)
                return worker_reading_fail(rd, "%s worker sent an oversized message", rd->step), WORKER_MESSAGE_INVALID;
        msg = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(msg))
                return worker_reading_fail(rd, "%s worker sent garbage: %s", rd->step, msg ? "not an object" : jerr.text),
                       WORKER_MESSAGE_INVALID;
        progress = json_object_get(msg, "progress");
        if (json_is_object(progress) && !rd->result) {
                *ret_bytes = progress_count(progress, "bytes");
                *ret_total = progress_count(progress, "total");
                return WORKER_MESSAGE_PROGRESS;
        }
        if (rd->result || !json_is_boolean(json_object_get(msg, "ok")))
                return worker_reading_fail(rd, "%s worker broke protocol", rd->step), WORKER_MESSAGE_INVALID;
        rd->result = TAKE_PTR(msg);
        return WORKER_MESSAGE_RESULT;
}

static char *describe_status(const char *step, int status) {
        /* SIGSYS is seccomp's verdict; the kernel log names the system call. */
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
                return strdup_printf("%s worker killed by SIGSYS: it made a system call its seccomp "
                                     "allow-list forbids (the kernel log names it)", step);
        if (WIFSIGNALED(status))
                return strdup_printf("%s worker killed by SIG%s", step, sigabbrev_np(WTERMSIG(status)) ?: "?");
        if (WIFEXITED(status))
                return strdup_printf("%s worker exited with status %d without a result", step, WEXITSTATUS(status));
        return strdup_printf("%s worker ended abnormally", step);
}

void worker_reading_done(WorkerReading *rd) {
        json_decref(rd->result);
        rd->result = NULL;
        rd->error = mfree(rd->error);
}

void worker_reading_finish(WorkerReading *rd, int status, WorkerOutcome *ret) {
        json_t *err;

        if (!rd->error && !rd->result)
                rd->error = describe_status(rd->step, status);
        if (rd->error) {
                ret->error = TAKE_PTR(rd->error);
                return worker_reading_done(rd); /* a result next to a failure is not trusted */
        }
        ret->result = TAKE_PTR(rd->result);
        ret->ok = json_is_true(json_object_get(ret->result, "ok"));
        /* a successful reply's fields are decoded strictly by the pipeline
         * (protocol/worker-result.h) */
        ret->bad = json_is_true(json_object_get(ret->result, "bad"));
        err = json_object_get(ret->result, "error");
        if (!ret->ok)
                ret->error = strdup_printf("%s: %s", rd->step,
                                           json_is_string(err) ? json_string_value(err) : "failed without a reason");
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                log_warning("%s worker ended with status 0x%x after sending its result", rd->step, (unsigned) status);
}

/* ---- following a worker ---- */

/* One message from the worker: progress (passed on) or the result (kept). */
static void handle_message(Worker *w, const char *buf, ssize_t n) {
        uint64_t bytes = 0, total = 0;

        switch (worker_reading_message(&w->reading, buf, (size_t) n, &bytes, &total)) {
        case WORKER_MESSAGE_PROGRESS:
                if (w->progress)
                        w->progress(bytes, total, w->userdata);
                break;
        case WORKER_MESSAGE_RESULT:
                break;
        case WORKER_MESSAGE_INVALID:
                (void) kill(-w->pid, SIGKILL);
                break;
        }
}

static void close_socket(Worker *w) {
        w->io_source = sd_event_source_disable_unref(w->io_source);
        if (w->fd >= 0)
                close(w->fd);
        w->fd = -1;
}

/* Read every queued message; close our end at EOF. */
static void drain(Worker *w) {
        static char buf[WORKER_MESSAGE_MAX + 1];

        while (w->fd >= 0) {
                ssize_t n = recv(w->fd, buf, sizeof buf, MSG_TRUNC | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0)
                        return close_socket(w);
                handle_message(w, buf, n);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        drain(userdata);
        return 0;
}

static uint64_t timeval_usec(const struct timeval *tv) {
        return (uint64_t) tv->tv_sec * USEC_PER_SEC + (uint64_t) tv->tv_usec;
}

static Worker *worker_free(Worker *w) {
        close_socket(w);
        sd_event_source_disable_unref(w->exit_source);
        sd_event_source_disable_unref(w->timer_source);
        if (w->pidfd >= 0)
                close(w->pidfd);
        worker_reading_done(&w->reading);
        free(w->step);
        free(w);
        return NULL;
}

static void finish(Worker *w) {
        WorkerOutcome o = {
                .max_rss_kib = (uint64_t) w->usage.ru_maxrss,
                .cpu_usec = timeval_usec(&w->usage.ru_utime) + timeval_usec(&w->usage.ru_stime),
                .wall_usec = now_usec(CLOCK_MONOTONIC) - w->started_usec,
        };

        worker_reading_finish(&w->reading, w->status, &o);
        w->done(&o, w->userdata);
        json_decref(o.result);
        free(o.error);
        worker_free(w);
}

static int on_worker_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        pid_t p = wait4(w->pid, &w->status, WNOHANG, &w->usage);

        if (p == 0 || (p < 0 && errno == EINTR))
                return 0; /* not yet */
        drain(w);  /* messages sent just before exit are still queued */
        (void) kill(-w->pid, SIGKILL); /* leftovers in its group (hooks) */
        finish(w);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;

        if (w->stopping)
                worker_reading_fail(&w->reading, "%s worker stopped", w->step);
        else
                worker_reading_timed_out(&w->reading, w->timeout_usec);
        if (w->stopping) {
                (void) kill(-w->pid, SIGKILL);
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        }
        worker_stop(w);
        return 0;
}

void worker_stop(Worker *w) {
        if (w->stopping)
                return;
        w->stopping = true;
        worker_reading_fail(&w->reading, "%s worker stopped", w->step);
        (void) kill(-w->pid, SIGTERM);
        (void) sd_event_source_set_time_relative(w->timer_source, WORKER_KILL_GRACE_USEC);
        (void) sd_event_source_set_enabled(w->timer_source, SD_EVENT_ONESHOT);
}

const char *worker_step(const Worker *w) {
        return w->step;
}

static int watch(Worker *w, sd_event *e) {
        int r;

        r = sd_event_add_io(e, &w->io_source, w->fd, EPOLLIN, on_io, w);
        if (r >= 0)
                r = sd_event_add_io(e, &w->exit_source, w->pidfd, EPOLLIN, on_worker_exit, w);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &w->timer_source, CLOCK_MONOTONIC, w->timeout_usec, 0,
                                               on_timeout, w);
        return r;
}

int worker_start(sd_event *e, const char *step, json_t *job, uint64_t timeout_usec,
                 worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **ret) {
        Worker *w = calloc(1, sizeof *w);
        int r;

        if (!w || !(w->step = strdup(step))) {
                free(w);
                return -ENOMEM;
        }
        *w = (Worker) { .step = w->step, .fd = -1, .pidfd = -1, .timeout_usec = timeout_usec,
                        .progress = progress, .done = done, .userdata = userdata, .reading.step = w->step,
                        .started_usec = now_usec(CLOCK_MONOTONIC) };
        r = spawn(w);
        if (r >= 0)
                r = send_job(w, job);
        /* The worker died before its job reached it (killed the instant it
         * ran, or its exec failed): not a failure to start. Its exit, reaped
         * on the loop like any other, says how it died ("killed by SIGKILL"),
         * and the step fails as for a worker killed later. */
        if (r == -EPIPE || r == -ECONNRESET)
                r = 0;
        if (r >= 0)
                r = watch(w, e);
        if (r < 0) {
                if (w->pid > 0) {
                        (void) kill(-w->pid, SIGKILL);
                        (void) waitpid(w->pid, NULL, 0);
                }
                worker_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

/* ---- the pool ---- */

typedef struct WorkerRequest WorkerRequest;
struct WorkerRequest {
        WorkerPool *pool;
        char *step;
        json_t *job;
        uint64_t timeout_usec;
        worker_progress_cb progress;
        worker_done_cb done;
        void *userdata;
        Worker **slot;
        WorkerRequest *next;
};

struct WorkerPool {
        sd_event *event;
        unsigned max_workers;
        unsigned busy;                 /* workers running */
        bool stopping;
        WorkerRequest *queue_head, *queue_tail;
        WorkerRunner runner;
};

static void request_free(WorkerRequest *q) {
        json_decref(q->job);
        free(q->step);
        free(q);
}

static void dispatch_queue(WorkerPool *pool);

static void on_request_progress(uint64_t bytes, uint64_t total, void *userdata) {
        WorkerRequest *q = userdata;

        if (q->progress)
                q->progress(bytes, total, q->userdata);
}

static void on_request_done(WorkerOutcome *o, void *userdata) {
        WorkerRequest *q = userdata;
        WorkerPool *pool = q->pool;

        pool->busy--;
        *q->slot = NULL;
        q->done(o, q->userdata);
        request_free(q);
        dispatch_queue(pool);
}

static void request_refuse(WorkerRequest *q, int r) {
        WorkerOutcome o = { .error = strdup_printf("%s worker: %s", q->step, strerror(-r)) };

        q->done(&o, q->userdata);
        free(o.error);
        request_free(q);
}

static void dispatch_queue(WorkerPool *pool) {
        while (pool->queue_head && pool->busy < pool->max_workers) {
                WorkerRequest *q = pool->queue_head;
                int r;

                pool->queue_head = q->next;
                if (!pool->queue_head)
                        pool->queue_tail = NULL;
                r = worker_start(pool->event, q->step, q->job, q->timeout_usec, on_request_progress,
                                 on_request_done, q, q->slot);
                if (r < 0) {
                        request_refuse(q, r);
                        continue;
                }
                pool->busy++;
        }
}

int worker_pool_start(WorkerPool *pool, const char *step, json_t *job, uint64_t timeout_usec,
                      worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **slot) {
        WorkerRequest *q;

        if (pool->stopping)
                return -ECANCELED;
        q = calloc(1, sizeof *q);
        if (!q || !(q->step = strdup(step))) {
                free(q);
                return -ENOMEM;
        }
        *q = (WorkerRequest) { .pool = pool, .step = q->step, .job = json_incref(job), .timeout_usec = timeout_usec,
                               .progress = progress, .done = done, .userdata = userdata, .slot = slot };
        if (pool->queue_tail)
                pool->queue_tail->next = q;
        else
                pool->queue_head = q;
        pool->queue_tail = q;
        dispatch_queue(pool);
        return 0;
}

static void flush_queue(WorkerPool *pool) {
        while (pool->queue_head) {
                WorkerRequest *q = pool->queue_head;
                pool->queue_head = q->next;
                request_refuse(q, -ECANCELED);
        }
        pool->queue_tail = NULL;
}

void worker_pool_shutdown(WorkerPool *pool) {
        pool->stopping = true;
        flush_queue(pool);
}

void worker_pool_set_max(WorkerPool *pool, unsigned max_workers) {
        pool->max_workers = max_workers;
}

static int runner_start(void *impl, const char *step, json_t *job, uint64_t timeout_usec,
                        worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **slot) {
        return worker_pool_start(impl, step, job, timeout_usec, progress, done, userdata, slot);
}

static void runner_stop(void *impl, Worker *w) {
        worker_stop(w);
}

const WorkerRunner *worker_pool_runner(WorkerPool *pool) {
        return &pool->runner;
}

int worker_pool_new(sd_event *e, unsigned max_workers, WorkerPool **ret) {
        WorkerPool *pool = calloc(1, sizeof *pool);

        if (!pool)
                return -ENOMEM;
        pool->event = e;
        pool->max_workers = max_workers;
        pool->runner = (WorkerRunner) { .start = runner_start, .stop = runner_stop, .impl = pool };
        *ret = pool;
        return 0;
}

WorkerPool *worker_pool_free(WorkerPool *pool) {
        if (!pool)
                return NULL;
        flush_queue(pool);
        free(pool);
        return NULL;
}
