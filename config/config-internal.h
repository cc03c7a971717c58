/* config-internal.h: what config.c (the reader) and items.c (the key tables
 * and their checks) share. Not for other modules. */
#pragma once

#include "config/config.h"

typedef enum SectionKind {
        SECTION_NONE,
        SECTION_AGENT,
        SECTION_S3,
        SECTION_SERVICE,
        SECTION_SKIPPED,              /* a refused header: its keys are ignored */
        _SECTION_MAX,
} SectionKind;

#define SERVICE_NAME_MAX 32
#define SECTION_ITEMS_MAX 32          /* keys per section, for the line table */

typedef enum ConfigItemType {
        ITEM_STRING,                  /* char *, checked by item->check */
        ITEM_DURATION,                /* uint64_t usec, >= min */
        ITEM_SIZE,                    /* uint64_t bytes, >= min */
        ITEM_COUNT,                   /* uint64_t, min..max */
        ITEM_UNSIGNED,                /* unsigned, min..max */
        ITEM_PERCENT,                 /* unsigned, 0..100 */
        ITEM_MODE,                    /* mode_t, <= max */
        ITEM_BOOL,                    /* bool */
        ITEM_ENUM,                    /* an enum, via from_string */
        ITEM_LOG_LEVEL,               /* int, LOG_ERR..LOG_DEBUG */
} ConfigItemType;

typedef enum ConfigItemFlags {
        ITEM_OPTIONAL = 1 << 0,       /* an empty value means unset (NULL) */
        ITEM_EMPTY_OK = 1 << 1,       /* an empty value is kept as "" */
        ITEM_SECRET = 1 << 2,         /* printed as "(set)" */
} ConfigItemFlags;

typedef struct ConfigItem ConfigItem;

/* Checks (and may normalize in place) a non-empty string value. On failure
 * returns -EINVAL and a malloc'd problem text ("must be an absolute path,
 * got \"srv\""), without file, line or key. */
typedef int (*ConfigStringCheck)(const ConfigItem *item, char *value, char **ret_problem);

struct ConfigItem {
        const char *key;
        size_t offset;
        ConfigItemType type;
        ConfigItemFlags flags;
        uint64_t min, max;            /* numbers; max also bounds string length */
        ConfigStringCheck check;
        const char *(*to_string)(int v);  /* enums: the name of v, NULL past the end */
};

/* Parses value into the member of base that item describes. Same error
 * convention as ConfigStringCheck. */
int config_item_parse(const ConfigItem *item, const char *value, void *base, char **ret_problem);

/* Every problem goes to the reader, which keeps them all and reports them
 * sorted by line. text is malloc'd and taken (NULL: out of memory); it
 * starts with "FILE:LINE: ". */
typedef void (*ConfigReport)(void *userdata, unsigned line, char *text);

/* Where the reader reports problems found after a section's last key. */
typedef struct SectionInfo {
        const char *path;
        const char *name;             /* as written: agent, s3, service "api" */
        unsigned line;                /* of the header */
        const unsigned *key_lines;    /* per item index, 0 when not set */
        const bool *key_failed;       /* per item index: set, but refused */
        ConfigReport report;
        void *userdata;
} SectionInfo;

/* The lines of the keys that the checks across sections name. */
typedef struct ConfigLines {
        const char *path;
        const unsigned *roots;        /* per service: the line of its root */
        ConfigReport report;
        void *userdata;
} ConfigLines;

const ConfigItem *config_items(SectionKind kind, size_t *ret_n);
const ConfigItem *config_item_find(SectionKind kind, const char *key, size_t *ret_index);

int config_agent_defaults(AgentConfig *a);
int config_s3_defaults(S3Config *s);
int config_service_defaults(ServiceConfig *s, const char *name);
void config_service_done(ServiceConfig *s);
void config_s3_done(S3Config *s);
void config_agent_done(AgentConfig *a);

/* Checks across the keys of one section, once it is complete. They report
 * every problem and return 0, or -ENOMEM. */
int config_check_s3(S3Config *s, bool addressing_set, const SectionInfo *info);
int config_check_service(const Config *c, const ServiceConfig *s, const SectionInfo *info);

/* Checks across sections, once the file is read: roots that overlap each
 * other or state_dir. */
int config_check_paths(const Config *c, const ConfigLines *lines);

/* Path checks of items.c (paths.c). */
int config_path_normalize(char *path, char **ret_problem);
int config_path_check_system(const char *path, char **ret_problem);
int config_path_check_symlinks(const char *path, char **ret_problem);

/* Line syntax (syntax.c). config_line_split works in place: a header gives
 * its text in *ret_a; an assignment its key in *ret_a and its value
 * (unquoted) in *ret_b; a bad line its text in *ret_a. */
typedef enum ConfigLineKind {
        CONFIG_LINE_BLANK,
        CONFIG_LINE_HEADER,
        CONFIG_LINE_BAD_HEADER,
        CONFIG_LINE_ASSIGN,
        CONFIG_LINE_BAD,
} ConfigLineKind;
ConfigLineKind config_line_split(char *line, char **ret_a, char **ret_b);
/* v as config_print writes it: quoted when it would not load back as is. */
char *config_value_quote(const char *v);
bool config_utf8_is_valid(const char *s);
bool config_service_name_is_valid(const char *name);

/* For config_print: the value of item in struct base, formatted. */
int config_item_format(const ConfigItem *item, const void *base, char **ret);
