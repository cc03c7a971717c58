/* runtime.h: the worker side of a step: worker_main() reads the job from
 * fd 3, hands it to the step, which acquires what it needs and then calls
 * worker_drop_privileges() before it touches untrusted data. */
#pragma once

#include <stdint.h>

#include "protocol/worker-job.h"
#include "protocol/worker-result.h"

typedef struct WorkerContext WorkerContext;

/* Entry point of `deploy-agent --worker STEP`: returns the process exit code. */
int worker_main(const char *step);

/* Apply the job's rlimits, switch to its run_as user if any, set
 * PR_SET_NO_NEW_PRIVS. Every step calls it once, after opening its fds and
 * before reading untrusted bytes. */
int worker_drop_privileges(WorkerContext *w);

/* Best effort, rate limited by the caller. */
void worker_send_progress(WorkerContext *w, uint64_t bytes, uint64_t total);
