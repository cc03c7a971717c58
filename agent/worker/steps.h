/* steps.h: the worker-side body of each pipeline step. Each receives its
 * decoded job (protocol/worker-job.h), calls worker_drop_privileges() once
 * it holds its fds, and returns 0 with its fields of *ret filled in (the
 * strings malloc'd: worker_result_done() frees them), or <0 with *ret_error
 * set. *ret_bad is set true when the failure is the artifact's fault. */
#pragma once

#include <stdbool.h>

#include "protocol/worker-job.h"
#include "protocol/worker-result.h"
#include "worker/runtime.h"

int step_cleanup(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);
int step_discover(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);
int step_fetch(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);
int step_unpack(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);
int step_activate(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);
int step_restart(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);
int step_prune(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);

/* Before the swap (step-activate.c): 0 if systemd has the unit loaded so
 * that RestartUnit can restart it; else <0 with *ret_error naming the unit
 * and its LoadState ("not-found", "masked", ...). Opens its own bus
 * connection, so it runs before worker_drop_privileges(). */
int restart_check_unit(const char *unit, char **ret_error);
