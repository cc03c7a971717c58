/* items.c: the keys of each deploy.ini section (deploy.ini(5)), how
 * each value is parsed and checked, and how it is printed back. */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <sys/un.h>

#include <pwd.h>

#include "artifact/minisign.h"
#include "artifact/rollout.h"
#include "config/config-internal.h"
#include "common/log.h"
#include "common/util.h"

#define MINUTE_USEC (60 * USEC_PER_SEC)
/* Durations and sizes travel to the workers as JSON integers (int64) and are
 * added to clocks: a year and a pebibyte are far beyond any use, and far
 * from an overflow. */
#define DURATION_MAX (365 * 86400 * USEC_PER_SEC)
#define SIZE_MAX_BYTES (UINT64_C(1) << 50)
#define S3_KEY_MAX 1024
#define UNIX_PATH_MAX_LEN (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

static int check_absolute_path(const ConfigItem *item, char *v, char **ret_problem) {
        return config_path_normalize(v, ret_problem);
}

static int check_state_dir(const ConfigItem *item, char *v, char **ret_problem) {
        int r = config_path_normalize(v, ret_problem);

        return r < 0 ? r : config_path_check_system(v, ret_problem);
}

static int check_root(const ConfigItem *item, char *v, char **ret_problem) {
        int r = check_state_dir(item, v, ret_problem);

        return r < 0 ? r : config_path_check_symlinks(v, ret_problem);
}

static bool name_is_valid(const char *s, size_t len) {
        if (len == 0 || len > 32 || s[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) s[i]) && !strchr("_.-", s[i]))
                        return false;
        return true;
}

static int check_name(const ConfigItem *item, char *v, char **ret_problem) {
        if (!name_is_valid(v, strlen(v)))
                return error_set(ret_problem, -EINVAL, "must be a user or group name, got \"%s\"", v);
        return 0;
}

/* The agent refuses to run workers or own releases as root (uid 0, by
 * whatever name or number): the point of both is to be someone else. */
static bool user_is_root(const char *name, size_t len) {
        _cleanup_free_ char *copy = strndup(name, len);
        struct passwd *pw;
        uint64_t uid;

        if (!copy)
                return false;
        if (config_parse_count(copy, &uid) >= 0)
                return uid == 0;
        if (streq(copy, "root"))
                return true;
        pw = getpwnam(copy);
        return pw && pw->pw_uid == 0;
}

static int check_worker_user(const ConfigItem *item, char *v, char **ret_problem) {
        int r = check_name(item, v, ret_problem);

        if (r >= 0 && user_is_root(v, strlen(v)))
                return error_set(ret_problem, -EINVAL, "must not be root (uid 0), got \"%s\"", v);
        return r;
}

static int check_owner(const ConfigItem *item, char *v, char **ret_problem) {
        const char *colon = strchr(v, ':');
        size_t ulen = colon ? (size_t) (colon - v) : strlen(v);

        if (!name_is_valid(v, ulen) || (colon && !name_is_valid(colon + 1, strlen(colon + 1))))
                return error_set(ret_problem, -EINVAL, "must be USER or USER:GROUP, got \"%s\"", v);
        if (user_is_root(v, ulen))
                return error_set(ret_problem, -EINVAL, "must not be root (uid 0), got \"%s\"", v);
        return 0;
}

/* The host's name in fleet object keys (status/<host_id>.json,
 * bad/<sha>/<host_id>): '_' is kept for markers like bad/<sha>/_abort. */
static int check_host_id(const ConfigItem *item, char *v, char **ret_problem) {
        if (!rollout_host_id_is_valid(v))
                return error_set(ret_problem, -EINVAL,
                                 "must be 1..64 characters of A-Z a-z 0-9 . _ - not starting with '.' or '_', "
                                 "got \"%s\"", v);
        return 0;
}

static int check_region(const ConfigItem *item, char *v, char **ret_problem) {
        for (const char *p = v; *p; p++)
                if (!islower((unsigned char) *p) && !isdigit((unsigned char) *p) && *p != '-')
                        return error_set(ret_problem, -EINVAL,
                                         "must be a region like us-east-1, got \"%s\"", v);
        return 0;
}

static int check_http_url(const ConfigItem *item, char *v, char **ret_problem) {
        const char *host = NULL;

        if (strncmp(v, "http://", 7) == 0)
                host = v + 7;
        else if (strncmp(v, "https://", 8) == 0)
                host = v + 8;
        if (!host || !*host || *host == '/')
                return error_set(ret_problem, -EINVAL,
                                 "must be an http:// or https:// URL, got \"%s\"", v);
        for (const char *p = v; *p; p++)
                if (isspace((unsigned char) *p))
                        return error_set(ret_problem, -EINVAL, "must not contain spaces, got \"%s\"", v);
        return 0;
}

/* The agent appends "/bucket/key" or the path of the request itself. */
static int check_endpoint(const ConfigItem *item, char *v, char **ret_problem) {
        int r = check_http_url(item, v, ret_problem);
        size_t n = strlen(v);

        if (r < 0)
                return r;
        while (n > 0 && v[n - 1] == '/')
                v[--n] = '\0';
        return 0;
}

static bool bucket_looks_like_ip(const char *v) {
        unsigned a, b, c, d;
        char end;

        return sscanf(v, "%u.%u.%u.%u%c", &a, &b, &c, &d, &end) == 4;
}

static int check_bucket(const ConfigItem *item, char *v, char **ret_problem) {
        size_t n = strlen(v);
        bool ok = n >= 3 && n <= 63 && isalnum((unsigned char) v[0]) &&
                  isalnum((unsigned char) v[n - 1]) && !strstr(v, "..") && !bucket_looks_like_ip(v);

        for (size_t i = 0; ok && i < n; i++)
                ok = islower((unsigned char) v[i]) || isdigit((unsigned char) v[i]) ||
                     v[i] == '.' || v[i] == '-';
        if (!ok)
                return error_set(ret_problem, -EINVAL,
                                 "must be an S3 bucket name (3-63 characters of a-z 0-9 . -, "
                                 "starting and ending with a letter or digit), got \"%s\"", v);
        return 0;
}

static int check_object_key(const ConfigItem *item, char *v, char **ret_problem) {
        if (v[0] == '/')
                return error_set(ret_problem, -EINVAL, "must not start with '/', got \"%s\"", v);
        return 0;
}

static int check_suffix(const ConfigItem *item, char *v, char **ret_problem) {
        static const char *const suffixes[] = { ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".zip" };

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++)
                if (streq(v, suffixes[i]))
                        return 0;
        return error_set(ret_problem, -EINVAL,
                         "must be one of .tar.gz | .tgz | .tar.zst | .tar.xz | .zip, got \"%s\"", v);
}

/* One or more minisign public keys, decoded as the fetch step decodes them
 * (base64 of "Ed" + key id (8) + key (32)): a key that passes here is one
 * that fetch can verify with. */
static int check_public_key(const ConfigItem *item, char *v, char **ret_problem) {
        MinisignKey keys[MINISIGN_KEYS_MAX];
        size_t n;

        if (minisign_parse_public_keys(v, keys, &n) < 0)
                return error_set(ret_problem, -EINVAL,
                                 "must be one or more (up to %d) minisign public keys separated by blanks "
                                 "or commas (the second line of a .pub file: base64 of \"Ed\", a key id "
                                 "and an Ed25519 key), got \"%s\"", MINISIGN_KEYS_MAX, v);
        return 0;
}

static int check_unit(const ConfigItem *item, char *v, char **ret_problem) {
        const char *dot = strrchr(v, '.');
        bool ok = dot && dot != v && dot[1] && strlen(v) <= 255;

        for (const char *p = v; ok && *p; p++)
                ok = isalnum((unsigned char) *p) || strchr(":-_.\\@", *p);
        if (!ok)
                return error_set(ret_problem, -EINVAL,
                                 "must be a systemd unit name like api.service, got \"%s\"", v);
        return 0;
}

static const char *addressing_name(int v) {
        return s3_addressing_to_string((S3Addressing) v);
}
static const char *credentials_name(int v) {
        return credentials_source_to_string((CredentialsSource) v);
}
static const char *select_name(int v) {
        return select_mode_to_string((SelectMode) v);
}
static const char *checksum_name(int v) {
        return checksum_mode_to_string((ChecksumMode) v);
}
static const char *restart_name(int v) {
        return restart_mode_to_string((RestartMode) v);
}

#define A(k, f) .key = k, .offset = offsetof(AgentConfig, f)
#define S(k, f) .key = k, .offset = offsetof(S3Config, f)
#define V(k, f) .key = k, .offset = offsetof(ServiceConfig, f)

static const ConfigItem agent_items[] = {
        { A("state_dir", state_dir), ITEM_STRING, .check = check_state_dir },
        { A("socket", socket), ITEM_STRING, .check = check_absolute_path, .max = UNIX_PATH_MAX_LEN },
        { A("socket_mode", socket_mode), ITEM_MODE, .max = 0777 },
        { A("admin_group", admin_group), ITEM_STRING, ITEM_OPTIONAL, .check = check_name },
        { A("poll_interval", poll_interval_usec), ITEM_DURATION, .min = USEC_PER_SEC },
        { A("poll_jitter", poll_jitter_percent), ITEM_PERCENT },
        { A("max_workers", max_workers), ITEM_UNSIGNED, .min = 1, .max = 64 },
        { A("worker_user", worker_user), ITEM_STRING, .check = check_worker_user },
        { A("log_level", log_level), ITEM_LOG_LEVEL },
        { A("host_id", host_id), ITEM_STRING, ITEM_OPTIONAL, .check = check_host_id },
};

static const ConfigItem s3_items[] = {
        { S("region", region), ITEM_STRING, .check = check_region },
        { S("endpoint", endpoint), ITEM_STRING, ITEM_OPTIONAL, .check = check_endpoint },
        { S("addressing", addressing), ITEM_ENUM, .to_string = addressing_name },
        { S("credentials", credentials), ITEM_ENUM, .to_string = credentials_name },
        { S("access_key_id", access_key_id), ITEM_STRING, ITEM_OPTIONAL | ITEM_SECRET },
        { S("secret_access_key", secret_access_key), ITEM_STRING, ITEM_OPTIONAL | ITEM_SECRET },
        { S("session_token", session_token), ITEM_STRING, ITEM_OPTIONAL | ITEM_SECRET },
        /* bytes per second, as long as curl's CURLOPT_LOW_SPEED_LIMIT takes */
        { S("low_speed_limit", low_speed_limit), ITEM_SIZE, .min = 1, .max = INT32_MAX },
        { S("low_speed_time", low_speed_time_usec), ITEM_DURATION, .min = USEC_PER_SEC,
          .max = 600 * USEC_PER_SEC },
};

static const ConfigItem service_items[] = {
        { V("bucket", bucket), ITEM_STRING, .check = check_bucket },
        { V("prefix", prefix), ITEM_STRING, ITEM_EMPTY_OK, .check = check_object_key, .max = S3_KEY_MAX },
        { V("suffix", suffix), ITEM_STRING, .check = check_suffix },
        { V("select", select), ITEM_ENUM, .to_string = select_name },
        { V("pointer_key", pointer_key), ITEM_STRING, ITEM_OPTIONAL, .check = check_object_key, .max = S3_KEY_MAX },
        { V("min_age", min_age_usec), ITEM_DURATION },
        { V("checksum", checksum), ITEM_ENUM, .to_string = checksum_name },
        { V("public_key", public_key), ITEM_STRING, ITEM_OPTIONAL, .check = check_public_key },
        { V("root", root), ITEM_STRING, .check = check_root },
        { V("owner", owner), ITEM_STRING, ITEM_OPTIONAL, .check = check_owner },
        { V("unit", unit), ITEM_STRING, ITEM_OPTIONAL, .check = check_unit },
        { V("restart_mode", restart_mode), ITEM_ENUM, .to_string = restart_name },
        { V("health_url", health_url), ITEM_STRING, ITEM_OPTIONAL, .check = check_http_url },
        { V("health_command", health_command), ITEM_STRING, ITEM_OPTIONAL },
        { V("health_settle", health_settle_usec), ITEM_DURATION },
        { V("health_timeout", health_timeout_usec), ITEM_DURATION, .min = USEC_PER_SEC },
        { V("auto_rollback", auto_rollback), ITEM_BOOL },
        { V("keep_releases", keep_releases), ITEM_UNSIGNED, .min = 2, .max = 1000 },
        { V("pre_activate", pre_activate), ITEM_STRING, ITEM_OPTIONAL },
        { V("post_activate", post_activate), ITEM_STRING, ITEM_OPTIONAL },
        { V("step_timeout", step_timeout_usec), ITEM_DURATION, .min = USEC_PER_SEC },
        { V("max_artifact_size", max_artifact_size), ITEM_SIZE, .min = 1 },
        { V("max_unpacked_size", max_unpacked_size), ITEM_SIZE, .min = 1 },
        { V("max_entries", max_entries), ITEM_COUNT, .min = 1, .max = INT64_MAX },
        { V("fleet_prefix", fleet_prefix), ITEM_STRING, ITEM_OPTIONAL, .check = check_object_key, .max = 512 },
        { V("canary", canary), ITEM_BOOL },
        { V("status_interval", status_interval_usec), ITEM_DURATION, .min = USEC_PER_SEC },
};

_Static_assert(ELEMENTSOF(service_items) <= SECTION_ITEMS_MAX, "grow SECTION_ITEMS_MAX");

const ConfigItem *config_items(SectionKind kind, size_t *ret_n) {
        switch (kind) {
        case SECTION_AGENT:
                *ret_n = ELEMENTSOF(agent_items);
                return agent_items;
        case SECTION_S3:
                *ret_n = ELEMENTSOF(s3_items);
                return s3_items;
        case SECTION_SERVICE:
                *ret_n = ELEMENTSOF(service_items);
                return service_items;
        default:
                *ret_n = 0;
                return NULL;
        }
}

const ConfigItem *config_item_find(SectionKind kind, const char *key, size_t *ret_index) {
        size_t n;
        const ConfigItem *items = config_items(kind, &n);

        for (size_t i = 0; i < n; i++)
                if (streq(items[i].key, key)) {
                        if (ret_index)
                                *ret_index = i;
                        return &items[i];
                }
        return NULL;
}

static int parse_string(const ConfigItem *item, const char *value, char **field, char **ret_problem) {
        _cleanup_free_ char *copy = NULL;
        int r;

        if (*value == '\0' && (item->flags & ITEM_OPTIONAL)) {
                free(*field);
                *field = NULL;
                return 0;
        }
        if (*value == '\0' && !(item->flags & ITEM_EMPTY_OK))
                return error_set(ret_problem, -EINVAL, "must not be empty");
        if (item->max > 0 && strlen(value) > item->max)
                return error_set(ret_problem, -EINVAL, "must be at most %" PRIu64 " characters long", item->max);
        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        if (*copy && item->check) {
                r = item->check(item, copy, ret_problem);
                if (r < 0)
                        return r;
        }
        free(*field);
        *field = TAKE_PTR(copy);
        return 0;
}

static int parse_duration_item(const ConfigItem *item, const char *value, uint64_t *field, char **ret_problem) {
        char buf[CONFIG_FORMAT_MAX];
        uint64_t v;
        int r;

        r = config_parse_duration(value, &v);
        if (r == -ERANGE)
                return error_set(ret_problem, -ERANGE, "duration too large, got \"%s\"", value);
        if (r < 0)
                return error_set(ret_problem, -EINVAL,
                                 "must be a duration like 500ms, 30s, 5m, 1h or 2d, got \"%s\"", value);
        if (v < item->min)
                return error_set(ret_problem, -ERANGE, "must be at least %s, got \"%s\"",
                                 config_format_duration(item->min, buf), value);
        if (v > (item->max ?: DURATION_MAX))
                return error_set(ret_problem, -ERANGE, "must be at most %s, got \"%s\"",
                                 config_format_duration(item->max ?: DURATION_MAX, buf), value);
        *field = v;
        return 0;
}

static int parse_size_item(const ConfigItem *item, const char *value, uint64_t *field, char **ret_problem) {
        char buf[CONFIG_FORMAT_MAX];
        uint64_t v;
        int r;

        r = config_parse_size(value, &v);
        if (r == -ERANGE)
                return error_set(ret_problem, -ERANGE, "size too large, got \"%s\"", value);
        if (r < 0)
                return error_set(ret_problem, -EINVAL,
                                 "must be a size like 512K, 64M, 2G or 1T, got \"%s\"", value);
        if (v < item->min)
                return error_set(ret_problem, -ERANGE, "must be at least %" PRIu64 ", got \"%s\"",
                                 item->min, value);
        if (v > (item->max ?: SIZE_MAX_BYTES))
                return error_set(ret_problem, -ERANGE, "must be at most %s, got \"%s\"",
                                 config_format_size(item->max ?: SIZE_MAX_BYTES, buf), value);
        *field = v;
        return 0;
}

static int parse_number(const ConfigItem *item, const char *value, uint64_t *ret, char **ret_problem) {
        uint64_t v;
        int r;

        r = config_parse_count(value, &v);
        if (r == -EINVAL)
                return error_set(ret_problem, -EINVAL, "must be a whole number, got \"%s\"", value);
        if (r < 0 || v < item->min || v > item->max)
                return error_set(ret_problem, -ERANGE,
                                 "must be between %" PRIu64 " and %" PRIu64 ", got \"%s\"",
                                 item->min, item->max, value);
        *ret = v;
        return 0;
}

static int parse_enum(const ConfigItem *item, const char *value, int *field, char **ret_problem) {
        char choices[128] = "";
        const char *name;

        for (int i = 0; (name = item->to_string(i)); i++) {
                if (streq(name, value)) {
                        *field = i;
                        return 0;
                }
                if (i > 0)
                        strncat(choices, " | ", sizeof(choices) - strlen(choices) - 1);
                strncat(choices, name, sizeof(choices) - strlen(choices) - 1);
        }
        return error_set(ret_problem, -EINVAL, "must be one of %s, got \"%s\"", choices, value);
}

static int parse_small(const ConfigItem *item, const char *value, void *field, char **ret_problem) {
        uint64_t u = 0;
        mode_t m;
        int r;

        switch (item->type) {
        case ITEM_UNSIGNED:
                r = parse_number(item, value, &u, ret_problem);
                if (r >= 0)
                        *(unsigned *) field = (unsigned) u;
                return r;
        case ITEM_PERCENT:
                r = config_parse_percent(value, field);
                return r < 0 ? error_set(ret_problem, r, "must be a percentage 0..100 like 20%%, got \"%s\"", value) : 0;
        case ITEM_MODE:
                r = config_parse_mode(value, &m);
                if (r < 0 || m > item->max)
                        return error_set(ret_problem, -EINVAL,
                                         "must be an octal mode no greater than %04" PRIo64 " like 0660, got \"%s\"",
                                         item->max, value);
                *(mode_t *) field = m;
                return 0;
        case ITEM_BOOL:
                r = config_parse_bool(value, field);
                return r < 0 ? error_set(ret_problem, r, "must be yes or no, got \"%s\"", value) : 0;
        case ITEM_LOG_LEVEL:
                r = log_level_from_string(value);
                if (r < 0)
                        return error_set(ret_problem, r, "must be one of error | warning | notice | "
                                         "info | debug, got \"%s\"", value);
                *(int *) field = r;
                return 0;
        default:
                return -EINVAL;
        }
}

int config_item_parse(const ConfigItem *item, const char *value, void *base, char **ret_problem) {
        void *field = (uint8_t *) base + item->offset;

        switch (item->type) {
        case ITEM_STRING:
                return parse_string(item, value, field, ret_problem);
        case ITEM_DURATION:
                return parse_duration_item(item, value, field, ret_problem);
        case ITEM_SIZE:
                return parse_size_item(item, value, field, ret_problem);
        case ITEM_COUNT:
                return parse_number(item, value, field, ret_problem);
        case ITEM_ENUM:
                return parse_enum(item, value, field, ret_problem);
        default:
                return parse_small(item, value, field, ret_problem);
        }
}

static int format_string(const ConfigItem *item, const char *s, char **ret) {
        if (s && (item->flags & ITEM_SECRET))
                s = "(set)";
        *ret = config_value_quote(strempty(s));
        return *ret ? 0 : -ENOMEM;
}

int config_item_format(const ConfigItem *item, const void *base, char **ret) {
        const void *field = (const uint8_t *) base + item->offset;
        char buf[CONFIG_FORMAT_MAX];
        const char *s = buf;

        switch (item->type) {
        case ITEM_STRING:
                return format_string(item, *(char *const *) field, ret);
        case ITEM_DURATION:
                config_format_duration(*(const uint64_t *) field, buf);
                break;
        case ITEM_SIZE:
                config_format_size(*(const uint64_t *) field, buf);
                break;
        case ITEM_COUNT:
                snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *) field);
                break;
        case ITEM_UNSIGNED:
                snprintf(buf, sizeof(buf), "%u", *(const unsigned *) field);
                break;
        case ITEM_PERCENT:
                snprintf(buf, sizeof(buf), "%u%%", *(const unsigned *) field);
                break;
        case ITEM_MODE:
                snprintf(buf, sizeof(buf), "%04o", (unsigned) *(const mode_t *) field);
                break;
        case ITEM_BOOL:
                s = *(const bool *) field ? "yes" : "no";
                break;
        case ITEM_ENUM:
                s = item->to_string(*(const int *) field);
                break;
        case ITEM_LOG_LEVEL:
                s = log_level_to_string(*(const int *) field);
                break;
        }
        *ret = strdup(strempty(s));
        return *ret ? 0 : -ENOMEM;
}
