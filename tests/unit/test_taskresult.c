/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/jsonstr.h"
#include "argowait/taskresult.h"

/* ---- helpers ----------------------------------------------------------- */

static const aw_tr_identity plain_id = {
    .namespace_ = "argo",
    .name = "wf-abc-123",
    .workflow_name = "wf-abc",
    .workflow_uid = "6f1c-uid",
    .instance_id = NULL,
};

/* Parses the body and frees the text. */
static cJSON *parse_body(char *text) {
  assert_non_null(text);
  cJSON *body = cJSON_Parse(text);
  free(text);
  assert_non_null(body);
  assert_true(cJSON_IsObject(body));
  return body;
}

static const cJSON *get(const cJSON *obj, const char *key) {
  return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static void assert_string_member(const cJSON *obj, const char *key,
                                 const char *want) {
  const cJSON *v = get(obj, key);
  if (!cJSON_IsString(v)) fail_msg("%s is not a string", key);
  assert_string_equal(v->valuestring, want);
}

static int member_count(const cJSON *obj) { return cJSON_GetArraySize(obj); }

static void assert_labels(const cJSON *metadata, const char *completed,
                          const char *instance) {
  const cJSON *labels = get(metadata, "labels");
  assert_true(cJSON_IsObject(labels));
  assert_string_member(labels, "workflows.argoproj.io/workflow", "wf-abc");
  assert_string_member(labels, "workflows.argoproj.io/report-outputs-completed",
                       completed);
  if (instance) {
    assert_string_member(labels, "workflows.argoproj.io/controller-instanceid",
                         instance);
    assert_int_equal(member_count(labels), 3);
  } else {
    assert_null(get(labels, "workflows.argoproj.io/controller-instanceid"));
    assert_int_equal(member_count(labels), 2);
  }
}

static void assert_object_metadata(const cJSON *body, const char *completed,
                                   const char *instance, bool owner) {
  assert_string_member(body, "apiVersion", "argoproj.io/v1alpha1");
  assert_string_member(body, "kind", "WorkflowTaskResult");
  const cJSON *metadata = get(body, "metadata");
  assert_true(cJSON_IsObject(metadata));
  assert_string_member(metadata, "name", "wf-abc-123");
  assert_string_member(metadata, "namespace", "argo");
  assert_labels(metadata, completed, instance);
  const cJSON *refs = get(metadata, "ownerReferences");
  if (!owner) {
    assert_null(refs);
    assert_int_equal(member_count(metadata), 3);
    return;
  }
  assert_int_equal(member_count(metadata), 4);
  assert_true(cJSON_IsArray(refs));
  assert_int_equal(cJSON_GetArraySize(refs), 1);
  const cJSON *ref = cJSON_GetArrayItem(refs, 0);
  assert_string_member(ref, "apiVersion", "argoproj.io/v1alpha1");
  assert_string_member(ref, "kind", "Workflow");
  assert_string_member(ref, "name", "wf-abc");
  assert_string_member(ref, "uid", "6f1c-uid");
  assert_int_equal(member_count(ref), 4);
}

static cJSON *sample_outputs(void) {
  cJSON *outputs =
      cJSON_Parse("{\"parameters\":[{\"name\":\"p\",\"value\":\"v\","
                  "\"valueFrom\":{\"path\":\"/p\"}}],"
                  "\"artifacts\":[{\"name\":\"a\",\"path\":\"/"
                  "a\",\"s3\":{\"key\":\"k/a.tgz\"}}],"
                  "\"result\":\"ok\"}");
  assert_non_null(outputs);
  return outputs;
}

/* ---- placeholder ------------------------------------------------------- */

static void test_placeholder(void **state) {
  (void)state;
  cJSON *body = parse_body(aw_tr_placeholder_body(&plain_id));
  assert_object_metadata(body, "false", NULL, true);
  assert_int_equal(member_count(body), 3);
  cJSON_Delete(body);
}

static void test_placeholder_instance_label_only_when_set(void **state) {
  (void)state;
  aw_tr_identity id = plain_id;
  id.instance_id = "";
  cJSON *body = parse_body(aw_tr_placeholder_body(&id));
  assert_object_metadata(body, "false", NULL, true);
  cJSON_Delete(body);

  id.instance_id = "blue";
  body = parse_body(aw_tr_placeholder_body(&id));
  assert_object_metadata(body, "false", "blue", true);
  cJSON_Delete(body);
}

static void test_placeholder_without_uid_has_no_owner(void **state) {
  (void)state;
  aw_tr_identity id = plain_id;
  id.workflow_uid = NULL;
  cJSON *body = parse_body(aw_tr_placeholder_body(&id));
  assert_object_metadata(body, "false", NULL, false);
  cJSON_Delete(body);
  id.workflow_uid = "";
  body = parse_body(aw_tr_placeholder_body(&id));
  assert_object_metadata(body, "false", NULL, false);
  cJSON_Delete(body);
}

static void test_environment_strings_are_escaped(void **state) {
  (void)state;
  aw_tr_identity id = plain_id;
  id.workflow_name = "w\"}, \"kind\": \"x\\\n\t";
  id.instance_id = "</script>\x01";
  char *text = aw_tr_placeholder_body(&id);
  assert_non_null(text);
  assert_null(strchr(text, '\n'));
  cJSON *body = parse_body(text);
  assert_string_member(body, "kind", "WorkflowTaskResult");
  const cJSON *labels = get(get(body, "metadata"), "labels");
  assert_string_member(labels, "workflows.argoproj.io/workflow",
                       id.workflow_name);
  assert_string_member(labels, "workflows.argoproj.io/controller-instanceid",
                       id.instance_id);
  cJSON_Delete(body);
}

static void test_missing_identity_gives_null(void **state) {
  (void)state;
  aw_tr_report rep = {0};
  assert_null(aw_tr_placeholder_body(NULL));
  aw_tr_identity id = plain_id;
  id.name = NULL;
  assert_null(aw_tr_placeholder_body(&id));
  assert_null(aw_tr_create_body(&id, &rep));
  assert_null(aw_tr_final_patch_body(&id, &rep));
  id = plain_id;
  id.workflow_name = NULL;
  assert_null(aw_tr_final_patch_body(&id, &rep));
  assert_null(aw_tr_create_body(&plain_id, NULL));
  assert_null(aw_tr_progress_body(NULL));
}

/* ---- create and final patch -------------------------------------------- */

static void test_create_body_success(void **state) {
  (void)state;
  cJSON *outputs = sample_outputs();
  aw_tr_report rep = {.outputs = outputs, .failure = NULL};
  cJSON *body = parse_body(aw_tr_create_body(&plain_id, &rep));
  assert_object_metadata(body, "true", NULL, true);
  assert_true(cJSON_Compare(get(body, "outputs"), outputs, 1));
  assert_null(get(body, "phase"));
  assert_null(get(body, "message"));
  assert_int_equal(member_count(body), 4);
  cJSON_Delete(body);
  cJSON_Delete(outputs);
}

static void test_create_body_failure_with_instance(void **state) {
  (void)state;
  aw_tr_identity id = plain_id;
  id.instance_id = "i1";
  aw_tr_report rep = {.outputs = NULL, .failure = "parameter p: no such file"};
  cJSON *body = parse_body(aw_tr_create_body(&id, &rep));
  assert_object_metadata(body, "true", "i1", true);
  const cJSON *outputs = get(body, "outputs");
  assert_true(cJSON_IsObject(outputs));
  assert_null(outputs->child);
  assert_string_member(body, "phase", "Error");
  assert_string_member(body, "message", "parameter p: no such file");
  assert_int_equal(member_count(body), 6);
  cJSON_Delete(body);
}

static void test_final_patch_success(void **state) {
  (void)state;
  cJSON *outputs = sample_outputs();
  aw_tr_report rep = {.outputs = outputs};
  cJSON *body = parse_body(aw_tr_final_patch_body(&plain_id, &rep));
  assert_int_equal(member_count(body), 2);
  const cJSON *metadata = get(body, "metadata");
  assert_int_equal(member_count(metadata), 1); /* labels only */
  assert_labels(metadata, "true", NULL);
  assert_true(cJSON_Compare(get(body, "outputs"), outputs, 1));
  cJSON_Delete(body);
  cJSON_Delete(outputs);
}

static void test_final_patch_failure(void **state) {
  (void)state;
  aw_tr_identity id = plain_id;
  id.instance_id = "x";
  aw_tr_report rep = {.outputs = NULL, .failure = ""};
  cJSON *body = parse_body(aw_tr_final_patch_body(&id, &rep));
  assert_int_equal(member_count(body), 4);
  assert_labels(get(body, "metadata"), "true", "x");
  assert_true(cJSON_IsObject(get(body, "outputs")));
  assert_string_member(body, "phase", "Error");
  assert_string_member(body, "message", "");
  cJSON_Delete(body);
}

static void test_non_object_outputs_rejected(void **state) {
  (void)state;
  cJSON *array = cJSON_CreateArray();
  aw_tr_report rep = {.outputs = array};
  assert_null(aw_tr_final_patch_body(&plain_id, &rep));
  assert_null(aw_tr_create_body(&plain_id, &rep));
  cJSON_Delete(array);
}

static char *message_of(const char *failure) {
  aw_tr_report rep = {.failure = failure};
  cJSON *body = parse_body(aw_tr_final_patch_body(&plain_id, &rep));
  char *message = strdup(get(body, "message")->valuestring);
  cJSON_Delete(body);
  return message;
}

static void test_message_cut_on_utf8_boundary(void **state) {
  (void)state;
  /* A character of k bytes starting at byte 1023 does not fit in 1024. */
  static const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
  for (size_t c = 0; c < 3; c++) {
    char failure[2048];
    memset(failure, 'a', 1023);
    failure[1023] = '\0';
    strcat(failure, chars[c]);
    strcat(failure, "tail");
    char *message = message_of(failure);
    assert_int_equal(strlen(message), 1023);
    assert_int_equal(strspn(message, "a"), 1023);
    free(message);
  }
  /* One that ends exactly at 1024 is kept whole. */
  char failure[2048];
  memset(failure, 'a', 1022);
  failure[1022] = '\0';
  strcat(failure, "\xc3\xa9xyz");
  char *message = message_of(failure);
  assert_int_equal(strlen(message), 1024);
  assert_memory_equal(message + 1022, "\xc3\xa9", 2);
  free(message);
  /* Short messages are untouched. */
  message = message_of("short \xe2\x82\xac");
  assert_string_equal(message, "short \xe2\x82\xac");
  free(message);
  /* Exactly 1024 ASCII bytes. */
  memset(failure, 'b', 1030);
  failure[1024] = '\0';
  message = message_of(failure);
  assert_int_equal(strlen(message), 1024);
  free(message);
}

/* Values quoted by aw_json_quote (NULs, invalid UTF-8) go in as raw items. */
static void test_raw_values_survive(void **state) {
  (void)state;
  static const char bytes[] = {'a', '\0', 'b', '\xff', '"', '\n'};
  char *literal = aw_json_quote(bytes, sizeof(bytes));
  assert_non_null(literal);
  cJSON *outputs = cJSON_CreateObject();
  cJSON *params = cJSON_AddArrayToObject(outputs, "parameters");
  cJSON *param = cJSON_CreateObject();
  cJSON_AddItemToArray(params, param);
  cJSON_AddStringToObject(param, "name", "p");
  cJSON_AddItemToObject(param, "value", cJSON_CreateRaw(literal));
  cJSON_AddItemToObject(outputs, "result", cJSON_CreateRaw("\"r\\u0000\""));
  char *before = cJSON_PrintUnformatted(outputs);

  aw_tr_report rep = {.outputs = outputs, .failure = "f"};
  char *texts[] = {aw_tr_final_patch_body(&plain_id, &rep),
                   aw_tr_create_body(&plain_id, &rep)};
  for (size_t i = 0; i < 2; i++) {
    assert_non_null(texts[i]);
    char want[256];
    snprintf(want, sizeof(want), "\"value\":%s", literal);
    assert_non_null(strstr(texts[i], want));
    assert_non_null(strstr(texts[i], "\"result\":\"r\\u0000\""));
    cJSON *body = parse_body(texts[i]);
    const cJSON *value =
        get(cJSON_GetArrayItem(get(get(body, "outputs"), "parameters"), 0),
            "value");
    assert_true(cJSON_IsString(value));
    assert_string_equal(value->valuestring, "a"); /* cJSON stops at the NUL */
    cJSON_Delete(body);
  }
  /* The caller's outputs are untouched and still owned by the caller. */
  char *after = cJSON_PrintUnformatted(outputs);
  assert_string_equal(before, after);
  free(before);
  free(after);
  free(literal);
  cJSON_Delete(outputs);
}

/* ---- progress ---------------------------------------------------------- */

static void test_progress_body(void **state) {
  (void)state;
  cJSON *body = parse_body(aw_tr_progress_body("3/10"));
  assert_int_equal(member_count(body), 1);
  assert_string_member(body, "progress", "3/10");
  cJSON_Delete(body);
}

static void test_progress_parse_table(void **state) {
  (void)state;
  static const struct {
    const char *line;
    int rc;
    long long n, m;
  } cases[] = {
      {"0/1", 0, 0, 1},
      {"3/10", 0, 3, 10},
      {"  7/9 \t\r\n", 0, 7, 9},
      {"10/3", 0, 10, 3},
      {"0/0", 0, 0, 0},
      {"007/010", 0, 7, 10},
      {"9223372036854775807/9223372036854775807", 0, 9223372036854775807LL,
       9223372036854775807LL},
      {"9223372036854775808/1", -1, 0, 0},
      {"1/99999999999999999999", -1, 0, 0},
      {"", -1, 0, 0},
      {"   ", -1, 0, 0},
      {"/", -1, 0, 0},
      {"1/", -1, 0, 0},
      {"/1", -1, 0, 0},
      {"1", -1, 0, 0},
      {"-1/2", -1, 0, 0},
      {"+1/2", -1, 0, 0},
      {"1/+2", -1, 0, 0},
      {"1 /2", -1, 0, 0},
      {"1/ 2", -1, 0, 0},
      {"1/2/3", -1, 0, 0},
      {"1/2x", -1, 0, 0},
      {"0x1/2", -1, 0, 0},
      {"1.5/2", -1, 0, 0},
      {"1/2 3", -1, 0, 0},
      {"\xd9\xa3/4", -1, 0, 0}, /* Arabic-Indic digit three */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    long long n = -5, m = -5;
    int rc = aw_progress_parse(cases[i].line, &n, &m);
    if (rc != cases[i].rc) fail_msg("parse(\"%s\") = %d", cases[i].line, rc);
    if (rc == 0 && (n != cases[i].n || m != cases[i].m))
      fail_msg("parse(\"%s\") = %lld/%lld", cases[i].line, n, m);
  }
  assert_int_equal(aw_progress_parse(NULL, NULL, NULL), -1);
}

static int last_of(const char *data, size_t len, char *out, size_t size) {
  char *copy = malloc(len ? len : 1); /* exact size: no NUL after it */
  assert_non_null(copy);
  memcpy(copy, data, len);
  int rc = aw_progress_last(copy, len, out, size);
  free(copy);
  return rc;
}

#define LAST(lit, out) last_of((lit), sizeof(lit) - 1, (out), sizeof(out))

static void test_progress_last_table(void **state) {
  (void)state;
  char out[64];
  assert_int_equal(LAST("1/10\n2/10\n", out), 0);
  assert_string_equal(out, "2/10");
  assert_int_equal(LAST("1/10\r\n2/10\r\n\r\n\n  \n", out), 0);
  assert_string_equal(out, "2/10");
  assert_int_equal(LAST("0005/0010", out), 0);
  assert_string_equal(out, "5/10");
  assert_int_equal(LAST("\n\n 3/4 \n", out), 0);
  assert_string_equal(out, "3/4");
  assert_int_equal(LAST("garbage\n\0\0\n1/2\n", out),
                   0); /* earlier lines ignored */
  assert_string_equal(out, "1/2");

  /* The last non-empty line decides, even when an earlier one is good. */
  assert_int_equal(LAST("1/2\nhalf done\n", out), -1);
  assert_string_equal(out, "");
  assert_int_equal(LAST("1/2\n3/\0"
                        "4\n",
                        out),
                   -1);
  assert_int_equal(LAST("1/2\n\0\n", out), -1);
  assert_int_equal(LAST("", out), -1);
  assert_int_equal(LAST("\r\n\n", out), -1);
  assert_int_equal(last_of("1/2", 3, out, 3), -1); /* "1/2" needs 4 bytes */
  assert_int_equal(last_of("1/2", 3, out, 4), 0);
  assert_string_equal(out, "1/2");
  assert_int_equal(aw_progress_last(NULL, 0, out, sizeof(out)), -1);
  assert_int_equal(aw_progress_last("1/2", 3, NULL, 0), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_placeholder),
      cmocka_unit_test(test_placeholder_instance_label_only_when_set),
      cmocka_unit_test(test_placeholder_without_uid_has_no_owner),
      cmocka_unit_test(test_environment_strings_are_escaped),
      cmocka_unit_test(test_missing_identity_gives_null),
      cmocka_unit_test(test_create_body_success),
      cmocka_unit_test(test_create_body_failure_with_instance),
      cmocka_unit_test(test_final_patch_success),
      cmocka_unit_test(test_final_patch_failure),
      cmocka_unit_test(test_non_object_outputs_rejected),
      cmocka_unit_test(test_message_cut_on_utf8_boundary),
      cmocka_unit_test(test_raw_values_survive),
      cmocka_unit_test(test_progress_body),
      cmocka_unit_test(test_progress_parse_table),
      cmocka_unit_test(test_progress_last_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
