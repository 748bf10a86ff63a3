/* Unit tests for src/config.c: the parsers and the environment loader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/config.h"

/* ---- a fake environment ------------------------------------------------- */

typedef struct {
  const char *name;
  const char *value;
} env_entry;

/* The loader only takes a function of the name, so the table it reads is
 * set per test. */
static const env_entry *fake_env;

static const char *fake_getenv(const char *name) {
  for (const env_entry *e = fake_env; e && e->name; e++)
    if (strcmp(e->name, name) == 0) return e->value;
  return NULL;
}

#define BASE_ENV                                                               \
  {"ARGO_POD_NAME", "wf-abc-main-123"}, {"ARGO_POD_UID", "pod-uid"},           \
      {"ARGO_WORKFLOW_NAME", "wf-abc"}, {"ARGO_WORKFLOW_UID", "wf-uid"},       \
      {"ARGO_NODE_ID", "wf-abc-42"}, {"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, \
  {                                                                            \
    "KUBERNETES_SERVICE_PORT", "443"                                           \
  }

/* Loads env; returns the rc and leaves cfg and errs for checks. */
static int load(const env_entry *env, aw_config *cfg, aw_reasons *errs) {
  fake_env = env;
  aw_reasons_init(errs);
  return aw_config_load(cfg, fake_getenv, errs);
}

static void assert_one_reason(const aw_reasons *errs, const char *expected) {
  assert_int_equal(errs->count, 1);
  assert_string_equal(errs->items[0], expected);
}

/* Runs base env plus one override and expects exactly the given reason. */
static void expect_single_reason(const char *name, const char *value,
                                 const char *expected) {
  env_entry env[] = {{name, value}, BASE_ENV, {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), -1);
  assert_one_reason(&errs, expected);
  /* Loading went on: the identity is known all the same. */
  assert_true(aw_config_has_identity(&cfg));
  if (strncmp(name, "KUBERNETES_", 11) != 0) {
    assert_string_equal(cfg.api_host, "10.96.0.1");
    assert_string_equal(cfg.api_port, "443");
  }
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

/* ---- aw_parse_go_duration ----------------------------------------------- */

static void test_duration_valid(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ns;
  } cases[] = {
      {"0", 0},
      {"+0", 0},
      {"-0", 0},
      {"0s", 0},
      {"5s", 5000000000LL},
      {"1m0s", 60000000000LL},
      {"500ms", 500000000LL},
      {"3s", 3000000000LL},
      {"1.5h", 5400000000000LL},
      {"1h2m3.5s", 3723500000000LL},
      {"-2us", -2000},
      {"+2us", 2000},
      {"1\xC2\xB5s", 1000},
      {"1\xCE\xBCs", 1000},
      {"100ns", 100},
      {".5s", 500000000LL},
      {"1.s", 1000000000LL},
      {"3.000000001s", 3000000001LL},
      {"0.1ns", 0},
      {"1h1h", 7200000000000LL},
      {"1.0000000000000000000000001s", 1000000000LL},
      {"9223372036854775807ns", INT64_MAX},
      {"-9223372036854775808ns", INT64_MIN},
      {"2562047h47m16.854775807s", INT64_MAX},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int64_t ns = 12345;
    if (aw_parse_go_duration(cases[i].text, &ns) != 0)
      fail_msg("rejected valid duration \"%s\"", cases[i].text);
    if (ns != cases[i].ns)
      fail_msg("\"%s\": got %lld, want %lld", cases[i].text, (long long)ns,
               (long long)cases[i].ns);
  }
}

static void test_duration_invalid(void **state) {
  (void)state;
  static const char *const cases[] = {
      "",
      "-",
      "+",
      "5",
      "s",
      ".",
      ".s",
      "5x",
      "1hh",
      "1h ",
      " 1h",
      "1e3s",
      "1,5s",
      "0s0",
      "00",
      "--1s",
      "1s-1s",
      "1.2.3s",
      "1S",
      "1 s",
      "1\xC2s",
      "9223372036854775808ns",
      "2562048h",
      "9223372036854775807ns1ns",
      "-9223372036854775809ns",
      "99999999999999999999s",
      /* whole * unit past 2^64 must not wrap into range */
      "5124096h",
      "10000000000000h",
      "307445734561826m",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int64_t ns = 777;
    if (aw_parse_go_duration(cases[i], &ns) == 0)
      fail_msg("accepted invalid duration \"%s\" as %lld", cases[i],
               (long long)ns);
    assert_int_equal(ns, 777);
  }
  int64_t ns = 0;
  assert_int_equal(aw_parse_go_duration(NULL, &ns), -1);
}

/* ---- aw_parse_rfc3339 --------------------------------------------------- */

static void test_rfc3339_valid(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ms;
  } cases[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2026-11-22T14:39:00Z", 1795358340000LL},
      {"0001-01-01T00:00:00Z", AW_RFC3339_ZERO_MS},
      {"0001-01-01T01:00:00+01:00", AW_RFC3339_ZERO_MS},
      {"0000-01-01T00:00:00Z", -62167219200000LL},
      {"2024-02-29T12:00:00Z", 1709208000000LL},
      {"2000-02-29T00:00:00Z", 951782400000LL},
      {"9999-12-31T23:59:59Z", 253402300799000LL},
      {"1970-01-01T00:00:00.5Z", 500},
      {"1970-01-01T00:00:00.123456789Z", 123},
      {"1970-01-01T00:00:00.0019Z", 1},
      {"1970-01-01T00:00:00.1234567891234Z", 123},
      {"1969-12-31T23:59:59.999Z", -1},
      {"1970-01-01T01:00:00+01:00", 0},
      {"1969-12-31T18:30:00-05:30", 0},
      {"1970-01-01T00:00:00-00:00", 0},
      {"2026-11-22T14:39:00.250+23:59",
       1795358340250LL - (23 * 60 + 59) * 60000LL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int64_t ms = 12345;
    if (aw_parse_rfc3339(cases[i].text, &ms) != 0)
      fail_msg("rejected valid time \"%s\"", cases[i].text);
    if (ms != cases[i].ms)
      fail_msg("\"%s\": got %lld, want %lld", cases[i].text, (long long)ms,
               (long long)cases[i].ms);
  }
}

static void test_rfc3339_invalid(void **state) {
  (void)state;
  static const char *const cases[] = {
      "",
      "tomorrow",
      "2026-11-22",
      "2026-11-22T14:39:00",
      "2026-11-22t14:39:00Z",
      "2026-11-22T14:39:00z",
      "2026-11-22 14:39:00Z",
      " 2026-11-22T14:39:00Z",
      "2026-11-22T14:39:00Z ",
      "2026-11-22T14:39:00ZZ",
      "2026-11-22T24:00:00Z",
      "2026-11-22T23:60:00Z",
      "2026-11-22T23:59:60Z",
      "2026-13-01T00:00:00Z",
      "2026-00-01T00:00:00Z",
      "2026-01-00T00:00:00Z",
      "2026-04-31T00:00:00Z",
      "2023-02-29T00:00:00Z",
      "1900-02-29T00:00:00Z",
      "2026-11-22T14:39:00+24:00",
      "2026-11-22T14:39:00+01:60",
      "2026-11-22T14:39:00+0100",
      "2026-11-22T14:39:00+01:00:00",
      "2026-11-22T14:39:00 01:00",
      "2026-11-22T14:39:00.Z",
      "2026-11-22T14:39:00,5Z",
      "2026-11-22T14:39:00.5",
      "26-11-22T14:39:00Z",
      "2026-1-22T14:39:00Z",
      "2026-11-22T4:39:00Z",
      "+2026-11-22T14:39:00Z",
      "2026-11-22T14:39:0aZ",
      "2026-11-22T14:39:00.12a4Z",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int64_t ms = 777;
    if (aw_parse_rfc3339(cases[i], &ms) == 0)
      fail_msg("accepted invalid time \"%s\" as %lld", cases[i], (long long)ms);
    assert_int_equal(ms, 777);
  }
  int64_t ms = 0;
  assert_int_equal(aw_parse_rfc3339(NULL, &ms), -1);
}

/* ---- aw_parse_bool / aw_parse_int --------------------------------------- */

static void test_parse_bool(void **state) {
  (void)state;
  static const char *const truths[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const falsehoods[] = {"0",     "f",     "F",
                                           "FALSE", "false", "False"};
  static const char *const invalid[] = {
      "", "yes", "no", "tRUE", "TrUe", " true", "true ", "2", "on", "fALSE"};
  for (size_t i = 0; i < 6; i++) {
    bool b = false;
    assert_int_equal(aw_parse_bool(truths[i], &b), 0);
    assert_true(b);
    b = true;
    assert_int_equal(aw_parse_bool(falsehoods[i], &b), 0);
    assert_false(b);
  }
  for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
    bool b = true;
    if (aw_parse_bool(invalid[i], &b) == 0)
      fail_msg("accepted \"%s\" as a boolean", invalid[i]);
    assert_true(b);
  }
  bool b;
  assert_int_equal(aw_parse_bool(NULL, &b), -1);
}

static void test_parse_int(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t value;
  } ok[] = {
      {"0", 0},
      {"42", 42},
      {"-42", -42},
      {"+42", 42},
      {"  42\t\n", 42},
      {"007", 7},
      {"9223372036854775807", INT64_MAX},
      {"-9223372036854775808", INT64_MIN},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    int64_t v = 1;
    if (aw_parse_int(ok[i].text, INT64_MIN, INT64_MAX, &v) != 0)
      fail_msg("rejected \"%s\"", ok[i].text);
    assert_int_equal(v, ok[i].value);
  }
  static const char *const bad[] = {
      "",
      "   ",
      "-",
      "+",
      "4 2",
      "42x",
      "0x10",
      "1e3",
      "--1",
      "+-1",
      "9223372036854775808",
      "-9223372036854775809",
      "99999999999999999999",
      "\xC2\xA0"
      "1",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int64_t v = 5;
    if (aw_parse_int(bad[i], INT64_MIN, INT64_MAX, &v) == 0)
      fail_msg("accepted \"%s\" as %lld", bad[i], (long long)v);
    assert_int_equal(v, 5);
  }
  int64_t v = 5;
  assert_int_equal(aw_parse_int("10", 1, 10, &v), 0);
  assert_int_equal(v, 10);
  assert_int_equal(aw_parse_int("11", 1, 10, &v), -1);
  assert_int_equal(aw_parse_int("0", 1, 10, &v), -1);
  assert_int_equal(aw_parse_int(NULL, 1, 10, &v), -1);
  assert_int_equal(v, 10);
}

/* ---- aw_config_reserve_ms ----------------------------------------------- */

static void test_reserve_default(void **state) {
  (void)state;
  static const struct {
    int64_t grace, reserve;
  } cases[] = {
      {30000, 5000}, /* 20% is 6000: at most 5000 */
      {10000, 2000}, /* 20% */
      {2000, 500},   /* 20% is 400: at least 500 */
      {1000, 500},   /* half the grace period is 500 too */
      {600, 300},    /* at least 500, but never more than half */
      {1, 0},        {0, 0}, {-1000, 0}, {INT64_MAX, 5000},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int64_t out = -7;
    assert_int_equal(aw_config_reserve_ms(cases[i].grace, NULL, &out), 0);
    if (out != cases[i].reserve)
      fail_msg("grace %lld: got %lld, want %lld", (long long)cases[i].grace,
               (long long)out, (long long)cases[i].reserve);
  }
}

static void test_reserve_explicit(void **state) {
  (void)state;
  int64_t out = -7;
  assert_int_equal(aw_config_reserve_ms(30000, "100", &out), 0);
  assert_int_equal(out, 100);
  assert_int_equal(aw_config_reserve_ms(30000, "0", &out), 0);
  assert_int_equal(out, 0);
  assert_int_equal(aw_config_reserve_ms(30000, " 9000 ", &out), 0);
  assert_int_equal(out, 9000); /* above the default's 5000: used as given */
  assert_int_equal(aw_config_reserve_ms(30000, "20000", &out), 0);
  assert_int_equal(out, 15000); /* but never more than half */
  assert_int_equal(aw_config_reserve_ms(1000, "400", &out), 0);
  assert_int_equal(out, 400); /* below the default's 500: used as given */

  static const char *const bad[] = {"",    "-5",  "abc",
                                    "1.5", "5ms", "99999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    out = -7;
    if (aw_config_reserve_ms(30000, bad[i], &out) != -1)
      fail_msg("accepted reserve \"%s\"", bad[i]);
    assert_int_equal(out, 5000); /* the default, so loading can go on */
  }
}

/* ---- aw_config_path and accessors --------------------------------------- */

static void test_config_path(void **state) {
  (void)state;
  aw_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  char *p = aw_config_path(&cfg, AW_PATH_CTR_DIR, "main");
  assert_string_equal(p, "/var/run/argo/ctr/main");
  free(p);
  cfg.root = "/tmp/sandbox";
  p = aw_config_path(&cfg, AW_PATH_CTR_DIR, "main/exitcode");
  assert_string_equal(p, "/tmp/sandbox/var/run/argo/ctr/main/exitcode");
  free(p);
  p = aw_config_path(&cfg, AW_PATH_TERMINATION_LOG, NULL);
  assert_string_equal(p, "/tmp/sandbox/dev/termination-log");
  free(p);
  p = aw_config_path(&cfg, AW_PATH_SCRATCH, "");
  assert_string_equal(p, "/tmp/sandbox/tmp/argo/");
  free(p);
}

static void test_identity_and_progress_flags(void **state) {
  (void)state;
  aw_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  assert_false(aw_config_has_identity(&cfg));
  cfg.node_id = "n";
  assert_false(aw_config_has_identity(&cfg));
  cfg.workflow_name = "";
  assert_false(aw_config_has_identity(&cfg));
  cfg.workflow_name = "w";
  assert_true(aw_config_has_identity(&cfg));

  assert_false(aw_config_progress_enabled(&cfg));
  cfg.progress_patch_tick_ms = 60000;
  assert_false(aw_config_progress_enabled(&cfg));
  cfg.progress_file_tick_ms = 3000;
  assert_true(aw_config_progress_enabled(&cfg));
  cfg.progress_patch_tick_ms = 0;
  assert_false(aw_config_progress_enabled(&cfg));
}

/* ---- aw_config_load: good environments ---------------------------------- */

static void test_load_full(void **state) {
  (void)state;
  env_entry env[] = {
      BASE_ENV,
      {"ARGOWAIT_ROOT", "/tmp/pod1/"},
      {"ARGO_INSTANCE_ID", "prod"},
      {"POD_NAMESPACE", "argo"},
      {"ARGO_INCLUDE_SCRIPT_OUTPUT", "true"},
      {"ARGO_DEADLINE", "2026-11-22T14:39:00Z"},
      {"ARGO_PROGRESS_FILE", "/var/run/argo/progress"},
      {"ARGO_PROGRESS_PATCH_TICK_DURATION", "1m0s"},
      {"ARGO_PROGRESS_FILE_TICK_DURATION", "3s"},
      {"ARGO_TERMINATION_GRACE_PERIOD_SECONDS", "10"},
      {"ARGOWAIT_FINALIZE_RESERVE_MS", "1500"},
      {"ARGO_TEMPLATE", "{\"name\":\"main\"}"},
      {NULL, NULL},
  };
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_int_equal(errs.count, 0);
  assert_string_equal(cfg.root, "/tmp/pod1");
  assert_string_equal(cfg.pod_name, "wf-abc-main-123");
  assert_string_equal(cfg.pod_uid, "pod-uid");
  assert_string_equal(cfg.workflow_name, "wf-abc");
  assert_string_equal(cfg.workflow_uid, "wf-uid");
  assert_string_equal(cfg.node_id, "wf-abc-42");
  assert_string_equal(cfg.instance_id, "prod");
  assert_string_equal(cfg.namespace_env, "argo");
  assert_true(cfg.include_script_output);
  assert_true(cfg.has_deadline);
  assert_int_equal(cfg.deadline_unix_ms, 1795358340000LL);
  assert_string_equal(cfg.progress_file, "/tmp/pod1/var/run/argo/progress");
  assert_int_equal(cfg.progress_patch_tick_ms, 60000);
  assert_int_equal(cfg.progress_file_tick_ms, 3000);
  assert_true(aw_config_progress_enabled(&cfg));
  assert_int_equal(cfg.grace_ms, 10000);
  assert_int_equal(cfg.reserve_ms, 1500);
  assert_string_equal(cfg.template_json, "{\"name\":\"main\"}");
  assert_null(cfg.template_path);
  assert_string_equal(cfg.api_host, "10.96.0.1");
  assert_string_equal(cfg.api_port, "443");
  assert_true(aw_config_has_identity(&cfg));
  aw_config_free(&cfg);
  assert_null(cfg.root);
  assert_null(cfg.api_port);
  aw_config_free(&cfg); /* twice is harmless */
  aw_reasons_free(&errs);
}

static void test_load_defaults(void **state) {
  (void)state;
  env_entry env[] = {
      BASE_ENV,
      {"ARGO_INSTANCE_ID", ""},
      {"POD_NAMESPACE", ""},
      {"ARGO_INCLUDE_SCRIPT_OUTPUT", ""},
      {"ARGO_DEADLINE", "0001-01-01T00:00:00Z"},
      {"ARGO_PROGRESS_PATCH_TICK_DURATION", ""},
      {"ARGO_TERMINATION_GRACE_PERIOD_SECONDS", ""},
      {"ARGOWAIT_FINALIZE_RESERVE_MS", ""},
      {"ARGO_TEMPLATE", ""},
      {NULL, NULL},
  };
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_int_equal(errs.count, 0);
  assert_string_equal(cfg.root, "");
  assert_null(cfg.instance_id);
  assert_null(cfg.namespace_env);
  assert_false(cfg.include_script_output);
  assert_false(cfg.has_deadline);
  assert_string_equal(cfg.progress_file, "/var/run/argo/progress");
  assert_int_equal(cfg.progress_patch_tick_ms, 0);
  assert_int_equal(cfg.progress_file_tick_ms, 0);
  assert_false(aw_config_progress_enabled(&cfg));
  assert_int_equal(cfg.grace_ms, AW_DEFAULT_GRACE_MS);
  assert_int_equal(cfg.reserve_ms, 5000);
  assert_null(cfg.template_json);
  assert_string_equal(cfg.template_path, "/var/run/argo/template");
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

static void test_load_template_sources(void **state) {
  (void)state;
  env_entry env[] = {{"ARGO_TEMPLATE", "offloaded"},
                     {"ARGOWAIT_ROOT", "/sb"},
                     BASE_ENV,
                     {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_null(cfg.template_json);
  assert_string_equal(cfg.template_path, "/sb/argo/config/ARGO_TEMPLATE");
  aw_config_free(&cfg);
  aw_reasons_free(&errs);

  env[0].name = "UNRELATED";
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_null(cfg.template_json);
  assert_string_equal(cfg.template_path, "/sb/var/run/argo/template");
  aw_config_free(&cfg);
  aw_reasons_free(&errs);

  /* Only the exact word means offloaded; anything else is the JSON. */
  env[0].name = "ARGO_TEMPLATE";
  env[0].value = "Offloaded";
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_string_equal(cfg.template_json, "Offloaded");
  assert_null(cfg.template_path);
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

static void test_load_grace_period(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t grace, reserve;
  } cases[] = {
      {"45", 45000, 5000}, {"0", 30000, 5000}, {"-5", 30000, 5000},
      {"3", 3000, 600},    {"1", 1000, 500},   {" 7 ", 7000, 1400},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    env_entry env[] = {{"ARGO_TERMINATION_GRACE_PERIOD_SECONDS", cases[i].text},
                       BASE_ENV,
                       {NULL, NULL}};
    aw_config cfg;
    aw_reasons errs;
    assert_int_equal(load(env, &cfg, &errs), 0);
    assert_int_equal(cfg.grace_ms, cases[i].grace);
    assert_int_equal(cfg.reserve_ms, cases[i].reserve);
    aw_config_free(&cfg);
    aw_reasons_free(&errs);
  }
}

static void test_load_ticks_round_up(void **state) {
  (void)state;
  env_entry env[] = {{"ARGO_PROGRESS_PATCH_TICK_DURATION", "1500us"},
                     {"ARGO_PROGRESS_FILE_TICK_DURATION", "1ns"},
                     BASE_ENV,
                     {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_int_equal(cfg.progress_patch_tick_ms, 2);
  assert_int_equal(cfg.progress_file_tick_ms, 1);
  assert_true(aw_config_progress_enabled(&cfg));
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

static void test_load_api_server_forms(void **state) {
  (void)state;
  env_entry env[] = {{"KUBERNETES_SERVICE_HOST", "[fd00::1]"},
                     {"KUBERNETES_SERVICE_PORT", " 6443 "},
                     BASE_ENV,
                     {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_string_equal(cfg.api_host, "fd00::1");
  assert_string_equal(cfg.api_port, "6443");
  aw_config_free(&cfg);
  aw_reasons_free(&errs);

  env[0].value = "kubernetes.default.svc";
  env[1].value = "+1";
  assert_int_equal(load(env, &cfg, &errs), 0);
  assert_string_equal(cfg.api_host, "kubernetes.default.svc");
  assert_string_equal(cfg.api_port, "1");
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

/* ---- aw_config_load: bad environments ----------------------------------- */

static void test_load_nothing_set(void **state) {
  (void)state;
  env_entry env[] = {{NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), -1);
  /* The API server's address is required by the executor only without
   * --kubeconfig, so the loader leaves it unset without a reason. */
  assert_int_equal(errs.count, 3);
  assert_string_equal(errs.items[0], "ARGO_POD_NAME: required, but not set");
  assert_string_equal(errs.items[1],
                      "ARGO_WORKFLOW_NAME: required, but not set");
  assert_string_equal(errs.items[2], "ARGO_NODE_ID: required, but not set");
  assert_false(aw_config_has_identity(&cfg));
  /* What has a default still has it. */
  assert_string_equal(cfg.root, "");
  assert_int_equal(cfg.grace_ms, 30000);
  assert_int_equal(cfg.reserve_ms, 5000);
  assert_string_equal(cfg.template_path, "/var/run/argo/template");
  assert_string_equal(cfg.progress_file, "/var/run/argo/progress");
  assert_null(cfg.pod_uid);
  assert_null(cfg.api_host);
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

static void test_load_empty_required(void **state) {
  (void)state;
  env_entry env[] = {{"ARGO_NODE_ID", ""}, BASE_ENV, {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), -1);
  assert_one_reason(&errs, "ARGO_NODE_ID: required, but empty");
  assert_null(cfg.node_id);
  assert_false(aw_config_has_identity(&cfg));
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

static void test_load_null_getenv_and_errs(void **state) {
  (void)state;
  aw_config cfg;
  aw_reasons errs;
  aw_reasons_init(&errs);
  assert_int_equal(aw_config_load(&cfg, NULL, &errs), -1);
  assert_int_equal(errs.count, 3); /* the three identity variables */
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
  /* No list to add to: the return value still tells. */
  fake_env = (env_entry[]){{NULL, NULL}};
  assert_int_equal(aw_config_load(&cfg, fake_getenv, NULL), -1);
  aw_config_free(&cfg);
}

static void test_load_bad_values(void **state) {
  (void)state;
  expect_single_reason("ARGO_DEADLINE", "tomorrow",
                       "ARGO_DEADLINE: cannot parse \"tomorrow\" as an RFC "
                       "3339 time");
  expect_single_reason("ARGO_INCLUDE_SCRIPT_OUTPUT", "yes",
                       "ARGO_INCLUDE_SCRIPT_OUTPUT: cannot parse \"yes\" as a "
                       "boolean (true or false)");
  expect_single_reason("ARGO_PROGRESS_PATCH_TICK_DURATION", "60",
                       "ARGO_PROGRESS_PATCH_TICK_DURATION: cannot parse \"60\" "
                       "as a Go duration (e.g. \"1m0s\", \"3s\")");
  expect_single_reason("ARGO_PROGRESS_FILE_TICK_DURATION", "-3s",
                       "ARGO_PROGRESS_FILE_TICK_DURATION: \"-3s\" is negative");
  expect_single_reason("ARGO_PROGRESS_FILE", "progress",
                       "ARGO_PROGRESS_FILE: \"progress\" is not an absolute "
                       "path");
  expect_single_reason("ARGO_TERMINATION_GRACE_PERIOD_SECONDS", "30s",
                       "ARGO_TERMINATION_GRACE_PERIOD_SECONDS: cannot parse "
                       "\"30s\" as an integer number of seconds");
  expect_single_reason("ARGO_TERMINATION_GRACE_PERIOD_SECONDS",
                       "9223372036854776",
                       "ARGO_TERMINATION_GRACE_PERIOD_SECONDS: "
                       "\"9223372036854776\" is too large");
  expect_single_reason("ARGOWAIT_FINALIZE_RESERVE_MS", "-1",
                       "ARGOWAIT_FINALIZE_RESERVE_MS: cannot parse \"-1\" as "
                       "a non-negative integer number of milliseconds");
  expect_single_reason("KUBERNETES_SERVICE_PORT", "0",
                       "KUBERNETES_SERVICE_PORT: \"0\" is not a port number "
                       "(1-65535)");
  expect_single_reason("KUBERNETES_SERVICE_PORT", "65536",
                       "KUBERNETES_SERVICE_PORT: \"65536\" is not a port "
                       "number (1-65535)");
  expect_single_reason("KUBERNETES_SERVICE_PORT", "https",
                       "KUBERNETES_SERVICE_PORT: \"https\" is not a port "
                       "number (1-65535)");
  expect_single_reason("KUBERNETES_SERVICE_HOST", "evil.example/x?",
                       "KUBERNETES_SERVICE_HOST: \"evil.example/x?\" is not a "
                       "host name or IP address");
  expect_single_reason("KUBERNETES_SERVICE_HOST", "user@host",
                       "KUBERNETES_SERVICE_HOST: \"user@host\" is not a host "
                       "name or IP address");
  expect_single_reason("KUBERNETES_SERVICE_HOST", "[]",
                       "KUBERNETES_SERVICE_HOST: \"[]\" is not a host name or "
                       "IP address");
}

/* A bad value that keeps its default leaves the default in place. */
static void test_load_bad_values_keep_defaults(void **state) {
  (void)state;
  env_entry env[] = {{"ARGO_TERMINATION_GRACE_PERIOD_SECONDS", "ten"},
                     {"ARGO_PROGRESS_FILE", "relative/progress"},
                     {"ARGO_DEADLINE", "2026-02-30T00:00:00Z"},
                     {"ARGO_PROGRESS_PATCH_TICK_DURATION", "1m"},
                     {"ARGO_PROGRESS_FILE_TICK_DURATION", "fast"},
                     BASE_ENV,
                     {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), -1);
  assert_int_equal(errs.count, 4);
  /* In the order loading met them. */
  assert_non_null(strstr(errs.items[0], "ARGO_DEADLINE"));
  assert_non_null(strstr(errs.items[1], "ARGO_PROGRESS_FILE:"));
  assert_non_null(strstr(errs.items[2], "ARGO_PROGRESS_FILE_TICK_DURATION"));
  assert_non_null(
      strstr(errs.items[3], "ARGO_TERMINATION_GRACE_PERIOD_SECONDS"));
  assert_false(cfg.has_deadline);
  assert_int_equal(cfg.grace_ms, 30000);
  assert_int_equal(cfg.reserve_ms, 5000);
  assert_string_equal(cfg.progress_file, "/var/run/argo/progress");
  assert_int_equal(cfg.progress_patch_tick_ms, 60000);
  assert_int_equal(cfg.progress_file_tick_ms, 0);
  assert_false(aw_config_progress_enabled(&cfg));
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

static void test_load_long_value_is_cut(void **state) {
  (void)state;
  char value[300];
  memset(value, 'x', sizeof(value) - 1);
  value[sizeof(value) - 1] = '\0';
  /* A 2-byte character straddling byte 64 must not be split. */
  value[63] = '\xC3';
  value[64] = '\xA9';
  env_entry env[] = {{"ARGO_DEADLINE", value}, BASE_ENV, {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), -1);
  assert_int_equal(errs.count, 1);
  char expected[200];
  snprintf(expected, sizeof(expected),
           "ARGO_DEADLINE: cannot parse \"%.63s...\" as an RFC 3339 time",
           value);
  assert_string_equal(errs.items[0], expected);
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

/* A newline in a value cannot forge a second line in the reasons. */
static void test_load_value_with_newline(void **state) {
  (void)state;
  env_entry env[] = {{"ARGO_INCLUDE_SCRIPT_OUTPUT", "true\nfake: line"},
                     BASE_ENV,
                     {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  assert_int_equal(load(env, &cfg, &errs), -1);
  assert_one_reason(&errs,
                    "ARGO_INCLUDE_SCRIPT_OUTPUT: cannot parse \"true fake: "
                    "line\" as a boolean (true or false)");
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

/* Reasons already in the list are not counted as this load's failure. */
static void test_load_appends_to_existing_reasons(void **state) {
  (void)state;
  env_entry env[] = {BASE_ENV, {NULL, NULL}};
  aw_config cfg;
  aw_reasons errs;
  aw_reasons_init(&errs);
  aw_reasons_add(&errs, "earlier");
  fake_env = env;
  assert_int_equal(aw_config_load(&cfg, fake_getenv, &errs), 0);
  assert_int_equal(errs.count, 1);
  aw_config_free(&cfg);
  aw_reasons_free(&errs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_duration_valid),
      cmocka_unit_test(test_duration_invalid),
      cmocka_unit_test(test_rfc3339_valid),
      cmocka_unit_test(test_rfc3339_invalid),
      cmocka_unit_test(test_parse_bool),
      cmocka_unit_test(test_parse_int),
      cmocka_unit_test(test_reserve_default),
      cmocka_unit_test(test_reserve_explicit),
      cmocka_unit_test(test_config_path),
      cmocka_unit_test(test_identity_and_progress_flags),
      cmocka_unit_test(test_load_full),
      cmocka_unit_test(test_load_defaults),
      cmocka_unit_test(test_load_template_sources),
      cmocka_unit_test(test_load_grace_period),
      cmocka_unit_test(test_load_ticks_round_up),
      cmocka_unit_test(test_load_api_server_forms),
      cmocka_unit_test(test_load_nothing_set),
      cmocka_unit_test(test_load_empty_required),
      cmocka_unit_test(test_load_null_getenv_and_errs),
      cmocka_unit_test(test_load_bad_values),
      cmocka_unit_test(test_load_bad_values_keep_defaults),
      cmocka_unit_test(test_load_long_value_is_cut),
      cmocka_unit_test(test_load_value_with_newline),
      cmocka_unit_test(test_load_appends_to_existing_reasons),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
