/* fuzz-sidecar.c: the <key>.sha256 sidecar parser. What it accepts must be
 * 64 lower-case hex digits, NUL-terminated. */
#include <ctype.h>

#include "artifact/sidecar.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char hex[65];

        if (size > FETCH_SIDECAR_MAX)
                return -1;
        memset(hex, 'X', sizeof hex);
        if (fetch_parse_sidecar((const char *) data, size, hex) < 0)
                return 0;
        if (hex[64] != '\0')
                abort();
        for (size_t i = 0; i < 64; i++)
                if (!isxdigit((unsigned char) hex[i]) || isupper((unsigned char) hex[i]))
                        abort();
        return 0;
}
