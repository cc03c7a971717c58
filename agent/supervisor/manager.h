/* manager.h: the supervisor. One sd-event loop, no threads: config,
 * services and their timers, the worker slots (max_workers), signals
 * (SIGTERM, SIGINT stop; SIGHUP reloads), sd_notify READY/STATUS/WATCHDOG. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config/config.h"
#include "supervisor/worker-pool.h"

typedef struct Manager Manager;
typedef struct Service Service;

/* once: run one pass for every service (or only_service), then exit. */
int manager_new(const char *config_path, bool once, const char *only_service, Manager **ret);
Manager *manager_free(Manager *m);

/* Run until stopped (or, for once, until every pass ended). Returns the
 * process exit code. */
int manager_run(Manager *m);

sd_event *manager_event(Manager *m);
const Config *manager_config(Manager *m);

/* Like worker_start(), but waits for one of max_workers slots: *slot is set
 * when the worker actually starts and cleared when it ends. */
int manager_start_worker(Manager *m, const char *step, json_t *job, uint64_t timeout_usec,
                         worker_progress_cb progress, worker_done_cb done, void *userdata, Worker **slot);

/* A service's activity changed: refresh STATUS=. */
void manager_status_changed(Manager *m);

typedef struct PipelineResult PipelineResult;

/* Pipeline number seq of service s ended. */
void manager_pipeline_ended(Manager *m, Service *s, unsigned seq, const PipelineResult *res);

/* Pipeline number seq of service s is at step (bytes of total, when known). */
void manager_pipeline_progress(Manager *m, Service *s, unsigned seq, const char *step, uint64_t bytes,
                               uint64_t total);

/* For the control socket. */
Service *manager_find_service(Manager *m, const char *name);
size_t manager_n_services(Manager *m);
Service *manager_service(Manager *m, size_t i);
uint64_t manager_start_usec(Manager *m);
void manager_reload(Manager *m, char **ret_error);
