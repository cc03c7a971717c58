/* worker.h: run one pipeline step in a crash-isolated process.
 *
 * Supervisor side: fork, exec of /proc/self/exe --worker STEP with a
 * SOCK_SEQPACKET socket on fd 3; the job goes down as one JSON message,
 * progress messages and one result come back. A worker that dies, times out
 * or sends garbage fails its step with a message that says so.
 *
 * Worker side: worker_main() reads the job, hands it to the step, which
 * acquires what it needs and then calls worker_drop_privileges() before it
 * touches untrusted data.
 *
 * Messages (one JSON object per datagram, at most WORKER_MESSAGE_MAX bytes):
 *   down: the job, plus "service", "step", optional "run_as":{"uid","gid"},
 *         "limits":{"cpu_sec","as_bytes","fsize_bytes","nofile"}
 *   up:   {"progress":{"bytes":N,"total":N}}*   then
 *         {"ok":true, ...step fields}  or  {"ok":false,"error":"...","bad":bool}
 *   "bad" says the artifact itself is at fault (checksum, signature, hostile
 *   archive): the supervisor marks that build bad instead of retrying it. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define WORKER_FD 3
#define WORKER_MESSAGE_MAX (64 * 1024)

/* ---- supervisor side ---- */

typedef void (*worker_progress_cb)(uint64_t bytes, uint64_t total, void *userdata);

typedef struct WorkerOutcome {
        json_t *result;                /* the {"ok":...} object, owned */
        bool ok;                       /* result says ok */
        bool bad;                      /* result says the artifact is bad */
        char *error;                   /* why it failed, owned; NULL when ok */
        uint64_t max_rss_kib;          /* the worker's peak resident set */
        uint64_t cpu_usec;             /* user + system time */
} WorkerOutcome;
void worker_outcome_done(WorkerOutcome *o);

/* Run step with job synchronously (for `once`), enforcing timeout_usec.
 * Returns 0 when the worker ran to a result (check outcome->ok), <0 when it
 * could not be run, crashed, timed out or broke protocol; outcome->error
 * says why in either failing case. */
int worker_run(const char *step, json_t *job, uint64_t timeout_usec,
               worker_progress_cb progress, void *userdata, WorkerOutcome *ret_outcome);

/* ---- worker side ---- */

typedef struct WorkerContext WorkerContext;

/* Entry point of `deploy-agent --worker STEP`: returns the process exit code. */
int worker_main(const char *step);

/* Apply the job's rlimits, switch to its run_as user if any, set
 * PR_SET_NO_NEW_PRIVS. Every step calls it once, after opening its fds and
 * before reading untrusted bytes. */
int worker_drop_privileges(WorkerContext *w);

/* Best effort, rate limited by the caller. */
void worker_send_progress(WorkerContext *w, uint64_t bytes, uint64_t total);
