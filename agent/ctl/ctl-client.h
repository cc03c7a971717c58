/* ctl-client.h: deployctl's side of the control socket: connect, send one
 * JSON request, read JSON lines back with a deadline. */
#pragma once

#include <jansson.h>
#include <stdint.h>

/* The agent's answers are capped at 1 MiB (CONTROL_OUTPUT_MAX): a status of
 * many services with long bad lists is far more than 64 KiB. */
#define CTL_LINE_MAX (1024 * 1024)

typedef struct CtlConnection {
        int fd;
        char *buf;                     /* grows up to CTL_LINE_MAX */
        size_t len, size;
} CtlConnection;

/* -ENOENT/-ECONNREFUSED: no agent; -EACCES: may not connect. */
int ctl_connect(const char *path, CtlConnection *ret);
void ctl_close(CtlConnection *c);
int ctl_send(CtlConnection *c, json_t *req);
/* Next line as JSON; -ETIMEDOUT past deadline_usec (CLOCK_MONOTONIC, 0: no
 * deadline), -ECONNRESET when the agent closed, -EBADMSG on garbage. */
int ctl_receive(CtlConnection *c, uint64_t deadline_usec, json_t **ret);
