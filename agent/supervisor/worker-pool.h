/* worker-pool.h: run one pipeline step in a crash-isolated process.
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
} WorkerOutcome;

/* Called once, when the worker has exited and been reaped (or could not be
 * started). The Worker is freed right after: drop every pointer to it. */
typedef void (*worker_done_cb)(WorkerOutcome *o, void *userdata);

/* Start step with job on the event loop; the worker is killed (its whole
 * process group, SIGTERM then SIGKILL) when it runs past timeout_usec. */
int worker_start(sd_event *e, const char *step, json_t *job, uint64_t timeout_usec,
                 worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **ret);

/* SIGTERM to the worker's group now, SIGKILL after a grace period; the done
 * callback still runs, with an error saying it was stopped. */
void worker_stop(Worker *w);

const char *worker_step(const Worker *w);

