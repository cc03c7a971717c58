/* wire.h: the strict reader under every worker message decoder. A field
 * that is missing, of the wrong type, out of range or not expected at all
 * is an error that names it ("unknown field \"result.path\""): a message
 * from a less privileged process is input, never a fact.
 *
 * Errors are sticky: a decoder calls the getters one after another and
 * asks wire_reader_end() once; after the first error the getters do
 * nothing. Strings are copied (the caller frees them); out parameters are
 * written only on success. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define WIRE_FIELDS_MAX 24
#define WIRE_PATH_MAX 64

typedef struct WireReader {
        json_t *obj;
        char where[WIRE_PATH_MAX];     /* "fetch.s3": prefix of field names in errors */
        const char *seen[WIRE_FIELDS_MAX];
        size_t n_seen;
        int r;                         /* the first error, 0 while none */
        char *error;                   /* its message */
} WireReader;

/* where: the object's own name ("" for a whole message). */
void wire_reader_init(WireReader *rd, json_t *obj, const char *where);
/* A reader for the object in field key of parent (an error in parent when
 * it is not an object); close it with wire_reader_close(). */
void wire_reader_sub(WireReader *parent, const char *key, WireReader *ret);
/* Check sub for unknown fields and hand its first error to parent. */
void wire_reader_close(WireReader *sub, WireReader *parent);
/* Check for unknown fields; 0, or the first error with its message. */
int wire_reader_end(WireReader *rd, char **ret_error);

void wire_string(WireReader *rd, const char *key, char **ret);
void wire_string_or_null(WireReader *rd, const char *key, char **ret);
void wire_uint64(WireReader *rd, const char *key, uint64_t max, uint64_t *ret);
void wire_bool(WireReader *rd, const char *key, bool *ret);
/* A string that from_string() maps to a value >= 0. */
void wire_enum(WireReader *rd, const char *key, int (*from_string)(const char *), int *ret);
/* The array in field key, with at most max elements (borrowed). */
void wire_array(WireReader *rd, const char *key, size_t max, json_t **ret);
/* The object in field key (borrowed), for a decoder of its own. */
void wire_object(WireReader *rd, const char *key, json_t **ret);
/* true when field key is present and null (marks it seen). */
bool wire_is_null(WireReader *rd, const char *key);

/* Record a semantic error about field key (a sha that is not one). */
void wire_fail(WireReader *rd, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
