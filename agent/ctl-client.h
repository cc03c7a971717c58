/* ctl-client.h: deployctl's side of the control socket: connect, send one
 * JSON request, read JSON lines back with a deadline. */
#pragma once

#include <jansson.h>
#include <stdint.h>

typedef struct CtlConnection {
        int fd;
        char buf[64 * 1024];
        size_t len;
} CtlConnection;

/* -ENOENT/-ECONNREFUSED: no agent; -EACCES: may not connect. */
int ctl_connect(const char *path, CtlConnection *ret);
void ctl_close(CtlConnection *c);
int ctl_send(CtlConnection *c, json_t *req);
/* Next line as JSON; -ETIMEDOUT past deadline_usec (CLOCK_MONOTONIC, 0: no
 * deadline), -ECONNRESET when the agent closed, -EBADMSG on garbage. */
int ctl_receive(CtlConnection *c, uint64_t deadline_usec, json_t **ret);
