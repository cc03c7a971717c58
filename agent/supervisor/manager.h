/* manager.h: the supervisor. One sd-event loop, no threads: config,
 * services and their timers, the worker pool (max_workers), signals
 * (SIGTERM, SIGINT stop; SIGHUP reloads), sd_notify READY/STATUS/WATCHDOG.
 * Nothing below it calls it: services report through callbacks, the
 * control socket through the dispatch callback main.c hands in. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config/config.h"
#include "supervisor/control.h"
#include "supervisor/service.h"

typedef struct Manager Manager;

/* once: run one pass for every service (or only_service), then exit.
 * dispatch answers the control socket's requests, with the Manager as
 * userdata (control-commands.c: it calls the manager, not the reverse). */
int manager_new(const char *config_path, bool once, const char *only_service, control_dispatch_cb dispatch,
                Manager **ret);
Manager *manager_free(Manager *m);

/* Run until stopped (or, for once, until every pass ended). Returns the
 * process exit code. */
int manager_run(Manager *m);

/* For the control socket. */
Service *manager_find_service(Manager *m, const char *name);
size_t manager_n_services(Manager *m);
Service *manager_service(Manager *m, size_t i);
uint64_t manager_start_usec(Manager *m);
void manager_reload(Manager *m, char **ret_error);
