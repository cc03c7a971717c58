/* config.c: loads deploy.ini into a validated Config and prints it back.
 * Every problem in the file is reported, sorted by line, each naming file,
 * line, section and key: "deploy.ini:12: [service \"api\"] root: ...".
 *
 * The file is read line by line here (syntax.c splits a line), not by
 * inih: Debian's libinih has no line numbers in the handler, treats indented
 * lines as continuations, only knows ';' inline comments, and cannot give a
 * quoted value back with its blanks. Section headers are checked here, so
 * empty sections are seen too. */
#define _GNU_SOURCE
#include <ctype.h>

#include "config/config-internal.h"
#include "common/util.h"

#define SERVICES_MAX 256
#define ERRORS_MAX 100
/* A key and its value together, as inih's 200-byte line buffer allowed
 * ("KEY=VALUE\n\0"). Counted without the syntax around them, so that what
 * config_print writes (blanks, quotes, escapes) loads back. */
#define KEY_VALUE_MAX 197
#define PHYSICAL_LINE_MAX (64 * 1024)

typedef struct ConfigError {
        unsigned line;
        size_t seq;                   /* keeps the order of one line's errors */
        char *text;
} ConfigError;

typedef struct ParseContext {
        const char *path;
        FILE *f;
        char *buf;
        size_t allocated;
        unsigned line;
        Config *config;

        SectionKind kind;
        char section[16 + SERVICE_NAME_MAX];    /* as printed: service "api" */
        unsigned section_line;
        void *section_base;
        unsigned key_lines[SECTION_ITEMS_MAX];
        bool key_failed[SECTION_ITEMS_MAX];
        unsigned agent_line, s3_line;
        unsigned root_lines[SERVICES_MAX];
        bool addressing_set;

        ConfigError *errors;
        size_t n_errors;
        bool truncated;
        int error_r;                  /* the first failure that is not a content error */
} ParseContext;

static void report_taken(void *userdata, unsigned line, char *text) {
        ParseContext *ctx = userdata;
        ConfigError *e;

        if (!text) {
                ctx->error_r = ctx->error_r ?: -ENOMEM;
                return;
        }
        if (ctx->n_errors >= ERRORS_MAX) {
                ctx->truncated = true;
                free(text);
                return;
        }
        e = reallocarray(ctx->errors, ctx->n_errors + 1, sizeof(ConfigError));
        if (!e) {
                free(text);
                ctx->error_r = ctx->error_r ?: -ENOMEM;
                return;
        }
        ctx->errors = e;
        e[ctx->n_errors] = (ConfigError) { .line = line, .seq = ctx->n_errors, .text = text };
        ctx->n_errors++;
}

/* A problem on the current line: "FILE:LINE: " and the text. */
_printf_(2, 3)
static void fail(ParseContext *ctx, const char *fmt, ...) {
        _cleanup_free_ char *problem = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&problem, fmt, ap);
        va_end(ap);
        report_taken(ctx, ctx->line, n < 0 ? NULL : strdup_printf("%s:%u: %s", ctx->path, ctx->line, problem));
}

static void section_finish(ParseContext *ctx) {
        SectionInfo info = {
                .path = ctx->path,
                .name = ctx->section,
                .line = ctx->section_line,
                .key_lines = ctx->key_lines,
                .key_failed = ctx->key_failed,
                .report = report_taken,
                .userdata = ctx,
        };
        size_t i;
        int r = 0;

        if (ctx->kind == SECTION_S3)
                r = config_check_s3(&ctx->config->s3, ctx->addressing_set, &info);
        else if (ctx->kind == SECTION_SERVICE) {
                r = config_check_service(ctx->config, ctx->section_base, &info);
                if (config_item_find(SECTION_SERVICE, "root", &i))
                        ctx->root_lines[ctx->config->n_services - 1] = ctx->key_lines[i];
        }
        if (r < 0)
                ctx->error_r = ctx->error_r ?: r;
}

static int service_begin(ParseContext *ctx, const char *name) {
        Config *c = ctx->config;
        ServiceConfig *services;

        if (!config_service_name_is_valid(name))
                return fail(ctx, "[%s]: service name must be 1-%d characters of A-Z a-z 0-9 _ . - "
                            "not starting with '.'", ctx->section, SERVICE_NAME_MAX), 0;
        if (config_find_service(c, name))
                return fail(ctx, "[%s]: duplicate service \"%s\"", ctx->section, name), 0;
        if (c->n_services >= SERVICES_MAX)
                return fail(ctx, "[%s]: too many services (max %d)", ctx->section, SERVICES_MAX), 0;
        services = reallocarray(c->services, c->n_services + 1, sizeof(ServiceConfig));
        if (!services)
                return -ENOMEM;
        c->services = services;
        if (config_service_defaults(&services[c->n_services], name) < 0) {
                config_service_done(&services[c->n_services]);
                return -ENOMEM;
        }
        ctx->section_base = &services[c->n_services++];
        ctx->kind = SECTION_SERVICE;
        return 0;
}

/* [service "NAME"]: the name between the quotes, or NULL. */
static char *service_name(char *header) {
        char *p, *end;

        if (strncmp(header, "service", 7) != 0 || !isspace((unsigned char) header[7]))
                return NULL;
        p = header + 7;
        while (isspace((unsigned char) *p))
                p++;
        end = p + strlen(p);
        if (*p != '"' || end - p < 2 || end[-1] != '"')
                return NULL;
        end[-1] = '\0';
        return p + 1;
}

static void singleton_begin(ParseContext *ctx, SectionKind kind, unsigned *header_line, void *base) {
        if (*header_line > 0) {
                fail(ctx, "[%s]: duplicate section, first on line %u", ctx->section, *header_line);
                return;
        }
        *header_line = ctx->line;
        ctx->kind = kind;
        ctx->section_base = base;
}

/* header is the text between '[' and ']', trimmed. A refused header makes
 * the section's keys ignored: they would only repeat the one problem. */
static int section_begin(ParseContext *ctx, char *header) {
        char *name;

        section_finish(ctx);
        ctx->kind = SECTION_SKIPPED;
        ctx->section_line = ctx->line;
        memset(ctx->key_lines, 0, sizeof(ctx->key_lines));
        memset(ctx->key_failed, 0, sizeof(ctx->key_failed));
        if (strlen(header) >= sizeof(ctx->section))
                return fail(ctx, "section header too long"), 0;
        strcpy(ctx->section, header);

        if (streq(header, "agent"))
                return singleton_begin(ctx, SECTION_AGENT, &ctx->agent_line, &ctx->config->agent), 0;
        if (streq(header, "s3"))
                return singleton_begin(ctx, SECTION_S3, &ctx->s3_line, &ctx->config->s3), 0;
        name = service_name(header);
        if (name)
                return service_begin(ctx, name);
        if (strncmp(header, "service", 7) == 0)
                return fail(ctx, "[%s]: a service section needs a quoted name: [service \"NAME\"]",
                            ctx->section), 0;
        return fail(ctx, "[%s]: unknown section, expected [agent], [s3] or [service \"NAME\"]",
                    ctx->section), 0;
}

static int config_assign(ParseContext *ctx, const char *key, const char *value) {
        _cleanup_free_ char *problem = NULL;
        const ConfigItem *item;
        size_t i;
        int r;

        if (ctx->kind == SECTION_SKIPPED)
                return 0;
        if (ctx->kind == SECTION_NONE)
                return fail(ctx, "%s: keys must follow a section header like [agent]", key), 0;
        item = config_item_find(ctx->kind, key, &i);
        if (!item)
                return fail(ctx, "[%s] %s: unknown key", ctx->section, key), 0;
        if (ctx->key_lines[i] > 0)
                return fail(ctx, "[%s] %s: duplicate key, first set on line %u", ctx->section, key,
                            ctx->key_lines[i]), 0;
        ctx->key_lines[i] = ctx->line;
        r = config_item_parse(item, value, ctx->section_base, &problem);
        if (r == -ENOMEM && !problem)
                return r;
        if (r < 0) {
                ctx->key_failed[i] = true;
                return fail(ctx, "[%s] %s: %s", ctx->section, key, strempty(problem)), 0;
        }
        if (ctx->kind == SECTION_S3 && streq(key, "addressing"))
                ctx->addressing_set = true;
        return 0;
}

static bool text_is_clean(ParseContext *ctx, const char *s) {
        for (const char *p = s; *p; p++)
                if (iscntrl((unsigned char) *p) && *p != '\t')
                        return fail(ctx, "line contains a control character"), false;
        if (!config_utf8_is_valid(s))
                return fail(ctx, "line is not valid UTF-8"), false;
        return true;
}

static int line_parse(ParseContext *ctx, char *line) {
        char *a = NULL, *b = NULL;

        switch (config_line_split(line, &a, &b)) {
        case CONFIG_LINE_BLANK:
                return 0;
        case CONFIG_LINE_BAD_HEADER:
                return fail(ctx, "section header must end with ']'"), 0;
        case CONFIG_LINE_HEADER:
                if (!text_is_clean(ctx, a))
                        return 0;
                return section_begin(ctx, a);
        case CONFIG_LINE_BAD:
                if (!text_is_clean(ctx, a))
                        return 0;
                return fail(ctx, "expected KEY = VALUE or [SECTION], got \"%.80s\"", a), 0;
        case CONFIG_LINE_ASSIGN:
                if (!text_is_clean(ctx, a) || !text_is_clean(ctx, b))
                        return 0;
                if (strlen(a) + strlen(b) > KEY_VALUE_MAX)
                        return fail(ctx, "line too long (key and value at most %d characters together)",
                                    KEY_VALUE_MAX), 0;
                return config_assign(ctx, a, b);
        }
        return 0;
}

/* One physical line into ctx->buf; 0 at the end of the file. */
static int line_read(ParseContext *ctx, char **ret) {
        ssize_t len;

        errno = 0;
        len = getline(&ctx->buf, &ctx->allocated, ctx->f);
        if (len < 0)
                return ferror(ctx->f) ? (errno > 0 ? -errno : -EIO) : 0;
        ctx->line++;
        if ((size_t) len != strlen(ctx->buf))
                return fail(ctx, "line contains a NUL byte"), *ret = NULL, 1;
        if (len > PHYSICAL_LINE_MAX)
                return fail(ctx, "line too long (max %d bytes)", PHYSICAL_LINE_MAX), *ret = NULL, 1;
        *ret = ctx->buf;
        if (ctx->line == 1 && strncmp(*ret, "\xEF\xBB\xBF", 3) == 0)
                *ret += 3;    /* UTF-8 byte order mark */
        return 1;
}

static int config_parse(ParseContext *ctx) {
        char *line = NULL;
        int r;

        while ((r = line_read(ctx, &line)) > 0) {
                if (!line)
                        continue;
                r = line_parse(ctx, line);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return fail(ctx, "read error: %s", strerror(-r)), r;
        section_finish(ctx);
        /* No service is valid: a freshly installed package's file has none
         * yet, and the agent idles until one is added and it is reloaded. */
        r = config_check_paths(ctx->config, &(ConfigLines) { .path = ctx->path, .roots = ctx->root_lines,
                                                             .report = report_taken, .userdata = ctx });
        return r < 0 ? r : ctx->error_r;
}

static int error_compare(const void *a, const void *b) {
        const ConfigError *x = a, *y = b;

        if (x->line != y->line)
                return x->line < y->line ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All problems, sorted by line, one per line of text. */
static char *errors_join(ParseContext *ctx) {
        _cleanup_free_ char *out = NULL;
        size_t n;
        FILE *f;

        qsort(ctx->errors, ctx->n_errors, sizeof(ConfigError), error_compare);
        f = open_memstream(&out, &n);
        if (!f)
                return NULL;
        for (size_t i = 0; i < ctx->n_errors; i++)
                fprintf(f, "%s%s", i > 0 ? "\n" : "", ctx->errors[i].text);
        if (ctx->truncated)
                fprintf(f, "\n%s: more than %d problems, the rest not shown", ctx->path, ERRORS_MAX);
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(out);
}

static void context_done(ParseContext *ctx) {
        for (size_t i = 0; i < ctx->n_errors; i++)
                free(ctx->errors[i].text);
        free(ctx->errors);
        free(ctx->buf);
}

static Config *config_new(const char *path) {
        _cleanup_config_ Config *c = calloc(1, sizeof(Config));

        if (!c)
                return NULL;
        c->path = strdup(path);
        if (!c->path || config_agent_defaults(&c->agent) < 0 || config_s3_defaults(&c->s3) < 0)
                return NULL;
        return TAKE_PTR(c);
}

int config_load(const char *path, Config **ret, char **ret_error) {
        _cleanup_config_ Config *c = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        ParseContext ctx = { .path = path };
        int r;

        if (!path || !ret)
                return -EINVAL;
        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                return error_set(ret_error, r, "%s: cannot open: %s", path, strerror(-r));
        }
        c = config_new(path);
        if (!c)
                return error_set(ret_error, -ENOMEM, "%s: out of memory", path);
        ctx.f = f;
        ctx.config = c;
        r = config_parse(&ctx);
        if (r == 0 && ctx.n_errors > 0)
                r = -EINVAL;
        if (r < 0 && ret_error) {
                free(*ret_error);
                *ret_error = ctx.n_errors > 0 ? errors_join(&ctx) : NULL;
                if (!*ret_error)
                        *ret_error = strdup_printf("%s: %s", path, strerror(-r));
        }
        context_done(&ctx);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->path);
        config_agent_done(&c->agent);
        config_s3_done(&c->s3);
        for (size_t i = 0; i < c->n_services; i++)
                config_service_done(&c->services[i]);
        free(c->services);
        free(c);
        return NULL;
}

const ServiceConfig *config_find_service(const Config *c, const char *name) {
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_services; i++)
                if (streq(c->services[i].name, name))
                        return &c->services[i];
        return NULL;
}

static int print_section(FILE *f, const char *header, SectionKind kind, const void *base) {
        size_t n;
        const ConfigItem *items = config_items(kind, &n);

        fprintf(f, "[%s]\n", header);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *v = NULL;
                int r = config_item_format(&items[i], base, &v);
                if (r < 0)
                        return r;
                fprintf(f, "%s =%s%s\n", items[i].key, *v ? " " : "", v);
        }
        return 0;
}

int config_print(const Config *c, FILE *f) {
        int r;

        if (!c || !f)
                return -EINVAL;
        fprintf(f, "# %s, normalized: every key with its effective value\n", c->path);
        r = print_section(f, "agent", SECTION_AGENT, &c->agent);
        if (r < 0)
                return r;
        fputc('\n', f);
        r = print_section(f, "s3", SECTION_S3, &c->s3);
        for (size_t i = 0; r >= 0 && i < c->n_services; i++) {
                _cleanup_free_ char *header = NULL;

                if (asprintf(&header, "service \"%s\"", c->services[i].name) < 0)
                        return -ENOMEM;
                fputc('\n', f);
                r = print_section(f, header, SECTION_SERVICE, &c->services[i]);
        }
        if (r < 0)
                return r;
        if (fflush(f) != 0 || ferror(f))
                return -EIO;
        return 0;
}
