/* ctl-print.h: deployctl's output (text for people, JSON for Ansible) and
 * its exit codes (docs/design.md, "Control protocol"). */
#pragma once

#include <jansson.h>

#define CTL_DEFAULT_SOCKET "/run/deploy-agent/control.sock"

enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILED = 1,
        CTL_EXIT_USAGE = 2,
        CTL_EXIT_UNKNOWN = 3,          /* unknown service or nothing deployed */
        CTL_EXIT_DENIED = 4,
        CTL_EXIT_UNREACHABLE = 5,
        CTL_EXIT_TIMEOUT = 6,
};

/* The exit code an answer means. */
int ctl_exit_code(json_t *res);

void ctl_print_json(json_t *res);
void ctl_print_error(json_t *res);
/* A progress line on stderr, redrawn in place; NULL clears it. */
void ctl_print_progress(json_t *event);
void ctl_print_change(json_t *res);
void ctl_print_version(json_t *res);
void ctl_print_status(json_t *res);
void ctl_print_history(json_t *res);
