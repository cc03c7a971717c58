/* config.h: deploy.ini (deploy.ini(5)) loaded into typed, validated
 * structs. Shared by deploy-agent and deployctl. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

typedef enum { S3_ADDRESSING_VIRTUAL, S3_ADDRESSING_PATH, _S3_ADDRESSING_MAX } S3Addressing;
typedef enum { CREDENTIALS_AUTO, CREDENTIALS_ENV, CREDENTIALS_IMDS, CREDENTIALS_STATIC, _CREDENTIALS_MAX } CredentialsSource;
typedef enum { SELECT_NEWEST, SELECT_POINTER, _SELECT_MAX } SelectMode;
typedef enum { CHECKSUM_REQUIRED, CHECKSUM_OFF, _CHECKSUM_MAX } ChecksumMode;
typedef enum { RESTART_RESTART, RESTART_RELOAD, RESTART_TRY_RESTART, RESTART_NONE, _RESTART_MAX } RestartMode;

const char *s3_addressing_to_string(S3Addressing v);
const char *credentials_source_to_string(CredentialsSource v);
const char *select_mode_to_string(SelectMode v);
const char *checksum_mode_to_string(ChecksumMode v);
const char *restart_mode_to_string(RestartMode v);
/* The reverse: the enum value, or -EINVAL. */
int s3_addressing_from_string(const char *s);
int credentials_source_from_string(const char *s);
int select_mode_from_string(const char *s);
int checksum_mode_from_string(const char *s);
int restart_mode_from_string(const char *s);

typedef struct AgentConfig {
        char *state_dir;
        char *socket;
        mode_t socket_mode;
        char *admin_group;
        uint64_t poll_interval_usec;
        unsigned poll_jitter_percent;      /* 0..100 */
        unsigned max_workers;
        char *worker_user;
        int log_level;                     /* LOG_ERR .. LOG_DEBUG */
        char *host_id;                     /* NULL: IMDS instance id, else /etc/machine-id */
} AgentConfig;

typedef struct S3Config {
        char *region;
        char *endpoint;                    /* NULL: AWS, derived from region */
        S3Addressing addressing;           /* default: path when endpoint set */
        CredentialsSource credentials;
        char *access_key_id;
        char *secret_access_key;
        char *session_token;
        uint64_t low_speed_limit;          /* bytes/s; 0: S3_LOW_SPEED_LIMIT_DEFAULT */
        uint64_t low_speed_time_usec;      /* 0: S3_LOW_SPEED_TIME_DEFAULT_USEC */
} S3Config;

/* Slower than low_speed_limit for low_speed_time: the transfer has stalled
 * (a slow loris, a server that never answers) and is retried. */
#define S3_LOW_SPEED_LIMIT_DEFAULT UINT64_C(1024)
#define S3_LOW_SPEED_TIME_DEFAULT_USEC (UINT64_C(30) * 1000000)

typedef struct ServiceConfig {
        char *name;
        char *bucket;
        char *prefix;                      /* may be "" */
        char *suffix;                      /* .tar.gz .tar.zst .tar.xz .zip */
        SelectMode select;
        char *pointer_key;
        uint64_t min_age_usec;
        ChecksumMode checksum;
        char *public_key;                  /* NULL: no signature required */
        char *root;                        /* absolute */
        char *owner;                       /* NULL: worker_user */
        char *unit;
        RestartMode restart_mode;
        char *health_url;
        char *health_command;
        uint64_t health_settle_usec;
        uint64_t health_timeout_usec;
        bool auto_rollback;
        unsigned keep_releases;            /* >= 2 */
        char *pre_activate;
        char *post_activate;
        uint64_t step_timeout_usec;
        uint64_t max_artifact_size;
        uint64_t max_unpacked_size;
        uint64_t max_entries;
        char *fleet_prefix;                /* NULL: no fleet features */
        bool canary;                       /* always in a rollout's first wave */
        uint64_t status_interval_usec;     /* heartbeat of the status object */
} ServiceConfig;

typedef struct Config {
        char *path;
        AgentConfig agent;
        S3Config s3;
        ServiceConfig *services;
        size_t n_services;
} Config;

#define CONFIG_DEFAULT_PATH "/etc/deploy-agent/deploy.ini"

/* Load and validate path. On failure returns -errno (-EINVAL for content
 * errors) and, when ret_error is not NULL, a malloc'd message with every
 * problem of the file, one per line, sorted by line, each naming file,
 * line, key and the problem: "deploy.ini:12: [service \"api\"] root:
 * must be an absolute path". */
int config_load(const char *path, Config **ret, char **ret_error);
Config *config_free(Config *c);
static inline void config_freep(Config **c) {
        config_free(*c);
}
#define _cleanup_config_ __attribute__((cleanup(config_freep)))

const ServiceConfig *config_find_service(const Config *c, const char *name);

/* Writes the normalized config (every key, defaults filled in, secrets
 * replaced by "(set)") in deploy.ini syntax, values quoted where needed so
 * that the output loads back the same. */
int config_print(const Config *c, FILE *f);

/* Value parsers, exported for the unit tests and for deployctl's options.
 * Durations: "500ms" "30s" "5m" "1h" "2d" (a bare number is seconds).
 * Sizes: "512" "512K" "64M" "2G" "1T" (binary multiples).
 * Percentages: "20%" or "20", 0..100. Booleans: yes/no true/false on/off 1/0. */
int config_parse_duration(const char *s, uint64_t *ret_usec);
int config_parse_size(const char *s, uint64_t *ret_bytes);
int config_parse_percent(const char *s, unsigned *ret);
int config_parse_bool(const char *s, bool *ret);
int config_parse_mode(const char *s, mode_t *ret);   /* octal, <= 07777 */
int config_parse_count(const char *s, uint64_t *ret); /* plain decimal */

/* The inverse of the parsers: "500ms" "60s" "5m" "2G", so that the output
 * parses back to the same value. Return buf. */
#define CONFIG_FORMAT_MAX 32
const char *config_format_duration(uint64_t usec, char buf[static CONFIG_FORMAT_MAX]);
const char *config_format_size(uint64_t bytes, char buf[static CONFIG_FORMAT_MAX]);
