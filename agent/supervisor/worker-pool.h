/* worker-pool.h: run pipeline steps in crash-isolated processes, at most
 * max_workers at once (the pool, at the end of this file).
 *
 * Supervisor side: vfork, execveat of deploy-agent-worker --worker STEP
 * with a SOCK_SEQPACKET socket on fd 3; the job goes down as one JSON
 * message, progress messages and one result come back (docs/design.md,
 * "Worker protocol"). A worker that dies, times out or sends garbage fails
 * its step with a message that says so.
 *
 * Worker side: worker_main() reads the job, hands it to the step, which
 * acquires what it needs and then calls worker_drop_privileges() before it
 * touches untrusted data.
 *
 * Messages (one JSON object per datagram, at most WORKER_MESSAGE_MAX bytes):
 * the job down (protocol/worker-job.h), progress and one reply up
 * (protocol/worker-result.h). "bad" in a failed reply says the artifact
 * itself is at fault (checksum, signature, hostile archive): the supervisor
 * marks that build bad instead of retrying it. */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol/worker-protocol.h"


/* Workers run a binary of their own, deploy-agent-worker, so that the
 * supervisor maps none of libcurl, libarchive, OpenSSL (its RSS stays small):
 * next to the running deploy-agent (a build tree), else in LIBEXECDIR. It
 * is opened once, at start, and executed by fd: a package upgrade while
 * the agent runs cannot mix versions. */
int worker_binary_open(void);

/* exec the worker binary with argv (deploy-agent --worker STEP forwards
 * there). Returns only on failure. */
int worker_binary_exec(char **argv);

typedef struct Worker Worker;

typedef void (*worker_progress_cb)(uint64_t bytes, uint64_t total, void *userdata);

typedef struct WorkerOutcome {
        json_t *result;                /* the {"ok":...} object; take it with TAKE_PTR */
        bool ok;                       /* result says ok */
        bool bad;                      /* result says the artifact is bad */
        char *error;                   /* why it failed; NULL when ok */
        uint64_t max_rss_kib;          /* the worker's peak resident set */
        uint64_t cpu_usec;             /* user + system time */
        uint64_t wall_usec;            /* from start to reaped (bench/shapes.py reads it) */
} WorkerOutcome;

/* Called once, when the worker has exited and been reaped (or could not be
 * started). The Worker is freed right after: drop every pointer to it. */
typedef void (*worker_done_cb)(WorkerOutcome *o, void *userdata);

/* ---- reading a worker: what its datagrams and its end amount to ----
 * Kept apart from the process and the socket so that every way a worker
 * can answer is tested without one. worker_start() feeds it each datagram
 * and, once the worker is reaped, its wait status. The first reason a
 * worker failed is the one reported: a timeout or a protocol violation is
 * not hidden by the SIGKILL that follows it. */
typedef struct WorkerReading {
        const char *step;              /* for messages; not owned */
        json_t *result;                /* the one {"ok":...} object, once read */
        char *error;                   /* the first reason it failed */
} WorkerReading;

typedef enum WorkerMessage {
        WORKER_MESSAGE_PROGRESS,       /* pass *ret_bytes of *ret_total on */
        WORKER_MESSAGE_RESULT,         /* kept in the reading */
        WORKER_MESSAGE_INVALID,        /* the worker broke the protocol: kill it */
} WorkerMessage;

/* One datagram; n is its size as recv(MSG_TRUNC) reports it, so it may
 * exceed what buf holds: then it is refused unread. */
WorkerMessage worker_reading_message(WorkerReading *rd, const char *buf, size_t n, uint64_t *ret_bytes,
                                     uint64_t *ret_total);
/* Record why the worker failed, unless a reason is known already. */
void worker_reading_fail(WorkerReading *rd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The worker ran past its deadline of timeout_usec. */
void worker_reading_timed_out(WorkerReading *rd, uint64_t timeout_usec);
/* The worker was reaped with this wait status: what its done callback
 * gets (the result and the error move into *ret; free them after). The
 * reading is empty afterwards. */
void worker_reading_finish(WorkerReading *rd, int status, WorkerOutcome *ret);
void worker_reading_done(WorkerReading *rd);

/* Start step with job on the event loop; the worker is killed (its whole
 * process group, SIGTERM then SIGKILL) when it runs past timeout_usec. */
int worker_start(sd_event *e, const char *step, json_t *job, uint64_t timeout_usec,
                 worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **ret);

/* SIGTERM to the worker's group now, SIGKILL after a grace period; the done
 * callback still runs, with an error saying it was stopped. */
void worker_stop(Worker *w);

const char *worker_step(const Worker *w);


/* ---- the pool: at most max_workers at once, the rest wait in order ---- */

typedef struct WorkerPool WorkerPool;

int worker_pool_new(sd_event *e, unsigned max_workers, WorkerPool **ret);
/* Refuses what still waits (done runs with an error); running workers
 * must have ended already. */
WorkerPool *worker_pool_free(WorkerPool *pool);

/* A reload changed max_workers: applies from the next worker that ends. */
void worker_pool_set_max(WorkerPool *pool, unsigned max_workers);

/* Like worker_start(), but waits for a slot: *slot is set when the worker
 * actually starts and cleared when it ends. A worker that cannot start
 * ends its request through done (maybe before this returns). -ECANCELED
 * once the pool shuts down. */
int worker_pool_start(WorkerPool *pool, const char *step, json_t *job, uint64_t timeout_usec,
                      worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **slot);

/* Shutting down: refuse every waiting request and every new one. */
void worker_pool_shutdown(WorkerPool *pool);

/* What the pipeline knows of a pool: start a step, stop a running one.
 * The daemon passes worker_pool_runner(); unit tests pass a fake that
 * answers through the same done callback. */
typedef struct WorkerRunner {
        int (*start)(void *impl, const char *step, json_t *job, uint64_t timeout_usec,
                     worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **slot);
        void (*stop)(void *impl, Worker *w);
        void *impl;
} WorkerRunner;

const WorkerRunner *worker_pool_runner(WorkerPool *pool);
