/* log.h: the one place that writes diagnostics. Library-like modules return
 * errors; their callers log once, with context. stderr for now; journald
 * fields come with the daemon. */
#pragma once

#include <syslog.h>

#include "util.h"

void log_set_max_level(int level);          /* LOG_ERR .. LOG_DEBUG */
int log_get_max_level(void);
int log_level_from_string(const char *s);   /* "error".."debug", -EINVAL */
const char *log_level_to_string(int level);
void log_set_prefix(const char *prefix);    /* "worker fetch", ... */

/* Logs with errno set to -error (so %m prints it) and returns error, which
 * is negative or 0. */
int log_internal(int level, int error, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...) log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_internal(LOG_ERR, (e), __VA_ARGS__)
