/* s3tool: runs one aw_s3 operation on its own loop, for integration tests.
 *
 *   s3tool put FILE s3://BUCKET/KEY [--cancel-after-ms N]
 *   s3tool bucket s3://BUCKET [--create]
 *
 * Configuration from the environment: S3_ENDPOINT (host[:port]),
 * S3_REGION, S3_INSECURE=1 (http), S3_ADDRESSING=path|virtual (default
 * path), S3_ACCESS_KEY, S3_SECRET_KEY, S3_SESSION_TOKEN, S3_CA_FILE,
 * S3_CONNECT_TO (a curl CONNECT_TO entry: reach a virtual-host name such as
 * bucket.s3.test:PORT on 127.0.0.1 without DNS), ARTIFACT_S3_UPLOAD_PART_SIZE_MIB,
 * ARTIFACT_S3_UPLOAD_THREADS, S3TOOL_BUDGET_MS (a budget active from the
 * start: the SIGTERM case), S3TOOL_LOGLEVEL (default info).
 *
 * Prints one result line on stdout:
 *   status=ok bytes=N parts=N attempts=N retries=N buffer_peak=N created=0|1
 *             aborts=N rss_peak_kib=N (VmHWM: the peak since exec)
 *   status=permanent|transient|cancelled http=N code=C attempts=N message=...
 * Exit: 0 ok, 1 permanent, 2 transient (gave up), 3 cancelled, 4 usage. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/http.h"
#include "argowait/log.h"
#include "argowait/s3.h"

static aw_s3 *s3;
static aw_s3_op *op;
static aw_http *http;
static int exit_code = 4;
static uv_timer_t cancel_timer;

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static void on_http_closed(void *arg) { (void)arg; }

/* The peak resident set of this process since exec (VmHWM), in KiB. */
static long peak_rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

static void on_done(const aw_s3_result *res, void *arg) {
  (void)arg;
  op = NULL;
  aw_s3_stats st = aw_s3_get_stats(s3);
  static const char *const names[] = {"ok", "transient", "permanent", "cancelled"};
  if (res->status == AW_S3_OK) {
    printf("status=ok bytes=%llu parts=%u attempts=%u retries=%u buffer_peak=%llu created=%d aborts=%u "
           "rss_peak_kib=%ld\n",
           (unsigned long long)res->bytes, res->parts, res->attempts, st.retries,
           (unsigned long long)st.buffer_peak, res->created ? 1 : 0, st.aborts_sent, peak_rss_kib());
  } else {
    printf("status=%s http=%ld code=%s attempts=%u retries=%u aborts=%u message=%s\n",
           names[res->status], res->http_status, res->code ? res->code : "-", res->attempts,
           st.retries, st.aborts_sent, res->message ? res->message : "-");
  }
  fflush(stdout);
  exit_code = res->status == AW_S3_OK ? 0 : res->status == AW_S3_PERMANENT ? 1
              : res->status == AW_S3_TRANSIENT ? 2 : 3;
  uv_close((uv_handle_t *)&cancel_timer, NULL);
  aw_s3_free(s3);
  s3 = NULL;
  aw_http_close(http, on_http_closed, NULL);
}

static void on_cancel(uv_timer_t *t) {
  (void)t;
  if (op) {
    aw_info("s3tool: cancelling");
    aw_s3_cancel(op);
  }
}

static int usage(void) {
  fprintf(stderr, "usage: s3tool put FILE s3://BUCKET/KEY [--cancel-after-ms N]\n"
                  "       s3tool bucket s3://BUCKET [--create]\n");
  return 4;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  const char *cmd = argv[1];
  const char *file = NULL, *url = NULL;
  bool create = false;
  long cancel_ms = -1;
  int i = 2;
  if (strcmp(cmd, "put") == 0) {
    if (argc < 4) return usage();
    file = argv[2];
    url = argv[3];
    i = 4;
  } else if (strcmp(cmd, "bucket") == 0) {
    url = argv[2];
    i = 3;
  } else {
    return usage();
  }
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--create") == 0) create = true;
    else if (strcmp(argv[i], "--cancel-after-ms") == 0 && i + 1 < argc) cancel_ms = atol(argv[++i]);
    else return usage();
  }
  if (strncmp(url, "s3://", 5) != 0) return usage();
  char bucket[256];
  const char *slash = strchr(url + 5, '/');
  size_t blen = slash ? (size_t)(slash - (url + 5)) : strlen(url + 5);
  if (blen == 0 || blen >= sizeof(bucket)) return usage();
  memcpy(bucket, url + 5, blen);
  bucket[blen] = '\0';
  const char *key = slash ? slash + 1 : NULL;
  if (file && (!key || !*key)) return usage();

  aw_log_level level = AW_LOG_INFO;
  if (env("S3TOOL_LOGLEVEL")) aw_log_parse_level(env("S3TOOL_LOGLEVEL"), &level);
  aw_log_setup(level, AW_LOG_TEXT);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  uint64_t part_size;
  unsigned threads;
  char *err = NULL;
  if (aw_s3_parse_upload_settings(env("ARTIFACT_S3_UPLOAD_PART_SIZE_MIB"),
                                  env("ARTIFACT_S3_UPLOAD_THREADS"), &part_size, &threads, &err) != 0) {
    aw_error("%s", err ? err : "bad settings");
    free(err);
    return 4;
  }
  uv_loop_t *loop = uv_default_loop();
  aw_budget budget = {0};
  if (env("S3TOOL_BUDGET_MS")) {
    uint64_t ms = strtoull(env("S3TOOL_BUDGET_MS"), NULL, 10);
    aw_budget_start(&budget, uv_now(loop), ms, 0, 0);
  }
  const char *addressing = env("S3_ADDRESSING");
  aw_s3_config cfg = {
      .endpoint = env("S3_ENDPOINT"),
      .bucket = bucket,
      .region = env("S3_REGION"),
      .insecure = env("S3_INSECURE") && strcmp(env("S3_INSECURE"), "1") == 0,
      .path_style = !addressing || strcmp(addressing, "virtual") != 0,
      .access_key = env("S3_ACCESS_KEY"),
      .secret_key = env("S3_SECRET_KEY"),
      .session_token = env("S3_SESSION_TOKEN"),
      .ca_file = env("S3_CA_FILE"),
      .user_agent = "argowait-s3tool",
      .connect_to = env("S3_CONNECT_TO"),
      .part_size = part_size,
      .threads = threads,
      .budget = &budget,
  };
  http = aw_http_new(loop);
  s3 = aw_s3_new(loop, http, &cfg, &err);
  if (!s3) {
    aw_error("%s", err ? err : "cannot set up the S3 client");
    free(err);
    return 4;
  }
  uv_timer_init(loop, &cancel_timer);
  if (file) {
    char *d = strdup(file), *b = strdup(file);
    op = aw_s3_put_file(s3, key, dirname(d), basename(b), on_done, NULL);
    free(d);
    free(b);
  } else {
    op = aw_s3_ensure_bucket(s3, create, on_done, NULL);
  }
  if (!op) {
    aw_error("cannot start the operation");
    return 4;
  }
  if (cancel_ms >= 0) uv_timer_start(&cancel_timer, on_cancel, (uint64_t)cancel_ms, 0);
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop);
  if (rc != 0) {
    aw_error("loop not empty at exit: %s", uv_strerror(rc));
    exit_code = 5;
  }
  curl_global_cleanup();
  return exit_code;
}
