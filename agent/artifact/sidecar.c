/* sidecar.c: checksum sidecar parsing and download file name checks. */
#include "artifact/sidecar.h"

#include "common/util.h"

static int hex_lower(char c) {
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
                return c;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 'a';
        return -1;
}

int fetch_parse_sidecar(const char *body, size_t n, char ret_hex[static 65]) {
        char hex[65];
        size_t i = 0;

        if (memchr(body, '\0', n))
                return -EBADMSG;
        while (i < n && is_space(body[i]))
                i++;
        if (i < n && body[i] == '\\')
                i++;
        if (n - i < 64)
                return -EBADMSG;
        for (size_t k = 0; k < 64; k++) {
                int c = hex_lower(body[i + k]);
                if (c < 0)
                        return -EBADMSG;
                hex[k] = (char) c;
        }
        hex[64] = '\0';
        i += 64;
        /* "HEX", "HEX\n", "HEX  name", "HEX *name"; not a 65th digit. */
        if (i < n && !is_space(body[i]))
                return -EBADMSG;
        memcpy(ret_hex, hex, sizeof(hex));
        return 0;
}

bool fetch_file_name_is_valid(const char *sha, const char *suffix) {
        size_t n = 0;

        if (!sha_is_valid(sha) || !suffix)
                return false;
        for (; suffix[n]; n++)
                if ((unsigned char) suffix[n] < 0x20 || suffix[n] == '/' || suffix[n] == 0x7f)
                        return false;
        return n <= 64;
}
