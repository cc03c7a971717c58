/* parse.c: the value parsers and formatters of deploy.ini (durations, sizes,
 * percentages, booleans, modes) and the string tables of its enums. Pure
 * functions: no I/O, no allocation, strict about garbage and overflow. */
#include <ctype.h>
#include <inttypes.h>
#include <strings.h>

#include "config/config.h"
#include "common/util.h"

static const char *const s3_addressing_table[_S3_ADDRESSING_MAX] = {
        [S3_ADDRESSING_VIRTUAL] = "virtual",
        [S3_ADDRESSING_PATH] = "path",
};

static const char *const credentials_source_table[_CREDENTIALS_MAX] = {
        [CREDENTIALS_AUTO] = "auto",
        [CREDENTIALS_ENV] = "env",
        [CREDENTIALS_IMDS] = "imds",
        [CREDENTIALS_STATIC] = "static",
};

static const char *const select_mode_table[_SELECT_MAX] = {
        [SELECT_NEWEST] = "newest",
        [SELECT_POINTER] = "pointer",
};

static const char *const checksum_mode_table[_CHECKSUM_MAX] = {
        [CHECKSUM_REQUIRED] = "required",
        [CHECKSUM_OFF] = "off",
};

static const char *const restart_mode_table[_RESTART_MAX] = {
        [RESTART_RESTART] = "restart",
        [RESTART_RELOAD] = "reload",
        [RESTART_TRY_RESTART] = "try-restart",
        [RESTART_NONE] = "none",
};

static const char *table_lookup(const char *const *table, size_t n, int v) {
        if (v < 0 || (size_t) v >= n)
                return NULL;
        return table[v];
}

static int table_find(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

#define DEFINE_STRING_TABLE(name, type, table)                                  \
        const char *name##_to_string(type v) {                                  \
                return table_lookup(table, ELEMENTSOF(table), (int) v);         \
        }                                                                       \
        int name##_from_string(const char *s) {                                 \
                return table_find(table, ELEMENTSOF(table), s);                 \
        }

DEFINE_STRING_TABLE(s3_addressing, S3Addressing, s3_addressing_table)
DEFINE_STRING_TABLE(credentials_source, CredentialsSource, credentials_source_table)
DEFINE_STRING_TABLE(select_mode, SelectMode, select_mode_table)
DEFINE_STRING_TABLE(checksum_mode, ChecksumMode, checksum_mode_table)
DEFINE_STRING_TABLE(restart_mode, RestartMode, restart_mode_table)

/* Leading decimal digits of s into *ret; strtoull() would also take
 * whitespace, a sign and "0x", none of which belong in a config value. */
static int parse_digits(const char *s, uint64_t *ret, const char **ret_end) {
        uint64_t v = 0;
        const char *p = s;

        if (!isdigit((unsigned char) *p))
                return -EINVAL;
        for (; isdigit((unsigned char) *p); p++) {
                unsigned d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        *ret_end = p;
        return 0;
}

typedef struct Unit {
        const char *suffix;
        uint64_t factor;
} Unit;

static int parse_with_unit(const char *s, const Unit *units, size_t n_units,
                           uint64_t bare_factor, uint64_t *ret) {
        const char *end;
        uint64_t v, factor = 0;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_digits(s, &v, &end);
        if (r < 0)
                return r;
        if (*end == '\0')
                factor = bare_factor;
        else
                for (size_t i = 0; i < n_units; i++)
                        if (streq(end, units[i].suffix)) {
                                factor = units[i].factor;
                                break;
                        }
        if (factor == 0)
                return -EINVAL;
        if (v > UINT64_MAX / factor)
                return -ERANGE;
        *ret = v * factor;
        return 0;
}

static const Unit duration_units[] = {
        { "us", 1 },
        { "ms", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },
        { "m", 60 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },
        { "d", 86400 * USEC_PER_SEC },
};

int config_parse_duration(const char *s, uint64_t *ret_usec) {
        return parse_with_unit(s, duration_units, ELEMENTSOF(duration_units), USEC_PER_SEC, ret_usec);
}

static const Unit size_units[] = {
        { "K", UINT64_C(1) << 10 }, { "KiB", UINT64_C(1) << 10 },
        { "M", UINT64_C(1) << 20 }, { "MiB", UINT64_C(1) << 20 },
        { "G", UINT64_C(1) << 30 }, { "GiB", UINT64_C(1) << 30 },
        { "T", UINT64_C(1) << 40 }, { "TiB", UINT64_C(1) << 40 },
        { "B", 1 },
};

int config_parse_size(const char *s, uint64_t *ret_bytes) {
        return parse_with_unit(s, size_units, ELEMENTSOF(size_units), 1, ret_bytes);
}

int config_parse_percent(const char *s, unsigned *ret) {
        static const Unit percent_units[] = { { "%", 1 } };
        uint64_t v;
        int r;

        r = parse_with_unit(s, percent_units, ELEMENTSOF(percent_units), 1, &v);
        if (r < 0)
                return r;
        if (v > 100)
                return -ERANGE;
        *ret = (unsigned) v;
        return 0;
}

int config_parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

int config_parse_mode(const char *s, mode_t *ret) {
        unsigned v = 0;

        if (isempty(s))
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '7')
                        return -EINVAL;
                v = v * 8 + (unsigned) (*p - '0');
                if (v > 07777)
                        return -ERANGE;
        }
        *ret = (mode_t) v;
        return 0;
}

int config_parse_count(const char *s, uint64_t *ret) {
        const char *end;
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_digits(s, &v, &end);
        if (r < 0)
                return r;
        if (*end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

/* The largest unit that divides v exactly, so that parsing the output
 * gives back v. */
static const char *format_with_unit(uint64_t v, const Unit *units, size_t n_units,
                                    const char *bare_suffix, char buf[static CONFIG_FORMAT_MAX]) {
        for (size_t i = n_units; i > 0; i--) {
                const Unit *u = &units[i - 1];
                if (u->factor > 1 && v % u->factor == 0 && v > 0) {
                        snprintf(buf, CONFIG_FORMAT_MAX, "%" PRIu64 "%s", v / u->factor, u->suffix);
                        return buf;
                }
        }
        snprintf(buf, CONFIG_FORMAT_MAX, "%" PRIu64 "%s", v, bare_suffix);
        return buf;
}

const char *config_format_duration(uint64_t usec, char buf[static CONFIG_FORMAT_MAX]) {
        /* "60s", as deploy.ini(5) and deploy.ini.example spell the defaults. */
        if (usec == 0 || usec == 60 * USEC_PER_SEC) {
                snprintf(buf, CONFIG_FORMAT_MAX, "%us", (unsigned) (usec / USEC_PER_SEC));
                return buf;
        }
        return format_with_unit(usec, duration_units, ELEMENTSOF(duration_units), "us", buf);
}

const char *config_format_size(uint64_t bytes, char buf[static CONFIG_FORMAT_MAX]) {
        static const Unit units[] = {
                { "K", UINT64_C(1) << 10 }, { "M", UINT64_C(1) << 20 },
                { "G", UINT64_C(1) << 30 }, { "T", UINT64_C(1) << 40 },
        };

        return format_with_unit(bytes, units, ELEMENTSOF(units), "", buf);
}
