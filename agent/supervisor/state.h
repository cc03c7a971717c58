/* state.h: what the agent remembers per service, in
 * state_dir/<svc>/state.json (docs/design.md, "State and crash recovery"): current and previous
 * release, bad releases with reasons, the last deploys, the step in flight.
 * The `current` symlink stays the truth about what runs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATE_HISTORY_MAX 50
#define STATE_BAD_MAX 100

typedef struct BadRelease {
        char *sha;
        char *etag;                    /* the object that was bad; NULL: any */
        char *reason;
        uint64_t when_usec;
        bool unreported;               /* its fleet marker bad/<sha>/<host_id> is not written yet */
} BadRelease;

typedef struct HistoryEntry {
        char *sha;
        char *previous;
        char *outcome;                 /* "deployed", "failed", "rejected" */
        char *message;
        uint64_t when_usec;
} HistoryEntry;

typedef struct ServiceState {
        char *current;
        char *previous;
        char *in_flight_step;          /* NULL when idle */
        char *in_flight_sha;
        char *in_flight_previous;      /* what current was before the step */
        char *in_flight_etag;          /* the S3 object of in_flight_sha */
        char *pointer_etag;            /* select = pointer: the last one seen */
        bool paused;
        char *pinned;
        char *last_error;
        BadRelease *bad;
        size_t n_bad;
        HistoryEntry *history;         /* oldest first */
        size_t n_history;
} ServiceState;

/* A missing file gives an empty state; a corrupt one is an error. */
int state_load(const char *path, ServiceState **ret, char **ret_error);
/* state.json's text. */
char *state_format(const ServiceState *s);
/* Temp file, fsync, rename, fsync of the directory. */
int state_save(const ServiceState *s, const char *path);
int state_write(const char *text, const char *path);
ServiceState *state_free(ServiceState *s);
static inline void state_freep(ServiceState **s) {
        state_free(*s);
}
#define _cleanup_state_ __attribute__((cleanup(state_freep)))

/* etag NULL matches any entry for sha; an entry's NULL etag matches any. */
const BadRelease *state_find_bad(const ServiceState *s, const char *sha, const char *etag);
int state_mark_bad(ServiceState *s, const char *sha, const char *etag, const char *reason, uint64_t now_usec);
/* Set or clear the unreported flag of every bad mark of sha. */
void state_set_unreported(ServiceState *s, const char *sha, bool unreported);
/* The oldest bad mark whose fleet marker is not written yet, or NULL. */
const BadRelease *state_first_unreported(const ServiceState *s);
/* Forget every bad mark of sha (an operator deployed it anyway). */
void state_unmark_bad(ServiceState *s, const char *sha);
int state_add_history(ServiceState *s, const char *sha, const char *previous, const char *outcome,
                      const char *message, uint64_t now_usec);
/* Replace *field with a copy of value (NULL clears). */
int state_set(char **field, const char *value);
