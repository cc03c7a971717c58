/* log.c: leveled diagnostics, to the journal natively when stderr is the
 * journal stream (as under systemd), else one line per message on stderr. */
#define _GNU_SOURCE
#include "common/log.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#define LOG_LINE_MAX 2048

static int max_level = LOG_INFO;
static const char *prefix = "deploy-agent";
static int to_journal = -1;                 /* -1: not checked yet */
static const char *ctx_service, *ctx_sha, *ctx_step;

static const char *const level_names[] = {
        [LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_prefix(const char *p) {
        prefix = p;
}

void log_set_context(const char *service, const char *sha, const char *step) {
        ctx_service = service;
        ctx_sha = sha;
        ctx_step = step;
}

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (level_names[i] && streq(level_names[i], s))
                        return (int) i;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(level_names))
                return NULL;
        return level_names[level];
}

/* $JOURNAL_STREAM names the device:inode of the stream systemd connected
 * to our stderr; if stderr is still that stream, we may talk natively. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (to_journal >= 0)
                return to_journal;
        to_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) >= 0 &&
                     st.st_dev == dev && st.st_ino == ino;
        return to_journal;
}

static void add_field(struct iovec *iov, size_t *n, char *buf, size_t size, const char *name, const char *value) {
        if (!value)
                return;
        snprintf(buf, size, "%s=%s", name, value);
        iov[(*n)++] = (struct iovec) { .iov_base = buf, .iov_len = strlen(buf) };
}

static void write_journal(int level, int error, const char *message_id, const char *text) {
        char msg[LOG_LINE_MAX + 64];

        if (streq(prefix, "deploy-agent"))
                snprintf(msg, sizeof msg, "%s", text);
        else
                snprintf(msg, sizeof msg, "%s: %s", prefix, text);
        char f[8][LOG_LINE_MAX + 128], prio[2] = { (char) ('0' + level), 0 }, errno_str[16];
        struct iovec iov[8];
        size_t n = 0;

        snprintf(errno_str, sizeof errno_str, "%d", error < 0 ? -error : error);
        add_field(iov, &n, f[7], sizeof f[7], "ERRNO", error ? errno_str : NULL);
        add_field(iov, &n, f[0], sizeof f[0], "MESSAGE", msg);
        add_field(iov, &n, f[1], sizeof f[1], "PRIORITY", prio);
        add_field(iov, &n, f[2], sizeof f[2], "SYSLOG_IDENTIFIER", "deploy-agent");
        add_field(iov, &n, f[3], sizeof f[3], "MESSAGE_ID", message_id);
        add_field(iov, &n, f[4], sizeof f[4], "DEPLOY_SERVICE", ctx_service);
        add_field(iov, &n, f[5], sizeof f[5], "DEPLOY_SHA", ctx_sha);
        add_field(iov, &n, f[6], sizeof f[6], "DEPLOY_STEP", ctx_step);
        if (sd_journal_sendv(iov, (int) n) < 0)
                fprintf(stderr, "%s: %s\n", prefix, msg);
}

int log_internal(int level, int error, const char *message_id, const char *fmt, ...) {
        int saved = errno;
        char msg[LOG_LINE_MAX];
        va_list ap;

        if (level > max_level)
                return error;
        if (error != 0)
                errno = error < 0 ? -error : error;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (stderr_is_journal())
                write_journal(level, error, message_id, msg);
        else if (level <= LOG_WARNING)
                fprintf(stderr, "%s: %s: %s\n", prefix, log_level_to_string(level), msg);
        else
                fprintf(stderr, "%s: %s\n", prefix, msg);
        errno = saved;
        return error;
}
