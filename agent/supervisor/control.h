/* control.h: the control socket (docs/design.md, "Control protocol"). JSON
 * lines both ways on a Unix stream socket, from systemd socket activation or
 * bound by the agent. Reads are open to every peer that can connect; changes
 * need uid 0 or the admin_group (SO_PEERCRED). Non-blocking throughout: slow,
 * silent or hostile clients cost a buffer and a timer each, never the loop. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config/config.h"

#define CONTROL_REQUEST_MAX (64 * 1024)
#define CONTROL_CLIENTS_MAX 256
#define CONTROL_OUTPUT_MAX (1024 * 1024)
#define CONTROL_IDLE_USEC (30 * USEC_PER_SEC)

typedef struct Control Control;
typedef struct PipelineResult PipelineResult;

typedef struct Client Client;

typedef struct Peer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        bool admin;                    /* uid 0 or in admin_group */
} Peer;

/* Handle one parsed request (borrowed); answer through control_reply(). The
 * socket knows no command: whoever creates it says what they mean. */
typedef void (*control_dispatch_cb)(Client *cl, const Peer *peer, json_t *req, void *userdata);

int control_new(sd_event *e, const AgentConfig *cfg, control_dispatch_cb dispatch, void *userdata, Control **ret);
Control *control_free(Control *c);

/* Passed on to the clients waiting on that pipeline. */
void control_pipeline_progress(Control *c, const char *service, unsigned seq, const char *step, uint64_t bytes,
                               uint64_t total);
void control_pipeline_ended(Control *c, const char *service, unsigned seq, const PipelineResult *res);

/* ---- for the dispatch callback ---- */

/* Queue msg (stolen) as one line to the client. */
void control_reply(Client *cl, json_t *msg);
/* {"ok":false,"error":{"code":code,"message":...}} */
void control_reply_error(Client *cl, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The client waits for pipeline seq of service: events and the end go to it. */
int control_client_wait(Client *cl, const char *service, unsigned seq);
void control_client_unwait(Client *cl);
