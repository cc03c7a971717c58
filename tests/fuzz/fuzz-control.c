/* fuzz-control.c: the control socket as a client sees it. The real
 * control.c (line reading, JSON parsing), control-commands.c (field check,
 * permissions, every command), service.c and service-poll.c (operator
 * requests, pending requests, state saving) run on a real sd-event loop,
 * with a fake manager and fake pipelines that end when the harness says
 * so: no worker, no S3.
 *
 * Input: one byte of flags for the starting state of the two services
 * (deployed, previous release, paused, pinned, interrupted activation),
 * then request lines, sent one at a time over a real connection. Each line
 * must be answered (the loop must not hang), and a request answered with
 * "ok": false must have changed nothing: no state, no queued request, no
 * pipeline started. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <systemd/sd-event.h>

#include "common/log.h"
#include "common/util.h"
#include "supervisor/control-commands.h"
#include "supervisor/control.h"
#include "supervisor/manager.h"
#include "supervisor/pipeline.h"
#include "supervisor/service-poll.h"
#include "supervisor/service.h"
#include "fuzz.h"

#define N_SERVICES 2
#define LINES_MAX 64
#define TURNS_MAX 10000                /* loop turns a request may take to be answered */
#define IDLE_TURNS 4                   /* turns without output before pipelines end */

static const char *const releases[] = {
        "1111111", "2222222", "3f2c1ab0e1d2c3b4a5968778695a4b3c2d1e0f00",
};

struct Manager {
        sd_event *event;
        Config *config;
        Control *control;
        Service *services[N_SERVICES];
};

struct Pipeline {
        PipelineKind kind;
        char *sha;
        pipeline_done_cb done;
};

static Manager manager;
static char socket_path[128];

/* ---- the fake manager: what control-commands.c asks of it ---- */

Service *manager_find_service(Manager *m, const char *name) {
        for (size_t i = 0; name && i < N_SERVICES; i++)
                if (streq(m->services[i]->name, name))
                        return m->services[i];
        return NULL;
}

size_t manager_n_services(Manager *m) {
        return N_SERVICES;
}

Service *manager_service(Manager *m, size_t i) {
        return m->services[i];
}

uint64_t manager_start_usec(Manager *m) {
        return 1700000000ULL * USEC_PER_SEC;
}

void manager_reload(Manager *m, char **ret_error) {
}

/* As manager.c: waiting clients hear of their pipeline. */
static void on_pipeline_progress(Service *s, unsigned seq, const char *step, uint64_t bytes, uint64_t total,
                                 void *userdata) {
        control_pipeline_progress(manager.control, s->name, seq, step, bytes, total);
}

static void on_pipeline_ended(Service *s, unsigned seq, const PipelineResult *res, void *userdata) {
        control_pipeline_ended(manager.control, s->name, seq, res);
}

static const ServiceCallbacks callbacks = {
        .pipeline_progress = on_pipeline_progress,
        .pipeline_ended = on_pipeline_ended,
};

/* ---- fake pipelines: started by service-poll.c, ended by the harness ---- */

int pipeline_start(Service *s, PipelineKind kind, const char *sha, const char *reason, pipeline_done_cb done) {
        Pipeline *p = calloc(1, sizeof *p);

        if (!p || (sha && !(p->sha = strdup(sha))))
                abort();
        p->kind = kind;
        p->done = done;
        s->pipeline = p;
        return 0;
}

const char *pipeline_step_name(const Pipeline *p) {
        return "fetch";
}

/* As pipeline.c decides it: a swap that a crash left unproven. */
bool pipeline_needs_recovery(const ServiceState *st) {
        if (!st->in_flight_step || !st->in_flight_sha)
                return false;
        if (streq(st->in_flight_step, "rollback"))
                return st->in_flight_previous != NULL;
        return (streq(st->in_flight_step, "activate") || streq(st->in_flight_step, "restart")) &&
               streq_ptr(st->current, st->in_flight_sha);
}

/* As pipeline.c decides them: what status says about health. */
bool pipeline_checks_health(const ServiceConfig *c) {
        return (c->unit && c->restart_mode != RESTART_NONE) || c->health_url || c->health_command;
}

bool pipeline_current_unproven(const ServiceState *st) {
        return pipeline_needs_recovery(st) || streq_ptr(st->in_flight_step, "rollback-restart");
}

/* The running pipeline of s succeeds: a deploy or rollback makes its sha
 * current, a recovery clears the interrupted step. */
static void pipeline_finish(Service *s) {
        Pipeline *p = TAKE_PTR(s->pipeline);
        ServiceState *st = s->state;
        _cleanup_free_ char *before = st->current ? strdup(st->current) : NULL;
        PipelineResult res = { .previous = before };

        service_emit(s, "fetch", 1, 2);
        if (p->kind == PIPELINE_RECOVER && (state_set(&st->in_flight_step, NULL) < 0 ||
                                            state_set(&st->in_flight_sha, NULL) < 0))
                abort();
        if (p->sha && !streq_ptr(p->sha, st->current)) {
                if (state_set(&st->previous, st->current) < 0 || state_set(&st->current, p->sha) < 0)
                        abort();
                res.changed = true;
        }
        res.sha = st->current;
        p->done(s, &res);
        free(p->sha);
        free(p);
        service_next(s);
}

static bool finish_pipelines(void) {
        bool any = false;

        for (size_t i = 0; i < N_SERVICES; i++)
                if (manager.services[i]->pipeline) {
                        pipeline_finish(manager.services[i]);
                        any = true;
                }
        return any;
}

/* ---- setup ---- */

static void write_config(const char *dir, char *path, size_t size) {
        FILE *f;

        snprintf(path, size, "%s/deploy.ini", dir);
        f = fopen(path, "we");
        if (!f)
                abort();
        fprintf(f, "[agent]\nstate_dir = %s/state\nsocket = %s\nworker_user = nobody\npoll_interval = 1d\n\n"
                   "[s3]\nregion = eu-west-1\n", dir, socket_path);
        for (size_t i = 0; i < N_SERVICES; i++)
                fprintf(f, "\n[service \"svc%zu\"]\nbucket = acme\nroot = %s/srv/svc%zu\nunit = svc%zu.service\n",
                        i, dir, i, i);
        if (fclose(f) != 0)
                abort();
}

static void make_releases(const Service *s) {
        char path[PATH_MAX];

        if (mkdir(s->releases_dir, 0755) < 0 && errno != EEXIST)
                abort();
        for (size_t i = 0; i < ELEMENTSOF(releases); i++) {
                snprintf(path, sizeof path, "%s/%s", s->releases_dir, releases[i]);
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        abort();
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        /* not $TMPDIR: the config refuses roots and state_dir below /dev (/dev/shm) */
        const char *dir = fuzz_scratch_dir_in("/tmp");
        char config_path[128], *error = NULL;
        ServiceContext ctx;

        signal(SIGPIPE, SIG_IGN);
        log_set_max_level(LOG_ERR); /* every accepted change logs at info */
        snprintf(socket_path, sizeof socket_path, "%s/control.sock", dir);
        write_config(dir, config_path, sizeof config_path);
        if (config_load(config_path, &manager.config, &error) < 0) {
                fprintf(stderr, "fuzz-control: %s\n", error);
                abort();
        }
        if (sd_event_new(&manager.event) < 0 ||
            control_new(manager.event, &manager.config->agent, control_commands_dispatch, &manager,
                        &manager.control) < 0)
                abort();
        ctx = (ServiceContext) { .event = manager.event, .config = manager.config, .callbacks = &callbacks };
        for (size_t i = 0; i < N_SERVICES; i++) {
                if (service_new(&ctx, &manager.config->services[i], &manager.services[i]) < 0)
                        abort();
                make_releases(manager.services[i]);
        }
        return 0;
}

/* ---- one input ---- */

/* A fresh state for s from the flag bits: bit 0 deployed, 1 a previous
 * release, 2 paused, 3 pinned, 4 an activation a crash interrupted. */
static void reset_service(Service *s, unsigned flags) {
        ServiceState *st = calloc(1, sizeof *st);

        if (!st)
                abort();
        if (s->pipeline) {
                free(s->pipeline->sha);
                s->pipeline = mfree(s->pipeline);
        }
        /* an earlier input's finished pipeline armed the next poll: a poll
         * firing in the middle of a later input would start a pipeline no
         * request asked for */
        if (s->timer && sd_event_source_set_enabled(s->timer, SD_EVENT_OFF) < 0)
                abort();
        state_free(s->state);
        s->state = st;
        s->pending_kind = _PIPELINE_KIND_NONE;
        s->pending_sha = mfree(s->pending_sha);
        s->pending_reason = mfree(s->pending_reason);
        s->failures = 0;
        if (((flags & 1) && state_set(&st->current, releases[2]) < 0) ||
            ((flags & 2) && state_set(&st->previous, releases[0]) < 0) ||
            ((flags & 8) && state_set(&st->pinned, releases[2]) < 0) ||
            ((flags & 16) && (state_set(&st->in_flight_step, "activate") < 0 ||
                              state_set(&st->in_flight_sha, st->current) < 0)))
                abort();
        st->paused = flags & 4;
}

/* What a refused request must not have changed. */
static char *snapshot(void) {
        char *all = strdup("");

        for (size_t i = 0; all && i < N_SERVICES; i++) {
                const Service *s = manager.services[i];
                _cleanup_free_ char *text = state_format(s->state);
                char *next = strdup_printf("%s%s pending=%d pipeline=%d\n%s\n", all, s->name, s->pending_kind,
                                           s->pipeline != NULL, text ? text : "(format failed)");
                free(all);
                all = next;
        }
        if (!all)
                abort();
        return all;
}

typedef struct Conn {
        int fd;
        char buf[CONTROL_OUTPUT_MAX + 1];
        size_t len;
        bool closed;
} Conn;

static Conn conn;

/* The next complete line the agent sent, NUL-terminated in place, or NULL. */
static char *next_reply(size_t *consumed) {
        char *nl;
        ssize_t n;

        if (!conn.closed && conn.len < sizeof conn.buf - 1) {
                n = recv(conn.fd, conn.buf + conn.len, sizeof conn.buf - 1 - conn.len, MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN))
                        conn.closed = true;
                else if (n > 0)
                        conn.len += (size_t) n;
        }
        nl = memchr(conn.buf, '\n', conn.len);
        if (!nl)
                return NULL;
        *nl = '\0';
        *consumed = (size_t) (nl - conn.buf) + 1;
        return conn.buf;
}

static void drop_reply(size_t consumed) {
        memmove(conn.buf, conn.buf + consumed, conn.len - consumed);
        conn.len -= consumed;
}

/* Runs the loop until the request's answer (not a progress event) is in:
 * 1 ok, 0 refused, -1 connection closed. Pipelines end only when the loop
 * is idle, that is when the client waits for one (`"wait": true`);
 * *ran_pipelines says whether that happened. */
static int await_answer(bool *ran_pipelines) {
        unsigned idle = 0;
        size_t consumed;

        for (unsigned turn = 0; turn < TURNS_MAX; turn++) {
                char *line;

                if (sd_event_run(manager.event, 0) < 0)
                        abort();
                while ((line = next_reply(&consumed))) {
                        json_t *j = json_loads(line, 0, NULL);
                        int ok;

                        if (!json_is_object(j))
                                fprintf(stderr, "fuzz-control: answer is not a JSON object: %s\n", line), abort();
                        ok = json_is_true(json_object_get(j, "ok"));
                        if (!json_object_get(j, "event") && !json_is_boolean(json_object_get(j, "ok")))
                                fprintf(stderr, "fuzz-control: answer without \"ok\": %s\n", line), abort();
                        bool event = json_object_get(j, "event") != NULL;
                        json_decref(j);
                        drop_reply(consumed);
                        if (!event)
                                return ok;
                        idle = 0;
                }
                if (conn.closed)
                        return -1;
                if (++idle >= IDLE_TURNS && finish_pipelines()) {
                        *ran_pipelines = true;
                        idle = 0;
                }
        }
        fprintf(stderr, "fuzz-control: no answer after %u turns of the loop\n", TURNS_MAX);
        abort();
}

static void send_all(const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(conn.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (k < 0 && errno == EAGAIN) {
                        if (sd_event_run(manager.event, 0) < 0)
                                abort();
                        continue;
                }
                if (k < 0)
                        return; /* the agent closed the connection: it may */
                p += k;
                n -= (size_t) k;
        }
}

static void connect_client(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        conn.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        strncpy(sa.sun_path, socket_path, sizeof sa.sun_path - 1);
        if (conn.fd < 0 || connect(conn.fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                abort();
        conn.len = 0;
        conn.closed = false;
}

static void request(const uint8_t *line, size_t n) {
        _cleanup_free_ char *before = snapshot(), *after = NULL;
        bool ran_pipelines = false;
        int ok;

        send_all((const char *) line, n);
        send_all("\n", 1);
        if (n == 0)
                return; /* an empty line is skipped, without an answer */
        ok = await_answer(&ran_pipelines);
        if (ok != 0 || ran_pipelines)
                return;
        after = snapshot();
        if (!streq(before, after)) {
                fprintf(stderr, "fuzz-control: refused but acted on: %.*s\n--- before:\n%s--- after:\n%s",
                        (int) n, (const char *) line, before, after);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *p, *end = data + size;
        unsigned lines = 0;

        if (size < 1 || size > CONTROL_REQUEST_MAX + 1024)
                return -1;
        for (size_t i = 0; i < N_SERVICES; i++)
                reset_service(manager.services[i], data[0] >> (i * 4) & 0x1f);
        connect_client();
        for (p = data + 1; p < end && lines++ < LINES_MAX && !conn.closed;) {
                const uint8_t *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);

                request(p, n);
                p += n + 1;
        }
        close(conn.fd);
        /* the agent sees the hangup and frees the client */
        for (unsigned turn = 0; turn < 16; turn++)
                if (sd_event_run(manager.event, 0) < 0)
                        abort();
        return 0;
}
