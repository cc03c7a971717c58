/* step-restart.c: restart the service's unit through systemd's D-Bus API
 * and prove it healthy (docs/design.md, "Steps"). Subscribes to JobRemoved
 * before RestartUnit so the job's end cannot be missed; then the unit must stay
 * active with NRestarts unchanged for health_settle, and health_url must
 * answer 2xx and health_command exit 0, all within health_timeout. Root. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <systemd/sd-bus.h>

#include "common/command.h"
#include "common/log.h"
#include "worker/steps.h"
#include "common/util.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER SD_DEST ".Manager"
#define HEALTH_POLL_USEC (250 * USEC_PER_MSEC)
#define HEALTH_RETRY_USEC (500 * USEC_PER_MSEC)
/* systemd's refusals that are the host's fault, not the release's */
#define SD_ERROR_NO_SUCH_UNIT SD_DEST ".NoSuchUnit"
#define SD_ERROR_UNIT_MASKED SD_DEST ".UnitMasked"

typedef struct Restart {
        const WorkerJob *job;
        const RestartJob *rj;
        const char *unit;
        sd_bus *bus;
        char *unit_path;
        const char *job_path;          /* ours, from RestartUnit's reply */
        char *job_result;              /* from JobRemoved */
        uint32_t n_restarts;
        bool host_fault;               /* systemd refused: the unit is missing or masked */
        char detail[320];
} Restart;

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Restart *x = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;
        if (x->job_path && streq(path, x->job_path) && !x->job_result)
                x->job_result = strdup(result);
        return 0;
}

static const char *restart_method(RestartMode mode) {
        switch (mode) {
        case RESTART_RELOAD: return "ReloadUnit";
        case RESTART_TRY_RESTART: return "TryRestartUnit";
        default: return "RestartUnit";
        }
}

static int get_string(Restart *x, const char *iface, const char *prop, char **ret) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r = sd_bus_get_property_string(x->bus, SD_DEST, x->unit_path, iface, prop, &e, ret);

        sd_bus_error_free(&e);
        return r;
}

static int get_n_restarts(Restart *x, uint32_t *ret) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r = sd_bus_get_property_trivial(x->bus, SD_DEST, x->unit_path, SD_DEST ".Service", "NRestarts", &e,
                                            'u', ret);

        sd_bus_error_free(&e);
        return r;
}

/* "ActiveState=failed (Result=exit-code)" for messages. */
static void describe_unit(Restart *x, char *buf, size_t size) {
        _cleanup_free_ char *active = NULL, *sub = NULL, *result = NULL;

        (void) get_string(x, SD_DEST ".Unit", "ActiveState", &active);
        (void) get_string(x, SD_DEST ".Unit", "SubState", &sub);
        (void) get_string(x, SD_DEST ".Service", "Result", &result);
        snprintf(buf, size, "ActiveState=%s SubState=%s Result=%s", strempty(active), strempty(sub),
                 strempty(result));
}

static int connect_bus(Restart *x, char **ret_error) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_open_system(&x->bus);
        if (r < 0)
                return error_set(ret_error, r, "cannot connect to the system bus: %s", strerror(-r));
        r = sd_bus_match_signal(x->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "JobRemoved", on_job_removed, x);
        if (r >= 0)
                r = sd_bus_call_method(x->bus, SD_DEST, SD_PATH, SD_MANAGER, "Subscribe", &e, NULL, NULL);
        if (r >= 0)
                r = sd_bus_call_method(x->bus, SD_DEST, SD_PATH, SD_MANAGER, "LoadUnit", &e, &reply, "s", x->unit);
        if (r >= 0 && (r = sd_bus_message_read(reply, "o", &path)) >= 0 && !(x->unit_path = strdup(path)))
                r = -ENOMEM;
        if (r < 0)
                error_set(ret_error, r, "%s: %s", x->unit, e.message ?: strerror(-r));
        sd_bus_message_unref(reply);
        sd_bus_error_free(&e);
        return r;
}

static int wait_for_job(Restart *x, uint64_t deadline, char **ret_error) {
        while (!x->job_result) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                int r;
                if (now >= deadline)
                        return error_set(ret_error, -ETIMEDOUT, "%s: the restart job did not finish in time", x->unit);
                r = sd_bus_process(x->bus, NULL);
                if (r < 0)
                        return error_set(ret_error, r, "%s: bus: %s", x->unit, strerror(-r));
                if (r == 0)
                        (void) sd_bus_wait(x->bus, deadline - now);
        }
        return 0;
}

static int restart_unit(Restart *x, uint64_t deadline, char **ret_error) {
        const char *method = restart_method(x->rj->restart_mode);
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        char unit_state[160];
        int r;

        r = sd_bus_call_method(x->bus, SD_DEST, SD_PATH, SD_MANAGER, method, &e, &reply, "ss", x->unit, "replace");
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &x->job_path);
        if (r < 0) {
                /* masked or removed after the check before the swap: the
                 * release is rolled back but not blamed */
                x->host_fault = sd_bus_error_has_name(&e, SD_ERROR_NO_SUCH_UNIT) ||
                                sd_bus_error_has_name(&e, SD_ERROR_UNIT_MASKED);
                error_set(ret_error, r, "%s %s: %s", method, x->unit, e.message ?: strerror(-r));
                sd_bus_error_free(&e);
                sd_bus_message_unref(reply);
                return r;
        }
        r = wait_for_job(x, deadline, ret_error);
        x->job_path = NULL;
        sd_bus_message_unref(reply); /* job_path pointed into it */
        if (r < 0)
                return r;
        if (!streq(x->job_result, "done")) {
                describe_unit(x, unit_state, sizeof unit_state);
                return error_set(ret_error, -EIO, "%s: %s job %s (%s)", x->unit, method, x->job_result, unit_state);
        }
        return 0;
}

/* The unit must stay active, without restarts, for health_settle. */
static int settle(Restart *x, uint64_t settle_usec, char **ret_error) {
        uint64_t end = now_usec(CLOCK_MONOTONIC) + settle_usec;
        char unit_state[160];
        int r;

        r = get_n_restarts(x, &x->n_restarts);
        if (r < 0)
                x->n_restarts = 0; /* not a service unit */
        for (;;) {
                _cleanup_free_ char *active = NULL;
                uint32_t n = x->n_restarts;
                if (get_string(x, SD_DEST ".Unit", "ActiveState", &active) < 0 || !streq(active, "active") ||
                    (get_n_restarts(x, &n) >= 0 && n != x->n_restarts)) {
                        describe_unit(x, unit_state, sizeof unit_state);
                        return error_set(ret_error, -EIO, "%s did not stay up after the restart (%s, NRestarts %u -> %u)",
                                         x->unit, unit_state, x->n_restarts, n);
                }
                if (now_usec(CLOCK_MONOTONIC) >= end)
                        return 0;
                (void) usleep(HEALTH_POLL_USEC);
        }
}

static size_t discard_body(char *p, size_t size, size_t n, void *userdata) {
        return size * n;
}

/* One GET: 0 on 2xx, else -EIO with the reason in buf. */
static int probe_url(const char *url, uint64_t timeout_usec, char *buf, size_t size) {
        CURL *c = curl_easy_init();
        long status = 0;
        CURLcode cc;

        if (!c)
                return -ENOMEM;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) (timeout_usec / USEC_PER_MSEC) + 1);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
        cc = curl_easy_perform(c);
        if (cc == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        if (cc != CURLE_OK)
                snprintf(buf, size, "%s", curl_easy_strerror(cc));
        else
                snprintf(buf, size, "HTTP %ld", status);
        return cc == CURLE_OK && status >= 200 && status < 300 ? 0 : -EIO;
}

static int probe_command(Restart *x, const char *cmd, uint64_t timeout_usec, char *buf, size_t size) {
        _cleanup_free_ char *e_sha = strdup_printf("DEPLOY_SHA=%s", x->rj->sha);
        _cleanup_free_ char *e_svc = strdup_printf("DEPLOY_SERVICE=%s", x->job->service);
        _cleanup_free_ char *cwd = strdup_printf("%s/current", x->rj->root);
        char *env[] = { e_sha, e_svc, NULL };
        int status = 0, r;

        if (!e_sha || !e_svc || !cwd)
                return -ENOMEM;
        r = command_run(cmd, cwd, env, timeout_usec, &status);
        if (r == -ECHILD)
                command_describe_status(status, buf, size);
        else if (r < 0)
                snprintf(buf, size, "%s", r == -ETIMEDOUT ? "timed out" : strerror(-r));
        return r;
}

static int unit_still_up(Restart *x, char **ret_error) {
        uint32_t n = x->n_restarts;

        if (!x->unit_path)
                return 0;
        if (get_n_restarts(x, &n) >= 0 && n != x->n_restarts)
                return error_set(ret_error, -EIO, "%s restarted during the health check (NRestarts %u -> %u)",
                                 x->unit, x->n_restarts, n);
        return settle(x, 0, ret_error);
}

/* Retry the probes until both pass or the deadline; the last failure is
 * the reason given. */
static int probe_until(Restart *x, uint64_t deadline, char **ret_error) {
        const char *url = x->rj->health_url, *cmd = x->rj->health_command;
        char why[256] = "";

        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                int r;
                if (now >= deadline)
                        return error_set(ret_error, -ETIMEDOUT, "health check failed within health_timeout: %s", why);
                r = unit_still_up(x, ret_error);
                if (r < 0)
                        return r;
                r = isempty(url) ? 0 : probe_url(url, deadline - now, why, sizeof why);
                if (r >= 0 && !isempty(url))
                        snprintf(x->detail, sizeof x->detail, "health_url %s", why);
                if (r >= 0 && !isempty(cmd))
                        r = probe_command(x, cmd, deadline - now, why, sizeof why);
                if (r >= 0)
                        return 0;
                if (!isempty(url) && strstr(why, "HTTP"))
                        log_debug("health_url %s answered %s", url, why);
                (void) usleep(HEALTH_RETRY_USEC);
        }
}

int step_restart(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const RestartJob *j = &job->restart;
        Restart x = { .job = job, .rj = j, .unit = j->unit };
        bool restart = x.unit && j->restart_mode != RESTART_NONE;
        uint64_t deadline;
        int r = 0;

        if (x.unit)
                r = connect_bus(&x, ret_error);
        bus = x.bus;
        if (r >= 0)
                r = worker_drop_privileges(w);
        deadline = now_usec(CLOCK_MONOTONIC) + j->health_timeout_usec;
        if (r >= 0 && restart)
                r = restart_unit(&x, deadline, ret_error);
        if (r >= 0 && x.unit)
                r = settle(&x, j->health_settle_usec, ret_error);
        if (r >= 0)
                r = probe_until(&x, deadline, ret_error);
        if (r >= 0) {
                ret->restart = (RestartResult) {
                        .sha = strdup(j->sha),
                        .detail = strdup(x.detail[0] ? x.detail : "unit active"),
                        .n_restarts = x.n_restarts,
                };
                if (!ret->restart.sha || !ret->restart.detail)
                        r = -ENOMEM;
        }
        /* a verdict on the release, unless systemd refused for the host's sake */
        if (r < 0)
                *ret_bad = !x.host_fault;
        free(x.unit_path);
        free(x.job_result);
        return r;
}

/* "Unit U is masked." from the unit's LoadError, for the message. */
static void load_error(sd_bus *bus, const char *path, char *buf, size_t size) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *name = NULL, *msg = NULL;

        if (sd_bus_get_property(bus, SD_DEST, path, SD_DEST ".Unit", "LoadError", &e, &reply, "(ss)") >= 0)
                (void) sd_bus_message_read(reply, "(ss)", &name, &msg);
        snprintf(buf, size, "%s", !isempty(msg) ? msg : !isempty(name) ? name : "no reason given");
        sd_bus_message_unref(reply);
        sd_bus_error_free(&e);
}

/* LoadUnit answers for a missing or masked unit too, with a unit object
 * whose LoadState says which. These states make RestartUnit fail. */
static bool load_state_restartable(const char *state) {
        return !streq(state, "not-found") && !streq(state, "masked") && !streq(state, "bad-setting") &&
               !streq(state, "error");
}

int restart_check_unit(const char *unit, char **ret_error) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *state = NULL;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path = NULL;
        char why[160];
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return error_set(ret_error, r, "unit %s: cannot connect to the system bus: %s", unit, strerror(-r));
        r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "LoadUnit", &e, &reply, "s", unit);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0)
                r = sd_bus_get_property_string(bus, SD_DEST, path, SD_DEST ".Unit", "LoadState", &e, &state);
        if (r < 0) {
                error_set(ret_error, r, "unit %s: LoadUnit: %s", unit, e.message ?: strerror(-r));
        } else if (!load_state_restartable(state)) {
                load_error(bus, path, why, sizeof why);
                r = error_set(ret_error, streq(state, "not-found") ? -ENOENT : -ENOEXEC,
                              "unit %s cannot be restarted: LoadState=%s (%s)", unit, state, why);
        }
        sd_bus_message_unref(reply);
        sd_bus_error_free(&e);
        return r;
}
