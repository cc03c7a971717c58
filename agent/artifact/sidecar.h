/* sidecar.h: the pure half of the fetch step (docs/design.md, "Steps"): what a
 * checksum sidecar says and what the downloaded file is called. No I/O here;
 * step-fetch.c does the transfer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define FETCH_SIDECAR_MAX 4096U

/* A <key>.sha256 body: sha256sum's "HEX  name" or "HEX *name" (first line;
 * a leading '\' of an escaped name is allowed), or bare HEX, with leading
 * and trailing whitespace. HEX is 64 hex digits in either case; ret_hex gets
 * them in lower case. Anything else, NUL bytes included: -EBADMSG. */
int fetch_parse_sidecar(const char *body, size_t n, char ret_hex[static 65]);

/* true when "<sha><suffix>" is a plain file name: sha valid (util.h) and
 * the suffix short, without '/' and control characters. */
bool fetch_file_name_is_valid(const char *sha, const char *suffix);
