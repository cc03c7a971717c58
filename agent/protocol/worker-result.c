/* worker-result.c: encode and decode of each step's reply, side by side,
 * and the supervisor's checks of a reply against its job (worker-result.h). */
#define _GNU_SOURCE
#include "protocol/worker-result.h"

#include "artifact/rollout.h"
#include "common/util.h"
#include "protocol/wire.h"

#define COUNT_MAX ((uint64_t) INT64_MAX)

static bool is_hex64(const char *s) {
        if (!s || strlen(s) != 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static void check_sha(WireReader *rd, const char *key, const char *sha) {
        if (sha && !sha_is_valid(sha))
                wire_fail(rd, key, "not a sha (7..40 lowercase hex)");
}

/* ---- discover ---- */

static json_t *rollout_encode(const RolloutResult *r) {
        if (!r->set)
                return json_null();
        return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:b,s:b,s:s?}", "sha", r->sha, "wave", (json_int_t) r->wave,
                         "n_waves", (json_int_t) r->n_waves, "percent_bp", (json_int_t) r->percent_bp,
                         "bucket", (json_int_t) r->bucket, "host_wave", (json_int_t) r->host_wave,
                         "opens", (json_int_t) r->opens_usec, "admitted", r->admitted, "paused", r->paused,
                         "halted", r->halted, "halt", r->halt);
}

static json_t *discover_encode(const DiscoverResult *d) {
        return json_pack("{s:b,s:b,s:s?,s:s?,s:s?,s:I,s:I,s:{s:b,s:b},s:s?,s:s?,s:s?,s:s?,s:o}", "found", d->found,
                         "not_modified", d->not_modified, "sha", d->sha, "key", d->key, "etag", d->etag,
                         "last_modified", (json_int_t) d->last_modified_usec, "size", (json_int_t) d->size,
                         "sidecars", "sha256", d->sidecar_sha256, "minisig", d->sidecar_minisig,
                         "pointer_etag", d->pointer_etag, "reason", d->reason, "host_id", d->host_id,
                         "zone", d->zone, "rollout", rollout_encode(&d->rollout));
}

static void rollout_decode(WireReader *parent, RolloutResult *r) {
        WireReader rd;

        if (wire_is_null(parent, "rollout"))
                return;
        wire_reader_sub(parent, "rollout", &rd);
        wire_string(&rd, "sha", &r->sha);
        wire_uint64(&rd, "wave", 15, &r->wave);
        wire_uint64(&rd, "n_waves", 16, &r->n_waves);
        wire_uint64(&rd, "percent_bp", 10000, &r->percent_bp);
        wire_uint64(&rd, "bucket", 9999, &r->bucket);
        wire_uint64(&rd, "host_wave", 15, &r->host_wave);
        wire_uint64(&rd, "opens", COUNT_MAX, &r->opens_usec);
        wire_bool(&rd, "admitted", &r->admitted);
        wire_bool(&rd, "paused", &r->paused);
        wire_bool(&rd, "halted", &r->halted);
        wire_string_or_null(&rd, "halt", &r->halt);
        check_sha(&rd, "sha", r->sha);
        if (r->halt && strlen(r->halt) > 2048)
                wire_fail(&rd, "halt", "longer than 2048 bytes");
        wire_reader_close(&rd, parent);
        r->set = true;
}

static void sidecars_decode(WireReader *parent, DiscoverResult *d) {
        WireReader rd;

        wire_reader_sub(parent, "sidecars", &rd);
        wire_bool(&rd, "sha256", &d->sidecar_sha256);
        wire_bool(&rd, "minisig", &d->sidecar_minisig);
        wire_reader_close(&rd, parent);
}

static void discover_decode(WireReader *rd, DiscoverResult *d) {
        wire_bool(rd, "found", &d->found);
        wire_bool(rd, "not_modified", &d->not_modified);
        wire_string_or_null(rd, "sha", &d->sha);
        wire_string_or_null(rd, "key", &d->key);
        wire_string_or_null(rd, "etag", &d->etag);
        wire_uint64(rd, "last_modified", COUNT_MAX, &d->last_modified_usec);
        wire_uint64(rd, "size", COUNT_MAX, &d->size);
        sidecars_decode(rd, d);
        wire_string_or_null(rd, "pointer_etag", &d->pointer_etag);
        wire_string_or_null(rd, "reason", &d->reason);
        wire_string_or_null(rd, "host_id", &d->host_id);
        wire_string_or_null(rd, "zone", &d->zone);
        rollout_decode(rd, &d->rollout);
        check_sha(rd, "sha", d->sha);
        if (d->host_id && !rollout_host_id_is_valid(d->host_id))
                wire_fail(rd, "host_id", "not a host id");
        if (d->zone && (strlen(d->zone) > 64 || !rollout_host_id_is_valid(d->zone)))
                wire_fail(rd, "zone", "not an availability zone");
        if (d->found && d->not_modified)
                wire_fail(rd, "not_modified", "a build found cannot also be not modified");
        else if (d->found && (!d->sha || !d->key))
                wire_fail(rd, d->sha ? "key" : "sha", "missing for a build found");
        else if (!d->found && (d->sha || d->key || d->etag))
                wire_fail(rd, d->sha ? "sha" : d->key ? "key" : "etag", "set although no build was found");
}

static void discover_done(DiscoverResult *d) {
        free(d->sha);
        free(d->key);
        free(d->etag);
        free(d->pointer_etag);
        free(d->reason);
        free(d->host_id);
        free(d->zone);
        free(d->rollout.sha);
        free(d->rollout.halt);
}

/* ---- report ---- */

static json_t *report_encode(const ReportResult *r) {
        return json_pack("{s:b,s:b,s:s?}", "status_written", r->status_written, "bad_written", r->bad_written,
                         "error", r->error);
}

static void report_decode(WireReader *rd, ReportResult *r) {
        wire_bool(rd, "status_written", &r->status_written);
        wire_bool(rd, "bad_written", &r->bad_written);
        wire_string_or_null(rd, "error", &r->error);
}

/* ---- fetch ---- */

static json_t *fetch_encode(const FetchResult *f) {
        return json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:b,s:b}", "sha", f->sha, "key", f->key,
                         "size", (json_int_t) f->size, "sha256", f->sha256, "downloaded", (json_int_t) f->downloaded,
                         "reused", (json_int_t) f->reused, "checksum_verified", f->checksum_verified,
                         "signature_verified", f->signature_verified);
}

static void fetch_decode(WireReader *rd, FetchResult *f) {
        wire_string(rd, "sha", &f->sha);
        wire_string(rd, "key", &f->key);
        wire_uint64(rd, "size", COUNT_MAX, &f->size);
        wire_string(rd, "sha256", &f->sha256);
        wire_uint64(rd, "downloaded", COUNT_MAX, &f->downloaded);
        wire_uint64(rd, "reused", COUNT_MAX, &f->reused);
        wire_bool(rd, "checksum_verified", &f->checksum_verified);
        wire_bool(rd, "signature_verified", &f->signature_verified);
        check_sha(rd, "sha", f->sha);
        if (f->sha256 && !is_hex64(f->sha256))
                wire_fail(rd, "sha256", "not 64 lowercase hex digits");
}

static void fetch_done(FetchResult *f) {
        free(f->sha);
        free(f->key);
        free(f->sha256);
}

/* ---- unpack ---- */

static json_t *unpack_encode(const UnpackResult *u) {
        return json_pack("{s:s,s:b,s:I,s:I}", "sha", u->sha, "reused", u->reused, "entries", (json_int_t) u->entries,
                         "bytes", (json_int_t) u->bytes);
}

static void unpack_decode(WireReader *rd, UnpackResult *u) {
        wire_string(rd, "sha", &u->sha);
        wire_bool(rd, "reused", &u->reused);
        wire_uint64(rd, "entries", COUNT_MAX, &u->entries);
        wire_uint64(rd, "bytes", COUNT_MAX, &u->bytes);
        check_sha(rd, "sha", u->sha);
}

static void unpack_done(UnpackResult *u) {
        free(u->sha);
}

/* ---- activate ---- */

static json_t *activate_encode(const ActivateResult *a) {
        return json_pack("{s:s,s:b,s:s?,s:s?}", "sha", a->sha, "changed", a->changed, "previous", a->previous,
                         "warning", a->warning);
}

static void activate_decode(WireReader *rd, ActivateResult *a) {
        wire_string(rd, "sha", &a->sha);
        wire_bool(rd, "changed", &a->changed);
        wire_string_or_null(rd, "previous", &a->previous);
        wire_string_or_null(rd, "warning", &a->warning);
        check_sha(rd, "sha", a->sha);
        check_sha(rd, "previous", a->previous);
}

static void activate_done(ActivateResult *a) {
        free(a->sha);
        free(a->previous);
        free(a->warning);
}

/* ---- restart ---- */

static json_t *restart_encode(const RestartResult *r) {
        return json_pack("{s:s,s:s,s:I}", "sha", r->sha, "detail", r->detail, "n_restarts", (json_int_t) r->n_restarts);
}

static void restart_decode(WireReader *rd, RestartResult *r) {
        wire_string(rd, "sha", &r->sha);
        wire_string(rd, "detail", &r->detail);
        wire_uint64(rd, "n_restarts", UINT32_MAX, &r->n_restarts);
        check_sha(rd, "sha", r->sha);
}

static void restart_done(RestartResult *r) {
        free(r->sha);
        free(r->detail);
}

/* ---- cleanup ---- */

static json_t *cleanup_encode(const CleanupResult *c) {
        return json_pack("{s:I,s:b}", "removed", (json_int_t) c->removed, "complete", c->complete);
}

static void cleanup_decode(WireReader *rd, CleanupResult *c) {
        wire_uint64(rd, "removed", COUNT_MAX, &c->removed);
        wire_bool(rd, "complete", &c->complete);
}

/* ---- prune ---- */

static json_t *prune_encode(const PruneResult *p) {
        return json_pack("{s:I}", "removed", (json_int_t) p->removed);
}

static void prune_decode(WireReader *rd, PruneResult *p) {
        wire_uint64(rd, "removed", COUNT_MAX, &p->removed);
}

/* ---- the envelopes ---- */

static json_t *body_encode(const WorkerResult *res) {
        switch (res->step) {
        case WORKER_STEP_CLEANUP: return cleanup_encode(&res->cleanup);
        case WORKER_STEP_DISCOVER: return discover_encode(&res->discover);
        case WORKER_STEP_FETCH: return fetch_encode(&res->fetch);
        case WORKER_STEP_UNPACK: return unpack_encode(&res->unpack);
        case WORKER_STEP_ACTIVATE: return activate_encode(&res->activate);
        case WORKER_STEP_RESTART: return restart_encode(&res->restart);
        case WORKER_STEP_PRUNE: return prune_encode(&res->prune);
        case WORKER_STEP_REPORT: return report_encode(&res->report);
        default: return NULL;
        }
}

int worker_result_encode(const WorkerResult *res, json_t **ret) {
        json_t *msg = json_pack("{s:b,s:o}", "ok", true, "result", body_encode(res));

        if (!msg)
                return -EINVAL; /* a NULL or non-UTF-8 string, an unknown step, or no memory */
        *ret = msg;
        return 0;
}

json_t *worker_failure_encode(const char *error, bool bad) {
        return json_pack("{s:b,s:s,s:b}", "ok", false, "error", error ?: "unknown error", "bad", bad);
}

json_t *worker_progress_encode(uint64_t bytes, uint64_t total) {
        return json_pack("{s:{s:I,s:I}}", "progress", "bytes", (json_int_t) bytes, "total", (json_int_t) total);
}

static void body_decode(WireReader *parent, WorkerResult *res) {
        WireReader rd;

        wire_reader_sub(parent, "result", &rd);
        switch (res->step) {
        case WORKER_STEP_CLEANUP: cleanup_decode(&rd, &res->cleanup); break;
        case WORKER_STEP_DISCOVER: discover_decode(&rd, &res->discover); break;
        case WORKER_STEP_FETCH: fetch_decode(&rd, &res->fetch); break;
        case WORKER_STEP_UNPACK: unpack_decode(&rd, &res->unpack); break;
        case WORKER_STEP_ACTIVATE: activate_decode(&rd, &res->activate); break;
        case WORKER_STEP_RESTART: restart_decode(&rd, &res->restart); break;
        case WORKER_STEP_PRUNE: prune_decode(&rd, &res->prune); break;
        case WORKER_STEP_REPORT: report_decode(&rd, &res->report); break;
        default: wire_fail(&rd, NULL, "no such step");
        }
        wire_reader_close(&rd, parent);
}

int worker_result_decode(json_t *msg, WorkerStep step, WorkerResult *ret, char **ret_error) {
        WorkerResult res = { .step = step };
        WireReader rd;
        bool ok = false;
        int r;

        wire_reader_init(&rd, msg, "");
        wire_bool(&rd, "ok", &ok);
        if (rd.r == 0 && !ok)
                wire_fail(&rd, "ok", "not a successful reply");
        body_decode(&rd, &res);
        r = wire_reader_end(&rd, ret_error);
        if (r < 0) {
                worker_result_done(&res);
                return r;
        }
        *ret = res;
        return 0;
}

void worker_result_done(WorkerResult *res) {
        switch (res->step) {
        case WORKER_STEP_DISCOVER: discover_done(&res->discover); break;
        case WORKER_STEP_FETCH: fetch_done(&res->fetch); break;
        case WORKER_STEP_UNPACK: unpack_done(&res->unpack); break;
        case WORKER_STEP_ACTIVATE: activate_done(&res->activate); break;
        case WORKER_STEP_RESTART: restart_done(&res->restart); break;
        case WORKER_STEP_REPORT: free(res->report.error); break;
        default: break;
        }
        *res = (WorkerResult) { .step = res->step };
}

/* ---- the supervisor's checks against its job ---- */

static int mismatch(char **ret_error, const char *field, const char *got, const char *asked) {
        return error_set(ret_error, -EBADMSG, "field \"result.%s\": \"%s\" is not the \"%s\" asked for", field,
                         strempty(got), strempty(asked));
}

/* The key a build of sha has under the job's prefix and suffix. */
static int check_discover(const DiscoverJob *j, const DiscoverResult *d, char **ret_error) {
        _cleanup_free_ char *key = NULL;
        bool pointer = j->select == SELECT_POINTER;

        if (d->not_modified && (!pointer || !j->pointer_etag))
                return error_set(ret_error, -EBADMSG, "field \"result.not_modified\": the job asked no conditional GET");
        if (d->not_modified && !streq_ptr(d->pointer_etag, j->pointer_etag))
                return mismatch(ret_error, "pointer_etag", d->pointer_etag, j->pointer_etag);
        if (!pointer && d->pointer_etag)
                return error_set(ret_error, -EBADMSG, "field \"result.pointer_etag\": the job did not read a pointer");
        if (d->host_id && j->fleet.host_id)
                return error_set(ret_error, -EBADMSG, "field \"result.host_id\": the job named the host");
        if (d->rollout.set && !pointer)
                return error_set(ret_error, -EBADMSG, "field \"result.rollout\": the job did not read a pointer");
        if (d->rollout.halted && !j->fleet.prefix)
                return error_set(ret_error, -EBADMSG, "field \"result.rollout.halted\": the job has no breaker");
        if (d->found && d->rollout.set && !streq(d->rollout.sha, d->sha))
                return mismatch(ret_error, "rollout.sha", d->rollout.sha, d->sha);
        if (!d->found)
                return 0;
        key = strdup_printf("%s%s%s", j->prefix, d->sha, j->suffix);
        if (!key)
                return -ENOMEM;
        if (!streq(key, d->key))
                return mismatch(ret_error, "key", d->key, key);
        return 0;
}

static int check_fetch(const FetchJob *j, const FetchResult *f, char **ret_error) {
        if (!streq(f->sha, j->sha))
                return mismatch(ret_error, "sha", f->sha, j->sha);
        if (!streq(f->key, j->key))
                return mismatch(ret_error, "key", f->key, j->key);
        if (f->size > j->max_artifact_size)
                return error_set(ret_error, -EBADMSG, "field \"result.size\": over max_artifact_size %llu",
                                 (unsigned long long) j->max_artifact_size);
        if (f->reused > f->size)
                return error_set(ret_error, -EBADMSG, "field \"result.reused\": more than the size");
        if (f->checksum_verified != (j->checksum == CHECKSUM_REQUIRED))
                return error_set(ret_error, -EBADMSG, "field \"result.checksum_verified\": not what checksum = %s asks",
                                 checksum_mode_to_string(j->checksum));
        if (f->signature_verified != !isempty(j->public_key))
                return error_set(ret_error, -EBADMSG, "field \"result.signature_verified\": not what public_key asks");
        return 0;
}

static int check_unpack(const UnpackJob *j, const UnpackResult *u, char **ret_error) {
        if (!streq(u->sha, j->sha))
                return mismatch(ret_error, "sha", u->sha, j->sha);
        if (u->entries > j->max_entries || u->bytes > j->max_unpacked_size)
                return error_set(ret_error, -EBADMSG, "field \"result.%s\": over the job's limit",
                                 u->entries > j->max_entries ? "entries" : "bytes");
        return 0;
}

int worker_result_check(const WorkerJob *job, const WorkerResult *res, char **ret_error) {
        if (job->step != res->step)
                return error_set(ret_error, -EBADMSG, "a %s result for a %s job", worker_step_to_string(res->step),
                                 worker_step_to_string(job->step));
        switch (res->step) {
        case WORKER_STEP_DISCOVER: return check_discover(&job->discover, &res->discover, ret_error);
        case WORKER_STEP_FETCH: return check_fetch(&job->fetch, &res->fetch, ret_error);
        case WORKER_STEP_UNPACK: return check_unpack(&job->unpack, &res->unpack, ret_error);
        case WORKER_STEP_ACTIVATE:
                return streq(res->activate.sha, job->activate.sha) ? 0 :
                       mismatch(ret_error, "sha", res->activate.sha, job->activate.sha);
        case WORKER_STEP_RESTART:
                return streq(res->restart.sha, job->restart.sha) ? 0 :
                       mismatch(ret_error, "sha", res->restart.sha, job->restart.sha);
        /* cleanup and prune: counts only, nothing the job bounds; the
         * supervisor acts on neither but to log it and, for a cleanup
         * that did not finish, to run another at the next pass */
        case WORKER_STEP_CLEANUP:
        case WORKER_STEP_PRUNE: return 0;
        /* report: what was written is logged, and a marker is cleared only
         * when written; a lie costs this host's own report, nothing more */
        case WORKER_STEP_REPORT:
                return res->report.bad_written && !job->report.bad_sha ?
                       error_set(ret_error, -EBADMSG, "field \"result.bad_written\": the job asked for no marker") : 0;
        default: return error_set(ret_error, -EBADMSG, "no such step");
        }
}
