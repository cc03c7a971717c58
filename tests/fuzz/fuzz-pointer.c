/* fuzz-pointer.c: the pointer object's body parser. What it accepts must be
 * a sha the rest of the agent takes as valid (7..40 lower-case hex), and
 * the body must start with it. */
#include "artifact/discover.h"
#include "common/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char sha[41];

        memset(sha, 'X', sizeof sha);
        if (discover_parse_pointer((const char *) data, size, sha) < 0)
                return 0;
        if (!memchr(sha, '\0', sizeof sha) || !sha_is_valid(sha))
                abort();
        if (size < strlen(sha) || memcmp(data, sha, strlen(sha)) != 0)
                abort();
        return 0;
}
