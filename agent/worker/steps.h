/* steps.h: the worker-side body of each pipeline step. Each receives its job
 * (docs/design.md, "Worker protocol"), calls worker_drop_privileges() once it
 * holds its fds, and returns 0 with *ret_result set to the fields to add to
 * {"ok":true}, or <0 with *ret_error set. *ret_bad is set true when the
 * failure is the artifact's fault. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "worker/runtime.h"

int step_discover(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error);
int step_fetch(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error);
int step_unpack(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error);
int step_activate(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error);
int step_restart(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error);
int step_prune(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error);
