/* worker-protocol.h: what every process of the worker protocol agrees on:
 * the steps a worker runs, the user each step runs as (THE privilege
 * table: the supervisor builds run_as from it, the worker refuses a job
 * that contradicts it), and the transport.
 *
 * The job goes down fd 3 of the worker as one SOCK_SEQPACKET datagram;
 * progress messages and one reply come back the same way, each at most
 * WORKER_MESSAGE_MAX bytes of JSON. The messages themselves are defined in
 * worker-job.h and worker-result.h (docs/design.md, "Worker protocol"). */
#pragma once

#include <jansson.h>

#define WORKER_FD 3
#define WORKER_MESSAGE_MAX (64 * 1024)

/* jansson provides json_decrefp (NULL-safe). */
#define _cleanup_json_ __attribute__((cleanup(json_decrefp)))

typedef enum WorkerStep {
        WORKER_STEP_DISCOVER,
        WORKER_STEP_FETCH,
        WORKER_STEP_UNPACK,
        WORKER_STEP_ACTIVATE,
        WORKER_STEP_RESTART,
        WORKER_STEP_PRUNE,
        WORKER_STEP_CLEANUP,           /* the fuzz corpora pick a step by its number: */
        WORKER_STEP_REPORT,            /* new steps go last */
        _WORKER_STEP_MAX,
} WorkerStep;

const char *worker_step_to_string(WorkerStep s);
/* The step, or -EINVAL. */
int worker_step_from_string(const char *s);

/* Who a step runs as once it has acquired its fds. The steps that read
 * bytes from the network or from an archive never keep root. */
typedef enum WorkerRunAs {
        WORKER_RUN_AS_ROOT,            /* cleanup, activate, restart, prune: root's own files and systemd */
        WORKER_RUN_AS_WORKER_USER,     /* discover, fetch, report: [agent] worker_user */
        WORKER_RUN_AS_OWNER,           /* unpack: the service's owner (default worker_user) */
        _WORKER_RUN_AS_MAX,
} WorkerRunAs;

WorkerRunAs worker_step_run_as(WorkerStep s);
