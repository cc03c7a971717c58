/* log.h: the one place that writes diagnostics. Library-like modules return
 * errors; their callers log once, with context. Under journald (stderr is
 * the journal stream) messages go natively with DEPLOY_SERVICE=,
 * DEPLOY_SHA=, DEPLOY_STEP= and MESSAGE_ID= fields; elsewhere one line per
 * message on stderr. */
#pragma once

#include <syslog.h>

#include "common/util.h"

void log_set_max_level(int level);          /* LOG_ERR .. LOG_DEBUG */
int log_get_max_level(void);
int log_level_from_string(const char *s);   /* "error".."debug", -EINVAL */
const char *log_level_to_string(int level);
void log_set_prefix(const char *prefix);    /* "worker fetch", ... */

/* Fields attached to every message until changed (NULL clears): the
 * supervisor is single-threaded, so the service being worked on is a
 * property of the moment. */
void log_set_context(const char *service, const char *sha, const char *step);

/* Message IDs, one per event kind an operator may want to find
 * (journalctl MESSAGE_ID=...). */
#define LOG_MID_STARTED   "6d3c1b6e8f0e4d0f9a51c7a2b5e0d101"
#define LOG_MID_STOPPED   "6d3c1b6e8f0e4d0f9a51c7a2b5e0d102"
#define LOG_MID_RELOADED  "6d3c1b6e8f0e4d0f9a51c7a2b5e0d103"
#define LOG_MID_DEPLOYED  "6d3c1b6e8f0e4d0f9a51c7a2b5e0d110"
#define LOG_MID_FAILED    "6d3c1b6e8f0e4d0f9a51c7a2b5e0d111"
#define LOG_MID_ROLLBACK  "6d3c1b6e8f0e4d0f9a51c7a2b5e0d112"
#define LOG_MID_BAD       "6d3c1b6e8f0e4d0f9a51c7a2b5e0d113"
#define LOG_MID_WORKER    "6d3c1b6e8f0e4d0f9a51c7a2b5e0d120"

/* Logs with errno set to -error (so %m prints it) and returns error, which
 * is negative or 0. message_id may be NULL. */
int log_internal(int level, int error, const char *message_id, const char *fmt, ...) _printf_(4, 5);

#define log_debug(...) log_internal(LOG_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...) log_internal(LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_notice(...) log_internal(LOG_NOTICE, 0, NULL, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...) log_internal(LOG_ERR, 0, NULL, __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_WARNING, (e), NULL, __VA_ARGS__)
#define log_error_errno(e, ...) log_internal(LOG_ERR, (e), NULL, __VA_ARGS__)
#define log_event(level, mid, ...) log_internal((level), 0, (mid), __VA_ARGS__)
