/* debug-hostile.h: debug builds only (-DDEPLOY_AGENT_DEBUG): a fetch worker
 * that plays a compromised one, so that a test can prove the supervisor and
 * the root half of unpack distrust what fetch reports and leaves behind.
 * Set DEPLOY_AGENT_DEBUG_HOSTILE_FETCH in the agent's environment:
 *   report-path:PATH  the result also claims PATH is the download
 *   symlink:PATH      the download is replaced by a symlink to PATH
 * In other builds both functions do nothing and read no environment. */
#pragma once

#include <jansson.h>

/* Add the hostile fields to fetch's result fields. */
void debug_hostile_fetch_result(json_t *fields);

/* Swap the verified download name in dir_fd for the hostile symlink. */
void debug_hostile_fetch_plant(int dir_fd, const char *name);
