/* fleet-status.h: `deployctl fleet status SERVICE`: the fleet as the hosts
 * report it under <fleet_prefix> (status/<host_id>.json, bad/<sha>/...)
 * against the rollout the pointer describes. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "config/config.h"
#include "s3/s3.h"

/* Read the pointer, every status object and every bad marker of svc; build
 * the report (the JSON of --json) into *ret and, unless json, print it as
 * text on stdout. */
int fleet_status(S3Client *c, const Config *cfg, const ServiceConfig *svc, bool json, json_t **ret,
                 char **ret_error);
