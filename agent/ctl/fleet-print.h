/* fleet-print.h: `deployctl fleet status` as text for people, from the same
 * report --json prints. */
#pragma once

#include <jansson.h>
#include <stdio.h>

void fleet_print_status(json_t *report, FILE *out);
