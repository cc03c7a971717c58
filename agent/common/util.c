/* util.c: the few helpers util.h declares. */
#define _GNU_SOURCE
#include "common/util.h"

#include <ctype.h>
#include <time.h>

#ifdef DEPLOY_AGENT_DEBUG
/* Debug builds only, for the clock-jump test (tests/integration/
 * test_host_faults.py): the wall clock the agent reads is moved by the
 * signed number of seconds in the file DEPLOY_AGENT_DEBUG_FAKE_CLOCK_FILE
 * names, read at every call so that a test can jump it while the agent runs.
 * Why not the real clock: the machine is shared. Why not libfaketime: it
 * preloads into every process, so curl would sign S3 requests with the fake
 * time (the SigV4 check would fail instead of our timers being tested), it
 * fakes CLOCK_MONOTONIC too unless told not to, and it reads its own files
 * inside confined workers. Here exactly what the agent reads as wall clock
 * moves, and nothing else; CLOCK_MONOTONIC and CLOCK_BOOTTIME never do. A
 * worker that may not read the file sees the real clock. */
static int64_t fake_clock_offset_usec(void) {
        const char *path = getenv("DEPLOY_AGENT_DEBUG_FAKE_CLOCK_FILE");
        char buf[32] = "";
        FILE *f;

        if (!path || !(f = fopen(path, "re")))
                return 0;
        if (!fgets(buf, sizeof buf, f))
                buf[0] = '\0';
        fclose(f);
        return (int64_t) strtoll(buf, NULL, 10) * (int64_t) USEC_PER_SEC;
}
#else
static int64_t fake_clock_offset_usec(void) {
        return 0;
}
#endif

uint64_t now_usec(int clock_id) {
        struct timespec ts;
        uint64_t t;

        if (clock_gettime(clock_id, &ts) < 0)
                abort();
        t = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        return clock_id == CLOCK_REALTIME ? t + (uint64_t) fake_clock_offset_usec() : t;
}

void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

int error_context(char **ret_error, int r, const char *what) {
        if (ret_error && *ret_error)
                return r;
        return error_set(ret_error, r, "%s: %s", what, strerror(-r));
}

int error_set(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;
        char *s;

        if (!ret_error)
                return r;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        free(*ret_error);
        *ret_error = s;
        return r;
}

bool identity_chars_valid(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!s[i] || !strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
                        return false;
        return true;
}

char *printable_copy(char *buf, size_t size, const char *s) {
        size_t i = 0;

        for (; s && s[i] && i + 1 < size; i++)
                buf[i] = s[i] >= 0x20 && s[i] <= 0x7e ? s[i] : '?';
        buf[i] = '\0';
        return buf;
}

char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        return n < 0 ? NULL : s;
}

bool sha_is_valid(const char *s) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n >= 7 && n <= 40;
}

int loop_write(int fd, const void *buf, size_t n) {
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

const char *format_timestamp(uint64_t realtime_usec, char buf[static 32]) {
        time_t t = (time_t) (realtime_usec / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, 32, "invalid");
        return buf;
}

int parse_timestamp(const char *s, uint64_t *ret_usec) {
        struct tm tm = {};
        const char *p;
        uint64_t frac = 0, scale = USEC_PER_SEC;
        time_t t;

        p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        if (*p == '.') {
                for (p++; isdigit((unsigned char) *p); p++)
                        if (scale > 1) {
                                scale /= 10;
                                frac += (uint64_t) (*p - '0') * scale;
                        }
        }
        if (!streq(p, "Z"))
                return -EINVAL;
        t = timegm(&tm);
        if (t < 0)
                return -ERANGE;
        *ret_usec = (uint64_t) t * USEC_PER_SEC + frac;
        return 0;
}
