/* ctl-client.c: a blocking JSON-lines client with deadlines. */
#define _GNU_SOURCE
#include "ctl-client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "util.h"

int ctl_connect(const char *path, CtlConnection *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        ret->fd = fd;
        ret->len = 0;
        return 0;
}

void ctl_close(CtlConnection *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

int ctl_send(CtlConnection *c, json_t *req) {
        _cleanup_free_ char *text = json_dumps(req, JSON_COMPACT);
        _cleanup_free_ char *line = text ? strdup_printf("%s\n", text) : NULL;

        if (!line)
                return -ENOMEM;
        return loop_write(c->fd, line, strlen(line));
}

static int take_line(CtlConnection *c, json_t **ret) {
        char *nl = memchr(c->buf, '\n', c->len);
        json_error_t err;
        size_t n;

        if (!nl)
                return 0;
        n = (size_t) (nl - c->buf);
        *ret = json_loadb(c->buf, n, 0, &err);
        memmove(c->buf, nl + 1, c->len - n - 1);
        c->len -= n + 1;
        return json_is_object(*ret) ? 1 : -EBADMSG;
}

int ctl_receive(CtlConnection *c, uint64_t deadline, json_t **ret) {
        for (;;) {
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                int r = take_line(c, ret), timeout = -1;
                ssize_t n;

                if (r != 0)
                        return r;
                if (c->len == sizeof c->buf)
                        return -EBADMSG;
                if (deadline) {
                        uint64_t now = now_usec(CLOCK_MONOTONIC);
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        timeout = (int) ((deadline - now + 999) / 1000);
                }
                r = poll(&p, 1, timeout);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r <= 0)
                        continue;
                n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                if (n > 0)
                        c->len += (size_t) n;
        }
}
