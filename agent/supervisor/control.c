/* control.c: the control socket's connections: accept, read JSON lines
 * with a hard size limit, write buffered replies, idle timeouts, a cap on
 * clients (the oldest idle one makes room), SO_PEERCRED. */
#define _GNU_SOURCE
#include "supervisor/control.h"

#include <assert.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "common/fs-util.h"
#include "common/log.h"
#include "supervisor/pipeline-types.h"
#include "common/util.h"

#define CONTROL_INPUT_KEEP 4096      /* input buffer kept between requests */
#define CONTROL_LINES_PER_TURN 16    /* requests of one client per turn of the loop */

struct Client {
        Control *control;
        Client *prev, *next;
        int fd;
        sd_event_source *io, *idle, *kick;
        Peer peer;
        char *in;                      /* grows with the request, up to CONTROL_REQUEST_MAX */
        size_t in_len, in_size;
        char *out;                     /* pending output: out[out_start..out_end) */
        size_t out_start, out_end, out_size;
        char *wait_service;            /* waiting for pipeline wait_seq of it */
        unsigned wait_seq;
        bool closing;                  /* close once the output is flushed */
        bool eof;                      /* the peer shut its side down: answer, then close */
        uint64_t last_active_usec;
};

struct Control {
        sd_event *event;
        control_dispatch_cb dispatch;
        void *userdata;
        int fd;
        bool owns_path;                /* we bound it: unlink on exit */
        char *path;
        gid_t admin_gid;
        bool has_admin_group;
        sd_event_source *listen_source;
        Client *clients;
        unsigned n_clients;
};

/* c is cl->control, passed by the callers that hold it so that the static
 * analyzer sees the list they walk change. */
static void client_free(Control *c, Client *cl) {
        assert(cl->control == c);
        assert(cl->prev ? cl->prev->next == cl && c->clients != cl : c->clients == cl);
        if (cl->prev)
                cl->prev->next = cl->next;
        else
                c->clients = cl->next;
        if (cl->next)
                cl->next->prev = cl->prev;
        c->n_clients--;
        sd_event_source_disable_unref(cl->io);
        sd_event_source_disable_unref(cl->idle);
        sd_event_source_disable_unref(cl->kick);
        close(cl->fd);
        free(cl->in);
        free(cl->out);
        free(cl->wait_service);
        free(cl);
}

static int update_events(Client *cl) {
        uint32_t events = cl->out_end > cl->out_start ? EPOLLOUT : 0;

        if (!cl->closing && !cl->wait_service && !cl->eof)
                events |= EPOLLIN; /* one request at a time per connection */
        return sd_event_source_set_io_events(cl->io, events);
}

static void drop_output(Client *cl) {
        cl->out = mfree(cl->out);
        cl->out_start = cl->out_end = cl->out_size = 0;
}

/* Write what we can; 0 when all is out, -EAGAIN when some waits, <0 dead.
 * Sent bytes are skipped, not moved: a slow reader costs no copying. */
static int flush_output(Client *cl) {
        while (cl->out_end > cl->out_start) {
                ssize_t n = send(cl->fd, cl->out + cl->out_start, cl->out_end - cl->out_start,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN ? -EAGAIN : -errno;
                cl->out_start += (size_t) n;
        }
        drop_output(cl); /* an idle connection keeps no big answer's buffer */
        return 0;
}

/* After any change: flush, close when done and asked to, re-arm epoll. */
static void client_settle(Client *cl) {
        int r = flush_output(cl);

        if ((r < 0 && r != -EAGAIN) || (r == 0 && cl->closing))
                return client_free(cl->control, cl);
        if (update_events(cl) < 0)
                client_free(cl->control, cl);
}

/* What a client gets when its answer cannot be built (out of memory). */
static const char reply_internal_error[] =
        "{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"the answer could not be encoded\"}}";

/* Room for n more bytes at out_end: move the pending bytes to the front,
 * then grow geometrically if need be (appending answer by answer stays linear). */
static int reserve_output(Client *cl, size_t n) {
        size_t pending = cl->out_end - cl->out_start, size;
        char *out;

        if (cl->out_end + n <= cl->out_size)
                return 0;
        if (cl->out_start > 0) {
                memmove(cl->out, cl->out + cl->out_start, pending);
                cl->out_start = 0;
                cl->out_end = pending;
                if (pending + n <= cl->out_size)
                        return 0;
        }
        for (size = cl->out_size ?: 4096; size < pending + n; size *= 2)
                ;
        out = realloc(cl->out, size);
        if (!out)
                return -ENOMEM;
        cl->out = out;
        cl->out_size = size;
        return 0;
}

void control_reply(Client *cl, json_t *msg) {
        _cleanup_free_ char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
        const char *line = text ?: reply_internal_error;
        size_t n = strlen(line);

        json_decref(msg);
        if (cl->out_end - cl->out_start + n + 1 > CONTROL_OUTPUT_MAX || reserve_output(cl, n + 1) < 0) {
                cl->closing = true; /* a client that does not read loses its connection */
                drop_output(cl);
                return;
        }
        memcpy(cl->out + cl->out_end, line, n);
        cl->out[cl->out_end + n] = '\n';
        cl->out_end += n + 1;
}

/* The length of the valid UTF-8 sequence at p (as jansson defines it: no
 * overlong forms, no surrogates, nothing above U+10FFFF), 0 if invalid. */
static size_t utf8_sequence(const unsigned char *p) {
        size_t n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 : *p >= 0xe0 && *p <= 0xef ? 3
                 : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
        uint32_t cp = n == 1 ? *p : n == 2 ? *p & 0x1f : n == 3 ? *p & 0x0f : *p & 0x07;

        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

/* Messages quote what the client sent (cut at a byte count, so maybe in the
 * middle of a character) and jansson's parse errors, which quote raw input:
 * JSON strings must be UTF-8, so anything else becomes '?'. */
static void utf8_scrub(char *s) {
        for (unsigned char *p = (unsigned char *) s; *p;) {
                size_t n = utf8_sequence(p);
                if (n == 0)
                        *p++ = '?';
                else
                        p += n;
        }
}

void control_reply_error(Client *cl, const char *code, const char *fmt, ...) {
        char message[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        utf8_scrub(message);
        control_reply(cl, json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", code, "message", message));
}

int control_client_wait(Client *cl, const char *service, unsigned seq) {
        free(cl->wait_service);
        cl->wait_service = strdup(service);
        cl->wait_seq = seq;
        return cl->wait_service ? 0 : -ENOMEM;
}

void control_client_unwait(Client *cl) {
        cl->wait_service = mfree(cl->wait_service);
}

static void handle_line(Client *cl, const char *line, size_t n) {
        json_error_t err;
        json_t *req;

        req = json_loadb(line, n, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(req)) {
                json_decref(req);
                return control_reply_error(cl, "bad_request", "request is not a JSON object: %s",
                                           req ? "wrong type" : err.text);
        }
        cl->control->dispatch(cl, &cl->peer, req, cl->control->userdata);
        json_decref(req);
}

static void client_kick(Client *cl);

static char *next_line(const Client *cl) {
        return cl->in_len > 0 ? memchr(cl->in, '\n', cl->in_len) : NULL;
}

/* Take the complete lines out of the input buffer, a few per turn of the
 * loop: a client that pipelines a buffer full of requests must not make
 * everyone else wait until all of them are answered. */
static void process_input(Client *cl) {
        unsigned n_lines = 0;
        char *nl;

        while (!cl->wait_service && !cl->closing && (nl = next_line(cl))) {
                size_t n = (size_t) (nl - cl->in);
                if (n_lines++ == CONTROL_LINES_PER_TURN)
                        return client_kick(cl); /* the rest on the next turn */
                if (n > 0)
                        handle_line(cl, cl->in, n);
                memmove(cl->in, nl + 1, cl->in_len - n - 1);
                cl->in_len -= n + 1;
        }
        /* full, and not with requests that wait their turn: one line too long */
        if (cl->in_len >= CONTROL_REQUEST_MAX && !cl->closing && !next_line(cl)) {
                control_reply_error(cl, "too_large", "request exceeds %d bytes", CONTROL_REQUEST_MAX);
                cl->closing = true;
        }
        if (cl->in_len == 0 && cl->in_size > CONTROL_INPUT_KEEP) {
                cl->in = mfree(cl->in);
                cl->in_size = 0;
        }
}

/* What was read is handled; a peer that shut down its sending side
 * (`echo REQUEST | socat - UNIX-CONNECT:...`) still gets its answers: the
 * last line may lack its newline, and the connection closes once they are out. */
static void client_process(Client *cl) {
        process_input(cl);
        if (!cl->eof || cl->wait_service || cl->closing || next_line(cl))
                return;
        if (cl->in_len > 0) {
                handle_line(cl, cl->in, cl->in_len);
                cl->in_len = 0;
        }
        if (!cl->wait_service)
                cl->closing = true;
}

/* Input buffers start small and double up to the request limit: a silent
 * connection costs no buffer at all, so a flood of them does not bloat the
 * supervisor for good (the heap keeps what it once grew to). */
static int grow_input(Client *cl) {
        size_t size = cl->in_size ? cl->in_size * 2 : CONTROL_INPUT_KEEP;
        char *in;

        if (size > CONTROL_REQUEST_MAX)
                size = CONTROL_REQUEST_MAX;
        in = realloc(cl->in, size);
        if (!in)
                return -ENOMEM;
        cl->in = in;
        cl->in_size = size;
        return 0;
}

static int read_input(Client *cl) {
        while (cl->in_len < CONTROL_REQUEST_MAX && !cl->eof) {
                ssize_t n;

                if (cl->in_len == cl->in_size && grow_input(cl) < 0)
                        return -ENOMEM;
                n = recv(cl->fd, cl->in + cl->in_len, cl->in_size - cl->in_len, MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN ? 0 : -errno;
                if (n == 0)
                        cl->eof = true;
                cl->in_len += (size_t) n;
        }
        return 0;
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Client *cl = userdata;

        cl->last_active_usec = now_usec(CLOCK_MONOTONIC);
        (void) sd_event_source_set_time_relative(cl->idle, CONTROL_IDLE_USEC);
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                int r = read_input(cl);
                client_process(cl);
                /* HUP: both directions are shut, nothing can reach it any more.
                 * A deploy it waited for goes on without it. */
                if (r < 0 || (revents & (EPOLLHUP | EPOLLERR))) {
                        client_free(cl->control, cl);
                        return 0;
                }
        }
        client_settle(cl);
        return 0;
}

static int on_client_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        Client *cl = userdata;

        if (cl->wait_service) /* waiting on a deploy is not idleness */
                return sd_event_source_set_time_relative(s, CONTROL_IDLE_USEC);
        client_free(cl->control, cl);
        return 0;
}

static int on_client_kick(sd_event_source *s, void *userdata) {
        Client *cl = userdata;

        client_process(cl);
        client_settle(cl);
        return 0;
}

/* Flush and go on reading later, from the loop: safe while iterating over
 * clients, and when a reply comes from deep inside a request. */
static void client_kick(Client *cl) {
        if (cl->kick)
                (void) sd_event_source_set_enabled(cl->kick, SD_EVENT_ONESHOT);
        else if (sd_event_add_defer(cl->control->event, &cl->kick, on_client_kick, cl) < 0)
                cl->closing = true;
}

static bool peer_in_group(int fd, gid_t gid, const struct ucred *cred) {
        gid_t groups[256];
        socklen_t len = sizeof groups;

        if (cred->gid == gid)
                return true;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false;
        for (size_t i = 0; i < len / sizeof groups[0]; i++)
                if (groups[i] == gid)
                        return true;
        return false;
}

static int read_peer(Control *c, int fd, Peer *ret) {
        struct ucred cred;
        socklen_t len = sizeof cred;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        *ret = (Peer) {
                .pid = cred.pid, .uid = cred.uid, .gid = cred.gid,
                .admin = cred.uid == 0 || (c->has_admin_group && peer_in_group(fd, c->admin_gid, &cred)),
        };
        return 0;
}

/* At the cap, the connection idle the longest makes room: a flood of
 * silent connections cannot lock out the operator. */
static bool make_room(Control *c) {
        Client *oldest = NULL;

        if (c->n_clients < CONTROL_CLIENTS_MAX)
                return true;
        for (Client *cl = c->clients; cl; cl = cl->next)
                if (!cl->wait_service && (!oldest || cl->last_active_usec < oldest->last_active_usec))
                        oldest = cl;
        if (!oldest)
                return false;
        log_debug("control: %u clients; dropping the one idle longest (pid %d)", c->n_clients,
                  (int) oldest->peer.pid);
        client_free(c, oldest);
        return true;
}

static int add_client(Control *c, int fd) {
        sd_event *e = c->event;
        Client *cl = calloc(1, sizeof *cl);
        int r;

        if (!cl)
                return close(fd), -ENOMEM;
        cl->control = c;
        cl->fd = fd;
        cl->last_active_usec = now_usec(CLOCK_MONOTONIC);
        cl->next = c->clients;
        if (c->clients)
                c->clients->prev = cl;
        c->clients = cl;
        c->n_clients++;
        r = read_peer(c, fd, &cl->peer);
        if (r >= 0)
                r = sd_event_add_io(e, &cl->io, fd, EPOLLIN, on_client_io, cl);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &cl->idle, CLOCK_MONOTONIC, CONTROL_IDLE_USEC, 0, on_client_idle, cl);
        if (r < 0)
                client_free(c, cl);
        return r;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Control *c = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                log_warning_errno(-errno, "control: accept: %m");
                        return 0;
                }
                if (!make_room(c)) {
                        close(cfd);
                        continue;
                }
                if (add_client(c, cfd) < 0)
                        log_warning("control: cannot take a new client");
        }
}

/* ---- pipelines seen by waiting clients ---- */

static bool waits_for(const Client *cl, const char *service, unsigned seq) {
        return cl->wait_service && cl->wait_seq == seq && streq(cl->wait_service, service);
}

void control_pipeline_progress(Control *c, const char *service, unsigned seq, const char *step, uint64_t bytes,
                               uint64_t total) {
        for (Client *cl = c->clients, *next; cl; cl = next) {
                next = cl->next;
                if (!waits_for(cl, service, seq))
                        continue;
                if (total > 0)
                        control_reply(cl, json_pack("{s:s,s:s,s:s,s:I,s:I}", "event", "progress", "service", service,
                                                    "step", step, "bytes", (json_int_t) bytes, "total", (json_int_t) total));
                else
                        control_reply(cl, json_pack("{s:s,s:s,s:s}", "event", "step", "service", service, "step", step));
                client_kick(cl);
        }
}

static json_t *result_json(const char *service, const PipelineResult *res) {
        if (res->r >= 0)
                return json_pack("{s:b,s:b,s:s,s:s?,s:s?}", "ok", 1, "changed", res->changed, "service", service,
                                 "sha", res->sha, "previous", res->previous);
        return json_pack("{s:b,s:b,s:s,s:s?,s:{s:s,s:s}}", "ok", 0, "changed", res->changed, "service", service,
                         "sha", res->sha, "error", "code", "failed", "message", res->error ?: "deploy failed");
}

void control_pipeline_ended(Control *c, const char *service, unsigned seq, const PipelineResult *res) {
        for (Client *cl = c->clients, *next; cl; cl = next) {
                next = cl->next;
                if (!waits_for(cl, service, seq))
                        continue;
                control_reply(cl, result_json(service, res));
                cl->wait_service = mfree(cl->wait_service);
                client_kick(cl); /* then the requests that queued behind the wait */
        }
}

/* ---- the listening socket ---- */

/* A socket file nobody answers on is stale; one that answers belongs to a
 * running agent, which we must not steal it from. Anything else at that
 * path (a file, a symlink: a typo in the config) is not ours to delete. */
static int claim_path(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -ENOTSOCK;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) >= 0)
                return -EADDRINUSE;
        if (errno != ECONNREFUSED)
                return -errno;
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static int bind_socket(Control *c, const AgentConfig *cfg) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_free_ char *dir = strdup(cfg->socket);
        char *slash;
        int r;

        if (!dir || strlen(cfg->socket) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                if ((r = mkdir_p(dir, 0755)) < 0)
                        return r;
        }
        r = claim_path(cfg->socket);
        if (r < 0)
                return r;
        strncpy(sa.sun_path, cfg->socket, sizeof sa.sun_path - 1);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        if (bind(c->fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        c->owns_path = true;
        if (chmod(cfg->socket, cfg->socket_mode) < 0 ||
            (c->has_admin_group && chown(cfg->socket, (uid_t) -1, c->admin_gid) < 0))
                return -errno;
        return listen(c->fd, SOMAXCONN) < 0 ? -errno : 0;
}

static int fcntl_cloexec_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

/* systemd passes the socket of deploy-agent.socket as fd 3. */
static int take_activated_socket(Control *c) {
        int n = sd_listen_fds(true);

        if (n <= 0)
                return n;
        if (n > 1 || sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
                return -EBADF;
        c->fd = SD_LISTEN_FDS_START;
        return sd_listen_fds(false) >= 0 && fcntl_cloexec_nonblock(c->fd) >= 0 ? 1 : -errno;
}

int control_new(sd_event *e, const AgentConfig *cfg, control_dispatch_cb dispatch, void *userdata, Control **ret) {
        Control *c = calloc(1, sizeof *c);
        struct group *gr;
        int r;

        if (!c)
                return -ENOMEM;
        c->event = e;
        c->dispatch = dispatch;
        c->userdata = userdata;
        c->fd = -1;
        gr = isempty(cfg->admin_group) ? NULL : getgrnam(cfg->admin_group);
        c->has_admin_group = gr != NULL;
        c->admin_gid = gr ? gr->gr_gid : 0;
        if (!isempty(cfg->admin_group) && !gr)
                log_warning("control: admin_group \"%s\" does not exist; only root may change things",
                            cfg->admin_group);
        r = take_activated_socket(c);
        if (r == 0)
                r = (c->path = strdup(cfg->socket)) ? bind_socket(c, cfg) : -ENOMEM;
        if (r >= 0)
                r = sd_event_add_io(e, &c->listen_source, c->fd, EPOLLIN, on_accept, c);
        if (r < 0) {
                log_error_errno(r, r == -EADDRINUSE ? "control: %s: another deploy-agent is already running"
                                   : r == -ENOTSOCK ? "control: %s exists and is not a socket; not touching it"
                                                    : "control: cannot listen on %s: %m", cfg->socket);
                control_free(c);
                return r;
        }
        log_info("control: listening on %s%s", cfg->socket, c->owns_path ? "" : " (from systemd)");
        *ret = c;
        return 0;
}

Control *control_free(Control *c) {
        if (!c)
                return NULL;
        while (c->clients)
                client_free(c, c->clients);
        sd_event_source_disable_unref(c->listen_source);
        if (c->fd >= 0)
                close(c->fd);
        if (c->owns_path)
                (void) unlink(c->path);
        free(c->path);
        free(c);
        return NULL;
}
