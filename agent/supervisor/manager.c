/* manager.c: the supervisor's event loop. It owns the config, the
 * services, the worker pool and the signals; it never blocks and never
 * parses untrusted bytes: all of that happens in workers. */
#define _GNU_SOURCE
#include "supervisor/manager.h"

#include <signal.h>
#include <sys/random.h>
#include <systemd/sd-daemon.h>

#include "supervisor/control.h"
#include "common/log.h"
#include "supervisor/pipeline.h"
#include "supervisor/service-poll.h"
#include "supervisor/worker-pool.h"
#include "common/util.h"

struct Manager {
        sd_event *event;
        char *config_path;
        Config *cfg;
        Config **retired;              /* replaced by reloads, still in use */
        size_t n_retired;
        Service **services;
        size_t n_services;
        WorkerPool *pool;
        ServiceCallbacks callbacks;    /* services report here */
        bool once;
        char *only_service;
        unsigned once_pending, once_failed;
        bool stopping;
        Control *control;              /* NULL for once */
        uint64_t start_usec;           /* realtime */
};

/* ---- status ---- */

static void status_changed(Manager *m) {
        char buf[1024];
        size_t n = 0;

        if (m->once)
                return;
        for (size_t i = 0; i < m->n_services && n < sizeof buf; i++)
                n += (size_t) snprintf(buf + n, sizeof buf - n, "%s%s: %s", i ? "; " : "", m->services[i]->name,
                                       m->services[i]->activity);
        (void) sd_notifyf(false, "STATUS=%s", buf);
}

/* ---- services ---- */

static int add_service(Manager *m, const ServiceConfig *cfg, Service **ret) {
        /* the service keeps the config it came from: a reload makes a new one */
        ServiceContext ctx = {
                .event = m->event, .workers = worker_pool_runner(m->pool), .config = m->cfg,
                .callbacks = &m->callbacks,
        };
        Service **n;
        Service *s;
        int r;

        r = service_new(&ctx, cfg, &s);
        if (r < 0)
                return r;
        n = reallocarray(m->services, m->n_services + 1, sizeof *n);
        if (!n)
                return service_free(s), -ENOMEM;
        m->services = n;
        m->services[m->n_services++] = s;
        if (ret)
                *ret = s;
        return 0;
}

static void remove_service_at(Manager *m, size_t i) {
        service_free(m->services[i]);
        memmove(m->services + i, m->services + i + 1, (m->n_services - i - 1) * sizeof *m->services);
        m->n_services--;
}

static size_t service_index(Manager *m, const Service *s) {
        for (size_t i = 0; i < m->n_services; i++)
                if (m->services[i] == s)
                        return i;
        abort();
}

static bool any_busy(Manager *m) {
        for (size_t i = 0; i < m->n_services; i++)
                if (m->services[i]->pipeline)
                        return true;
        return false;
}

static void free_retired(Manager *m) {
        for (size_t i = 0; i < m->n_retired; i++)
                config_free(m->retired[i]);
        free(m->retired);
        m->retired = NULL;
        m->n_retired = 0;
}

/* The first poll lands anywhere in the jitter window, so hosts started
 * together spread out from the start; a recovery starts at once. */
static void schedule_first(Manager *m, Service *s) {
        const AgentConfig *a = &m->cfg->agent;
        uint64_t window = a->poll_interval_usec / 100 * a->poll_jitter_percent, rnd = 0;

        if (m->once)
                return;
        if (pipeline_needs_recovery(s->state) || window == 0 ||
            getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                rnd = 0;
        (void) service_schedule(s, window ? rnd % window : 0);
}

/* A new or changed service is built from the new config, its state
 * reloaded from disk. */
static void start_service(Manager *m, const ServiceConfig *cfg) {
        Service *s;

        if (add_service(m, cfg, &s) < 0)
                log_error("%s: not running after the reload", cfg->name);
        else
                schedule_first(m, s);
}

static int retire_config(Manager *m, Config *cfg) {
        Config **n = reallocarray(m->retired, m->n_retired + 1, sizeof *n);

        if (!n)
                return -ENOMEM;
        m->retired = n;
        m->retired[m->n_retired++] = cfg;
        return 0;
}

static void apply_reload(Manager *m) {
        for (size_t i = m->n_services; i-- > 0;) {
                Service *s = m->services[i];
                const ServiceConfig *cfg = config_find_service(m->cfg, s->name);
                if (s->pipeline) {
                        s->removed = !cfg;
                        s->reload_pending = cfg != NULL;
                } else if (!cfg) {
                        log_info("%s: removed from the configuration", s->name);
                        remove_service_at(m, i);
                } else {
                        remove_service_at(m, i);
                        start_service(m, cfg);
                }
        }
        for (size_t i = 0; i < m->cfg->n_services; i++) {
                const ServiceConfig *cfg = &m->cfg->services[i];
                bool known = false;
                for (size_t j = 0; j < m->n_services; j++)
                        known = known || streq(m->services[j]->name, cfg->name);
                if (!known) {
                        log_info("%s: added by the reload", cfg->name);
                        start_service(m, cfg);
                }
        }
}

void manager_reload(Manager *m, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        Config *cfg = NULL;
        int r;

        r = config_load(m->config_path, &cfg, &error);
        if (r < 0) {
                log_error("reload: %s; keeping the running configuration", error ?: strerror(-r));
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return;
        }
        if (retire_config(m, m->cfg) < 0) {
                config_free(cfg);
                log_error("reload: out of memory; keeping the running configuration");
                return;
        }
        m->cfg = cfg;
        log_set_max_level(cfg->agent.log_level);
        worker_pool_set_max(m->pool, cfg->agent.max_workers);
        apply_reload(m);
        if (!any_busy(m))
                free_retired(m);
        log_event(LOG_INFO, LOG_MID_RELOADED, "reloaded %s: %zu service%s", m->config_path, cfg->n_services,
                  cfg->n_services == 1 ? "" : "s");
        status_changed(m);
}

static void on_activity_changed(Service *s, void *userdata) {
        status_changed(userdata);
}

static void on_pipeline_progress(Service *s, unsigned seq, const char *step, uint64_t bytes, uint64_t total,
                                 void *userdata) {
        Manager *m = userdata;

        if (m->control)
                control_pipeline_progress(m->control, s->name, seq, step, bytes, total);
}

static void on_pipeline_ended(Service *s, unsigned seq, const PipelineResult *res, void *userdata) {
        Manager *m = userdata;
        size_t i = service_index(m, s);

        if (m->once) {
                m->once_failed += res->r < 0;
                if (--m->once_pending == 0)
                        (void) sd_event_exit(m->event, m->once_failed ? 1 : 0);
                return;
        }
        if (m->control)
                control_pipeline_ended(m->control, s->name, seq, res);
        if (m->stopping) {
                if (!any_busy(m))
                        (void) sd_event_exit(m->event, 0);
                return;
        }
        if (s->removed) {
                log_info("%s: removed from the configuration", s->name);
                remove_service_at(m, i);
        } else if (s->reload_pending && s->pending_kind == _PIPELINE_KIND_NONE) {
                const ServiceConfig *cfg = config_find_service(m->cfg, s->name);
                remove_service_at(m, i);
                if (cfg)
                        start_service(m, cfg);
        } else
                service_next(s);
        if (m->n_retired > 0 && !any_busy(m))
                free_retired(m);
}

Service *manager_find_service(Manager *m, const char *name) {
        for (size_t i = 0; name && i < m->n_services; i++)
                if (streq(m->services[i]->name, name))
                        return m->services[i];
        return NULL;
}

size_t manager_n_services(Manager *m) {
        return m->n_services;
}

Service *manager_service(Manager *m, size_t i) {
        return i < m->n_services ? m->services[i] : NULL;
}

uint64_t manager_start_usec(Manager *m) {
        return m->start_usec;
}

/* ---- signals ---- */

static void manager_stop(Manager *m) {
        if (m->stopping)
                return;
        m->stopping = true;
        log_event(LOG_INFO, LOG_MID_STOPPED, "stopping: %s", any_busy(m) ? "telling workers to stop" : "idle");
        (void) sd_notify(false, "STOPPING=1");
        for (size_t i = 0; i < m->n_services; i++) {
                m->services[i]->timer = sd_event_source_disable_unref(m->services[i]->timer);
                if (m->services[i]->pipeline)
                        pipeline_stop(m->services[i]->pipeline);
        }
        worker_pool_shutdown(m->pool);
        if (!any_busy(m))
                (void) sd_event_exit(m->event, 0);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        switch (si->ssi_signo) {
        case SIGHUP:
                (void) sd_notify(false, "RELOADING=1");
                manager_reload(m, NULL);
                (void) sd_notify(false, "READY=1");
                break;
#ifdef DEPLOY_AGENT_DEBUG
        case SIGUSR2:
                /* debug builds only: stall the loop so the watchdog test can see a restart */
                log_warning("debug: stalling the event loop on SIGUSR2");
                for (;;)
                        pause();
#endif
        default:
                log_info("received SIG%s", sigabbrev_np((int) si->ssi_signo) ?: "?");
                manager_stop(m);
        }
        return 0;
}

static int setup_signals(Manager *m) {
        static const int sigs[] = {
                SIGTERM, SIGINT, SIGHUP,
#ifdef DEPLOY_AGENT_DEBUG
                SIGUSR2,
#endif
        };
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaddset(&mask, sigs[i]);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++) {
                if (m->once && sigs[i] == SIGHUP)
                        continue;
                r = sd_event_add_signal(m->event, NULL, sigs[i], on_signal, m);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- life cycle ---- */

static int start_services(Manager *m) {
        for (size_t i = 0; i < m->cfg->n_services; i++) {
                const ServiceConfig *cfg = &m->cfg->services[i];
                Service *s = NULL;
                if (m->only_service && !streq(cfg->name, m->only_service))
                        continue;
                if (add_service(m, cfg, &s) < 0) {
                        m->once_failed++;
                        continue;
                }
                schedule_first(m, s);
        }
        return 0;
}

int manager_new(const char *config_path, bool once, const char *only_service, control_dispatch_cb dispatch,
                Manager **ret) {
        _cleanup_free_ char *error = NULL;
        Manager *m = calloc(1, sizeof *m);
        int r;

        if (!m)
                return -ENOMEM;
        m->once = once;
        m->callbacks = (ServiceCallbacks) {
                .activity_changed = on_activity_changed, .pipeline_progress = on_pipeline_progress,
                .pipeline_ended = on_pipeline_ended, .userdata = m,
        };
        m->start_usec = now_usec(CLOCK_REALTIME);
        m->config_path = strdup(config_path);
        m->only_service = only_service ? strdup(only_service) : NULL;
        if (!m->config_path || (only_service && !m->only_service))
                return manager_free(m), -ENOMEM;
        r = config_load(config_path, &m->cfg, &error);
        if (r < 0) {
                log_error("%s", error ?: strerror(-r));
                manager_free(m);
                return -EINVAL;
        }
        log_set_max_level(m->cfg->agent.log_level);
        if (m->cfg->n_services == 0)
                log_warning("%s: no [service \"NAME\"] section, nothing to deploy until one is added", config_path);
        if (only_service && !config_find_service(m->cfg, only_service)) {
                log_error("unknown service \"%s\"", only_service);
                manager_free(m);
                return -ENOENT;
        }
        r = sd_event_new(&m->event);
        if (r >= 0)
                r = worker_pool_new(m->event, m->cfg->agent.max_workers, &m->pool);
        if (r >= 0)
                r = setup_signals(m);
        if (r >= 0 && !once)
                r = sd_event_set_watchdog(m->event, true);
        if (r >= 0 && !once)
                r = control_new(m->event, &m->cfg->agent, dispatch, m, &m->control);
        if (r < 0) {
                log_error_errno(r, "setting up the event loop: %m");
                return manager_free(m), r;
        }
        *ret = m;
        return 0;
}

static void run_once(Manager *m) {
        for (size_t i = 0; i < m->n_services; i++)
                m->once_pending++;
        for (size_t i = 0; i < m->n_services; i++) {
                Service *s = m->services[i];
                unsigned seq = s->seq;
                int r = service_poll(s);
                if (r < 0)
                        m->once_failed++;
                /* nothing started (paused, pinned): that service is done; one
                 * that started and already ended has counted itself */
                if (r < 0 || s->seq == seq)
                        m->once_pending--;
        }
        if (m->once_pending == 0)
                (void) sd_event_exit(m->event, m->once_failed ? 1 : 0);
}

int manager_run(Manager *m) {
        int r;

        start_services(m);
        if (m->once)
                run_once(m);
        else {
                log_event(LOG_INFO, LOG_MID_STARTED, "running %zu service%s", m->n_services, m->n_services == 1 ? "" : "s");
                (void) sd_notify(false, "READY=1");
                status_changed(m);
        }
        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "event loop: %m"), 1;
        return m->once && m->once_failed ? 1 : r;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        worker_pool_free(m->pool);
        for (size_t i = 0; i < m->n_services; i++)
                service_free(m->services[i]);
        free(m->services);
        control_free(m->control);
        free_retired(m);
        config_free(m->cfg);
        sd_event_unref(m->event);
        free(m->config_path);
        free(m->only_service);
        free(m);
        return NULL;
}
