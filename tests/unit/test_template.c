/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/template.h"

/* ---- helpers ----------------------------------------------------------- */

/* Parses from an exact-size heap copy, so ASan catches any read past the
 * end (the input is not NUL-terminated). */
static int parse_bytes(const char *bytes, size_t len, aw_template *t,
                       aw_reasons *errs) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, bytes, len);
  int rc = aw_template_parse(copy, len, t, errs);
  free(copy);
  return rc;
}

static void parse_ok(const char *json, aw_template *t) {
  aw_reasons errs;
  aw_reasons_init(&errs);
  int rc = parse_bytes(json, strlen(json), t, &errs);
  if (rc != 0)
    fail_msg("unexpected failure: %s", errs.count ? errs.items[0] : "?");
  assert_int_equal(errs.count, 0);
  aw_reasons_free(&errs);
}

static bool is_zeroed(const aw_template *t) {
  aw_template zero;
  memset(&zero, 0, sizeof(zero));
  return memcmp(t, &zero, sizeof(zero)) == 0;
}

/* Expects failure with exactly one reason containing want. */
static void parse_fails_len(const char *json, size_t len, const char *want) {
  aw_template t;
  aw_reasons errs;
  aw_reasons_init(&errs);
  assert_int_equal(parse_bytes(json, len, &t, &errs), -1);
  assert_true(is_zeroed(&t));
  assert_int_equal(errs.count, 1);
  assert_true(strncmp(errs.items[0], "template: ", 10) == 0);
  if (!strstr(errs.items[0], want))
    fail_msg("reason \"%s\" lacks \"%s\"", errs.items[0], want);
  aw_reasons_free(&errs);
}

static void parse_fails(const char *json, const char *want) {
  parse_fails_len(json, strlen(json), want);
}

/* ---- template kinds ---------------------------------------------------- */

static void test_script_template(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"name\":\"s\",\"script\":{\"image\":\"python\",\"source\":"
           "\"print(1)\","
           "\"volumeMounts\":[{\"name\":\"w\",\"mountPath\":\"/work/\"}]},"
           "\"outputs\":{\"parameters\":[{\"name\":\"p\",\"valueFrom\":"
           "{\"path\":\"/work/p.txt\"}}]}}",
           &t);
  assert_true(t.has_result_container);
  assert_false(t.archive_logs);
  assert_int_equal(t.main_container_count, 1);
  assert_string_equal(t.main_containers[0], "main");
  assert_int_equal(t.param_count, 1);
  assert_string_equal(t.params[0].name, "p");
  assert_string_equal(t.params[0].path, "/work/p.txt");
  assert_null(t.params[0].default_value);
  assert_int_equal(t.mirrored_count, 1);
  assert_string_equal(t.mirrored[0].path, "/work");
  assert_false(t.mirrored[0].from_input_artifact);
  aw_template_free(&t);
}

static void test_container_template_without_outputs(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":{\"image\":\"alpine\"}}", &t);
  assert_true(t.has_result_container);
  assert_int_equal(t.main_container_count, 1);
  assert_string_equal(t.main_containers[0], "main");
  assert_true(cJSON_IsObject(t.outputs));
  assert_null(t.outputs->child);
  assert_int_equal(t.param_count, 0);
  assert_int_equal(t.artifact_count, 0);
  assert_int_equal(t.mirrored_count, 0);
  assert_int_equal(aw_template_find_mirror(&t, "/tmp/x"), -1);
  aw_template_free(&t);
}

static void test_container_set_with_main(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"containerSet\":{"
           "\"volumeMounts\":[{\"name\":\"ws\",\"mountPath\":\"/workspace\"}],"
           "\"containers\":[{\"name\":\"a\",\"volumeMounts\":[{\"mountPath\":"
           "\"/a/data\"}]},"
           "{\"name\":\"main\"},{\"name\":\"b\",\"volumeMounts\":null}]},"
           "\"archiveLocation\":{\"archiveLogs\":true}}",
           &t);
  assert_true(t.has_result_container);
  assert_true(t.archive_logs);
  assert_int_equal(t.main_container_count, 3);
  assert_string_equal(t.main_containers[0], "a");
  assert_string_equal(t.main_containers[1], "main");
  assert_string_equal(t.main_containers[2], "b");
  assert_int_equal(t.mirrored_count, 2);
  assert_string_equal(t.mirrored[0].path, "/workspace");
  assert_string_equal(t.mirrored[1].path, "/a/data");
  aw_template_free(&t);
}

static void test_container_set_without_main(void **state) {
  (void)state;
  aw_template t;
  parse_ok(
      "{\"containerSet\":{\"containers\":[{\"name\":\"x\"},{\"name\":\"y\"}]},"
      "\"archiveLocation\":{\"archiveLogs\":false}}",
      &t);
  assert_false(t.has_result_container);
  assert_false(t.archive_logs);
  assert_int_equal(t.main_container_count, 2);
  aw_template_free(&t);
}

static void test_no_container_kind(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"name\":\"r\",\"resource\":{\"action\":\"create\"}}", &t);
  assert_false(t.has_result_container);
  assert_int_equal(t.main_container_count, 1);
  assert_string_equal(t.main_containers[0], "main");
  aw_template_free(&t);
}

/* ---- mirrored paths ---------------------------------------------------- */

static void test_mounts_and_input_artifacts_longest_first(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":{\"volumeMounts\":["
           "{\"mountPath\":\"/data\"},{\"mountPath\":\"/data/deep/er\"},"
           "{\"mountPath\":\"/data//\"},{\"mountPath\":\"/shared\"}]},"
           "\"inputs\":{\"artifacts\":["
           "{\"name\":\"in\",\"path\":\"/data/in/./file\"},"
           "{\"name\":\"opt\",\"path\":\"/opt/x\",\"optional\":true},"
           "{\"name\":\"both\",\"path\":\"/shared\",\"optional\":true},"
           "{\"name\":\"nopath\"},{\"name\":\"gitpath\",\"path\":\"\"}]}}",
           &t);
  /* /data twice and /shared (mount and artifact) are merged. */
  assert_int_equal(t.mirrored_count, 5);
  const char *want[] = {"/data/deep/er", "/data/in/file", "/shared", "/opt/x",
                        "/data"};
  for (size_t i = 0; i < 5; i++)
    assert_string_equal(t.mirrored[i].path, want[i]);
  assert_true(t.mirrored[1].from_input_artifact);
  assert_false(t.mirrored[1].optional);
  assert_false(t.mirrored[2].from_input_artifact); /* the mount wins */
  assert_false(t.mirrored[2].optional);
  assert_true(t.mirrored[3].from_input_artifact);
  assert_true(t.mirrored[3].optional);

  assert_int_equal(aw_template_find_mirror(&t, "/data/deep/er/f"), 0);
  assert_int_equal(aw_template_find_mirror(&t, "/data/deep/er"), 0);
  assert_int_equal(aw_template_find_mirror(&t, "/data/deep/e"), 4);
  assert_int_equal(aw_template_find_mirror(&t, "/data/deep/err"), 4);
  assert_int_equal(aw_template_find_mirror(&t, "/data/in/file"), 1);
  assert_int_equal(aw_template_find_mirror(&t, "/data/in/file/sub"), 1);
  assert_int_equal(aw_template_find_mirror(&t, "/data"), 4);
  assert_int_equal(aw_template_find_mirror(&t, "/datas"), -1);
  assert_int_equal(aw_template_find_mirror(&t, "/opt/x/y"), 3);
  assert_int_equal(aw_template_find_mirror(&t, "/opt"), -1);
  assert_int_equal(aw_template_find_mirror(&t, "/"), -1);
  assert_int_equal(aw_template_find_mirror(&t, NULL), -1);
  assert_int_equal(aw_template_find_mirror(NULL, "/data"), -1);
  aw_template_free(&t);
}

static void test_mount_at_root_contains_everything(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"script\":{\"volumeMounts\":[{\"mountPath\":\"/\"},"
           "{\"mountPath\":\"/a\"}]}}",
           &t);
  assert_int_equal(t.mirrored_count, 2);
  assert_string_equal(t.mirrored[1].path, "/");
  assert_int_equal(aw_template_find_mirror(&t, "/a/b"), 0);
  assert_int_equal(aw_template_find_mirror(&t, "/ab"), 1);
  assert_int_equal(aw_template_find_mirror(&t, "/"), 1);
  aw_template_free(&t);
}

static void
test_duplicate_input_artifacts_optional_only_if_all_are(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":{},\"inputs\":{\"artifacts\":["
           "{\"name\":\"a\",\"path\":\"/in\",\"optional\":true},"
           "{\"name\":\"b\",\"path\":\"/in/\"},"
           "{\"name\":\"c\",\"path\":\"/o\",\"optional\":true},"
           "{\"name\":\"d\",\"path\":\"/o\",\"optional\":true}]}}",
           &t);
  assert_int_equal(t.mirrored_count, 2);
  assert_string_equal(t.mirrored[0].path, "/in");
  assert_true(t.mirrored[0].from_input_artifact);
  assert_false(t.mirrored[0].optional);
  assert_string_equal(t.mirrored[1].path, "/o");
  assert_true(t.mirrored[1].optional);
  aw_template_free(&t);
}

static void test_path_clean_table(void **state) {
  (void)state;
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"/", "/"},
      {"/a/./b/../c", "/a/c"},
      {"/../x", "/x"},
      {"//a//b/", "/a/b"},
      {"/a/b/..", "/a"},
      {"/a/..", "/"},
      {"/..", "/"},
      {"/../..", "/"},
      {"/.", "/"},
      {"/./", "/"},
      {"///", "/"},
      {"/abc/def/../../..", "/"},
      {"/a/b/../../c/", "/c"},
      {"/...", "/..."},
      {"/..a/b..", "/..a/b.."},
      {"/a/.b/./c", "/a/.b/c"},
      {"/a/b/c/../../d/e/..", "/a/d"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *got = aw_path_clean(cases[i].in);
    assert_non_null(got);
    if (strcmp(got, cases[i].want) != 0)
      fail_msg("clean(%s) = %s, want %s", cases[i].in, got, cases[i].want);
    free(got);
  }
  assert_null(aw_path_clean("a/b"));
  assert_null(aw_path_clean(""));
  assert_null(aw_path_clean("./a"));
  assert_null(aw_path_clean(NULL));
}

/* ---- outputs ----------------------------------------------------------- */

static void test_params_value_from_and_defaults(void **state) {
  (void)state;
  aw_template t;
  parse_ok(
      "{\"container\":{},\"outputs\":{\"parameters\":["
      "{\"name\":\"plain\",\"value\":\"v\"},"
      "{\"name\":\"nopath\",\"valueFrom\":{\"jsonPath\":\"{.x}\"}},"
      "{\"name\":\"emptypath\",\"valueFrom\":{\"path\":\"\"}},"
      "{\"name\":\"str\",\"valueFrom\":{\"path\":\"/p\",\"default\":\"d\"}},"
      "{\"name\":\"num\",\"valueFrom\":{\"path\":\"/p\",\"default\":42}},"
      "{\"name\":\"nul\",\"valueFrom\":{\"path\":\"/p\",\"default\":null}},"
      "{\"name\":\"bool\",\"valueFrom\":{\"default\":false}},"
      "{\"name\":\"raw\",\"valueFrom\":{\"path\":\"/a/../b\"}}]}}",
      &t);
  assert_int_equal(t.param_count, 8);
  assert_string_equal(t.params[0].name, "plain");
  assert_null(t.params[0].path);
  assert_null(t.params[0].default_value);
  assert_null(t.params[1].path);
  assert_null(t.params[2].path);
  assert_string_equal(t.params[3].path, "/p");
  assert_string_equal(t.params[3].default_value, "d");
  assert_string_equal(t.params[4].default_value, "42");
  assert_null(t.params[5].default_value);
  assert_null(t.params[6].path);
  assert_string_equal(t.params[6].default_value, "false");
  assert_string_equal(t.params[7].path, "/a/../b"); /* kept as written */
  aw_template_free(&t);
}

/* Go's AnyString turns a number into strconv.FormatFloat(v, 'f', -1, 64). */
static void test_numeric_defaults_like_go(void **state) {
  (void)state;
  static const struct {
    const char *json, *want;
  } cases[] = {
      {"0", "0"},
      {"-0", "-0"},
      {"42", "42"},
      {"-7", "-7"},
      {"1.5", "1.5"},
      {"0.1", "0.1"},
      {"1e21", "1000000000000000000000"},
      {"1e-7", "0.0000001"},
      {"123.456e2", "12345.6"},
      {"12345678901234567890", "12345678901234567000"},
      {"3.14159", "3.14159"},
      {"true", "true"},
      {"\"007\"", "007"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"outputs\":{\"parameters\":[{\"name\":\"n\",\"valueFrom\":"
             "{\"default\":%s}}]}}",
             cases[i].json);
    aw_template t;
    parse_ok(json, &t);
    if (strcmp(t.params[0].default_value, cases[i].want) != 0)
      fail_msg("default %s -> %s, want %s", cases[i].json,
               t.params[0].default_value, cases[i].want);
    aw_template_free(&t);
  }
}

static void test_artifacts(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":{},\"outputs\":{\"artifacts\":["
           "{\"name\":\"a\",\"path\":\"/out/a\",\"optional\":true},"
           "{\"name\":\"b\",\"path\":\"/out/b\",\"archive\":{\"none\":{}}},"
           "{\"name\":\"c\",\"s3\":{\"key\":\"k\"}}]}}",
           &t);
  assert_int_equal(t.artifact_count, 3);
  assert_string_equal(t.artifacts[0].name, "a");
  assert_string_equal(t.artifacts[0].path, "/out/a");
  assert_true(t.artifacts[0].optional);
  assert_string_equal(t.artifacts[1].path, "/out/b");
  assert_false(t.artifacts[1].optional);
  assert_null(t.artifacts[2].path);
  aw_template_free(&t);
}

static void test_artifact_archive_and_own_location(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":{},\"outputs\":{\"artifacts\":["
           "{\"name\":\"d\",\"path\":\"/d\"},"
           "{\"name\":\"t\",\"path\":\"/t\",\"archive\":{\"tar\":{\"compressionLevel\":9}}},"
           "{\"name\":\"n\",\"path\":\"/n\",\"archive\":{\"none\":{}}},"
           "{\"name\":\"z\",\"path\":\"/z\",\"archive\":{\"zip\":{}},"
           "\"s3\":{\"key\":\"my/key.zip\"}},"
           "{\"name\":\"f\",\"path\":\"/f\",\"s3\":{\"bucket\":\"b\",\"key\":\"k\"}},"
           "{\"name\":\"g\",\"path\":\"/g\",\"gcs\":{\"key\":\"k\"}}]}}",
           &t);
  assert_int_equal(t.artifact_count, 6);
  assert_int_equal(t.artifacts[0].strategy, AW_STRATEGY_TAR);
  assert_int_equal(t.artifacts[0].compression_level, -1);
  assert_null(t.artifacts[0].own_type);
  assert_null(t.artifacts[0].own_key);
  assert_int_equal(t.artifacts[1].strategy, AW_STRATEGY_TAR);
  assert_int_equal(t.artifacts[1].compression_level, 9);
  assert_int_equal(t.artifacts[2].strategy, AW_STRATEGY_NONE);
  assert_int_equal(t.artifacts[3].strategy, AW_STRATEGY_ZIP);
  assert_string_equal(t.artifacts[3].own_type, "s3");
  assert_string_equal(t.artifacts[3].own_key, "my/key.zip");
  assert_false(t.artifacts[3].own_s3_full);
  assert_true(t.artifacts[4].own_s3_full);
  assert_string_equal(t.artifacts[5].own_type, "gcs");
  assert_null(t.artifacts[5].own_key);
  assert_false(t.location.present);
  aw_template_free(&t);
}

static void test_archive_location_s3(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":{},\"archiveLocation\":{\"archiveLogs\":true,\"s3\":{"
           "\"bucket\":\"my-bucket\",\"endpoint\":\"minio:9000\",\"region\":\"eu\","
           "\"insecure\":true,\"key\":\"wf/pod\",\"createBucketIfNotPresent\":true,"
           "\"accessKeySecret\":{\"name\":\"cred\",\"key\":\"accesskey\"},"
           "\"secretKeySecret\":{\"name\":\"cred\",\"key\":\"secretkey\"},"
           "\"sessionTokenSecret\":{\"name\":\"tok\",\"key\":\"t\"},"
           "\"caSecret\":{\"name\":\"ca\",\"key\":\"ca.crt\"},"
           "\"useSDKCreds\":false,\"roleARN\":\"arn:r\"}}}",
           &t);
  const aw_archive_location *l = &t.location;
  assert_true(t.archive_logs);
  assert_true(l->present);
  assert_string_equal(l->type, "s3");
  assert_string_equal(l->bucket, "my-bucket");
  assert_string_equal(l->endpoint, "minio:9000");
  assert_string_equal(l->region, "eu");
  assert_string_equal(l->key, "wf/pod");
  assert_string_equal(l->role_arn, "arn:r");
  assert_true(l->insecure);
  assert_true(l->create_bucket);
  assert_false(l->use_sdk_creds);
  assert_string_equal(l->access_key.name, "cred");
  assert_string_equal(l->access_key.key, "accesskey");
  assert_string_equal(l->secret_key.key, "secretkey");
  assert_string_equal(l->session_token.name, "tok");
  assert_string_equal(l->ca.key, "ca.crt");
  aw_template_free(&t);

  parse_ok("{\"container\":{},\"archiveLocation\":{\"gcs\":{\"bucket\":\"b\"}}}", &t);
  assert_true(t.location.present);
  assert_string_equal(t.location.type, "gcs");
  assert_null(t.location.bucket);
  aw_template_free(&t);

  parse_ok("{\"container\":{},\"archiveLocation\":{\"archiveLogs\":false}}", &t);
  assert_true(t.location.present);
  assert_null(t.location.type);
  aw_template_free(&t);
}

static void test_artifactory_locations(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":{},\"archiveLocation\":{\"archiveLogs\":true,\"artifactory\":{"
           "\"url\":\"https://art.example.com/artifactory/generic-local/wf/pod\","
           "\"usernameSecret\":{\"name\":\"cred\",\"key\":\"user\"},"
           "\"passwordSecret\":{\"name\":\"cred\",\"key\":\"pass\"}}},"
           "\"outputs\":{\"artifacts\":[{\"name\":\"o\",\"path\":\"/o\",\"artifactory\":{"
           "\"url\":\"https://art.example.com/artifactory/generic-local/o.tgz\","
           "\"passwordSecret\":{\"name\":\"c2\",\"key\":\"p\"},"
           "\"usernameSecret\":{\"name\":\"c2\",\"key\":\"u\"}}}]}}",
           &t);
  const aw_archive_location *l = &t.location;
  assert_string_equal(l->type, "artifactory");
  assert_string_equal(l->url, "https://art.example.com/artifactory/generic-local/wf/pod");
  assert_string_equal(l->username.name, "cred");
  assert_string_equal(l->username.key, "user");
  assert_string_equal(l->password.key, "pass");
  assert_null(l->bucket);
  const aw_output_artifact *a = &t.artifacts[0];
  assert_string_equal(a->own_type, "artifactory");
  assert_string_equal(a->own_url, "https://art.example.com/artifactory/generic-local/o.tgz");
  assert_string_equal(a->own_username.name, "c2");
  assert_string_equal(a->own_password.key, "p");
  assert_null(a->own_key);
  aw_template_free(&t);

  parse_fails("{\"container\":{},\"archiveLocation\":{\"artifactory\":{\"url\":7}}}",
              "archiveLocation.artifactory.url is a number");
  parse_fails("{\"container\":{},\"outputs\":{\"artifacts\":[{\"name\":\"a\",\"path\":\"/a\","
              "\"artifactory\":{\"url\":\"https://x/y\",\"usernameSecret\":{\"key\":\"u\"}}}]}}",
              "artifactory.usernameSecret needs both name and key");
}

static void test_archive_location_and_archive_errors(void **state) {
  (void)state;
  parse_fails("{\"container\":{},\"archiveLocation\":{\"s3\":{\"bucket\":1}}}",
              "archiveLocation.s3.bucket is a number");
  parse_fails("{\"container\":{},\"archiveLocation\":{\"s3\":{\"accessKeySecret\":"
              "{\"name\":\"x\"}}}}",
              "archiveLocation.s3.accessKeySecret needs both name and key");
  parse_fails("{\"container\":{},\"outputs\":{\"artifacts\":[{\"name\":\"a\","
              "\"archive\":{\"tar\":{\"compressionLevel\":12}}}]}}",
              "outputs.artifacts[0].archive.tar.compressionLevel is not an integer");
  parse_fails("{\"container\":{},\"outputs\":{\"artifacts\":[{\"name\":\"a\","
              "\"archive\":\"none\"}]}}",
              "outputs.artifacts[0].archive is a string");
}

static void test_outputs_is_a_copy_of_the_template_outputs(void **state) {
  (void)state;
  const char *outputs =
      "{\"parameters\":[{\"name\":\"p\",\"valueFrom\":{\"path\":\"/p\"}}],"
      "\"artifacts\":[{\"name\":\"a\",\"path\":\"/a\",\"globalName\":\"g\"}],"
      "\"extra\":{\"kept\":[1,2,3]}}";
  char json[512];
  snprintf(json, sizeof(json), "{\"container\":{},\"outputs\":%s}", outputs);
  aw_template t;
  parse_ok(json, &t);
  cJSON *want = cJSON_Parse(outputs);
  assert_true(cJSON_Compare(want, t.outputs, 1));
  cJSON_Delete(want);
  char *printed = cJSON_PrintUnformatted(t.outputs);
  assert_string_equal(printed, outputs);
  free(printed);
  aw_template_free(&t);
}

static void test_null_members_are_absent(void **state) {
  (void)state;
  aw_template t;
  parse_ok("{\"container\":null,\"script\":{},\"outputs\":null,\"inputs\":null,"
           "\"archiveLocation\":null}",
           &t);
  assert_true(t.has_result_container);
  assert_true(cJSON_IsObject(t.outputs));
  aw_template_free(&t);
}

/* ---- bad input --------------------------------------------------------- */

static void test_not_json(void **state) {
  (void)state;
  parse_fails("{\"container\": {\"image\": x}}",
              "not valid JSON (error near byte 24)");
  parse_fails("hello", "not valid JSON");
  parse_fails("   ", "not valid JSON");
  parse_fails_len("", 0, "template: empty");
  aw_template t;
  aw_reasons errs;
  aw_reasons_init(&errs);
  assert_int_equal(aw_template_parse(NULL, 0, &t, &errs), -1);
  assert_int_equal(errs.count, 1);
  aw_reasons_free(&errs);
}

static void test_not_an_object(void **state) {
  (void)state;
  parse_fails("[]", "is an array, not an object");
  parse_fails("\"main\"", "is a string, not an object");
  parse_fails("null", "is null, not an object");
  parse_fails("7", "is a number, not an object");
}

static void test_truncated_input(void **state) {
  (void)state;
  const char *json = "{\"container\":{\"image\":\"alpine\"},\"outputs\":{}}";
  for (size_t len = 1; len < strlen(json); len++)
    parse_fails_len(json, len, "not valid JSON");
}

static void test_trailing_garbage_and_raw_bytes(void **state) {
  (void)state;
  parse_fails("{} {}", "unexpected data after the JSON value (at byte 3)");
  parse_fails("{}x", "unexpected data");
  parse_fails_len("{}\0", 3, "NUL byte at byte 2");
  parse_fails_len("{\"a\":\"x\0y\"}", 11, "control character");
  parse_fails("{\"a\":\"x\ny\"}", "control character in a string at byte 7");
  parse_fails("{\"name\":\"a\\u0000b\"}", "\\u0000");
  parse_fails("{\"name\":\"\xff\"}", "invalid UTF-8 at byte 9");
  parse_fails("{\"name\":\"\xc0\xaf\"}", "invalid UTF-8"); /* overlong '/' */
  parse_fails("{\"name\":\"\xed\xa0\x80\"}", "invalid UTF-8"); /* surrogate */

  aw_template t;
  /* An escaped backslash before "u0000" is text, not a NUL. */
  parse_ok("{\"name\":\"a\\\\u0000\",\"x\":\"\xc3\xa9\xf0\x9f\x98\x80\"}  \n",
           &t);
  aw_template_free(&t);
}

static void test_too_big(void **state) {
  (void)state;
  size_t len = AW_TEMPLATE_MAX_BYTES + 1;
  char *big = malloc(len);
  assert_non_null(big);
  memset(big, ' ', len);
  big[0] = '{';
  big[len - 1] = '}';
  aw_template t;
  aw_reasons errs;
  aw_reasons_init(&errs);
  assert_int_equal(aw_template_parse(big, len, &t, &errs), -1);
  assert_int_equal(errs.count, 1);
  assert_non_null(strstr(errs.items[0], "more than the limit"));
  aw_reasons_free(&errs);
  /* Exactly at the limit is fine. */
  assert_int_equal(aw_template_parse(big + 1, len - 1, &t, &errs), -1);
  big[1] = '{';
  assert_int_equal(aw_template_parse(big + 1, len - 1, &t, &errs), 0);
  aw_template_free(&t);
  aw_reasons_free(&errs);
  free(big);
}

static void test_deep_nesting_does_not_crash(void **state) {
  (void)state;
  size_t depth = 100000;
  char *json = malloc(2 * depth);
  assert_non_null(json);
  memset(json, '[', depth);
  memset(json + depth, ']', depth);
  parse_fails_len(json, 2 * depth, "nested deeper than");
  /* Objects inside a template, just past the limit and well inside it. */
  for (size_t i = 0; i < depth; i++) json[i] = i % 2 ? '[' : '{';
  parse_fails_len(json, depth, "nested deeper than");
  free(json);

  aw_template t;
  parse_ok("{\"outputs\":{\"parameters\":[],\"x\":[[[[[[[[[[{}]]]]]]]]]]}}",
           &t);
  aw_template_free(&t);
}

static void test_wrong_types(void **state) {
  (void)state;
  static const struct {
    const char *json, *want;
  } cases[] = {
      {"{\"container\":[]}", "container is an array, not an object"},
      {"{\"script\":\"x\"}", "script is a string, not an object"},
      {"{\"containerSet\":1}", "containerSet is a number, not an object"},
      {"{\"containerSet\":{\"containers\":{}}}",
       "containerSet.containers is an object, not an array"},
      {"{\"containerSet\":{\"containers\":[\"main\"]}}",
       "containerSet.containers[0] is a string, not an object"},
      {"{\"containerSet\":{\"containers\":[{\"name\":7}]}}",
       "containerSet.containers[0].name is a number, not a string"},
      {"{\"outputs\":[]}", "outputs is an array, not an object"},
      {"{\"outputs\":{\"parameters\":{}}}",
       "outputs.parameters is an object, not an array"},
      {"{\"outputs\":{\"parameters\":[{\"name\":\"a\"},3]}}",
       "outputs.parameters[1] is a number, not an object"},
      {"{\"outputs\":{\"parameters\":[{\"name\":\"a\",\"valueFrom\":\"/p\"}]}}",
       "outputs.parameters[0].valueFrom is a string, not an object"},
      {"{\"outputs\":{\"parameters\":[{\"name\":\"a\",\"valueFrom\":{\"path\":"
       "5}}]}}",
       "outputs.parameters[0].valueFrom.path is a number, not a string"},
      {"{\"outputs\":{\"parameters\":[{\"name\":\"a\",\"valueFrom\":{"
       "\"default\":{}}}]}}",
       "outputs.parameters[0].valueFrom.default is an object, not a string, "
       "number or boolean"},
      {"{\"outputs\":{\"parameters\":[{\"name\":\"a\",\"valueFrom\":{"
       "\"default\":1e999}}]}}",
       "valueFrom.default is a number out of range"},
      {"{\"outputs\":{\"artifacts\":[{\"name\":\"a\",\"optional\":\"yes\"}]}}",
       "outputs.artifacts[0].optional is a string, not a boolean"},
      {"{\"outputs\":{\"artifacts\":[{\"name\":\"a\",\"path\":[]}]}}",
       "outputs.artifacts[0].path is an array, not a string"},
      {"{\"outputs\":{\"artifacts\":true}}",
       "outputs.artifacts is a boolean, not an array"},
      {"{\"container\":{\"volumeMounts\":{}}}",
       "container.volumeMounts is an object, not an array"},
      {"{\"script\":{\"volumeMounts\":[{\"mountPath\":1}]}}",
       "script.volumeMounts[0].mountPath is a number, not a string"},
      {"{\"containerSet\":{\"containers\":[{\"name\":\"a\",\"volumeMounts\":["
       "null]}]}}",
       "containerSet.containers[0].volumeMounts[0] is null, not an object"},
      {"{\"inputs\":[]}", "inputs is an array, not an object"},
      {"{\"inputs\":{\"artifacts\":[{\"path\":\"/x\",\"optional\":1}]}}",
       "inputs.artifacts[0].optional is a number, not a boolean"},
      {"{\"archiveLocation\":{\"archiveLogs\":\"true\"}}",
       "archiveLocation.archiveLogs is a string, not a boolean"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    parse_fails(cases[i].json, cases[i].want);
}

static void test_missing_and_bad_values(void **state) {
  (void)state;
  static const struct {
    const char *json, *want;
  } cases[] = {
      {"{\"outputs\":{\"parameters\":[{\"name\":\"a\"},{\"name\":\"b\"},{}]}}",
       "template: outputs.parameters[2].name is missing"},
      {"{\"outputs\":{\"parameters\":[{\"name\":\"\"}]}}",
       "outputs.parameters[0].name is empty"},
      {"{\"outputs\":{\"artifacts\":[{\"path\":\"/a\"}]}}",
       "outputs.artifacts[0].name is missing"},
      {"{\"containerSet\":{\"containers\":[{\"image\":\"x\"}]}}",
       "containerSet.containers[0].name is missing"},
      {"{\"containerSet\":{\"containers\":[]}}",
       "containerSet.containers is empty"},
      {"{\"containerSet\":{}}", "containerSet.containers is missing"},
      {"{\"containerSet\":{\"containers\":[{\"name\":\"b\"},{\"name\":\"a\"},"
       "{\"name\":\"b\"}]}}",
       "containerSet.containers has the name \"b\" more than once"},
      {"{\"outputs\":{\"parameters\":[{\"name\":\"a\",\"valueFrom\":{\"path\":"
       "\"p.txt\"}}]}}",
       "outputs.parameters[0].valueFrom.path is not an absolute path"},
      {"{\"container\":{\"volumeMounts\":[{\"name\":\"v\"}]}}",
       "container.volumeMounts[0].mountPath is missing"},
      {"{\"container\":{\"volumeMounts\":[{\"mountPath\":\"rel\"}]}}",
       "container.volumeMounts[0].mountPath is not an absolute path"},
      {"{\"inputs\":{\"artifacts\":[{\"name\":\"i\",\"path\":\"in\"}]}}",
       "inputs.artifacts[0].path is not an absolute path"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    parse_fails(cases[i].json, cases[i].want);
}

/* A message names a user's string only briefly, whatever its size. */
static void test_reasons_do_not_echo_big_input(void **state) {
  (void)state;
  size_t n = 10000;
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  aw_strbuf_appends(&sb, "{\"containerSet\":{\"containers\":[");
  for (int k = 0; k < 2; k++) {
    aw_strbuf_appends(&sb, k ? ",{\"name\":\"" : "{\"name\":\"");
    for (size_t i = 0; i < n; i++) aw_strbuf_appends(&sb, "\xc3\xa9");
    aw_strbuf_appends(&sb, "\"}");
  }
  aw_strbuf_appends(&sb, "]}}");
  aw_template t;
  aw_reasons errs;
  aw_reasons_init(&errs);
  assert_int_equal(aw_template_parse(sb.data, sb.len, &t, &errs), -1);
  assert_int_equal(errs.count, 1);
  assert_true(strlen(errs.items[0]) < 200);
  assert_non_null(strstr(errs.items[0], "more than once"));
  /* Cut between characters: 31 two-byte characters, then the quote. */
  assert_non_null(strstr(errs.items[0], "\xc3\xa9\" more than once"));
  aw_reasons_free(&errs);
  aw_strbuf_free(&sb);
}

static void test_free_is_safe_on_zeroed_and_twice(void **state) {
  (void)state;
  aw_template t;
  memset(&t, 0, sizeof(t));
  aw_template_free(&t);
  aw_template_free(NULL);
  parse_ok("{\"container\":{\"volumeMounts\":[{\"mountPath\":\"/m\"}]}}", &t);
  aw_template_free(&t);
  assert_true(is_zeroed(&t));
  aw_template_free(&t);
}

static void test_failure_after_partial_fill_frees_everything(void **state) {
  (void)state;
  /* Containers, mounts and parameters are filled before the artifact fails;
   * the leak checker of the sanitizer build sees anything left behind. */
  parse_fails("{\"containerSet\":{\"containers\":[{\"name\":\"main\","
              "\"volumeMounts\":[{\"mountPath\":\"/w\"}]}]},"
              "\"inputs\":{\"artifacts\":[{\"name\":\"i\",\"path\":\"/i\"}]},"
              "\"outputs\":{\"parameters\":[{\"name\":\"p\",\"valueFrom\":"
              "{\"path\":\"/p\",\"default\":\"d\"}}],"
              "\"artifacts\":[{\"name\":\"a\",\"path\":\"/a\"},{}]}}",
              "outputs.artifacts[1].name is missing");
  parse_fails("{\"container\":{\"volumeMounts\":[{\"mountPath\":\"/a\"},"
              "{\"mountPath\":\"/b\"},{\"mountPath\":\"c\"}]}}",
              "container.volumeMounts[2].mountPath is not an absolute path");
}

/* Random byte edits of a rich template: whatever the bytes, the parse either
 * succeeds or fails with reasons, and never crashes or leaks (the sanitizer
 * build checks the latter). The generator is seeded: runs repeat. */
static void test_mutated_templates_never_crash(void **state) {
  (void)state;
  static const char base[] =
      "{\"containerSet\":{\"volumeMounts\":[{\"mountPath\":\"/ws\"}],"
      "\"containers\":[{\"name\":\"main\",\"volumeMounts\":[{\"mountPath\":"
      "\"/a/b\"}]},{\"name\":\"x\"}]},\"inputs\":{\"artifacts\":[{\"name\":"
      "\"i\",\"path\":\"/in\",\"optional\":true}]},\"archiveLocation\":"
      "{\"archiveLogs\":true},\"outputs\":{\"parameters\":[{\"name\":\"p\","
      "\"valueFrom\":{\"path\":\"/ws/p\",\"default\":1.25}}],\"artifacts\":"
      "[{\"name\":\"a\",\"path\":\"/a/b/c\",\"optional\":false}]}}";
  static const char alphabet[] =
      "{}[]\":,\\/.0123456789-eE truefalsnul\x00\xc3\xa9\xff";
  uint64_t seed = 0x9e3779b97f4a7c15u;
  char buf[sizeof(base)];
  for (int round = 0; round < 20000; round++) {
    memcpy(buf, base, sizeof(base));
    size_t len = sizeof(base) - 1;
    int edits = 1 + round % 4;
    for (int e = 0; e < edits; e++) {
      seed ^= seed << 13;
      seed ^= seed >> 7;
      seed ^= seed << 17;
      size_t at = (size_t)(seed % len);
      char c = alphabet[(seed >> 32) % (sizeof(alphabet) - 1)];
      if ((seed >> 60) == 0) len = at + 1; /* sometimes truncate */
      buf[at] = c;
    }
    aw_template t;
    aw_reasons errs;
    aw_reasons_init(&errs);
    int rc = parse_bytes(buf, len, &t, &errs);
    if (rc == 0) {
      assert_int_equal(errs.count, 0);
      assert_non_null(t.outputs);
      assert_true(t.main_container_count > 0);
      aw_template_free(&t);
    } else {
      assert_true(errs.count > 0);
      assert_true(strncmp(errs.items[0], "template: ", 10) == 0);
      assert_true(is_zeroed(&t));
    }
    aw_reasons_free(&errs);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_script_template),
      cmocka_unit_test(test_container_template_without_outputs),
      cmocka_unit_test(test_container_set_with_main),
      cmocka_unit_test(test_container_set_without_main),
      cmocka_unit_test(test_no_container_kind),
      cmocka_unit_test(test_mounts_and_input_artifacts_longest_first),
      cmocka_unit_test(test_mount_at_root_contains_everything),
      cmocka_unit_test(test_duplicate_input_artifacts_optional_only_if_all_are),
      cmocka_unit_test(test_path_clean_table),
      cmocka_unit_test(test_params_value_from_and_defaults),
      cmocka_unit_test(test_numeric_defaults_like_go),
      cmocka_unit_test(test_artifacts),
      cmocka_unit_test(test_artifact_archive_and_own_location),
      cmocka_unit_test(test_archive_location_s3),
      cmocka_unit_test(test_archive_location_and_archive_errors),
      cmocka_unit_test(test_artifactory_locations),
      cmocka_unit_test(test_outputs_is_a_copy_of_the_template_outputs),
      cmocka_unit_test(test_null_members_are_absent),
      cmocka_unit_test(test_not_json),
      cmocka_unit_test(test_not_an_object),
      cmocka_unit_test(test_truncated_input),
      cmocka_unit_test(test_trailing_garbage_and_raw_bytes),
      cmocka_unit_test(test_too_big),
      cmocka_unit_test(test_deep_nesting_does_not_crash),
      cmocka_unit_test(test_wrong_types),
      cmocka_unit_test(test_missing_and_bad_values),
      cmocka_unit_test(test_reasons_do_not_echo_big_input),
      cmocka_unit_test(test_free_is_safe_on_zeroed_and_twice),
      cmocka_unit_test(test_failure_after_partial_fill_frees_everything),
      cmocka_unit_test(test_mutated_templates_never_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
