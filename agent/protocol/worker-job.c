/* worker-job.c: encode and decode of each step's job, side by side, so a
 * field added on one side is added on the other (see worker-job.h). */
#define _GNU_SOURCE
#include "protocol/worker-job.h"

#include <syslog.h>

#include "artifact/rollout.h"
#include "common/util.h"
#include "protocol/wire.h"

#define ID_MAX (UINT64_C(0xFFFFFFFF) - 1) /* (uid_t) -1 means "unchanged" to setresuid */
#define SIZE_MAX_WIRE ((uint64_t) INT64_MAX)

/* ---- [s3] ---- */

static json_t *s3_encode(const S3Config *c) {
        return json_pack("{s:s,s:s?,s:s,s:s,s:s?,s:s?,s:s?,s:I,s:I}", "region", c->region,
                         "endpoint", c->endpoint, "addressing", s3_addressing_to_string(c->addressing),
                         "credentials", credentials_source_to_string(c->credentials),
                         "access_key_id", c->access_key_id, "secret_access_key", c->secret_access_key,
                         "session_token", c->session_token, "low_speed_limit", (json_int_t) c->low_speed_limit,
                         "low_speed_time_usec", (json_int_t) c->low_speed_time_usec);
}

static void s3_decode(WireReader *parent, S3Config *c) {
        WireReader rd;
        int addressing = 0, credentials = 0;

        wire_reader_sub(parent, "s3", &rd);
        wire_string(&rd, "region", &c->region);
        wire_string_or_null(&rd, "endpoint", &c->endpoint);
        wire_enum(&rd, "addressing", s3_addressing_from_string, &addressing);
        wire_enum(&rd, "credentials", credentials_source_from_string, &credentials);
        wire_string_or_null(&rd, "access_key_id", &c->access_key_id);
        wire_string_or_null(&rd, "secret_access_key", &c->secret_access_key);
        wire_string_or_null(&rd, "session_token", &c->session_token);
        wire_uint64(&rd, "low_speed_limit", INT32_MAX, &c->low_speed_limit);
        wire_uint64(&rd, "low_speed_time_usec", 600 * USEC_PER_SEC, &c->low_speed_time_usec);
        c->addressing = (S3Addressing) addressing;
        c->credentials = (CredentialsSource) credentials;
        wire_reader_close(&rd, parent);
}

/* Secrets are wiped, not just freed: a core dump should not carry them. */
static void s3_done(S3Config *c) {
        free(c->region);
        free(c->endpoint);
        free_secret(c->access_key_id);
        free_secret(c->secret_access_key);
        free_secret(c->session_token);
}

/* ---- checks shared by the steps ---- */

static void check_sha(WireReader *rd, const char *key, const char *sha) {
        if (sha && !sha_is_valid(sha))
                wire_fail(rd, key, "not a sha (7..40 lowercase hex)");
}

static void check_absolute(WireReader *rd, const char *key, const char *path) {
        if (path && path[0] != '/')
                wire_fail(rd, key, "not an absolute path");
}

/* <sha><suffix> names a file in a directory: no '/' may move it elsewhere. */
static void check_suffix(WireReader *rd, const char *key, const char *suffix) {
        if (suffix && strchr(suffix, '/'))
                wire_fail(rd, key, "contains '/'");
}

/* ---- discover ---- */

static json_t *fleet_encode(const FleetJob *f) {
        json_t *settled = json_array();

        for (size_t i = 0; settled && i < f->n_settled && i < FLEET_SETTLED_MAX; i++)
                if (json_array_append_new(settled, json_string(f->settled[i])) < 0)
                        settled = (json_decref(settled), NULL);
        return json_pack("{s:s?,s:s?,s:b,s:o}", "prefix", f->prefix, "host_id", f->host_id, "canary", f->canary,
                         "settled", settled);
}

static void fleet_decode(WireReader *parent, FleetJob *f) {
        json_t *settled = NULL, *v;
        WireReader rd;
        size_t i;

        wire_reader_sub(parent, "fleet", &rd);
        wire_string_or_null(&rd, "prefix", &f->prefix);
        wire_string_or_null(&rd, "host_id", &f->host_id);
        wire_bool(&rd, "canary", &f->canary);
        wire_array(&rd, "settled", FLEET_SETTLED_MAX, &settled);
        if (f->host_id && !rollout_host_id_is_valid(f->host_id))
                wire_fail(&rd, "host_id", "not a host id");
        json_array_foreach(settled, i, v) {
                if (!json_is_string(v) || !sha_is_valid(json_string_value(v))) {
                        wire_fail(&rd, "settled", "element %zu is not a sha", i);
                        break;
                }
                if (f->n_settled < FLEET_SETTLED_MAX)
                        strcpy(f->settled[f->n_settled++], json_string_value(v)); /* valid: at most 40 */
        }
        wire_reader_close(&rd, parent);
}

static json_t *discover_encode(const DiscoverJob *j) {
        return json_pack("{s:o,s:s,s:s,s:s,s:s,s:s?,s:s?,s:o}", "s3", s3_encode(&j->s3), "bucket", j->bucket,
                         "prefix", j->prefix, "suffix", j->suffix, "select", select_mode_to_string(j->select),
                         "pointer_key", j->pointer_key, "pointer_etag", j->pointer_etag,
                         "fleet", fleet_encode(&j->fleet));
}

static void discover_decode(WireReader *rd, DiscoverJob *j) {
        int select = 0;

        s3_decode(rd, &j->s3);
        wire_string(rd, "bucket", &j->bucket);
        wire_string(rd, "prefix", &j->prefix);
        wire_string(rd, "suffix", &j->suffix);
        wire_enum(rd, "select", select_mode_from_string, &select);
        wire_string_or_null(rd, "pointer_key", &j->pointer_key);
        wire_string_or_null(rd, "pointer_etag", &j->pointer_etag);
        fleet_decode(rd, &j->fleet);
        j->select = (SelectMode) select;
        if (j->select == SELECT_POINTER && isempty(j->pointer_key))
                wire_fail(rd, "pointer_key", "select = pointer needs a pointer key");
}

static void discover_done(DiscoverJob *j) {
        s3_done(&j->s3);
        free(j->bucket);
        free(j->prefix);
        free(j->suffix);
        free(j->pointer_key);
        free(j->pointer_etag);
        free(j->fleet.prefix);
        free(j->fleet.host_id);
}

/* ---- fetch ---- */

static json_t *fetch_encode(const FetchJob *j) {
        return json_pack("{s:o,s:s,s:s,s:s,s:s,s:s?,s:s,s:s,s:s?,s:I,s:b}", "s3", s3_encode(&j->s3),
                         "bucket", j->bucket, "key", j->key, "sha", j->sha, "suffix", j->suffix, "etag", j->etag,
                         "downloads_dir", j->downloads_dir, "checksum", checksum_mode_to_string(j->checksum),
                         "public_key", j->public_key, "max_artifact_size", (json_int_t) j->max_artifact_size,
                         "resume", j->resume);
}

static void fetch_decode(WireReader *rd, FetchJob *j) {
        int checksum = 0;

        s3_decode(rd, &j->s3);
        wire_string(rd, "bucket", &j->bucket);
        wire_string(rd, "key", &j->key);
        wire_string(rd, "sha", &j->sha);
        wire_string(rd, "suffix", &j->suffix);
        wire_string_or_null(rd, "etag", &j->etag);
        wire_string(rd, "downloads_dir", &j->downloads_dir);
        wire_enum(rd, "checksum", checksum_mode_from_string, &checksum);
        wire_string_or_null(rd, "public_key", &j->public_key);
        wire_uint64(rd, "max_artifact_size", SIZE_MAX_WIRE, &j->max_artifact_size);
        wire_bool(rd, "resume", &j->resume);
        j->checksum = (ChecksumMode) checksum;
        check_sha(rd, "sha", j->sha);
        check_suffix(rd, "suffix", j->suffix);
        check_absolute(rd, "downloads_dir", j->downloads_dir);
}

static void fetch_done(FetchJob *j) {
        s3_done(&j->s3);
        free(j->bucket);
        free(j->key);
        free(j->sha);
        free(j->suffix);
        free(j->etag);
        free(j->downloads_dir);
        free(j->public_key);
}

/* ---- unpack ---- */

static json_t *unpack_encode(const UnpackJob *j) {
        return json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:I}", "downloads_dir", j->downloads_dir, "sha", j->sha,
                         "suffix", j->suffix, "download_uid", (json_int_t) j->download_uid,
                         "releases_dir", j->releases_dir, "max_unpacked_size", (json_int_t) j->max_unpacked_size,
                         "max_entries", (json_int_t) j->max_entries);
}

static void unpack_decode(WireReader *rd, UnpackJob *j) {
        uint64_t uid = 0;

        wire_string(rd, "downloads_dir", &j->downloads_dir);
        wire_string(rd, "sha", &j->sha);
        wire_string(rd, "suffix", &j->suffix);
        wire_uint64(rd, "download_uid", ID_MAX, &uid);
        wire_string(rd, "releases_dir", &j->releases_dir);
        wire_uint64(rd, "max_unpacked_size", SIZE_MAX_WIRE, &j->max_unpacked_size);
        wire_uint64(rd, "max_entries", SIZE_MAX_WIRE, &j->max_entries);
        j->download_uid = (uid_t) uid;
        check_absolute(rd, "downloads_dir", j->downloads_dir);
        check_sha(rd, "sha", j->sha);
        check_suffix(rd, "suffix", j->suffix);
        check_absolute(rd, "releases_dir", j->releases_dir);
}

static void unpack_done(UnpackJob *j) {
        free(j->downloads_dir);
        free(j->sha);
        free(j->suffix);
        free(j->releases_dir);
}

/* ---- activate ---- */

static json_t *activate_encode(const ActivateJob *j) {
        return json_pack("{s:s,s:s,s:s?,s:s?,s:I,s:s?}", "root", j->root, "sha", j->sha, "pre_activate",
                         j->pre_activate, "post_activate", j->post_activate, "hook_timeout_usec",
                         (json_int_t) j->hook_timeout_usec, "unit", j->unit);
}

static void activate_decode(WireReader *rd, ActivateJob *j) {
        wire_string(rd, "root", &j->root);
        wire_string(rd, "sha", &j->sha);
        wire_string_or_null(rd, "pre_activate", &j->pre_activate);
        wire_string_or_null(rd, "post_activate", &j->post_activate);
        wire_uint64(rd, "hook_timeout_usec", SIZE_MAX_WIRE, &j->hook_timeout_usec);
        wire_string_or_null(rd, "unit", &j->unit);
        check_absolute(rd, "root", j->root);
        check_sha(rd, "sha", j->sha);
}

static void activate_done(ActivateJob *j) {
        free(j->root);
        free(j->sha);
        free(j->pre_activate);
        free(j->post_activate);
        free(j->unit);
}

/* ---- restart ---- */

static json_t *restart_encode(const RestartJob *j) {
        return json_pack("{s:s,s:s,s:s?,s:s,s:s?,s:s?,s:I,s:I}", "root", j->root, "sha", j->sha, "unit", j->unit,
                         "restart_mode", restart_mode_to_string(j->restart_mode), "health_url", j->health_url,
                         "health_command", j->health_command,
                         "health_settle_usec", (json_int_t) j->health_settle_usec,
                         "health_timeout_usec", (json_int_t) j->health_timeout_usec);
}

static void restart_decode(WireReader *rd, RestartJob *j) {
        int mode = 0;

        wire_string(rd, "root", &j->root);
        wire_string(rd, "sha", &j->sha);
        wire_string_or_null(rd, "unit", &j->unit);
        wire_enum(rd, "restart_mode", restart_mode_from_string, &mode);
        wire_string_or_null(rd, "health_url", &j->health_url);
        wire_string_or_null(rd, "health_command", &j->health_command);
        wire_uint64(rd, "health_settle_usec", SIZE_MAX_WIRE, &j->health_settle_usec);
        wire_uint64(rd, "health_timeout_usec", SIZE_MAX_WIRE, &j->health_timeout_usec);
        j->restart_mode = (RestartMode) mode;
        check_absolute(rd, "root", j->root);
        check_sha(rd, "sha", j->sha);
}

static void restart_done(RestartJob *j) {
        free(j->root);
        free(j->sha);
        free(j->unit);
        free(j->health_url);
        free(j->health_command);
}

/* ---- cleanup ---- */

static json_t *cleanup_encode(const CleanupJob *j) {
        return json_pack("{s:s,s:s,s:I}", "root", j->root, "downloads_dir", j->downloads_dir,
                         "budget_usec", (json_int_t) j->budget_usec);
}

static void cleanup_decode(WireReader *rd, CleanupJob *j) {
        wire_string(rd, "root", &j->root);
        wire_string(rd, "downloads_dir", &j->downloads_dir);
        wire_uint64(rd, "budget_usec", SIZE_MAX_WIRE, &j->budget_usec);
        check_absolute(rd, "root", j->root);
        check_absolute(rd, "downloads_dir", j->downloads_dir);
        if (rd->r == 0 && j->budget_usec == 0)
                wire_fail(rd, "budget_usec", "0 would remove nothing");
}

static void cleanup_done(CleanupJob *j) {
        free(j->root);
        free(j->downloads_dir);
}

/* ---- prune ---- */

static json_t *prune_encode(const PruneJob *j) {
        json_t *protect = json_array();

        for (size_t i = 0; protect && i < j->n_protect && i < PRUNE_PROTECT_MAX; i++)
                if (json_array_append_new(protect, json_string(j->protect[i])) < 0)
                        protect = (json_decref(protect), NULL);
        return json_pack("{s:s,s:s,s:I,s:o}", "root", j->root, "downloads_dir", j->downloads_dir,
                         "keep", (json_int_t) j->keep, "protect", protect);
}

static void prune_decode(WireReader *rd, PruneJob *j) {
        json_t *protect = NULL, *v;
        size_t i;

        wire_string(rd, "root", &j->root);
        wire_string(rd, "downloads_dir", &j->downloads_dir);
        wire_uint64(rd, "keep", UINT32_MAX, &j->keep);
        wire_array(rd, "protect", PRUNE_PROTECT_MAX, &protect);
        check_absolute(rd, "root", j->root);
        check_absolute(rd, "downloads_dir", j->downloads_dir);
        json_array_foreach(protect, i, v) {
                if (!json_is_string(v) || !sha_is_valid(json_string_value(v)))
                        return wire_fail(rd, "protect", "element %zu is not a sha", i);
                if (j->n_protect >= PRUNE_PROTECT_MAX)
                        return wire_fail(rd, "protect", "more than %d shas", PRUNE_PROTECT_MAX);
                strcpy(j->protect[j->n_protect++], json_string_value(v)); /* valid: at most 40 */
        }
}

static void prune_done(PruneJob *j) {
        free(j->root);
        free(j->downloads_dir);
}

/* ---- report ---- */

static json_t *report_encode(const ReportJob *j) {
        return json_pack("{s:o,s:s,s:s,s:s,s:s?,s:s?,s:s?}", "s3", s3_encode(&j->s3), "bucket", j->bucket,
                         "fleet_prefix", j->fleet_prefix, "host_id", j->host_id, "status", j->status,
                         "bad_sha", j->bad_sha, "bad_body", j->bad_body);
}

static void report_decode(WireReader *rd, ReportJob *j) {
        s3_decode(rd, &j->s3);
        wire_string(rd, "bucket", &j->bucket);
        wire_string(rd, "fleet_prefix", &j->fleet_prefix);
        wire_string(rd, "host_id", &j->host_id);
        wire_string_or_null(rd, "status", &j->status);
        wire_string_or_null(rd, "bad_sha", &j->bad_sha);
        wire_string_or_null(rd, "bad_body", &j->bad_body);
        check_sha(rd, "bad_sha", j->bad_sha);
        if (j->host_id && !rollout_host_id_is_valid(j->host_id))
                wire_fail(rd, "host_id", "not a host id");
        if (!j->bad_sha != !j->bad_body)
                wire_fail(rd, "bad_body", "a marker needs both its sha and its body");
}

static void report_done(ReportJob *j) {
        s3_done(&j->s3);
        free(j->bucket);
        free(j->fleet_prefix);
        free(j->host_id);
        free(j->status);
        free(j->bad_sha);
        free(j->bad_body);
}

/* ---- the envelope ---- */

static json_t *body_encode(const WorkerJob *j) {
        switch (j->step) {
        case WORKER_STEP_CLEANUP: return cleanup_encode(&j->cleanup);
        case WORKER_STEP_DISCOVER: return discover_encode(&j->discover);
        case WORKER_STEP_FETCH: return fetch_encode(&j->fetch);
        case WORKER_STEP_UNPACK: return unpack_encode(&j->unpack);
        case WORKER_STEP_ACTIVATE: return activate_encode(&j->activate);
        case WORKER_STEP_RESTART: return restart_encode(&j->restart);
        case WORKER_STEP_PRUNE: return prune_encode(&j->prune);
        case WORKER_STEP_REPORT: return report_encode(&j->report);
        default: return NULL;
        }
}

static json_t *run_as_encode(const WorkerUser *u) {
        if (!u->set)
                return json_null();
        return json_pack("{s:I,s:I}", "uid", (json_int_t) u->uid, "gid", (json_int_t) u->gid);
}

int worker_job_encode(const WorkerJob *j, json_t **ret) {
        const WorkerLimits *l = &j->limits;
        const char *step = worker_step_to_string(j->step);
        json_t *msg;

        if (!step)
                return -EINVAL;
        msg = json_pack("{s:s,s:s,s:i,s:{s:I,s:I,s:I,s:I},s:o,s:o}", "step", step, "service", j->service,
                        "log_level", j->log_level, "limits", "cpu_sec", (json_int_t) l->cpu_sec,
                        "as_bytes", (json_int_t) l->as_bytes, "fsize_bytes", (json_int_t) l->fsize_bytes,
                        "nofile", (json_int_t) l->nofile, "run_as", run_as_encode(&j->run_as),
                        step, body_encode(j));
        if (!msg)
                return -EINVAL; /* jansson says no more: a NULL or non-UTF-8 string, or no memory */
        *ret = msg;
        return 0;
}

static void limits_decode(WireReader *parent, WorkerLimits *l) {
        WireReader rd;

        wire_reader_sub(parent, "limits", &rd);
        wire_uint64(&rd, "cpu_sec", SIZE_MAX_WIRE, &l->cpu_sec);
        wire_uint64(&rd, "as_bytes", SIZE_MAX_WIRE, &l->as_bytes);
        wire_uint64(&rd, "fsize_bytes", SIZE_MAX_WIRE, &l->fsize_bytes);
        wire_uint64(&rd, "nofile", SIZE_MAX_WIRE, &l->nofile);
        wire_reader_close(&rd, parent);
}

/* null, or a user that is not root, for a step the privilege table lets
 * run as someone else than root. */
static void run_as_decode(WireReader *parent, WorkerStep step, WorkerUser *u) {
        uint64_t uid = 0, gid = 0;
        WireReader rd;

        if (wire_is_null(parent, "run_as"))
                return;
        wire_reader_sub(parent, "run_as", &rd);
        wire_uint64(&rd, "uid", ID_MAX, &uid);
        wire_uint64(&rd, "gid", ID_MAX, &gid);
        if (rd.r == 0 && uid == 0)
                wire_fail(&rd, "uid", "a worker never switches to root");
        wire_reader_close(&rd, parent);
        if (parent->r == 0 && worker_step_run_as(step) == WORKER_RUN_AS_ROOT)
                wire_fail(parent, "run_as", "%s runs as root", worker_step_to_string(step));
        *u = (WorkerUser) { .set = true, .uid = (uid_t) uid, .gid = (gid_t) gid };
}

static void body_decode(WireReader *parent, WorkerJob *j) {
        WireReader rd;

        wire_reader_sub(parent, worker_step_to_string(j->step), &rd);
        switch (j->step) {
        case WORKER_STEP_CLEANUP: cleanup_decode(&rd, &j->cleanup); break;
        case WORKER_STEP_DISCOVER: discover_decode(&rd, &j->discover); break;
        case WORKER_STEP_FETCH: fetch_decode(&rd, &j->fetch); break;
        case WORKER_STEP_UNPACK: unpack_decode(&rd, &j->unpack); break;
        case WORKER_STEP_ACTIVATE: activate_decode(&rd, &j->activate); break;
        case WORKER_STEP_RESTART: restart_decode(&rd, &j->restart); break;
        case WORKER_STEP_PRUNE: prune_decode(&rd, &j->prune); break;
        case WORKER_STEP_REPORT: report_decode(&rd, &j->report); break;
        default: wire_fail(&rd, NULL, "no such step");
        }
        wire_reader_close(&rd, parent);
}

int worker_job_decode(json_t *msg, WorkerStep step, WorkerJob *ret, char **ret_error) {
        WorkerJob j = { .step = step };
        uint64_t log_level = 0;
        int s = (int) step;
        WireReader rd;
        int r;

        if (!worker_step_to_string(step))
                return error_set(ret_error, -EINVAL, "no such step");
        wire_reader_init(&rd, msg, "");
        wire_enum(&rd, "step", worker_step_from_string, &s);
        if (rd.r == 0 && s != (int) step)
                wire_fail(&rd, "step", "this worker runs %s", worker_step_to_string(step));
        wire_string(&rd, "service", &j.service);
        wire_uint64(&rd, "log_level", LOG_DEBUG, &log_level);
        limits_decode(&rd, &j.limits);
        run_as_decode(&rd, step, &j.run_as);
        body_decode(&rd, &j);
        j.log_level = (int) log_level;
        r = wire_reader_end(&rd, ret_error);
        if (r < 0) {
                worker_job_done(&j);
                return r;
        }
        *ret = j;
        return 0;
}

void worker_job_done(WorkerJob *j) {
        WorkerStep step;

        switch (j->step) {
        case WORKER_STEP_CLEANUP: cleanup_done(&j->cleanup); break;
        case WORKER_STEP_DISCOVER: discover_done(&j->discover); break;
        case WORKER_STEP_FETCH: fetch_done(&j->fetch); break;
        case WORKER_STEP_UNPACK: unpack_done(&j->unpack); break;
        case WORKER_STEP_ACTIVATE: activate_done(&j->activate); break;
        case WORKER_STEP_RESTART: restart_done(&j->restart); break;
        case WORKER_STEP_PRUNE: prune_done(&j->prune); break;
        case WORKER_STEP_REPORT: report_done(&j->report); break;
        default: break;
        }
        free(j->service);
        step = j->step;
        memset(j, 0, sizeof *j); /* done twice is harmless */
        j->step = step;
}
