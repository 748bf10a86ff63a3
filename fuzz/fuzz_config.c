/* The environment: aw_config_load with a getenv built from the input.
 *
 * Input: NUL-separated entries. "NAME=value" sets NAME; an entry whose first
 * byte is below 0x20 names a known variable by that byte (value = the rest),
 * which lets the fuzzer reach every variable without spelling it. When the
 * first input byte is odd, a valid environment is loaded first and the
 * entries override it (so single bad values are explored, not only a missing
 * ARGO_POD_NAME). Later entries win.
 *
 * Properties:
 *  - rc is 0 exactly when no reason was given; loading without a reason list
 *    gives the same rc;
 *  - each reason is one line that starts with the name of a known variable
 *    and ": ", quotes at most a short prefix of the value (so a template-sized
 *    value cannot flood the termination log), and is valid UTF-8 whenever the
 *    environment was;
 *  - the configuration is usable as loaded: the API host cannot carry URL
 *    syntax, the port is a plain 1-65535, the root has no trailing '/', the
 *    progress file is under the root, the grace period is positive and the
 *    reserve is at most half of it, exactly one template source is set, and
 *    values given are values kept. */
#include "argowait/config.h"
#include "fuzz_common.h"

static const char *const known[] = {
    "ARGOWAIT_ROOT", "ARGO_POD_NAME", "ARGO_POD_UID", "ARGO_WORKFLOW_NAME", "ARGO_WORKFLOW_UID",
    "ARGO_NODE_ID", "ARGO_INSTANCE_ID", "POD_NAMESPACE", "ARGO_INCLUDE_SCRIPT_OUTPUT",
    "ARGO_DEADLINE", "ARGO_PROGRESS_FILE", "ARGO_PROGRESS_PATCH_TICK_DURATION",
    "ARGO_PROGRESS_FILE_TICK_DURATION", "ARGO_TERMINATION_GRACE_PERIOD_SECONDS",
    "ARGOWAIT_FINALIZE_RESERVE_MS", "ARGO_TEMPLATE", "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT"};
#define KNOWN_COUNT (sizeof(known) / sizeof(known[0]))

static const char *const base_env[][2] = {
    {"ARGO_POD_NAME", "wf-abc-main-123"}, {"ARGO_WORKFLOW_NAME", "wf-abc"},
    {"ARGO_WORKFLOW_UID", "3f1c2b7a-1111-4222-8333-444455556666"}, {"ARGO_NODE_ID", "wf-abc-123"},
    {"ARGO_INCLUDE_SCRIPT_OUTPUT", "true"}, {"ARGO_DEADLINE", "0001-01-01T00:00:00Z"},
    {"ARGO_TERMINATION_GRACE_PERIOD_SECONDS", "30"}, {"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
    {"KUBERNETES_SERVICE_PORT", "443"}, {"ARGO_PROGRESS_PATCH_TICK_DURATION", "1m0s"},
    {"ARGO_PROGRESS_FILE_TICK_DURATION", "3s"}};

#define MAX_VARS 64
typedef struct {
  const char *name;
  const char *value;
} env_var;
static env_var env[MAX_VARS];
static size_t env_count;

static const char *fake_getenv(const char *name) {
  for (size_t i = env_count; i-- > 0;)
    if (strcmp(env[i].name, name) == 0) return env[i].value;
  return NULL;
}

static void env_set(const char *name, const char *value) {
  if (env_count < MAX_VARS) env[env_count++] = (env_var){name, value};
}

static bool starts_with_known_name(const char *reason) {
  for (size_t i = 0; i < KNOWN_COUNT; i++) {
    size_t n = strlen(known[i]);
    if (strncmp(reason, known[i], n) == 0 && reason[n] == ':' && reason[n + 1] == ' ') return true;
  }
  return false;
}

static bool plain_host(const char *h) {
  if (!*h) return false;
  for (; *h; h++) {
    char c = *h;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-' || c == ':' || c == '%' || c == '_'))
      return false;
  }
  return true;
}

static void check_config(const aw_config *cfg, int rc, const aw_reasons *errs, bool env_utf8) {
  FUZZ_CHECK((rc == 0) == (errs->count == 0), "rc %d with %zu reasons", rc, errs->count);
  for (size_t i = 0; i < errs->count; i++) {
    const char *r = errs->items[i];
    FUZZ_CHECK(fuzz_one_line(r), "reason is not one line: %s", r);
    FUZZ_CHECK(starts_with_known_name(r), "reason does not name its variable: %s", r);
    FUZZ_CHECK(strlen(r) <= 256, "reason of %zu bytes: %s", strlen(r), r);
    if (env_utf8) FUZZ_CHECK(fuzz_utf8_valid(r, strlen(r)), "reason is not valid UTF-8: %s", r);
  }
  FUZZ_CHECK(cfg->root != NULL, "no root");
  size_t rl = strlen(cfg->root);
  FUZZ_CHECK(rl == 0 || cfg->root[rl - 1] != '/', "root ends with '/': %s", cfg->root);
  if (cfg->api_host) FUZZ_CHECK(plain_host(cfg->api_host), "API host with URL syntax: %s", cfg->api_host);
  if (cfg->api_port) {
    int64_t port;
    FUZZ_CHECK(aw_parse_int(cfg->api_port, 1, 65535, &port) == 0 && cfg->api_port[0] != '0' &&
                   strspn(cfg->api_port, "0123456789") == strlen(cfg->api_port),
               "API port %s", cfg->api_port);
  }
  FUZZ_CHECK(cfg->progress_file && strncmp(cfg->progress_file, cfg->root, rl) == 0 &&
                 cfg->progress_file[rl] == '/',
             "progress file %s outside root %s", cfg->progress_file ? cfg->progress_file : "(null)",
             cfg->root);
  FUZZ_CHECK(cfg->grace_ms > 0, "grace %lld ms", (long long)cfg->grace_ms);
  FUZZ_CHECK(cfg->reserve_ms >= 0 && cfg->reserve_ms <= cfg->grace_ms / 2, "reserve %lld of grace %lld",
             (long long)cfg->reserve_ms, (long long)cfg->grace_ms);
  FUZZ_CHECK((cfg->template_json != NULL) != (cfg->template_path != NULL), "template source");
  if (cfg->template_path)
    FUZZ_CHECK(strncmp(cfg->template_path, cfg->root, rl) == 0 && cfg->template_path[rl] == '/',
               "template path %s outside root", cfg->template_path);
  if (cfg->has_deadline) FUZZ_CHECK(cfg->deadline_unix_ms != AW_RFC3339_ZERO_MS, "zero deadline kept");
  if (aw_config_progress_enabled(cfg))
    FUZZ_CHECK(cfg->progress_patch_tick_ms > 0 && cfg->progress_file_tick_ms > 0, "ticks");
  /* Values given are values kept. */
  const char *v = fake_getenv("ARGO_POD_NAME");
  if (v && *v) FUZZ_CHECK(cfg->pod_name && !strcmp(cfg->pod_name, v), "pod name not kept");
  v = fake_getenv("ARGO_NODE_ID");
  if (v && *v) FUZZ_CHECK(cfg->node_id && !strcmp(cfg->node_id, v), "node id not kept");
  else FUZZ_CHECK(!aw_config_has_identity(cfg), "identity without a node id");
  v = fake_getenv("ARGO_INSTANCE_ID");
  FUZZ_CHECK((v && *v) == (cfg->instance_id != NULL), "instance id presence");
  v = fake_getenv("ARGO_TEMPLATE");
  if (v && *v && strcmp(v, "offloaded") != 0)
    FUZZ_CHECK(cfg->template_json && !strcmp(cfg->template_json, v), "template not kept");
  char *p = aw_config_path(cfg, "/x", "y");
  FUZZ_CHECK(p && strlen(p) == rl + 4 && !strncmp(p, cfg->root, rl) && !strcmp(p + rl, "/x/y"),
             "aw_config_path");
  free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = fuzz_cstr(data, size); /* every entry below ends at a NUL */
  env_count = 0;
  size_t pos = 0;
  if (size > 0) {
    if (data[0] & 1)
      for (size_t i = 0; i < sizeof(base_env) / sizeof(base_env[0]); i++)
        env_set(base_env[i][0], base_env[i][1]);
    pos = 1;
  }
  while (pos < size) {
    char *entry = buf + pos;
    size_t len = strlen(entry);
    unsigned char first = (unsigned char)entry[0];
    if (first > 0 && first < 0x20) {
      env_set(known[first % KNOWN_COUNT], entry + 1);
    } else {
      char *eq = strchr(entry, '=');
      if (eq && eq != entry) {
        *eq = '\0';
        env_set(entry, eq + 1);
      }
    }
    pos += len + 1;
  }
  bool env_utf8 = true;
  for (size_t i = 0; i < env_count; i++)
    if (!fuzz_utf8_valid(env[i].value, strlen(env[i].value))) env_utf8 = false;

  aw_config cfg;
  aw_reasons errs;
  aw_reasons_init(&errs);
  int rc = aw_config_load(&cfg, fake_getenv, &errs);
  check_config(&cfg, rc, &errs, env_utf8);
  aw_config_free(&cfg);
  FUZZ_CHECK(cfg.root == NULL && cfg.api_host == NULL && cfg.template_json == NULL,
             "aw_config_free left pointers");
  aw_reasons_free(&errs);

  aw_config quiet;
  int rc2 = aw_config_load(&quiet, fake_getenv, NULL);
  FUZZ_CHECK(rc2 == rc, "rc %d without a reason list, %d with one", rc2, rc);
  aw_config_free(&quiet);
  free(buf);
  return 0;
}
