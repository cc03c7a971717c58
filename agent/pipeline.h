/* pipeline.h: one discover -> fetch -> unpack -> activate -> prune pass for
 * one service, each step in its own worker (DESIGN.md section 3). */
#pragma once

#include "config.h"

/* Deploy the newest build of svc, or do nothing when it is current, bad,
 * too young or absent while something already runs. Logs every step.
 * Returns 0 when svc ends deployed and current, <0 otherwise. */
int pipeline_once(const Config *cfg, const ServiceConfig *svc);
