/* job.c: typed getters and the [s3] section's JSON form. */
#include "protocol/job.h"

#include "common/util.h"

const char *job_string(const json_t *job, const char *key) {
        return json_string_value(json_object_get(job, key));
}

uint64_t job_uint64(const json_t *job, const char *key, uint64_t fallback) {
        json_t *v = json_object_get(job, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return fallback;
        return (uint64_t) json_integer_value(v);
}

bool job_bool(const json_t *job, const char *key, bool fallback) {
        json_t *v = json_object_get(job, key);

        return json_is_boolean(v) ? json_is_true(v) : fallback;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

json_t *job_s3_to_json(const S3Config *cfg) {
        return json_pack("{s:o,s:o,s:s,s:s,s:o,s:o,s:o}",
                         "region", string_or_null(cfg->region),
                         "endpoint", string_or_null(cfg->endpoint),
                         "addressing", s3_addressing_to_string(cfg->addressing),
                         "credentials", credentials_source_to_string(cfg->credentials),
                         "access_key_id", string_or_null(cfg->access_key_id),
                         "secret_access_key", string_or_null(cfg->secret_access_key),
                         "session_token", string_or_null(cfg->session_token));
}

static int enum_from_string(const char *s, const char *(*to_string)(int), int max) {
        if (!s)
                return -EINVAL;
        for (int i = 0; i < max; i++)
                if (streq_ptr(to_string(i), s))
                        return i;
        return -EINVAL;
}

static const char *addressing_name(int v) {
        return s3_addressing_to_string((S3Addressing) v);
}

static const char *credentials_name(int v) {
        return credentials_source_to_string((CredentialsSource) v);
}

/* S3Config is the config's type, whose strings it owns; read back from a job
 * it borrows the job's strings, which the worker only reads and never frees
 * while the job lives. Casting away jansson's const is that borrow. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
int job_s3_from_json(const json_t *job, S3Config *ret) {
        json_t *s3 = json_object_get(job, "s3");
        int addressing, credentials;

        if (!json_is_object(s3))
                return -EINVAL;
        addressing = enum_from_string(job_string(s3, "addressing"), addressing_name, _S3_ADDRESSING_MAX);
        credentials = enum_from_string(job_string(s3, "credentials"), credentials_name, _CREDENTIALS_MAX);
        if (addressing < 0 || credentials < 0 || !job_string(s3, "region"))
                return -EINVAL;
        *ret = (S3Config) {
                .region = (char *) job_string(s3, "region"),
                .endpoint = (char *) job_string(s3, "endpoint"),
                .addressing = (S3Addressing) addressing,
                .credentials = (CredentialsSource) credentials,
                .access_key_id = (char *) job_string(s3, "access_key_id"),
                .secret_access_key = (char *) job_string(s3, "secret_access_key"),
                .session_token = (char *) job_string(s3, "session_token"),
        };
        return 0;
}
#pragma GCC diagnostic pop
