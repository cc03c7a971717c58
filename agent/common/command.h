/* command.h: run an operator's shell command (hooks, health_command) with
 * extra environment, a working directory and a timeout. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Runs /bin/sh -c cmd in its own process group, stdout sent to stderr.
 * env: NULL-terminated "NAME=value" strings added to the environment.
 * Returns 0 when it exited 0; -ETIMEDOUT when it was killed for running
 * past timeout_usec; -ECHILD with *ret_status set when it failed. */
int command_run(const char *cmd, const char *cwd, char *const *env, uint64_t timeout_usec, int *ret_status);

/* "exited with status 3", "killed by SIGSEGV", into buf. */
const char *command_describe_status(int status, char *buf, size_t size);
