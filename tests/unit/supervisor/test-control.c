/* test-control.c: the control socket's input framing and limits, on a
 * real socket and the real event loop, with a dispatch callback that
 * records what reaches it: several requests in one read, partial lines,
 * blank lines, the request size limit at its exact boundary, garbage, and
 * a peer that shuts its side down after its last line. */
#include "supervisor-fixture.h"

#include <sys/socket.h>
#include <sys/un.h>

#include "supervisor/control.h"

#define SEC USEC_PER_SEC

typedef struct Harness {
        char *dir;
        Config *cfg;
        sd_event *event;
        Control *control;
        char seen[4096];               /* "cmd" of each request dispatched, space separated */
        unsigned n_seen;
        char in[256 * 1024];           /* what the client read */
        size_t in_len;
        bool eof;
} Harness;

/* The dispatch callback: note the command, answer with its number. */
static void dispatch(Client *cl, const Peer *peer, json_t *req, void *userdata) {
        Harness *h = userdata;
        const char *cmd = json_string_value(json_object_get(req, "cmd"));
        size_t n = strlen(h->seen);

        snprintf(h->seen + n, sizeof h->seen - n, "%s%s", h->n_seen ? " " : "", cmd ?: "?");
        h->n_seen++;
        control_reply(cl, json_pack("{s:b,s:i}", "ok", 1, "n", (int) h->n_seen));
}

static Harness *harness_new(void) {
        Harness *h = calloc(1, sizeof *h);
        FixtureOptions o = {};

        assert_non_null(h);
        fixture_quiet();
        h->dir = fixture_mkdtemp();
        h->cfg = fixture_config(h->dir, &o);
        assert_int_equal(sd_event_new(&h->event), 0);
        assert_int_equal(control_new(h->event, &h->cfg->agent, dispatch, h, &h->control), 0);
        return h;
}

static void harness_free(Harness *h) {
        control_free(h->control);
        sd_event_unref(h->event);
        config_free(h->cfg);
        fixture_rmdir(h->dir);
        free(h->dir);
        free(h);
}

static int client(Harness *h) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", h->cfg->agent.socket);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        return fd;
}

static void send_all(int fd, const char *data, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
                assert_true(k > 0);
                data += k;
                n -= (size_t) k;
        }
}

static void send_str(int fd, const char *s) {
        send_all(fd, s, strlen(s));
}

static size_t count_lines(const Harness *h) {
        size_t n = 0;

        for (size_t i = 0; i < h->in_len; i++)
                n += h->in[i] == '\n';
        return n;
}

/* Run the loop and read what comes back until want lines (or EOF, when
 * want_eof) arrived; a generous deadline only guards against a hang. */
static void pump(Harness *h, int fd, size_t want, bool want_eof) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 10 * SEC;

        while (count_lines(h) < want || (want_eof && !h->eof)) {
                ssize_t n;

                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(h->event, 10 * USEC_PER_MSEC) >= 0);
                n = recv(fd, h->in + h->in_len, sizeof h->in - h->in_len, MSG_DONTWAIT);
                if (n == 0)
                        h->eof = true;
                else if (n > 0)
                        h->in_len += (size_t) n;
                else
                        assert_true(errno == EAGAIN || errno == ECONNRESET);
                if (n < 0 && errno == ECONNRESET)
                        h->eof = true;
        }
}

/* Turn the loop until it has nothing left to do right now. */
static void settle(Harness *h) {
        while (sd_event_run(h->event, 0) > 0)
                ;
}

static void test_several_requests_in_one_read(void **unused) {
        Harness *h = harness_new();
        int fd = client(h);

        send_str(fd, "{\"cmd\":\"a\"}\n{\"cmd\":\"b\"}\n{\"cmd\":\"c\"}\n");
        pump(h, fd, 3, false);
        assert_string_equal(h->seen, "a b c");
        assert_memory_equal(h->in, "{\"ok\":true,\"n\":1}\n{\"ok\":true,\"n\":2}\n{\"ok\":true,\"n\":3}\n", h->in_len);
        close(fd);
        harness_free(h);
}

/* More lines than one turn of the loop takes: all answered, in order. */
static void test_many_requests_in_one_read(void **unused) {
        Harness *h = harness_new();
        char buf[100 * 16], expect[sizeof buf];
        size_t n = 0, e = 0;
        int fd = client(h);

        for (int i = 0; i < 100; i++) {
                n += (size_t) snprintf(buf + n, sizeof buf - n, "{\"cmd\":\"%d\"}\n", i);
                e += (size_t) snprintf(expect + e, sizeof expect - e, "%s%d", i ? " " : "", i);
        }
        send_all(fd, buf, n);
        pump(h, fd, 100, false);
        assert_string_equal(h->seen, expect);
        close(fd);
        harness_free(h);
}

static void test_partial_lines(void **unused) {
        Harness *h = harness_new();
        int fd = client(h);

        send_str(fd, "{\"cmd\":");
        settle(h);
        send_str(fd, "\"a\"");
        settle(h);
        assert_int_equal(h->n_seen, 0);
        send_str(fd, "}\n{\"cmd\":\"b");
        pump(h, fd, 1, false);
        settle(h);
        assert_string_equal(h->seen, "a");
        send_str(fd, "\"}\n");
        pump(h, fd, 2, false);
        assert_string_equal(h->seen, "a b");
        close(fd);
        harness_free(h);
}

static void test_blank_lines_ignored(void **unused) {
        Harness *h = harness_new();
        int fd = client(h);

        send_str(fd, "\n\n{\"cmd\":\"a\"}\n\n");
        pump(h, fd, 1, false);
        settle(h);
        assert_string_equal(h->seen, "a");
        assert_int_equal(count_lines(h), 1);
        close(fd);
        harness_free(h);
}

/* Garbage gets an error; the connection goes on. */
static void test_not_json(void **unused) {
        Harness *h = harness_new();
        int fd = client(h);

        send_str(fd, "hello\n[1]\n{\"cmd\":\"a\"}\n");
        pump(h, fd, 3, false);
        assert_string_equal(h->seen, "a");
        assert_non_null(strstr(h->in, "\"code\":\"bad_request\""));
        assert_non_null(strstr(h->in, "wrong type"));
        close(fd);
        harness_free(h);
}

/* A request of n bytes (a JSON object padded with spaces), then '\n'. */
static char *request_of(size_t n) {
        static const char head[] = "{\"cmd\":\"big\"";
        char *buf = malloc(n + 2);

        assert_non_null(buf);
        memcpy(buf, head, strlen(head));
        memset(buf + strlen(head), ' ', n - strlen(head) - 1);
        buf[n - 1] = '}';
        buf[n] = '\n';
        buf[n + 1] = '\0';
        return buf;
}

/* The limit counts the newline: CONTROL_REQUEST_MAX - 1 bytes pass. */
static void test_largest_request(void **unused) {
        Harness *h = harness_new();
        _cleanup_free_ char *req = request_of(CONTROL_REQUEST_MAX - 1);
        int fd = client(h);

        send_str(fd, req);
        send_str(fd, "{\"cmd\":\"after\"}\n");
        pump(h, fd, 2, false);
        assert_string_equal(h->seen, "big after");
        close(fd);
        harness_free(h);
}

/* One byte more: refused, and the connection closed. */
static void test_request_too_large(void **unused) {
        Harness *h = harness_new();
        _cleanup_free_ char *req = request_of(CONTROL_REQUEST_MAX);
        int fd = client(h);

        send_all(fd, req, CONTROL_REQUEST_MAX); /* no newline yet: the buffer is full */
        pump(h, fd, 1, true);
        assert_int_equal(h->n_seen, 0);
        assert_int_equal(count_lines(h), 1);
        assert_non_null(strstr(h->in, "\"code\":\"too_large\""));
        close(fd);
        harness_free(h);
}

/* `echo REQUEST | socat - UNIX-CONNECT:...`: the last line may lack its
 * newline; the answers go out, then the connection closes. */
static void test_shutdown_after_last_line(void **unused) {
        Harness *h = harness_new();
        int fd = client(h);

        send_str(fd, "{\"cmd\":\"a\"}\n{\"cmd\":\"b\"}");
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        pump(h, fd, 2, true);
        assert_string_equal(h->seen, "a b");
        close(fd);
        harness_free(h);
}

/* Two clients interleaved: each one's lines are its own. */
static void test_two_clients(void **unused) {
        Harness *h = harness_new();
        int a = client(h), b = client(h);

        send_str(a, "{\"cmd\":\"a");
        send_str(b, "{\"cmd\":\"b\"}\n");
        pump(h, b, 1, false);
        assert_string_equal(h->seen, "b");
        h->in_len = 0;
        send_str(a, "1\"}\n");
        pump(h, a, 1, false);
        assert_string_equal(h->seen, "b a1");
        close(a);
        close(b);
        harness_free(h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_several_requests_in_one_read),
                cmocka_unit_test(test_many_requests_in_one_read),
                cmocka_unit_test(test_partial_lines),
                cmocka_unit_test(test_blank_lines_ignored),
                cmocka_unit_test(test_not_json),
                cmocka_unit_test(test_largest_request),
                cmocka_unit_test(test_request_too_large),
                cmocka_unit_test(test_shutdown_after_last_line),
                cmocka_unit_test(test_two_clients),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
