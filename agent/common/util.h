/* util.h: cleanup attributes, ownership transfer and small helpers shared by
 * every module (after systemd's macro.h / fd-util.h). */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)

/* Move ownership out of a cleanup-attributed variable. */
#define TAKE_PTR(p)                        \
        ({                                 \
                __typeof__(p) _ptr_ = (p); \
                (p) = NULL;                \
                _ptr_;                     \
        })
#define TAKE_FD(fd)                \
        ({                         \
                int _fd_ = (fd);   \
                (fd) = -1;         \
                _fd_;              \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return streq(a, b);
}
static inline bool isempty(const char *s) {
        return !s || !*s;
}
static inline const char *strempty(const char *s) {
        return s ? s : "";
}
/* ASCII white space, whatever the locale. */
static inline bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Wipe a secret (a key, a token, a body that held one), then free it. */
void free_secret(char *s);

/* Microseconds on the given clock (CLOCK_MONOTONIC or CLOCK_REALTIME). */
uint64_t now_usec(int clock_id);

/* Store a malloc'd, formatted message in *ret_error (when ret_error is not
 * NULL) and return r, which must be negative: the error path of every module
 * that explains its failures ("entry ../x escapes the release"). */
int error_set(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);

/* "what: strerror(-r)" into *ret_error unless it already holds a message
 * (the module that failed explained itself); returns r. */
int error_context(char **ret_error, int r, const char *what);

/* A malloc'd formatted string, or NULL when out of memory. */
char *strdup_printf(const char *fmt, ...) _printf_(1, 2);

/* n bytes of [A-Za-z0-9._-]: the one character set of a host id and of
 * what IMDS names an instance or a zone (safe in an S3 key and a log line). */
bool identity_chars_valid(const char *s, size_t n);

/* Text another host or a server wrote, made safe to log or print: into buf
 * (size > 0), printable ASCII kept and every other byte '?', cut to fit.
 * No terminal escape survives, and the cut cannot split a UTF-8 sequence
 * (jansson refuses a string that is not valid UTF-8). Returns buf. */
char *printable_copy(char *buf, size_t size, const char *s);

/* true for 7..40 lowercase hex characters: the only SHA spelling we accept. */
bool sha_is_valid(const char *s);

/* Read/write all bytes, retrying on EINTR and short counts. */
int loop_write(int fd, const void *buf, size_t n);

/* Format a RFC 3339 UTC timestamp ("2026-11-27T10:00:00Z") into buf[32]. */
const char *format_timestamp(uint64_t realtime_usec, char buf[static 32]);
/* Parse "2026-11-27T10:00:00.000Z" (S3's LastModified) or without fraction. */
int parse_timestamp(const char *s, uint64_t *ret_usec);
