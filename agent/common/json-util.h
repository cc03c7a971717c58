/* json-util.h: small jansson helpers shared by the modules that speak JSON. */
#pragma once

#include <jansson.h>

/* A JSON string, or null for NULL. */
static inline json_t *json_string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}
