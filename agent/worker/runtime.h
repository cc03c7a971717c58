/* runtime.h: the worker side of a step: worker_main() reads the job from
 * fd 3, hands it to the step, which acquires what it needs and then calls
 * worker_drop_privileges() before it touches untrusted data. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "protocol/worker-job.h"
#include "protocol/worker-result.h"

typedef struct WorkerContext WorkerContext;

/* The body of a step (steps.h): 0 with its fields of *ret filled in, or
 * <0 with *ret_error set. */
typedef int (*step_fn)(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad,
                       char **ret_error);

/* Entry point of `deploy-agent-worker --worker STEP`, fn its body (NULL: an
 * unknown step). main.c looks the step up, so that the runtime the steps
 * call does not call up into them. Returns the process exit code. */
int worker_main(const char *step, step_fn fn);

/* Apply the job's rlimits, switch to its run_as user if any, set
 * PR_SET_NO_NEW_PRIVS, then confine the step (worker/confine.h). Every step
 * calls it once, after opening its fds and before reading untrusted bytes. */
int worker_drop_privileges(WorkerContext *w);

/* Best effort, rate limited by the caller. */
void worker_send_progress(WorkerContext *w, uint64_t bytes, uint64_t total);
