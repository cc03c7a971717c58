/* control-commands.h: what each control command does, on a Manager. */
#pragma once

#include <jansson.h>

#include "supervisor/control.h"

/* A control_dispatch_cb; userdata is the Manager. */
void control_commands_dispatch(Client *cl, const Peer *peer, json_t *req, void *userdata);
