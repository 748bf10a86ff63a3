/* The artifact stores as artifacts.c sees them (pure parts): which
 * archiveLocation makes a store, where upload names go, how keys are named
 * and reported; and Artifactory's URL rules (no credentials in a URL) and
 * joining, which must match what Argo's url package writes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "argowait/artifactory.h"
#include "argowait/store.h"

static const char *no_env(const char *name) {
  (void)name;
  return NULL;
}

/* What the EKS pod identity webhook sets. */
static const char *irsa_env(const char *name) {
  if (strcmp(name, "AWS_WEB_IDENTITY_TOKEN_FILE") == 0)
    return "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
  if (strcmp(name, "AWS_ROLE_ARN") == 0) return "arn:aws:iam::123456789012:role/wf";
  if (strcmp(name, "AWS_REGION") == 0) return "eu-west-1";
  return NULL;
}

static const char *bad_threads_env(const char *name) {
  return strcmp(name, "ARTIFACT_S3_UPLOAD_THREADS") == 0 ? "lots" : irsa_env(name);
}

static void url_ok(const char *url) {
  const char *why = NULL;
  if (aw_artifactory_check_url(url, &why) != 0) fail_msg("%s refused: %s", url, why);
}

static void url_bad(const char *url, const char *want) {
  const char *why = NULL;
  assert_int_equal(aw_artifactory_check_url(url, &why), -1);
  if (!strstr(why, want)) fail_msg("%s: %s, want %s", url, why, want);
}

static void test_check_url(void **state) {
  (void)state;
  url_ok("https://art.example.com/artifactory/generic-local");
  url_ok("http://artifactory:8081/artifactory/generic-local/wf/pod/");
  url_ok("HTTPS://[::1]:8443/a");
  url_ok("https://host");
  url_bad(NULL, "empty");
  url_bad("", "empty");
  url_bad("ftp://host/x", "https:// or http://");
  url_bad("host/x", "https:// or http://");
  url_bad("https:///x", "no host");
  url_bad("https://user:pw@host/x", "user or password");
  url_bad("https://user@host/x", "user or password");
  url_bad("https://host/x?token=abc", "query");
  url_bad("https://host/x#frag", "fragment");
  url_bad("https://host/a b", "space");
  url_bad("https://host/a\nb", "control");
  url_bad("https://host/\xc3\xa9", "non-ASCII");
  char *long_url = malloc(AW_ARTIFACTORY_URL_MAX + 16);
  strcpy(long_url, "https://h/");
  memset(long_url + 10, 'a', AW_ARTIFACTORY_URL_MAX);
  long_url[AW_ARTIFACTORY_URL_MAX + 10] = '\0';
  url_bad(long_url, "too long");
  free(long_url);
  url_bad("https://host:99999/x", "cannot be parsed");
  url_bad("https://[::1/x", "cannot be parsed");
  url_bad("https://:443/x", "cannot be parsed");
  /* '@' after the host is a path character, not a user. */
  url_ok("https://host/builds/@latest");
}

static void join_is(const char *base, const char *name, const char *want) {
  char *got = aw_artifactory_join_url(base, name);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

static void test_join_url(void **state) {
  (void)state;
  join_is("https://h/artifactory/generic-local/wf/pod", "out.tgz",
          "https://h/artifactory/generic-local/wf/pod/out.tgz");
  join_is("https://h/r/", "main.log", "https://h/r/main.log");
  join_is("https://h/r///", "x", "https://h/r/x");
  join_is("https://h", "x", "https://h/x");
  /* As Go's url.URL.String() escapes a path. */
  join_is("https://h/r", "raw data.bin", "https://h/r/raw%20data.bin");
  join_is("https://h/r", "a?b#c%d", "https://h/r/a%3Fb%23c%25d");
  join_is("https://h/r", "keep-_.~$&+,:;=@", "https://h/r/keep-_.~$&+,:;=@");
  join_is("https://h/r", "!'()*", "https://h/r/%21%27%28%29%2A");
  join_is("https://h/r", "caf\xc3\xa9", "https://h/r/caf%C3%A9");
  join_is("https://h/r", "sub/file", "https://h/r/sub/file");
  join_is("https://h/r", "/lead", "https://h/r/lead");
}

static void test_s3_store(void **state) {
  (void)state;
  aw_archive_location l = {.present = true, .type = "s3", .bucket = "b", .key = "wf/pod/",
                           .access_key = {"cred", "a"}, .secret_key = {"cred", "s"}};
  char *why = NULL;
  aw_store *s = aw_store_for_archive_location(&l, no_env, "pod", &why);
  assert_non_null(s);
  assert_null(why);
  assert_string_equal(aw_store_type(s), "s3");
  assert_true(aw_store_holds_folders(s));
  char *key = aw_store_key(s, "out.tgz");
  assert_string_equal(key, "wf/pod/out.tgz");
  char *child = aw_store_child_key(s, key, "sub/a.txt");
  assert_string_equal(child, "wf/pod/out.tgz/sub/a.txt");
  char *where = aw_store_where(s, key);
  assert_string_equal(where, "s3://b/wf/pod/out.tgz");
  cJSON *loc = aw_store_location(s, key);
  char *json = cJSON_PrintUnformatted(loc);
  assert_string_equal(json, "{\"key\":\"wf/pod/out.tgz\"}");
  free(json);
  cJSON_Delete(loc);
  free(key);
  free(child);
  free(where);
  aw_store_free(s);

  l.key = NULL;
  s = aw_store_for_archive_location(&l, no_env, "pod", &why);
  key = aw_store_key(s, "x.tgz");
  assert_string_equal(key, "x.tgz");
  free(key);
  aw_store_free(s);

  l.bucket = NULL;
  assert_null(aw_store_for_archive_location(&l, no_env, "pod", &why));
  assert_non_null(strstr(why, "bucket is not set"));
  free(why);
  l.bucket = "b";
  l.access_key.name = NULL;
  l.secret_key.name = NULL;
  l.role_arn = "arn:aws:iam::1:role/r";
  assert_null(aw_store_for_archive_location(&l, no_env, "pod", &why));
  assert_non_null(strstr(why, "roleARN"));
  assert_non_null(strstr(why, "S3 credentials"));
  free(why);
  l.access_key.name = "cred";
  l.secret_key.name = NULL;
  l.role_arn = NULL;
  assert_null(aw_store_for_archive_location(&l, no_env, "pod", &why));
  assert_non_null(strstr(why, "only one of accessKeySecret and secretKeySecret"));
  free(why);
}

/* Without keys, the pod's web identity (and roleARN chained on it) makes a
 * store; nothing is in flight to stop before it connects. */
static void test_s3_store_web_identity(void **state) {
  (void)state;
  aw_archive_location l = {.present = true, .type = "s3", .bucket = "b", .key = "k"};
  char *why = NULL;
  aw_store *s = aw_store_for_archive_location(&l, irsa_env, "pod", &why);
  assert_non_null(s);
  assert_null(why);
  assert_false(aw_store_connect_stop(s, "stopped", &why));
  assert_null(why);
  aw_store_free(s);
  l.role_arn = "arn:aws:iam::123456789012:role/target";
  s = aw_store_for_archive_location(&l, irsa_env, NULL, &why);
  assert_non_null(s);
  aw_store_free(s);
  l.role_arn = "not-an-arn";
  assert_null(aw_store_for_archive_location(&l, irsa_env, "pod", &why));
  assert_non_null(strstr(why, "S3 credentials: roleARN"));
  free(why);
  l.role_arn = NULL;
  assert_null(aw_store_for_archive_location(&l, bad_threads_env, "pod", &why));
  assert_non_null(strstr(why, "ARTIFACT_S3_UPLOAD_THREADS"));
  free(why);
}

static void test_artifactory_store(void **state) {
  (void)state;
  aw_archive_location l = {.present = true, .type = "artifactory",
                           .url = "https://h/artifactory/generic-local/wf/pod",
                           .username = {"cred", "u"}, .password = {"cred", "p"}};
  char *why = NULL;
  aw_store *s = aw_store_for_archive_location(&l, no_env, "pod", &why);
  assert_non_null(s);
  assert_string_equal(aw_store_type(s), "artifactory");
  assert_false(aw_store_holds_folders(s));
  char *key = aw_store_key(s, "out file.tgz");
  assert_string_equal(key, "https://h/artifactory/generic-local/wf/pod/out%20file.tgz");
  char *where = aw_store_where(s, key);
  assert_string_equal(where, key);
  cJSON *loc = aw_store_location(s, key);
  char *json = cJSON_PrintUnformatted(loc);
  assert_string_equal(json, "{\"url\":\"https://h/artifactory/generic-local/wf/pod/out%20file.tgz\"}");
  free(json);
  cJSON_Delete(loc);
  free(key);
  free(where);
  aw_store_free(s);

  l.url = "https://me:secret@h/x";
  assert_null(aw_store_for_archive_location(&l, no_env, "pod", &why));
  assert_non_null(strstr(why, "archiveLocation.artifactory.url: the url must not hold a user"));
  assert_null(strstr(why, "secret"));
  free(why);
  l.url = NULL;
  assert_null(aw_store_for_archive_location(&l, no_env, "pod", &why));
  assert_non_null(strstr(why, "archiveLocation.artifactory.url is not set"));
  free(why);
  l.url = "https://h/x";
  l.password.name = NULL;
  assert_null(aw_store_for_archive_location(&l, no_env, "pod", &why));
  assert_non_null(strstr(why, "both usernameSecret and passwordSecret"));
  free(why);

  aw_output_artifact art = {.name = "o", .path = "/o", .own_type = "artifactory",
                            .own_url = "https://h/r/o.tgz"};
  s = aw_store_for_own_artifactory(&art, &why);
  assert_non_null(s);
  key = aw_store_key(s, NULL);
  assert_string_equal(key, "https://h/r/o.tgz");
  free(key);
  aw_store_free(s);
}

static void test_unsupported_types(void **state) {
  (void)state;
  const char *kinds[] = {"gcs", "azure", "oss", "hdfs", "plugin"};
  for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++) {
    aw_archive_location l = {.present = true, .type = kinds[i]};
    char *why = NULL;
    assert_null(aw_store_for_archive_location(&l, no_env, "pod", &why));
    assert_non_null(strstr(why, kinds[i]));
    assert_non_null(strstr(why, "not supported"));
    free(why);
  }
  aw_archive_location none = {.present = true};
  char *why = NULL;
  assert_null(aw_store_for_archive_location(&none, no_env, "pod", &why));
  assert_non_null(strstr(why, "no artifact repository"));
  free(why);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_url),
      cmocka_unit_test(test_join_url),
      cmocka_unit_test(test_s3_store),
      cmocka_unit_test(test_s3_store_web_identity),
      cmocka_unit_test(test_artifactory_store),
      cmocka_unit_test(test_unsupported_types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
