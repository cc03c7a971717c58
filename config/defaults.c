/* defaults.c: the default of every deploy.ini key (deploy.ini(5)), the
 * checks that span several keys of a section, and freeing. */
#define _GNU_SOURCE
#include <syslog.h>

#include "config/config-internal.h"
#include "common/util.h"

static int set_string(char **field, const char *value) {
        char *s = NULL;

        if (value) {
                s = strdup(value);
                if (!s)
                        return -ENOMEM;
        }
        free(*field);
        *field = s;
        return 0;
}

int config_agent_defaults(AgentConfig *a) {
        *a = (AgentConfig) {
                .socket_mode = 0660,
                .poll_interval_usec = 60 * USEC_PER_SEC,
                .poll_jitter_percent = 20,
                .max_workers = 4,
                .log_level = LOG_INFO,
        };
        if (set_string(&a->state_dir, "/var/lib/deploy-agent") < 0 ||
            set_string(&a->socket, "/run/deploy-agent/control.sock") < 0 ||
            set_string(&a->admin_group, "deploy") < 0 ||
            set_string(&a->worker_user, "deploy-agent") < 0)
                return -ENOMEM;
        return 0;
}

int config_s3_defaults(S3Config *s) {
        *s = (S3Config) {
                .addressing = S3_ADDRESSING_VIRTUAL,
                .credentials = CREDENTIALS_AUTO,
                .low_speed_limit = S3_LOW_SPEED_LIMIT_DEFAULT,
                .low_speed_time_usec = S3_LOW_SPEED_TIME_DEFAULT_USEC,
        };
        return set_string(&s->region, "us-east-1");
}

int config_service_defaults(ServiceConfig *s, const char *name) {
        *s = (ServiceConfig) {
                .select = SELECT_NEWEST,
                .checksum = CHECKSUM_REQUIRED,
                .restart_mode = RESTART_RESTART,
                .health_settle_usec = 5 * USEC_PER_SEC,
                .health_timeout_usec = 60 * USEC_PER_SEC,
                .auto_rollback = true,
                .keep_releases = 5,
                .step_timeout_usec = 10 * 60 * USEC_PER_SEC,
                .max_artifact_size = UINT64_C(2) << 30,
                .max_unpacked_size = UINT64_C(8) << 30,
                .max_entries = 200000,
                .status_interval_usec = 3600 * USEC_PER_SEC,
        };
        if (set_string(&s->name, name) < 0 ||
            set_string(&s->prefix, "") < 0 ||
            set_string(&s->suffix, ".tar.gz") < 0)
                return -ENOMEM;
        return 0;
}

void config_agent_done(AgentConfig *a) {
        free(a->state_dir);
        free(a->socket);
        free(a->admin_group);
        free(a->worker_user);
        free(a->host_id);
}

/* Secrets are wiped, not just freed: a core dump should not carry them. */
void config_s3_done(S3Config *s) {
        free(s->region);
        free(s->endpoint);
        free_secret(s->access_key_id);
        free_secret(s->secret_access_key);
        free_secret(s->session_token);
}

void config_service_done(ServiceConfig *s) {
        char *strings[] = {
                s->name, s->bucket, s->prefix, s->suffix, s->pointer_key, s->public_key,
                s->root, s->owner, s->unit, s->health_url, s->health_command,
                s->pre_activate, s->post_activate, s->fleet_prefix,
        };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                free(strings[i]);
}

/* The line where key was set in this section, or the header's. */
static unsigned key_line(const SectionInfo *info, SectionKind kind, const char *key) {
        size_t i;

        if (config_item_find(kind, key, &i) && info->key_lines[i] > 0)
                return info->key_lines[i];
        return info->line;
}

/* true when key was set but refused: already reported, and its value is
 * the default, which the checks across keys must not judge. */
static bool key_failed(const SectionInfo *info, SectionKind kind, const char *key) {
        size_t i;

        return config_item_find(kind, key, &i) && info->key_failed[i];
}

_printf_(4, 5)
static int section_error(const SectionInfo *info, unsigned line, const char *key, const char *fmt, ...) {
        _cleanup_free_ char *problem = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&problem, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        info->report(info->userdata, line,
                     strdup_printf("%s:%u: [%s] %s: %s", info->path, line, info->name, key, problem));
        return 0;
}

int config_check_s3(S3Config *s, bool addressing_set, const SectionInfo *info) {
        const struct {
                const char *key;
                const char *value;
        } secrets[] = {
                { "access_key_id", s->access_key_id },
                { "secret_access_key", s->secret_access_key },
                { "session_token", s->session_token },
        };
        int r = 0;

        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(secrets); i++) {
                const char *key = secrets[i].key;

                if (key_failed(info, SECTION_S3, "credentials") || key_failed(info, SECTION_S3, key))
                        continue;
                if (s->credentials == CREDENTIALS_STATIC && !secrets[i].value && i < 2)
                        r = section_error(info, info->line, key, "required when credentials = static");
                if (s->credentials != CREDENTIALS_STATIC && secrets[i].value)
                        r = section_error(info, key_line(info, SECTION_S3, key), key,
                                          "only used with credentials = static, but credentials = %s",
                                          credentials_source_to_string(s->credentials));
        }
        if (!addressing_set)
                s->addressing = s->endpoint ? S3_ADDRESSING_PATH : S3_ADDRESSING_VIRTUAL;
        return r;
}

static int check_service_required(const ServiceConfig *s, const SectionInfo *info) {
        int r = 0;

        if (!s->bucket && !key_failed(info, SECTION_SERVICE, "bucket"))
                r = section_error(info, info->line, "bucket", "required");
        if (r >= 0 && !s->root && !key_failed(info, SECTION_SERVICE, "root"))
                r = section_error(info, info->line, "root", "required");
        if (r >= 0 && s->select == SELECT_POINTER && !s->pointer_key &&
            !key_failed(info, SECTION_SERVICE, "pointer_key"))
                r = section_error(info, key_line(info, SECTION_SERVICE, "select"),
                                  "pointer_key", "required when select = pointer");
        return r;
}

/* In newest mode the agent lists prefix at every poll: status and bad
 * markers under it would grow every listing with the fleet's size. */
static int check_fleet_prefix(const ServiceConfig *s, const SectionInfo *info) {
        if (!s->fleet_prefix || s->select != SELECT_NEWEST || key_failed(info, SECTION_SERVICE, "prefix") ||
            key_failed(info, SECTION_SERVICE, "select"))
                return 0;
        if (strncmp(s->fleet_prefix, s->prefix, strlen(s->prefix)) != 0)
                return 0;
        return section_error(info, key_line(info, SECTION_SERVICE, "fleet_prefix"), "fleet_prefix",
                             "must not lie under prefix (\"%s\") with select = newest: "
                             "every poll would list the fleet's objects", s->prefix);
}

int config_check_service(const Config *c, const ServiceConfig *s, const SectionInfo *info) {
        int r;

        r = check_service_required(s, info);
        if (r >= 0 && s->health_settle_usec > s->health_timeout_usec &&
            !key_failed(info, SECTION_SERVICE, "health_settle") &&
            !key_failed(info, SECTION_SERVICE, "health_timeout"))
                r = section_error(info, key_line(info, SECTION_SERVICE, "health_settle"),
                                  "health_settle", "must not be longer than health_timeout");
        if (r >= 0)
                r = check_fleet_prefix(s, info);
        return r;
}

bool config_service_name_is_valid(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > SERVICE_NAME_MAX || name[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", name[i]))
                        return false;
        return true;
}
