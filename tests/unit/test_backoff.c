/* Unit tests for src/backoff.c: delays, Retry-After, the budget after
 * SIGTERM, and how API answers are classified and described. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/backoff.h"

/* ---- aw_backoff_delay --------------------------------------------------- */

static void test_delay_grows_to_cap(void **state) {
  (void)state;
  aw_backoff_policy p = {
      .initial_ms = 1000, .factor = 2, .cap_ms = 60000, .jitter = 0};
  assert_int_equal(aw_backoff_delay(&p, 0, 0.3), 1000);
  assert_int_equal(aw_backoff_delay(&p, 1, 0.3), 2000);
  assert_int_equal(aw_backoff_delay(&p, 5, 0.3), 32000);
  assert_int_equal(aw_backoff_delay(&p, 6, 0.3), 60000); /* 64000 capped */
  assert_int_equal(aw_backoff_delay(&p, 1000, 0.3), 60000);
  assert_int_equal(aw_backoff_delay(&p, UINT32_MAX, 0.3), 60000);

  aw_backoff_policy argo = {
      .initial_ms = 1000, .factor = 1.6, .cap_ms = 100000, .jitter = 0};
  assert_int_equal(aw_backoff_delay(&argo, 1, 0), 1600);
  assert_int_equal(aw_backoff_delay(&argo, 2, 0), 2560);
  assert_int_equal(aw_backoff_delay(&argo, 3, 0), 4096);
}

static void test_delay_jitter_range(void **state) {
  (void)state;
  aw_backoff_policy p = {
      .initial_ms = 1000, .factor = 2, .cap_ms = 60000, .jitter = 0.5};
  assert_int_equal(aw_backoff_delay(&p, 0, 0.0), 500);
  assert_int_equal(aw_backoff_delay(&p, 0, 0.5), 750);
  assert_int_equal(aw_backoff_delay(&p, 0, 0.999999), 999);
  assert_int_equal(aw_backoff_delay(&p, 10, 0.0), 30000);
  /* Every draw stays within [d*(1-jitter), d]. */
  for (unsigned attempt = 0; attempt < 40; attempt++) {
    double full = fmin(60000, 1000 * pow(2, attempt));
    for (int k = 0; k < 100; k++) {
      double r = k / 100.0;
      uint64_t d = aw_backoff_delay(&p, attempt, r);
      assert_in_range(d, (uint64_t)(full * 0.5), (uint64_t)full);
    }
  }
}

static void test_delay_odd_policies(void **state) {
  (void)state;
  aw_backoff_policy p = {
      .initial_ms = 0, .factor = 2, .cap_ms = 1000, .jitter = 0};
  assert_int_equal(aw_backoff_delay(&p, 3, 0), 1); /* never 0 */

  p = (aw_backoff_policy){.initial_ms = 5000, .factor = 2, .cap_ms = 1000};
  assert_int_equal(aw_backoff_delay(&p, 0, 0), 1000); /* initial above cap */

  p = (aw_backoff_policy){.initial_ms = 100, .factor = 0.5, .cap_ms = 1000};
  assert_int_equal(aw_backoff_delay(&p, 4, 0), 100); /* no shrinking */

  p = (aw_backoff_policy){.initial_ms = 100, .factor = NAN, .cap_ms = 1000};
  assert_int_equal(aw_backoff_delay(&p, 4, 0), 100);

  p = (aw_backoff_policy){
      .initial_ms = 100, .factor = INFINITY, .cap_ms = 1000};
  assert_int_equal(aw_backoff_delay(&p, 0, 0), 100);
  assert_int_equal(aw_backoff_delay(&p, 1, 0), 1000);

  p = (aw_backoff_policy){.initial_ms = 1, .factor = 10, .cap_ms = UINT64_MAX};
  assert_true(aw_backoff_delay(&p, 5000, 0) == UINT64_MAX);

  p = (aw_backoff_policy){
      .initial_ms = 1000, .factor = 2, .cap_ms = 5000, .jitter = 7};
  assert_int_equal(aw_backoff_delay(&p, 0, 0), 1); /* jitter clamped to 1 */
  p.jitter = -3;
  assert_int_equal(aw_backoff_delay(&p, 0, 0.5), 1000);
  p.jitter = 0.5;
  assert_int_equal(aw_backoff_delay(&p, 0, NAN), 500);
  assert_int_equal(aw_backoff_delay(&p, 0, 5.0), 1000);
}

/* ---- aw_parse_retry_after ----------------------------------------------- */

/* 1994-11-06T08:49:37Z */
#define RFC_EXAMPLE_MS 784111777000LL

static void test_retry_after_seconds(void **state) {
  (void)state;
  uint64_t ms = 9;
  assert_int_equal(aw_parse_retry_after("120", 0, &ms), 0);
  assert_int_equal(ms, 120000);
  assert_int_equal(aw_parse_retry_after("0", 0, &ms), 0);
  assert_int_equal(ms, 0);
  assert_int_equal(aw_parse_retry_after(" \t5 ", 0, &ms), 0);
  assert_int_equal(ms, 5000);
  assert_int_equal(aw_parse_retry_after("99999999999999999999999", 0, &ms), 0);
  assert_true(ms == UINT64_MAX);
}

static void test_retry_after_date(void **state) {
  (void)state;
  uint64_t ms = 9;
  const char *date = "Sun, 06 Nov 1994 08:49:37 GMT";
  assert_int_equal(aw_parse_retry_after(date, RFC_EXAMPLE_MS - 30000, &ms), 0);
  assert_int_equal(ms, 30000);
  assert_int_equal(aw_parse_retry_after(date, RFC_EXAMPLE_MS, &ms), 0);
  assert_int_equal(ms, 0);
  ms = 9;
  assert_int_equal(aw_parse_retry_after(date, RFC_EXAMPLE_MS + 5000, &ms), 0);
  assert_int_equal(ms, 0); /* in the past */
  assert_int_equal(aw_parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT",
                                        1767225600000LL, &ms),
                   0);
  assert_int_equal(ms, 10000);
  assert_int_equal(aw_parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT",
                                        1709164800000LL - 1, &ms),
                   0);
  assert_int_equal(ms, 1);
}

static void test_retry_after_malformed(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "   ",
      "-1",
      "+5",
      "1.5",
      "5s",
      "abc",
      "0x10",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 08:49:37",
      "Sunday, 06-Nov-94 08:49:37 GMT",
      "Sun Nov  6 08:49:37 1994",
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun, 31 Nov 1994 08:49:37 GMT",
      "Sun, 29 Feb 1900 08:49:37 GMT",
      "Sun, 06 Foo 1994 08:49:37 GMT",
      "Xyz, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 24:49:37 GMT",
      "Sun, 06 Nov 1994 08:60:37 GMT",
      "sun, 06 nov 1994 08:49:37 gmt",
      "Sun, 06 Nov 1994 08:49:37 GMTX",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t ms = 77;
    if (aw_parse_retry_after(bad[i], RFC_EXAMPLE_MS, &ms) != -1)
      fail_msg("accepted Retry-After \"%s\" as %llu", bad[i],
               (unsigned long long)ms);
    assert_int_equal(ms, 77);
  }
  uint64_t ms = 77;
  assert_int_equal(aw_parse_retry_after(NULL, 0, &ms), -1);
}

/* ---- the budget --------------------------------------------------------- */

static void test_budget_inactive(void **state) {
  (void)state;
  aw_budget b = {.active = false};
  assert_int_equal(aw_budget_clip(&b, 123, 5000), 5000);
  assert_true(aw_budget_clip(&b, 123, UINT64_MAX) == UINT64_MAX);
  assert_false(aw_budget_spent(&b, UINT64_MAX));
}

static void test_budget_normal(void **state) {
  (void)state;
  aw_budget b;
  aw_budget_start(&b, 1000, 30000, 5000, 100);
  assert_true(b.active);
  assert_int_equal(b.hard_stop, 30900);
  assert_int_equal(b.reserve_at, 26000);
  assert_int_equal(aw_budget_clip(&b, 1000, 5000), 5000);
  assert_int_equal(aw_budget_clip(&b, 28000, 5000), 2900);
  assert_int_equal(aw_budget_clip(&b, 30899, 5000), 1);
  assert_int_equal(aw_budget_clip(&b, 30900, 5000), 0);
  assert_int_equal(aw_budget_clip(&b, 99999, 5000), 0);
  assert_false(aw_budget_spent(&b, 30899));
  assert_true(aw_budget_spent(&b, 30900));
  assert_true(aw_budget_spent(&b, 99999));
}

static void test_budget_edges(void **state) {
  (void)state;
  aw_budget b;
  /* Reserve longer than the grace period: report at once. */
  aw_budget_start(&b, 1000, 1000, 5000, 100);
  assert_int_equal(b.reserve_at, 1000);
  assert_int_equal(b.hard_stop, 1900);
  /* Reserve shorter than the margin: never after the hard stop. */
  aw_budget_start(&b, 1000, 30000, 50, 100);
  assert_int_equal(b.hard_stop, 30900);
  assert_int_equal(b.reserve_at, 30900);
  /* Grace period shorter than the margin: nothing may run. */
  aw_budget_start(&b, 1000, 50, 5000, 100);
  assert_int_equal(b.hard_stop, 1000);
  assert_int_equal(b.reserve_at, 1000);
  assert_int_equal(aw_budget_clip(&b, 1000, 10), 0);
  assert_true(aw_budget_spent(&b, 1000));
  /* Near the end of the clock: saturates instead of wrapping. */
  aw_budget_start(&b, UINT64_MAX - 10, 30000, 5000, 100);
  assert_true(b.hard_stop == UINT64_MAX);
  assert_true(b.reserve_at == UINT64_MAX);
  assert_int_equal(aw_budget_clip(&b, UINT64_MAX - 10, 5), 5);
}

/* ---- aw_api_classify ---------------------------------------------------- */

static aw_api_class classify(long status, const char *body) {
  return aw_api_classify(false, false, status, body, body ? strlen(body) : 0);
}

#define STATUS_BODY(reason, message)                                   \
  "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\"," \
  "\"message\":\"" message "\",\"reason\":\"" reason "\",\"code\":409}"

static void test_classify_transport(void **state) {
  (void)state;
  assert_int_equal(aw_api_classify(true, false, 0, NULL, 0), AW_API_TRANSIENT);
  assert_int_equal(aw_api_classify(true, true, 0, NULL, 0), AW_API_PERMANENT);
  /* A transport error wins over whatever status was left behind. */
  assert_int_equal(aw_api_classify(true, false, 200, NULL, 0),
                   AW_API_TRANSIENT);
}

static void test_classify_statuses(void **state) {
  (void)state;
  static const struct {
    long status;
    aw_api_class cls;
  } cases[] = {
      {200, AW_API_OK},           {201, AW_API_OK},
      {204, AW_API_OK},           {299, AW_API_OK},
      {401, AW_API_UNAUTHORIZED}, {404, AW_API_NOT_FOUND},
      {429, AW_API_TRANSIENT},    {500, AW_API_TRANSIENT},
      {502, AW_API_TRANSIENT},    {503, AW_API_TRANSIENT},
      {504, AW_API_TRANSIENT},    {400, AW_API_PERMANENT},
      {403, AW_API_PERMANENT},    {405, AW_API_PERMANENT},
      {410, AW_API_PERMANENT},    {413, AW_API_PERMANENT},
      {415, AW_API_PERMANENT},    {422, AW_API_PERMANENT},
      {501, AW_API_PERMANENT},    {505, AW_API_PERMANENT},
      {100, AW_API_PERMANENT},    {301, AW_API_PERMANENT},
      {0, AW_API_PERMANENT},      {-1, AW_API_PERMANENT},
      {999, AW_API_PERMANENT},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    aw_api_class got = classify(cases[i].status, NULL);
    if (got != cases[i].cls)
      fail_msg("status %ld: got %d, want %d", cases[i].status, (int)got,
               (int)cases[i].cls);
  }
}

static void test_classify_conflicts(void **state) {
  (void)state;
  assert_int_equal(
      classify(409, STATUS_BODY("AlreadyExists",
                                "workflowtaskresults.argoproj.io \\\"n\\\" "
                                "already exists")),
      AW_API_EXISTS);
  assert_int_equal(classify(409, NULL), AW_API_EXISTS);
  assert_int_equal(classify(409, ""), AW_API_EXISTS);
  assert_int_equal(classify(409, "<html>conflict</html>"), AW_API_EXISTS);
  assert_int_equal(classify(409, "{\"kind\":\"Status\"}"), AW_API_EXISTS);
  assert_int_equal(
      classify(409, STATUS_BODY("Conflict",
                                "Operation cannot be fulfilled on "
                                "workflowtaskresults.argoproj.io: the object "
                                "has been modified")),
      AW_API_PERMANENT);
  assert_int_equal(
      classify(409, STATUS_BODY("Conflict",
                                "Operation cannot be fulfilled on "
                                "resourcequotas \\\"q\\\": the object has been "
                                "modified")),
      AW_API_TRANSIENT);
}

static void test_classify_messages(void **state) {
  (void)state;
  assert_int_equal(
      classify(403, STATUS_BODY("Forbidden",
                                "workflowtaskresults.argoproj.io \\\"n\\\" is "
                                "forbidden: exceeded quota: q, requested: "
                                "count/workflowtaskresults.argoproj.io=1")),
      AW_API_TRANSIENT);
  assert_int_equal(
      classify(403, STATUS_BODY("Forbidden",
                                "workflowtaskresults.argoproj.io is forbidden: "
                                "User cannot create resource")),
      AW_API_PERMANENT);
  static const char *const etcd[] = {
      STATUS_BODY("InternalError", "etcdserver: leader changed"),
      STATUS_BODY("BadRequest", "rpc error: etcdserver: request timed out"),
      STATUS_BODY("Invalid", "etcdserver: too many requests"),
  };
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(classify(400, etcd[i]), AW_API_TRANSIENT);
    assert_int_equal(classify(404, etcd[i]), AW_API_TRANSIENT);
    assert_int_equal(classify(422, etcd[i]), AW_API_TRANSIENT);
  }
  /* Not JSON: the raw text is what the patterns are matched against. */
  assert_int_equal(classify(400, "etcdserver: leader changed"),
                   AW_API_TRANSIENT);
  assert_int_equal(classify(403, "exceeded quota"), AW_API_TRANSIENT);
  /* A near miss is not a match. */
  assert_int_equal(classify(400, STATUS_BODY("BadRequest", "etcdserver: ok")),
                   AW_API_PERMANENT);
  /* A matching 2xx body is still OK. */
  assert_int_equal(classify(200, "etcdserver: leader changed"), AW_API_OK);
}

static void test_classify_malformed_bodies(void **state) {
  (void)state;
  /* Not NUL-terminated: an exact-size copy lets ASan see an over-read. */
  const char text[] = STATUS_BODY("Conflict", "modified");
  size_t len = strlen(text);
  char *exact = malloc(len);
  memcpy(exact, text, len);
  assert_int_equal(aw_api_classify(false, false, 409, exact, len),
                   AW_API_PERMANENT);
  assert_int_equal(aw_api_classify(false, false, 409, exact, len - 5),
                   AW_API_EXISTS); /* cut short: not parseable */
  free(exact);

  /* Bytes after the JSON (here behind a NUL) make it no Status. */
  const char nul_body[] = "{\"reason\":\"Conflict\"}\0junk";
  assert_int_equal(
      aw_api_classify(false, false, 409, nul_body, sizeof(nul_body) - 1),
      AW_API_EXISTS);
  assert_int_equal(
      aw_api_classify(false, false, 409, nul_body, sizeof(nul_body) - 6),
      AW_API_PERMANENT);
  assert_int_equal(classify(409, "{\"reason\":\"Conflict\"} \r\n"),
                   AW_API_PERMANENT);
  assert_int_equal(classify(409, "{\"reason\":\"Conflict\"}{}"), AW_API_EXISTS);
  assert_int_equal(aw_api_classify(false, false, 500, NULL, 100),
                   AW_API_TRANSIENT);

  /* Deeply nested and huge bodies do not crash or stall. */
  size_t big = 3 * 1024 * 1024;
  char *huge = malloc(big);
  memset(huge, '[', big);
  assert_int_equal(aw_api_classify(false, false, 409, huge, big),
                   AW_API_EXISTS);
  assert_int_equal(aw_api_classify(false, false, 400, huge, 10000),
                   AW_API_PERMANENT);
  memcpy(huge + big - 30, "etcdserver: leader changed", 26);
  assert_int_equal(aw_api_classify(false, false, 400, huge, big),
                   AW_API_TRANSIENT);
  free(huge);

  assert_int_equal(classify(404, "{\"reason\": 5, \"message\": null}"),
                   AW_API_NOT_FOUND);
  assert_int_equal(classify(409, "{\"reason\": 5}"), AW_API_EXISTS);
  assert_int_equal(classify(409, "[\"reason\",\"Conflict\"]"), AW_API_EXISTS);
}

/* ---- aw_api_status_message ---------------------------------------------- */

static void expect_message(const char *body, size_t len, const char *want) {
  char *got = aw_api_status_message(body, len);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

static void expect_message_s(const char *body, const char *want) {
  expect_message(body, strlen(body), want);
}

static void test_status_message_from_status(void **state) {
  (void)state;
  expect_message_s(
      "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":"
      "\"workflowtaskresults.argoproj.io \\\"x\\\" is forbidden: User "
      "\\\"system:serviceaccount:argo:default\\\" cannot create resource\","
      "\"reason\":\"Forbidden\",\"code\":403}",
      "Forbidden: workflowtaskresults.argoproj.io \"x\" is forbidden: User "
      "\"system:serviceaccount:argo:default\" cannot create resource");
  expect_message_s("{\"message\":\"only a message\"}", "only a message");
  expect_message_s("{\"reason\":\"NotFound\"}", "NotFound");
  expect_message_s("{\"reason\":\"\",\"message\":\"m\"}", "m");
  expect_message_s(
      "{\"reason\":\"Invalid\",\"message\":\"line one\\nline "
      "two\\u0000x\"}",
      "Invalid: line one line two");
  expect_message_s("{\"reason\":\"Bad\",\"message\":\"tab\\there\"}",
                   "Bad: tab here");
}

static void test_status_message_fallback(void **state) {
  (void)state;
  expect_message(NULL, 0, "(empty body)");
  expect_message(NULL, 10, "(empty body)");
  expect_message_s("", "(empty body)");
  expect_message_s(" \r\n\t ", "(empty body)");
  expect_message_s("<html>\n<body>502 Bad Gateway</body>\n</html>\n",
                   "<html> <body>502 Bad Gateway</body> </html>");
  expect_message_s("{\"kind\":\"Status\"}", "{\"kind\":\"Status\"}");
  expect_message_s("[1,2]", "[1,2]");
  expect_message_s("{\"message\": 42}", "{\"message\": 42}");
  /* Invalid UTF-8 becomes U+FFFD; a valid 4-byte character stays. */
  expect_message_s(
      "a\xFF"
      "b\xC0\xAF"
      "c\xF0\x9F\x98\x80"
      "d\xED\xA0\x80",
      "a\xEF\xBF\xBD"
      "b\xEF\xBF\xBD\xEF\xBF\xBD"
      "c\xF0\x9F\x98\x80"
      "d\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  /* Overlong, surrogate and past-U+10FFFF forms are not UTF-8 either. */
  expect_message_s("<\xE0\x9F\xBF|\xF4\x90\x80\x80>",
                   "<\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|\xEF\xBF\xBD"
                   "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD>");
  expect_message_s("\xEF\xBF\xBF\xF4\x8F\xBF\xBF",
                   "\xEF\xBF\xBF\xF4\x8F\xBF\xBF");
  /* A NUL in the middle, and a body that is not NUL-terminated. */
  expect_message("up\0stream", 9, "up stream");
  expect_message("{\"reason\":\"Conflict\"}\0junk", 26,
                 "{\"reason\":\"Conflict\"} junk");
  char *exact = malloc(3);
  memcpy(exact, "abc", 3);
  expect_message(exact, 3, "abc");
  free(exact);
}

static void test_status_message_cuts(void **state) {
  (void)state;
  char body[1000];
  memset(body, 'x', sizeof(body));
  char *got = aw_api_status_message(body, sizeof(body));
  assert_int_equal(strlen(got), 200);
  free(got);
  /* A character across byte 200 is dropped whole, not split. */
  body[199] = '\xC3';
  body[200] = '\xA9';
  got = aw_api_status_message(body, sizeof(body));
  assert_int_equal(strlen(got), 199);
  assert_null(strchr(got, '\xC3'));
  free(got);

  /* A long Status message is cut too, but later. */
  size_t msg_len = 5000;
  char *json = malloc(msg_len + 64);
  strcpy(json, "{\"reason\":\"Invalid\",\"message\":\"");
  size_t off = strlen(json);
  memset(json + off, 'm', msg_len);
  strcpy(json + off + msg_len, "\"}");
  got = aw_api_status_message(json, strlen(json));
  assert_int_equal(strlen(got), 1024);
  assert_memory_equal(got, "Invalid: mmm", 12);
  free(got);
  free(json);
}

/* ---- aw_jitter ------------------------------------------------------------ */

static void test_jitter_is_uniform_in_unit_interval(void **state) {
  (void)state;
  aw_jitter j;
  aw_jitter_seed(&j, 0); /* 0 would stick at 0 forever: mapped away */
  unsigned buckets[10] = {0};
  for (int i = 0; i < 100000; i++) {
    double x = aw_jitter_next(&j);
    assert_true(x >= 0.0 && x < 1.0);
    buckets[(int)(x * 10)]++;
  }
  for (int b = 0; b < 10; b++) assert_in_range(buckets[b], 9000, 11000);
}

static void test_jitter_differs_by_seed(void **state) {
  (void)state;
  aw_jitter a, b;
  aw_jitter_seed(&a, 1);
  aw_jitter_seed(&b, 2);
  int same = 0;
  for (int i = 0; i < 100; i++) same += aw_jitter_next(&a) == aw_jitter_next(&b);
  assert_int_equal(same, 0);
}

/* ---- aw_retry_delay ------------------------------------------------------- */

static const aw_retry_rules rules = {&aw_policy_calm, &aw_policy_hurried, 50};

static void test_retry_after_is_a_jittered_floor(void **state) {
  (void)state;
  aw_budget idle = {0};
  aw_jitter j;
  aw_jitter_seed(&j, 7);
  uint64_t lo = UINT64_MAX, hi = 0, d;
  for (int i = 0; i < 2000; i++) {
    assert_true(aw_retry_delay(&rules, &idle, 0, 1, "2", 0, &j, &d));
    lo = d < lo ? d : lo;
    hi = d > hi ? d : hi;
  }
  assert_true(lo >= 2000);      /* never before the server asked */
  assert_true(hi <= 3000);      /* at most half as much again */
  assert_true(hi - lo >= 800);  /* and really spread */
  /* an absurd Retry-After is capped */
  assert_true(aw_retry_delay(&rules, &idle, 0, 1, "86400", 0, &j, &d));
  assert_true(d >= AW_RETRY_AFTER_CAP_MS && d <= AW_RETRY_AFTER_CAP_MS * 3 / 2 + 1);
}

static void test_retry_calm_then_hurried_within_the_budget(void **state) {
  (void)state;
  aw_budget b = {0};
  aw_jitter j;
  aw_jitter_seed(&j, 9);
  uint64_t d;
  assert_true(aw_retry_delay(&rules, &b, 0, 20, NULL, 0, &j, &d));
  assert_true(d > aw_policy_hurried.cap_ms && d <= aw_policy_calm.cap_ms); /* before SIGTERM */
  aw_budget_start(&b, 1000, 2000, 500, 250); /* hard stop at 1000 + 2000 - 250 */
  assert_true(aw_retry_delay(&rules, &b, 1000, 20, NULL, 0, &j, &d));
  assert_true(d <= aw_policy_hurried.cap_ms);
  /* 150 ms left: the sleep leaves 50 ms for the attempt */
  assert_true(aw_retry_delay(&rules, &b, 2600, 20, "30", 0, &j, &d));
  assert_int_equal(d, 100);
  /* under 2 x 50 ms left: give up */
  assert_false(aw_retry_delay(&rules, &b, 2660, 1, NULL, 0, &j, &d));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delay_grows_to_cap),
      cmocka_unit_test(test_delay_jitter_range),
      cmocka_unit_test(test_delay_odd_policies),
      cmocka_unit_test(test_retry_after_seconds),
      cmocka_unit_test(test_retry_after_date),
      cmocka_unit_test(test_retry_after_malformed),
      cmocka_unit_test(test_budget_inactive),
      cmocka_unit_test(test_budget_normal),
      cmocka_unit_test(test_budget_edges),
      cmocka_unit_test(test_classify_transport),
      cmocka_unit_test(test_classify_statuses),
      cmocka_unit_test(test_classify_conflicts),
      cmocka_unit_test(test_classify_messages),
      cmocka_unit_test(test_classify_malformed_bodies),
      cmocka_unit_test(test_status_message_from_status),
      cmocka_unit_test(test_status_message_fallback),
      cmocka_unit_test(test_status_message_cuts),
      cmocka_unit_test(test_jitter_is_uniform_in_unit_interval),
      cmocka_unit_test(test_jitter_differs_by_seed),
      cmocka_unit_test(test_retry_after_is_a_jittered_floor),
      cmocka_unit_test(test_retry_calm_then_hurried_within_the_budget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
