/* service.h: one configured service at run time: its directories and
 * users, its state, what it is doing, and the pipeline running for it, if
 * any. It receives what it needs (the event loop, the workers, its
 * config's generation, callbacks to whoever owns it) and calls nothing
 * above it. The poll timer and the operator's requests are in
 * service-poll.h. Services never share anything but the worker pool. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config/config.h"
#include "supervisor/fleet-types.h"
#include "supervisor/pipeline-types.h"
#include "supervisor/state.h"
#include "supervisor/worker-pool.h"

typedef struct Pipeline Pipeline;
typedef struct Service Service;

/* How a service tells its owner what happened. */
typedef struct ServiceCallbacks {
        /* What a service does changed (for STATUS=). */
        void (*activity_changed)(Service *s, void *userdata);
        /* Pipeline number seq is at step (bytes of total, when known). */
        void (*pipeline_progress)(Service *s, unsigned seq, const char *step, uint64_t bytes, uint64_t total,
                                  void *userdata);
        /* Pipeline number seq ended; the service may be freed from here. */
        void (*pipeline_ended)(Service *s, unsigned seq, const PipelineResult *res, void *userdata);
        void *userdata;
} ServiceCallbacks;

/* What a service is given; every pointer must outlive it. */
typedef struct ServiceContext {
        sd_event *event;
        const WorkerRunner *workers;
        const Config *config;          /* the generation the ServiceConfig is part of */
        const ServiceCallbacks *callbacks;
} ServiceContext;

struct Service {
        char *name;
        const ServiceConfig *cfg;      /* into config, the generation it came from */
        const Config *config;          /* its agent and s3 settings */
        sd_event *event;
        const WorkerRunner *workers;
        const ServiceCallbacks *callbacks;
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
        PipelineKind pending_kind;     /* an operator's request waiting, or _PIPELINE_KIND_NONE */
        char *pending_sha;
        char *pending_reason;
        ServiceFleet fleet;            /* not persisted: known again after one discover */
};

/* Resolve users, create directories, load state.json. */
int service_new(const ServiceContext *ctx, const ServiceConfig *cfg, Service **ret);
Service *service_free(Service *s);

/* Progress of the running pipeline, for clients waiting on it:
 * {"event":"step"|"progress","step":...,"bytes":...,"total":...}. */
void service_emit(Service *s, const char *step, uint64_t bytes, uint64_t total);

int service_save_state(Service *s);
void service_set_activity(Service *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
