/* service.h: one configured service at run time: its state, its poll
 * timer with jitter and backoff, and the pipeline running for it, if any.
 * Services never share anything but the manager's worker slots. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config/config.h"
#include "supervisor/state.h"

typedef struct Manager Manager;
typedef struct Pipeline Pipeline;

typedef struct Service {
        Manager *manager;
        char *name;
        const ServiceConfig *cfg;      /* into the manager's config of its time */
        ServiceState *state;
        char state_path[PATH_MAX];
        char downloads_dir[PATH_MAX];
        char releases_dir[PATH_MAX];
        bool drop;                     /* running as root: workers switch users */
        uid_t worker_uid, owner_uid;
        gid_t worker_gid, owner_gid;
        sd_event_source *timer;
        unsigned failures;             /* in a row, for the backoff */
        bool needs_cleanup;            /* a step may have left leftovers on disk */
        Pipeline *pipeline;            /* NULL when idle */
        char activity[160];            /* what it does now, for STATUS= */
        bool removed;                  /* dropped by a reload: freed once idle */
        bool reload_pending;           /* its config changed: renewed once idle */
        unsigned seq;                  /* number of the running or last pipeline */
        uint64_t last_poll_usec;       /* realtime; not persisted */
        char *saved_state;             /* state.json as last written */
        int pending_kind;              /* an operator's request waiting: PipelineKind, -1 none */
        char *pending_sha;
        char *pending_reason;
} Service;

/* Resolve users, create directories, load state.json. */
int service_new(Manager *m, const ServiceConfig *cfg, Service **ret);
Service *service_free(Service *s);

/* Arm the poll timer to fire after delay_usec. */
int service_schedule(Service *s, uint64_t delay_usec);

/* The delay to the next poll: poll_interval, or the backoff after
 * failures, spread by poll_jitter. */
uint64_t service_poll_delay(const Service *s);

/* Start an automatic pass (discover and deploy what is new) unless a
 * pipeline runs (-EBUSY), or the service is paused or pinned (0, nothing
 * started). A crash-interrupted activation is finished first, always. */
int service_poll(Service *s);

/* An operator's request (PipelineKind, with a sha for deploy/rollback; a
 * rollback marks what is current when it starts bad, for reason):
 * started now, or after the running pipeline (or a crash recovery). -EBUSY
 * when another request already waits. */
int service_request(Service *s, int kind, const char *sha, const char *reason);

/* The number of the pipeline the next service_request() will run as. */
unsigned service_request_seq(const Service *s);

typedef struct PipelineResult PipelineResult;
/* Called by the pipeline when it ends. */
void service_pipeline_done(Service *s, const PipelineResult *res);

/* After a pipeline ended: the waiting operator request, or the next poll. */
void service_next(Service *s);

/* Progress of the running pipeline, for clients waiting on it:
 * {"event":"step"|"progress","step":...,"bytes":...,"total":...}. */
void service_emit(Service *s, const char *step, uint64_t bytes, uint64_t total);

int service_save_state(Service *s);
void service_set_activity(Service *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
