/* ctl-client.c: a blocking JSON-lines client with deadlines. */
#define _GNU_SOURCE
#include "ctl/ctl-client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/util.h"

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
        ret->buf = NULL;
        ret->len = ret->size = 0;
        return 0;
}

void ctl_close(CtlConnection *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->buf = mfree(c->buf);
        c->len = c->size = 0;
}

int ctl_send(CtlConnection *c, json_t *req) {
        _cleanup_free_ char *text = json_dumps(req, JSON_COMPACT);
        _cleanup_free_ char *line = text ? strdup_printf("%s\n", text) : NULL;

        if (!line)
                return -ENOMEM;
        return loop_write(c->fd, line, strlen(line));
}

static int take_line(CtlConnection *c, json_t **ret) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        json_error_t err;
        json_t *msg;
        size_t n;

        if (!nl)
                return 0;
        n = (size_t) (nl - c->buf);
        msg = json_loadb(c->buf, n, 0, &err);
        memmove(c->buf, nl + 1, c->len - n - 1);
        c->len -= n + 1;
        if (!json_is_object(msg)) {
                json_decref(msg);
                return -EBADMSG;
        }
        *ret = msg;
        return 1;
}

/* Room for at least 64 KiB more, up to CTL_LINE_MAX + 1 in all. */
static int grow(CtlConnection *c) {
        size_t size = c->size ? c->size * 2 : 64 * 1024;
        char *b;

        if (c->size - c->len >= 64 * 1024 || c->size > CTL_LINE_MAX)
                return 0;
        if (size > CTL_LINE_MAX + 1)
                size = CTL_LINE_MAX + 1;
        b = realloc(c->buf, size);
        if (!b)
                return -ENOMEM;
        c->buf = b;
        c->size = size;
        return 0;
}

int ctl_receive(CtlConnection *c, uint64_t deadline, json_t **ret) {
        for (;;) {
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                int r = take_line(c, ret), timeout = -1;
                ssize_t n;

                if (r != 0)
                        return r;
                if (c->len > CTL_LINE_MAX)
                        return -EBADMSG;
                if ((r = grow(c)) < 0)
                        return r;
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
                n = read(c->fd, c->buf + c->len, c->size - c->len);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                if (n > 0)
                        c->len += (size_t) n;
        }
}
