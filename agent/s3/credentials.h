/* credentials.h: where the S3 client's signing keys come from
 * (docs/design.md, "Security model"; the [s3] credentials key): the config
 * (static), the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN) or the EC2 instance role through IMDSv2, and "auto" =
 * environment, then IMDS.
 *
 * Creating a provider does no I/O: IMDS is asked on the first
 * credentials_get(), which the workers reach only after dropping
 * privileges. Role credentials are refreshed well before they expire; when
 * IMDS is briefly down, credentials that are still valid are kept. IMDS is
 * never reached through a proxy. Secrets never appear in any message. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Refresh role credentials this long before their Expiration. EC2 offers
 * the next set at least 5 minutes before the old one expires. */
#define CREDENTIALS_REFRESH_BEFORE_USEC (10 * 60 * USEC_PER_SEC)
/* After an IMDS attempt (good or bad), wait this long before the next one
 * while the current credentials are still usable. */
#define CREDENTIALS_RETRY_INTERVAL_USEC (30 * USEC_PER_SEC)

typedef struct Credentials {
        char *access_key_id;
        char *secret_access_key;
        char *session_token;           /* NULL: long-term keys */
        uint64_t expiration_usec;      /* realtime; 0: does not expire */
} Credentials;
void credentials_done(Credentials *c);  /* wipes the secrets */

typedef struct CredentialsProvider CredentialsProvider;

/* Pick the source for cfg->credentials; env and static are read here. */
int credentials_provider_new(const S3Config *cfg, CredentialsProvider **ret, char **ret_error);
CredentialsProvider *credentials_provider_free(CredentialsProvider *p);
static inline void credentials_provider_freep(CredentialsProvider **p) {
        credentials_provider_free(*p);
}

/* The credentials to sign the next request with, fetched or refreshed from
 * IMDS when due. The pointer stays valid until the next call. */
int credentials_get(CredentialsProvider *p, const Credentials **ret, char **ret_error);

/* "static", "environment" or "imds" (once resolved). */
const char *credentials_provider_source(const CredentialsProvider *p);

/* HTTP requests made to IMDS so far (token PUTs included). */
unsigned credentials_provider_imds_requests(const CredentialsProvider *p);

/* The EC2 instance id and availability zone from IMDSv2 (the host's name
 * in the fleet objects, docs/design.md "Fleet"); *ret_zone is NULL when
 * IMDS does not say. -ENOKEY when IMDS is disabled, another -errno when it
 * does not answer (not on EC2). */
int credentials_imds_identity(char **ret_instance_id, char **ret_zone, char **ret_error);

/* ---- pure helpers, exported for the unit tests ---- */

/* The IMDS base URL: $AWS_EC2_METADATA_SERVICE_ENDPOINT without trailing
 * slashes when set (http:// or https:// only), else http://169.254.169.254. */
int credentials_imds_endpoint(const char *env_value, char **ret);

/* The first line of a security-credentials/ listing, when it is a valid
 * IAM role name (1..128 of A-Za-z0-9 and +=,.@_-). */
int credentials_parse_role(const char *body, size_t n, char **ret_role);

/* The role credentials document: {"Code":"Success","AccessKeyId":..,
 * "SecretAccessKey":..,"Token":..,"Expiration":"2026-11-27T16:00:00Z"}.
 * A Code other than Success, a missing field or a bad timestamp: -EBADMSG,
 * with a message that never quotes a secret. */
int credentials_parse_imds(const char *json, size_t n, Credentials *ret, char **ret_error);

/* true when c must be refreshed at now (realtime): within
 * CREDENTIALS_REFRESH_BEFORE_USEC of its expiration. */
bool credentials_need_refresh(const Credentials *c, uint64_t now_usec);

/* true when c can still sign a request at now: not expired, with a minute
 * of margin for the request to arrive. */
bool credentials_usable(const Credentials *c, uint64_t now_usec);
