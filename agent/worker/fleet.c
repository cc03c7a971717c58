/* fleet.c: the worker's side of the fleet (docs/design.md, "Fleet"). The
 * objects it reads under fleet_prefix are written by other hosts: input,
 * bounded and never trusted beyond a count and a message to show. */
#define _GNU_SOURCE
#include "worker/fleet.h"

#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "artifact/rollout.h"
#include "common/log.h"
#include "common/util.h"
#include "s3/credentials.h"

#define MACHINE_ID_PATH "/etc/machine-id"
#define HALT_REASONS_MAX 5             /* markers read for their reasons */
#define MARKER_MAX 4096
#define HALT_TEXT_MAX 1024
#define REASON_SHOWN_MAX 200

static int read_machine_id(char **ret, char **ret_error) {
        _cleanup_close_ int fd = open(MACHINE_ID_PATH, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        char buf[66];
        ssize_t n;

        if (fd < 0)
                return error_set(ret_error, -errno, "%s: %s", MACHINE_ID_PATH, strerror(errno));
        n = read(fd, buf, sizeof buf - 1);
        if (n < 0)
                return error_set(ret_error, -errno, "%s: %s", MACHINE_ID_PATH, strerror(errno));
        while (n > 0 && is_space(buf[n - 1]))
                n--;
        buf[n] = '\0';
        if (!rollout_host_id_is_valid(buf))
                return error_set(ret_error, -EBADMSG, "%s: not a machine id", MACHINE_ID_PATH);
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int fleet_resolve_identity(char **ret_host_id, char **ret_zone, char **ret_error) {
        _cleanup_free_ char *imds_error = NULL, *id = NULL, *zone = NULL;
        int r;

        r = credentials_imds_identity(&id, &zone, &imds_error);
        if (r >= 0 && rollout_host_id_is_valid(id)) {
                *ret_host_id = TAKE_PTR(id);
                *ret_zone = TAKE_PTR(zone);
                return 0;
        }
        /* Only an absent IMDS (disabled, nothing listening or no route, 404)
         * means "not EC2: use the machine id". A busy one (timeout, 5xx)
         * fails this discover and is asked again next poll: falling back now
         * would rename the host for a poll (another bucket, a second status
         * object, markers under two names). */
        if (r < 0 && r != -ENOKEY && r != -EHOSTUNREACH && r != -ECONNREFUSED)
                return error_set(ret_error, r, "host id: IMDS did not answer (%s); retrying at the next poll",
                                 imds_error ?: strerror(-r));
        log_debug("no instance id from IMDS (%s); using %s", imds_error ?: strerror(-r), MACHINE_ID_PATH);
        r = read_machine_id(&id, ret_error);
        if (r < 0)
                return r;
        *ret_host_id = TAKE_PTR(id);
        *ret_zone = NULL;
        return 0;
}

/* ---- the breaker ---- */

typedef struct Markers {
        const char *prefix;
        size_t prefix_len;
        unsigned hosts;
        bool abort;
        char *keys[HALT_REASONS_MAX + 1]; /* _abort and up to HALT_REASONS_MAX hosts, in listing order */
        size_t n_keys;
        unsigned hosts_kept;           /* host markers among keys */
} Markers;

static void markers_done(Markers *m) {
        for (size_t i = 0; i < m->n_keys; i++)
                free(m->keys[i]);
}

static int marker_cb(const S3Object *o, void *userdata) {
        Markers *m = userdata;
        const char *name;
        bool abort_marker;

        /* The listing is the server's word: a key outside the prefix asked
         * for is no marker (and name would point past its end). */
        if (strlen(o->key) <= m->prefix_len || strncmp(o->key, m->prefix, m->prefix_len) != 0)
                return 0;
        name = o->key + m->prefix_len;
        abort_marker = streq(name, "_abort");
        /* bad/<sha>/<host_id> only: deeper keys and odd names are not markers */
        if (!abort_marker && !rollout_host_id_is_valid(name))
                return 0;
        if (abort_marker)
                m->abort = true;
        else
                m->hosts++;
        if (m->n_keys < ELEMENTSOF(m->keys) && (abort_marker || m->hosts_kept < HALT_REASONS_MAX)) {
                m->keys[m->n_keys] = strdup(o->key);
                if (!m->keys[m->n_keys])
                        return -ENOMEM;
                m->n_keys++;
                if (!abort_marker)
                        m->hosts_kept++;
        }
        return 0;
}

/* "i-0abc: health check failed ..." from a marker's body. */
static void append_reason(FILE *f, S3Client *c, const char *bucket, const char *key, const char *name) {
        _cleanup_(s3_small_object_done) S3SmallObject o = {};
        json_auto_t *j = NULL;
        const char *reason = NULL;
        char shown[REASON_SHOWN_MAX + 1];

        if (s3_get_small(c, bucket, key, NULL, MARKER_MAX, &o, NULL) >= 0 && o.body)
                j = json_loadb(o.body, o.len, 0, NULL);
        reason = json_string_value(json_object_get(j, "reason"));
        /* another host's words: printable ASCII only, so the halt text
         * stays valid UTF-8 when cut and carries no terminal escapes */
        fprintf(f, "%s%s: %s", ftell(f) > 0 ? "; " : "", name,
                reason ? printable_copy(shown, sizeof shown, reason) : "(no reason given)");
}

static int halt_text(S3Client *c, const char *bucket, const Markers *m, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_keys; i++)
                append_reason(f, c, bucket, m->keys[i], m->keys[i] + m->prefix_len);
        if (m->hosts > m->hosts_kept)
                fprintf(f, "; and %u more hosts", m->hosts - m->hosts_kept);
        if (fclose(f) != 0)
                return -ENOMEM;
        if (strlen(buf) > HALT_TEXT_MAX)
                strcpy(buf + HALT_TEXT_MAX - 3, "...");
        *ret = TAKE_PTR(buf);
        return 0;
}

int fleet_breaker(S3Client *c, const char *bucket, const char *prefix, const char *sha, unsigned max_failures,
                  bool *ret_halted, char **ret_halt, char **ret_error) {
        _cleanup_free_ char *dir = strdup_printf("%sbad/%s/", prefix, sha);
        _cleanup_(markers_done) Markers m = {};
        int r;

        if (!dir)
                return -ENOMEM;
        m.prefix = dir;
        m.prefix_len = strlen(dir);
        r = s3_list_objects(c, bucket, dir, marker_cb, &m, ret_error);
        if (r < 0)
                return error_context(ret_error, r, "listing the bad markers");
        *ret_halted = m.abort || m.hosts >= max_failures;
        *ret_halt = NULL;
        if (!*ret_halted)
                return 0;
        return halt_text(c, bucket, &m, ret_halt);
}

/* ---- the report step ---- */

/* true when written; else the reason goes to *error unless it holds one.
 * The client retries transient failures and may have noted one of those
 * on the way to a success: only a failed PUT's reason is kept. */
static bool put_text(S3Client *c, const ReportJob *j, const char *key, const char *text, char **error) {
        _cleanup_free_ char *etag = NULL, *why = NULL;

        if (s3_put_data(c, j->bucket, key, text, strlen(text), &etag, &why) >= 0)
                return true;
        if (!*error)
                *error = TAKE_PTR(why);
        return false;
}

/* The marker first: it is what other hosts' breakers read. Each write on
 * its own: a failed status write does not lose a written marker. */
int step_report(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        _cleanup_s3_client_ S3Client *c = NULL;
        _cleanup_free_ char *error = NULL, *bad_key = NULL, *status_key = NULL;
        const ReportJob *j = &job->report;
        int r;

        *ret_bad = false;
        r = s3_client_new(&j->s3, &c, ret_error);
        if (r < 0)
                return error_context(ret_error, r, "S3 client");
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_context(ret_error, r, "dropping privileges");
        ret->report = (ReportResult) {};
        if (j->bad_sha) {
                bad_key = strdup_printf("%sbad/%s/%s", j->fleet_prefix, j->bad_sha, j->host_id);
                if (!bad_key)
                        return -ENOMEM;
                ret->report.bad_written = put_text(c, j, bad_key, j->bad_body, &error);
        }
        if (j->status) {
                status_key = strdup_printf("%sstatus/%s.json", j->fleet_prefix, j->host_id);
                if (!status_key)
                        return -ENOMEM;
                ret->report.status_written = put_text(c, j, status_key, j->status, &error);
        }
        ret->report.error = TAKE_PTR(error);
        return 0;
}
