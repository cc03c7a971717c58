/* pipeline-jobs.c: one builder per step. Unprivileged steps get run_as
 * (when the agent is root) and an address-space limit; every step gets CPU
 * and file limits. */
#include "supervisor/pipeline-jobs.h"

#include "protocol/job.h"
#include "common/log.h"
#include "common/util.h"

#define WORKER_AS_LIMIT (UINT64_C(1) << 30)
#define WORKER_NOFILE 256

void pipeline_target_done(Target *t) {
        free(t->sha);
        free(t->key);
        free(t->etag);
        free(t->pointer_etag);
        *t = (Target) {};
}

int pipeline_target_from_result(const json_t *res, Target *t) {
        const char *sha = job_string(res, "sha"), *key = job_string(res, "key"), *etag = job_string(res, "etag");

        pipeline_target_done(t);
        if (!job_bool(res, "found", false) || job_bool(res, "not_modified", false))
                return 0;
        if (!sha_is_valid(sha) || !key)
                return -EBADMSG;
        t->sha = strdup(sha);
        t->key = strdup(key);
        t->etag = etag ? strdup(etag) : NULL;
        t->last_modified_usec = job_uint64(res, "last_modified", 0);
        if (job_string(res, "pointer_etag") && !(t->pointer_etag = strdup(job_string(res, "pointer_etag"))))
                return -ENOMEM;
        if (!t->sha || !t->key || (etag && !t->etag))
                return -ENOMEM;
        return 0;
}

static json_t *job_new(const Service *s, bool unprivileged, uid_t uid, gid_t gid, uint64_t fsize) {
        json_t *job = json_pack("{s:s,s:i,s:{s:I,s:I}}", "service", s->name, "log_level", log_get_max_level(),
                                "limits", "cpu_sec", (json_int_t) (s->cfg->step_timeout_usec / USEC_PER_SEC),
                                "nofile", (json_int_t) WORKER_NOFILE);
        json_t *limits = json_object_get(job, "limits");

        if (!job)
                return NULL;
        if (unprivileged) {
                json_object_set_new(limits, "as_bytes", json_integer((json_int_t) WORKER_AS_LIMIT));
                if (s->drop)
                        json_object_set_new(job, "run_as", json_pack("{s:I,s:I}", "uid", (json_int_t) uid,
                                                                     "gid", (json_int_t) gid));
        }
        if (fsize > 0)
                json_object_set_new(limits, "fsize_bytes", json_integer((json_int_t) fsize));
        return job;
}

/* Merge fields (a new reference, may be NULL) into job. */
static json_t *with(json_t *job, json_t *fields) {
        if (!job || !fields || json_object_update(job, fields) < 0) {
                json_decref(job);
                job = NULL;
        }
        json_decref(fields);
        return job;
}

static json_t *s3_json(const Service *s) {
        return job_s3_to_json(&s->config->s3);
}

json_t *pipeline_job_discover(const Service *s) {
        const ServiceConfig *c = s->cfg;

        return with(job_new(s, true, s->worker_uid, s->worker_gid, 0),
                    json_pack("{s:o,s:s,s:s,s:s,s:s,s:s?,s:s?}", "s3", s3_json(s), "bucket", c->bucket,
                              "prefix", c->prefix, "suffix", c->suffix, "select", select_mode_to_string(c->select),
                              "pointer_key", c->pointer_key, "pointer_etag", s->state->pointer_etag));
}

json_t *pipeline_job_fetch(const Service *s, const Target *t) {
        const ServiceConfig *c = s->cfg;

        return with(job_new(s, true, s->worker_uid, s->worker_gid, c->max_artifact_size + 65536),
                    json_pack("{s:o,s:s,s:s,s:s,s:s,s:s?,s:s,s:s,s:s?,s:I,s:b}", "s3", s3_json(s),
                              "bucket", c->bucket, "key", t->key, "sha", t->sha, "suffix", c->suffix,
                              "etag", t->etag, "downloads_dir", s->downloads_dir,
                              "checksum", checksum_mode_to_string(c->checksum), "public_key", c->public_key,
                              "max_artifact_size", (json_int_t) c->max_artifact_size, "resume", 1));
}

json_t *pipeline_job_unpack(const Service *s, const char *sha, const char *archive) {
        const ServiceConfig *c = s->cfg;

        return with(job_new(s, true, s->owner_uid, s->owner_gid, c->max_unpacked_size),
                    json_pack("{s:s,s:s,s:s,s:I,s:I}", "archive", archive, "releases_dir", s->releases_dir,
                              "sha", sha, "max_unpacked_size", (json_int_t) c->max_unpacked_size,
                              "max_entries", (json_int_t) c->max_entries));
}

json_t *pipeline_job_activate(const Service *s, const char *sha) {
        const ServiceConfig *c = s->cfg;

        return with(job_new(s, false, 0, 0, 0),
                    json_pack("{s:s,s:s,s:s?,s:s?,s:I}", "root", c->root, "sha", sha,
                              "pre_activate", c->pre_activate, "post_activate", c->post_activate,
                              "hook_timeout_usec", (json_int_t) c->step_timeout_usec));
}

json_t *pipeline_job_restart(const Service *s, const char *sha) {
        const ServiceConfig *c = s->cfg;

        return with(job_new(s, false, 0, 0, 0),
                    json_pack("{s:s,s:s?,s:s,s:s?,s:s?,s:I,s:I,s:s}", "sha", sha, "unit", c->unit,
                              "restart_mode", restart_mode_to_string(c->restart_mode),
                              "health_url", c->health_url, "health_command", c->health_command,
                              "health_settle_usec", (json_int_t) c->health_settle_usec,
                              "health_timeout_usec", (json_int_t) c->health_timeout_usec, "root", c->root));
}

json_t *pipeline_job_prune(const Service *s) {
        json_t *protect = json_array();

        if (s->state->current)
                json_array_append_new(protect, json_string(s->state->current));
        if (s->state->previous)
                json_array_append_new(protect, json_string(s->state->previous));
        if (s->state->pinned)
                json_array_append_new(protect, json_string(s->state->pinned));
        return with(job_new(s, false, 0, 0, 0),
                    json_pack("{s:s,s:s,s:I,s:o}", "root", s->cfg->root, "downloads_dir", s->downloads_dir,
                              "keep", (json_int_t) s->cfg->keep_releases, "protect", protect));
}
