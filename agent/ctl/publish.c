/* publish.c: `deployctl publish`. Everything that can be checked before the
 * first byte goes up is checked first (size, checksum, the signature's
 * trusted comment), so a CI run fails early instead of publishing a build
 * every agent would refuse. */
#define _GNU_SOURCE
#include "ctl/publish.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <sys/stat.h>

#include "artifact/sidecar.h"
#include "artifact/minisign.h"
#include "s3/s3.h"
#include "common/util.h"

#define HASH_CHUNK (256U * 1024)

typedef struct Prepared {
        int fd;
        uint64_t size;
        char sha256[65];
        char *file_name;               /* <sha><suffix> */
        char *key;                     /* <prefix><sha><suffix> */
        char *minisig;                 /* the signature file's text, or NULL */
        size_t minisig_len;
} Prepared;

static void prepared_done(Prepared *p) {
        if (p->fd >= 0)
                close(p->fd);
        free(p->file_name);
        free(p->key);
        free(p->minisig);
}

static int check_options(const PublishOptions *o, char **ret_error) {
        if (isempty(o->bucket) || isempty(o->sha) || isempty(o->file))
                return error_set(ret_error, -EINVAL, "--bucket, --sha and FILE are required");
        if (!sha_is_valid(o->sha))
                return error_set(ret_error, -EINVAL, "--sha must be 7..40 lowercase hex digits, got \"%s\"", o->sha);
        if (!fetch_file_name_is_valid(o->sha, o->suffix) || isempty(o->suffix))
                return error_set(ret_error, -EINVAL, "invalid --suffix \"%s\"", strempty(o->suffix));
        if (o->prefix[0] == '/')
                return error_set(ret_error, -EINVAL, "--prefix must not start with '/'");
        if (o->pointer_key && (isempty(o->pointer_key) || o->pointer_key[0] == '/'))
                return error_set(ret_error, -EINVAL, "--pointer must be a key that does not start with '/'");
        if ((o->waves.n_waves > 0) != (o->waves.wave_interval_usec > 0))
                return error_set(ret_error, -EINVAL, "--waves and --wave-interval go together");
        if ((o->waves.n_waves > 0 || o->waves.max_failures > 0) && !o->pointer_key)
                return error_set(ret_error, -EINVAL, "--waves and --max-failures need --pointer");
        if (o->waves.max_failures > 0 && o->waves.n_waves == 0)
                return error_set(ret_error, -EINVAL, "--max-failures needs --waves");
        return 0;
}

static int hash_file(Prepared *p, const char *path, char **ret_error) {
        _cleanup_free_ uint8_t *buf = malloc(HASH_CHUNK);
        crypto_hash_sha256_state st;
        uint8_t digest[crypto_hash_sha256_BYTES];
        uint64_t done = 0;
        ssize_t n;

        if (!buf)
                return -ENOMEM;
        crypto_hash_sha256_init(&st);
        while (done < p->size) {
                n = pread(p->fd, buf, HASH_CHUNK, (off_t) done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return error_set(ret_error, n < 0 ? -errno : -EIO, "reading %s: %s", path,
                                         n < 0 ? strerror(errno) : "file shrank");
                crypto_hash_sha256_update(&st, buf, (size_t) n);
                done += (uint64_t) n;
        }
        crypto_hash_sha256_final(&st, digest);
        sodium_bin2hex(p->sha256, sizeof(p->sha256), digest, sizeof(digest));
        return 0;
}

static int open_artifact(Prepared *p, const char *path, char **ret_error) {
        struct stat st;

        p->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (p->fd < 0)
                return error_set(ret_error, -errno, "cannot open %s: %m", path);
        if (fstat(p->fd, &st) < 0)
                return error_set(ret_error, -errno, "cannot stat %s: %m", path);
        if (!S_ISREG(st.st_mode))
                return error_set(ret_error, -EINVAL, "%s is not a regular file", path);
        p->size = (uint64_t) st.st_size;
        if (p->size > S3_PUT_MAX)
                return error_set(ret_error, -EFBIG,
                                 "%s is %" PRIu64 " bytes: more than the 5 GiB (%" PRIu64 " bytes) a single "
                                 "PUT can upload; multipart upload is not supported", path, p->size, S3_PUT_MAX);
        return hash_file(p, path, ret_error);
}

/* The agents check the signature's trusted comment against the artifact's
 * file name and refuse legacy signatures: refuse to publish those. */
static int read_signature(Prepared *p, const char *path, char **ret_error) {
        _cleanup_(minisign_signature_done) MinisignSignature sig = {};
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ char *why = NULL;
        char buf[MINISIGN_SIG_FILE_MAX + 1];
        ssize_t n;

        if (fd < 0)
                return error_set(ret_error, -errno, "cannot open %s: %m", path);
        n = read(fd, buf, sizeof(buf));
        if (n < 0)
                return error_set(ret_error, -errno, "reading %s: %m", path);
        if (minisign_parse_signature(buf, (size_t) n, &sig, &why) < 0)
                return error_set(ret_error, -EBADMSG, "%s is not a usable minisign signature: %s", path,
                                 strempty(why));
        if (!minisign_comment_names_file(sig.trusted_comment, p->file_name))
                return error_set(ret_error, -EBADMSG,
                                 "the trusted comment of %s does not contain file:%s, so agents would reject "
                                 "it: sign a file named %s (minisign -Sm %s)", path, p->file_name,
                                 p->file_name, p->file_name);
        p->minisig = malloc((size_t) n + 1);
        if (!p->minisig)
                return -ENOMEM;
        memcpy(p->minisig, buf, (size_t) n);
        p->minisig[n] = '\0';
        p->minisig_len = (size_t) n;
        return 0;
}

static int prepare(const PublishOptions *o, Prepared *p, char **ret_error) {
        int r;

        r = check_options(o, ret_error);
        if (r < 0)
                return r;
        p->file_name = strdup_printf("%s%s", o->sha, o->suffix);
        p->key = strdup_printf("%s%s%s", o->prefix, o->sha, o->suffix);
        if (!p->file_name || !p->key)
                return -ENOMEM;
        if (sodium_init() < 0)
                return error_set(ret_error, -EIO, "cannot initialize libsodium");
        r = open_artifact(p, o->file, ret_error);
        if (r < 0)
                return r;
        if (o->minisig_path)
                return read_signature(p, o->minisig_path, ret_error);
        return 0;
}

static int put_text(S3Client *c, FILE *out, const char *bucket, const char *key, const char *text, size_t n,
                    char **ret_error) {
        _cleanup_free_ char *etag = NULL;
        int r;

        r = s3_put_data(c, bucket, key, text, n, &etag, ret_error);
        if (r < 0)
                return r;
        fprintf(out, "uploaded s3://%s/%s (%zu bytes, ETag %s)\n", bucket, key, n, strempty(etag));
        return 0;
}

/* A staged rollout: the pointer is edited, not overwritten (fleet.c). */
static int put_policy(S3Client *c, FILE *out, const PublishOptions *o, char **ret_error) {
        _cleanup_free_ char *text = NULL, *why = NULL;
        int r;

        r = fleet_publish_pointer(c, o->bucket, o->pointer_key, o->sha, &o->waves, now_usec(CLOCK_REALTIME), &text,
                                  &why);
        if (r == S3_CONDITION_FAILED)
                return error_set(ret_error, r, "%s; the artifact is uploaded: publish again to point at it", why);
        if (r < 0)
                return error_set(ret_error, r, "%s", why ?: strerror(-r));
        fprintf(out, "pointed s3://%s/%s at %s:\n%s", o->bucket, o->pointer_key, o->sha, text);
        return 0;
}

static int upload(S3Client *c, const PublishOptions *o, const Prepared *p, FILE *out, char **ret_error) {
        _cleanup_free_ char *sidecar = NULL, *sidecar_key = NULL, *sig_key = NULL, *etag = NULL, *ptr = NULL;
        int r;

        sidecar = strdup_printf("%s  %s\n", p->sha256, p->file_name);
        sidecar_key = strdup_printf("%s.sha256", p->key);
        sig_key = strdup_printf("%s.minisig", p->key);
        ptr = strdup_printf("%s\n", o->sha);
        if (!sidecar || !sidecar_key || !sig_key || !ptr)
                return -ENOMEM;
        r = put_text(c, out, o->bucket, sidecar_key, sidecar, strlen(sidecar), ret_error);
        if (r >= 0 && p->minisig)
                r = put_text(c, out, o->bucket, sig_key, p->minisig, p->minisig_len, ret_error);
        if (r < 0)
                return r;
        r = s3_put_file(c, o->bucket, p->key, p->fd, p->size, &etag, ret_error);
        if (r < 0)
                return r;
        fprintf(out, "uploaded s3://%s/%s (%" PRIu64 " bytes, sha256 %s, ETag %s)\n", o->bucket, p->key,
                p->size, p->sha256, strempty(etag));
        if (o->pointer_key && o->waves.n_waves > 0)
                return put_policy(c, out, o, ret_error);
        if (o->pointer_key)
                return put_text(c, out, o->bucket, o->pointer_key, ptr, strlen(ptr), ret_error);
        return 0;
}

int publish_run(const S3Config *cfg, const PublishOptions *o, FILE *out, char **ret_error) {
        _cleanup_(prepared_done) Prepared p = { .fd = -1 };
        _cleanup_s3_client_ S3Client *c = NULL;
        int r;

        r = prepare(o, &p, ret_error);
        if (r < 0)
                return r;
        r = s3_client_new(cfg, &c, ret_error);
        if (r < 0)
                return r;
        r = upload(c, o, &p, out, ret_error);
        fflush(out);
        return r;
}

/* ---- command line ---- */

static void help(void) {
        printf("Usage: deployctl [-c FILE] publish --bucket B [--prefix P] --sha SHA [--suffix .tar.gz]\n"
               "                 [--minisig SIGFILE] [--pointer KEY] FILE\n"
               "Upload FILE as s3://B/P<SHA><SUFFIX> with its .sha256 (and .minisig), then\n"
               "point KEY at SHA. With --waves 5%%,25%%,100%% --wave-interval 15m [--max-failures N]\n"
               "the pointer carries a staged rollout: the hosts take SHA wave by wave, and stop\n"
               "once N hosts (default 1) rolled it back; the pointer is read, edited and written\n"
               "with If-Match on its ETag, and remembers the build it named before (for\n"
               "'deployctl fleet abort'). S3 settings come from the [s3] section of the config file\n"
               "(default %s); without one, from AWS_REGION, AWS_ENDPOINT_URL_S3 and the\n"
               "usual AWS credentials (environment, then EC2 IMDSv2).\n"
               "Exit status: 0 published, 1 failed, 2 usage or configuration, 7 the pointer\n"
               "changed since it was read (another operator?): the pointer was not written.\n",
               CONFIG_DEFAULT_PATH);
}

#define MAX_FAILURES_MAX 100000U

static int parse_rollout_option(int c, const char *v, FleetWaves *w) {
        _cleanup_free_ char *why = NULL;
        char *end;
        unsigned long n;

        if (c == 'W' && fleet_parse_waves(v, w->waves, &w->n_waves, &why) < 0)
                return fprintf(stderr, "deployctl publish: %s\n", why ?: "invalid --waves"), -EINVAL;
        if (c == 'I' && (config_parse_duration(v, &w->wave_interval_usec) < 0 ||
                         w->wave_interval_usec < USEC_PER_SEC))
                return fprintf(stderr, "deployctl publish: --wave-interval takes a duration of at least 1s "
                               "(90s, 15m, 1h)\n"), -EINVAL;
        if (c == 'F') {
                errno = 0;
                n = strtoul(v, &end, 10);
                if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n < 1 || n > MAX_FAILURES_MAX)
                        return fprintf(stderr, "deployctl publish: --max-failures takes a number >= 1\n"), -EINVAL;
                w->max_failures = (unsigned) n;
        }
        return 0;
}

static int parse_args(int argc, char **argv, PublishOptions *o) {
        static const struct option options[] = {
                { "bucket", required_argument, NULL, 'b' },
                { "prefix", required_argument, NULL, 'p' },
                { "sha", required_argument, NULL, 's' },
                { "suffix", required_argument, NULL, 'x' },
                { "minisig", required_argument, NULL, 'm' },
                { "pointer", required_argument, NULL, 'P' },
                { "waves", required_argument, NULL, 'W' },
                { "wave-interval", required_argument, NULL, 'I' },
                { "max-failures", required_argument, NULL, 'F' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        *o = (PublishOptions) { .prefix = "", .suffix = ".tar.gz" };
        optind = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'b': o->bucket = optarg; break;
                case 'p': o->prefix = optarg; break;
                case 's': o->sha = optarg; break;
                case 'x': o->suffix = optarg; break;
                case 'm': o->minisig_path = optarg; break;
                case 'P': o->pointer_key = optarg; break;
                case 'W':
                case 'I':
                case 'F':
                        if (parse_rollout_option(c, optarg, &o->waves) < 0)
                                return -EINVAL;
                        break;
                case 'h': help(); return 0;
                default: return -EINVAL;
                }
        if (optind != argc - 1) {
                fprintf(stderr, "deployctl publish: exactly one FILE expected (see --help)\n");
                return -EINVAL;
        }
        o->file = argv[optind];
        return 1;
}

/* CI without a config file: the settings the AWS tools read. */
static void s3_config_from_env(S3Config *ret) {
        char *endpoint = getenv("AWS_ENDPOINT_URL_S3") ?: getenv("AWS_ENDPOINT_URL");
        char *region = getenv("AWS_REGION") ?: getenv("AWS_DEFAULT_REGION");

        *ret = (S3Config) {
                .region = isempty(region) ? (char *) "us-east-1" : region,
                .endpoint = isempty(endpoint) ? NULL : endpoint,
                .addressing = isempty(endpoint) ? S3_ADDRESSING_VIRTUAL : S3_ADDRESSING_PATH,
                .credentials = CREDENTIALS_AUTO,
        };
}

int publish_main(const char *config_path, int argc, char **argv) {
        _cleanup_config_ Config *cfg = NULL;
        _cleanup_free_ char *error = NULL;
        PublishOptions o;
        S3Config env_s3;
        int r;

        r = parse_args(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        if (config_path || access(CONFIG_DEFAULT_PATH, F_OK) == 0) {
                r = config_load(config_path ?: CONFIG_DEFAULT_PATH, &cfg, &error);
                if (r < 0) {
                        fprintf(stderr, "deployctl publish: %s\n", error ?: strerror(-r));
                        return 2;
                }
        } else
                s3_config_from_env(&env_s3);
        r = publish_run(cfg ? &cfg->s3 : &env_s3, &o, stdout, &error);
        if (r < 0) {
                fprintf(stderr, "deployctl publish: %s\n", error ?: strerror(-r));
                return r == -EINVAL ? 2 : r == S3_CONDITION_FAILED ? FLEET_EXIT_CONFLICT : 1;
        }
        return 0;
}
