/* Unit tests for src/strbuf.c, src/log.c (formatting and parsing) and
 * src/jsonstr.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/jsonstr.h"
#include "argowait/log.h"
#include "argowait/strbuf.h"

/* ---- aw_strbuf ---------------------------------------------------------- */

static void test_strbuf_empty_take(void **state) {
  (void)state;
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  assert_null(sb.data);
  assert_int_equal(sb.len, 0);
  char *s = aw_strbuf_take(&sb);
  assert_non_null(s);
  assert_string_equal(s, "");
  free(s);
  assert_null(sb.data); /* handed over: the buffer is empty again */
  aw_strbuf_free(&sb);
}

static void test_strbuf_appends_and_grows(void **state) {
  (void)state;
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  assert_int_equal(aw_strbuf_append(&sb, "", 0), 0);
  assert_string_equal(sb.data, "");
  assert_int_equal(aw_strbuf_appends(&sb, "abc"), 0);
  assert_int_equal(aw_strbuf_append(&sb, "d\0e", 3), 0);
  assert_int_equal(sb.len, 6);
  assert_memory_equal(sb.data, "abcd\0e", 7); /* NUL kept, and terminated */
  for (int i = 0; i < 1000; i++)
    assert_int_equal(aw_strbuf_appends(&sb, "x"), 0);
  assert_int_equal(sb.len, 1006);
  assert_true(sb.cap > sb.len);
  assert_int_equal(sb.data[sb.len], '\0');
  aw_strbuf_free(&sb);
  assert_null(sb.data);
  assert_int_equal(sb.len, 0);
}

static void test_strbuf_appendf(void **state) {
  (void)state;
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  assert_int_equal(aw_strbuf_appendf(&sb, "%s=%d", "n", 42), 0);
  assert_int_equal(aw_strbuf_appendf(&sb, ";%05.1f", 3.14159), 0);
  assert_string_equal(sb.data, "n=42;003.1");
  assert_int_equal(sb.len, 10);
  char big[5000];
  memset(big, 'y', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(aw_strbuf_appendf(&sb, "[%s]", big), 0);
  assert_int_equal(sb.len, 10 + 2 + 4999);
  assert_int_equal(sb.data[10], '[');
  assert_int_equal(sb.data[sb.len - 1], ']');
  char *s = aw_strbuf_take(&sb);
  assert_int_equal(strlen(s), 5011);
  free(s);
}

/* ---- aw_utf8_cut -------------------------------------------------------- */

static void test_utf8_cut(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t max, want;
  } cases[] = {
      {"abc", 5, 3},
      {"abc", 3, 3},
      {"abc", 2, 2},
      {"abc", 0, 0},
      {"a\xC3\xA9"
       "b",
       2, 1}, /* é split: dropped */
      {"a\xC3\xA9"
       "b",
       3, 3}, /* é whole */
      {"\xE2\x82\xAC"
       "x",
       1, 0}, /* € split after its lead */
      {"\xE2\x82\xAC"
       "x",
       2, 0},
      {"\xE2\x82\xAC"
       "x",
       3, 3},
      {"\xF0\x9F\x98\x80"
       "x",
       3, 0}, /* 4-byte character */
      {"\xF0\x9F\x98\x80"
       "x",
       4, 4},
      {"a\x80\x80"
       "b",
       2, 2},                               /* stray bytes: cut anywhere */
      {"ab\x80\x80\x80\x80\x80\x80", 6, 6}, /* long stray run */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t got = aw_utf8_cut(cases[i].s, strlen(cases[i].s), cases[i].max);
    if (got != cases[i].want)
      fail_msg("case %zu: got %zu, want %zu", i, got, cases[i].want);
  }
}

/* A run of stray continuation bytes used to walk the cut back to the
 * start, losing everything before it (e.g. every earlier reason). */
static void test_utf8_cut_does_not_eat_text(void **state) {
  (void)state;
  char s[2000];
  memset(s, 'r', 100);
  memset(s + 100, 0x80, sizeof(s) - 100);
  assert_int_equal(aw_utf8_cut(s, sizeof(s), 1024), 1024);
  s[99] = '\xC3'; /* a lead byte far before the cut claims nothing there */
  assert_int_equal(aw_utf8_cut(s, sizeof(s), 1024), 1024);
}

/* ---- aw_reasons --------------------------------------------------------- */

static void test_reasons_add_and_join(void **state) {
  (void)state;
  aw_reasons r;
  aw_reasons_init(&r);
  char *j = aw_reasons_join(&r, 100);
  assert_string_equal(j, "");
  free(j);
  aw_reasons_add(&r, "parameter %s: %s", "p1", "file not found");
  aw_reasons_add(&r, "line one\nline two\r\tend\x7f");
  aw_reasons_add(&r, "%d%%", 50);
  assert_int_equal(r.count, 3);
  assert_string_equal(r.items[0], "parameter p1: file not found");
  assert_string_equal(r.items[1], "line one line two  end ");
  assert_string_equal(r.items[2], "50%");
  j = aw_reasons_join(&r, 1024);
  assert_string_equal(j,
                      "parameter p1: file not found; line one line two  end ; "
                      "50%");
  free(j);
  j = aw_reasons_join(&r, 9);
  assert_string_equal(j, "parameter");
  free(j);
  j = aw_reasons_join(&r, 0);
  assert_string_equal(j, "");
  free(j);
  aw_reasons_free(&r);
  assert_int_equal(r.count, 0);
  assert_null(r.items);
}

static void test_reasons_join_cuts_utf8(void **state) {
  (void)state;
  aw_reasons r;
  aw_reasons_init(&r);
  aw_reasons_add(&r, "ab");
  aw_reasons_add(&r, "\xC3\xA9\xC3\xA9");
  /* "ab; éé" is 8 bytes; 6 would split the first é. */
  char *j = aw_reasons_join(&r, 5);
  assert_string_equal(j, "ab; ");
  free(j);
  j = aw_reasons_join(&r, 6);
  assert_string_equal(j, "ab; \xC3\xA9");
  free(j);
  aw_reasons_free(&r);
}

static void test_reasons_join_keeps_earlier_text(void **state) {
  (void)state;
  aw_reasons r;
  aw_reasons_init(&r);
  aw_reasons_add(&r, "first");
  char stray[2000];
  memset(stray, 0x80, sizeof(stray) - 1);
  stray[sizeof(stray) - 1] = '\0';
  aw_reasons_add(&r, "%s", stray);
  char *j = aw_reasons_join(&r, 1024);
  assert_int_equal(strlen(j), 1024);
  assert_memory_equal(j, "first; ", 7);
  free(j);
  aw_reasons_free(&r);
}

static void add_via_va(aw_reasons *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  aw_reasons_addv(r, fmt, ap);
  va_end(ap);
}

static void test_reasons_addv_and_move(void **state) {
  (void)state;
  aw_reasons a, b;
  aw_reasons_init(&a);
  aw_reasons_init(&b);
  add_via_va(&a, "a%d", 1);
  add_via_va(&b, "b%d", 1);
  add_via_va(&b, "b%d", 2);
  aw_reasons_move(&a, &b);
  assert_int_equal(a.count, 3);
  assert_int_equal(b.count, 0);
  assert_null(b.items);
  assert_string_equal(a.items[0], "a1");
  assert_string_equal(a.items[1], "b1");
  assert_string_equal(a.items[2], "b2");
  aw_reasons_move(&a, &b); /* moving nothing changes nothing */
  assert_int_equal(a.count, 3);
  aw_reasons_move(&b, &a); /* into an empty list */
  assert_int_equal(b.count, 3);
  assert_int_equal(a.count, 0);
  assert_string_equal(b.items[2], "b2");
  aw_reasons_free(&a);
  aw_reasons_free(&b);
}

/* ---- log ---------------------------------------------------------------- */

static void test_log_parse_level(void **state) {
  (void)state;
  static const struct {
    const char *name;
    aw_log_level level;
  } ok[] = {
      {"debug", AW_LOG_DEBUG},  {"trace", AW_LOG_DEBUG},
      {"info", AW_LOG_INFO},    {"warn", AW_LOG_WARN},
      {"warning", AW_LOG_WARN}, {"error", AW_LOG_ERROR},
      {"fatal", AW_LOG_ERROR},  {"panic", AW_LOG_ERROR},
      {"INFO", AW_LOG_INFO},    {"Warning", AW_LOG_WARN},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    aw_log_level level = (aw_log_level)-1;
    if (aw_log_parse_level(ok[i].name, &level) != 0)
      fail_msg("rejected level \"%s\"", ok[i].name);
    assert_int_equal(level, ok[i].level);
  }
  static const char *const bad[] = {"",        "inf", "infos",      " info",
                                    "verbose", "2",   "\xC4\xB0nfo"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    aw_log_level level = AW_LOG_WARN;
    if (aw_log_parse_level(bad[i], &level) != -1)
      fail_msg("accepted level \"%s\"", bad[i]);
    assert_int_equal(level, AW_LOG_WARN);
  }
  aw_log_level level;
  assert_int_equal(aw_log_parse_level(NULL, &level), -1);
}

static void test_log_parse_format(void **state) {
  (void)state;
  aw_log_format f = AW_LOG_JSON;
  assert_int_equal(aw_log_parse_format("text", &f), 0);
  assert_int_equal(f, AW_LOG_TEXT);
  assert_int_equal(aw_log_parse_format("json", &f), 0);
  assert_int_equal(f, AW_LOG_JSON);
  assert_int_equal(aw_log_parse_format("TEXT", &f), 0);
  assert_int_equal(f, AW_LOG_TEXT);
  f = AW_LOG_JSON;
  assert_int_equal(aw_log_parse_format("", &f), -1);
  assert_int_equal(aw_log_parse_format("yaml", &f), -1);
  assert_int_equal(aw_log_parse_format("json ", &f), -1);
  assert_int_equal(aw_log_parse_format(NULL, &f), -1);
  assert_int_equal(f, AW_LOG_JSON);
}

static void test_log_enabled(void **state) {
  (void)state;
  aw_log_setup(AW_LOG_WARN, AW_LOG_TEXT);
  assert_false(aw_log_enabled(AW_LOG_DEBUG));
  assert_false(aw_log_enabled(AW_LOG_INFO));
  assert_true(aw_log_enabled(AW_LOG_WARN));
  assert_true(aw_log_enabled(AW_LOG_ERROR));
  aw_log_setup(AW_LOG_DEBUG, AW_LOG_TEXT);
  assert_true(aw_log_enabled(AW_LOG_DEBUG));
  aw_log_setup(AW_LOG_INFO, AW_LOG_TEXT); /* the default again */
}

#define TS "2026-11-22T14:39:00.123Z"

static void expect_line(aw_log_format format, aw_log_level level,
                        const char *msg, const char *want) {
  char *line = aw_log_format_line(format, level, TS, msg);
  assert_non_null(line);
  assert_string_equal(line, want);
  free(line);
}

static void test_log_format_text(void **state) {
  (void)state;
  expect_line(AW_LOG_TEXT, AW_LOG_INFO, "placeholder written",
              "time=\"" TS "\" level=info msg=\"placeholder written\"\n");
  expect_line(AW_LOG_TEXT, AW_LOG_DEBUG, "",
              "time=\"" TS "\" level=debug msg=\"\"\n");
  expect_line(AW_LOG_TEXT, AW_LOG_WARN, "x",
              "time=\"" TS "\" level=warning msg=\"x\"\n");
  expect_line(AW_LOG_TEXT, AW_LOG_ERROR, "x",
              "time=\"" TS "\" level=error msg=\"x\"\n");
  /* A message cannot break out of its quotes or its line. */
  expect_line(
      AW_LOG_TEXT, AW_LOG_INFO, "say \"hi\"\\\nmsg=\"forged\"",
      "time=\"" TS
      "\" level=info msg=\"say \\\"hi\\\"\\\\\\nmsg=\\\"forged\\\"\"\n");
  /* An unknown level is shown as an error, not read past the table. */
  expect_line(AW_LOG_TEXT, (aw_log_level)42, "x",
              "time=\"" TS "\" level=error msg=\"x\"\n");
}

static void test_log_format_json(void **state) {
  (void)state;
  expect_line(AW_LOG_JSON, AW_LOG_INFO, "placeholder written",
              "{\"time\":\"" TS
              "\",\"level\":\"info\",\"msg\":\"placeholder "
              "written\"}\n");
  expect_line(AW_LOG_JSON, AW_LOG_WARN, "tab\there",
              "{\"time\":\"" TS
              "\",\"level\":\"warning\",\"msg\":\"tab\\there\"}\n");
  /* Whatever the message, the line is one valid JSON object. */
  const char *msg = "q\" b\\ nl\n ctl\x01 bad\xff end";
  char *line = aw_log_format_line(AW_LOG_JSON, AW_LOG_ERROR, TS, msg);
  assert_non_null(line);
  size_t len = strlen(line);
  assert_int_equal(line[len - 1], '\n');
  assert_null(memchr(line, '\n', len - 1));
  cJSON *obj = cJSON_Parse(line);
  assert_non_null(obj);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(obj, "level")),
                      "error");
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(obj, "time")),
                      TS);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(obj, "msg")),
                      "q\" b\\ nl\n ctl\x01 bad\xEF\xBF\xBD end");
  cJSON_Delete(obj);
  free(line);
}

/* ---- aw_json_quote ------------------------------------------------------ */

static void expect_quote(const char *bytes, size_t len, const char *want) {
  char *got = aw_json_quote(bytes, len);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

#define EXPECT_QUOTE(lit, want) expect_quote(lit, sizeof(lit) - 1, want)

static void test_json_quote_basic(void **state) {
  (void)state;
  expect_quote(NULL, 0, "\"\"");
  EXPECT_QUOTE("", "\"\"");
  EXPECT_QUOTE("hello", "\"hello\"");
  EXPECT_QUOTE("a\"b", "\"a\\\"b\"");
  EXPECT_QUOTE("a\\b", "\"a\\\\b\"");
  EXPECT_QUOTE("/", "\"/\"");
  EXPECT_QUOTE("\x7f", "\"\x7f\"");
}

static void test_json_quote_control(void **state) {
  (void)state;
  EXPECT_QUOTE("\n\r\t", "\"\\n\\r\\t\"");
  EXPECT_QUOTE("\x01\x08\x0c\x1f", "\"\\u0001\\u0008\\u000c\\u001f\"");
  EXPECT_QUOTE("a\0b", "\"a\\u0000b\"");
  EXPECT_QUOTE("\0", "\"\\u0000\"");
  /* Only len bytes are read: the rest of the buffer is not quoted. */
  expect_quote("abcdef", 3, "\"abc\"");
}

static void test_json_quote_utf8(void **state) {
  (void)state;
  EXPECT_QUOTE("caf\xC3\xA9", "\"caf\xC3\xA9\"");           /* 2-byte */
  EXPECT_QUOTE("\xE2\x82\xAC", "\"\xE2\x82\xAC\"");         /* 3-byte */
  EXPECT_QUOTE("\xF0\x9F\x98\x80", "\"\xF0\x9F\x98\x80\""); /* 4-byte */
  EXPECT_QUOTE("\xF4\x8F\xBF\xBF", "\"\xF4\x8F\xBF\xBF\""); /* U+10FFFF */
  EXPECT_QUOTE("\xEF\xBF\xBF", "\"\xEF\xBF\xBF\"");         /* U+FFFF */
  EXPECT_QUOTE(
      "a\xFF"
      "b",
      "\"a\\ufffdb\"");
  EXPECT_QUOTE("\x80", "\"\\ufffd\"");
  EXPECT_QUOTE("\xC3", "\"\\ufffd\""); /* truncated at end */
  EXPECT_QUOTE(
      "\xC3"
      "A",
      "\"\\ufffdA\"");                            /* bad continuation */
  EXPECT_QUOTE("\xE2\x82", "\"\\ufffd\\ufffd\""); /* truncated 3-byte */
  /* Overlong forms. */
  EXPECT_QUOTE("\xC0\xAF", "\"\\ufffd\\ufffd\"");
  EXPECT_QUOTE("\xC1\xBF", "\"\\ufffd\\ufffd\"");
  EXPECT_QUOTE("\xE0\x80\xAF", "\"\\ufffd\\ufffd\\ufffd\"");
  EXPECT_QUOTE("\xE0\x9F\xBF", "\"\\ufffd\\ufffd\\ufffd\""); /* U+07FF */
  EXPECT_QUOTE("\xF0\x80\x80\xAF", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
  /* Surrogates (U+D800, U+DFFF) and past U+10FFFF. */
  EXPECT_QUOTE("\xED\xA0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
  EXPECT_QUOTE("\xED\xBF\xBF", "\"\\ufffd\\ufffd\\ufffd\"");
  EXPECT_QUOTE("\xED\x9F\xBF", "\"\xED\x9F\xBF\""); /* U+D7FF is fine */
  EXPECT_QUOTE("\xF4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
  EXPECT_QUOTE("\xF5\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

/* Every byte string quotes to JSON that parses back to a string. */
static void test_json_quote_round_trip(void **state) {
  (void)state;
  unsigned char all[256];
  for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
  char *q = aw_json_quote((const char *)all, sizeof(all));
  assert_non_null(q);
  cJSON *v = cJSON_Parse(q);
  assert_non_null(v);
  assert_true(cJSON_IsString(v));
  cJSON_Delete(v);
  free(q);

  const char text[] = "line\n\"q\"\\ \xC3\xA9 \xF0\x9F\x98\x80";
  q = aw_json_quote(text, sizeof(text) - 1);
  v = cJSON_Parse(q);
  assert_non_null(v);
  assert_string_equal(cJSON_GetStringValue(v), text);
  cJSON_Delete(v);
  free(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strbuf_empty_take),
      cmocka_unit_test(test_strbuf_appends_and_grows),
      cmocka_unit_test(test_strbuf_appendf),
      cmocka_unit_test(test_utf8_cut),
      cmocka_unit_test(test_utf8_cut_does_not_eat_text),
      cmocka_unit_test(test_reasons_add_and_join),
      cmocka_unit_test(test_reasons_join_cuts_utf8),
      cmocka_unit_test(test_reasons_join_keeps_earlier_text),
      cmocka_unit_test(test_reasons_addv_and_move),
      cmocka_unit_test(test_log_parse_level),
      cmocka_unit_test(test_log_parse_format),
      cmocka_unit_test(test_log_enabled),
      cmocka_unit_test(test_log_format_text),
      cmocka_unit_test(test_log_format_json),
      cmocka_unit_test(test_json_quote_basic),
      cmocka_unit_test(test_json_quote_control),
      cmocka_unit_test(test_json_quote_utf8),
      cmocka_unit_test(test_json_quote_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
