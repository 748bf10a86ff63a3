/* kubeconfig parsing: the current context only, clear errors for what is
 * not supported, and data fields decoded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "argowait/kubeconfig.h"

/* "hello" and "key!" in base64 */
#define HELLO_B64 "aGVsbG8="
#define KEY_B64 "a2V5IQ=="

static const char *const full_config =
    "apiVersion: v1\n"
    "kind: Config\n"
    "current-context: remote\n"
    "clusters:\n"
    "- name: other\n"
    "  cluster: {server: 'https://wrong:1'}\n"
    "- name: prod\n"
    "  cluster:\n"
    "    server: https://10.0.0.1:6443/\n"
    "    certificate-authority-data: " HELLO_B64 "\n"
    "contexts:\n"
    "- name: local\n"
    "  context: {cluster: other, user: other}\n"
    "- name: remote\n"
    "  context:\n"
    "    cluster: prod\n"
    "    user: robot\n"
    "    namespace: argo\n"
    "users:\n"
    "- name: robot\n"
    "  user:\n"
    "    tokenFile: secrets/token\n"
    "    client-certificate: /etc/cert.pem\n"
    "    client-key-data: " KEY_B64 "\n";

static int parse(const char *text, aw_kubeconfig *kc, aw_reasons *errs) {
  aw_reasons_init(errs);
  return aw_kubeconfig_parse(text, strlen(text), "/kube", kc, errs);
}

static void test_current_context_is_used(void **state) {
  (void)state;
  aw_kubeconfig kc;
  aw_reasons errs;
  assert_int_equal(parse(full_config, &kc, &errs), 0);
  assert_int_equal(errs.count, 0);
  assert_string_equal(kc.server, "https://10.0.0.1:6443");
  assert_string_equal(kc.namespace_, "argo");
  assert_null(kc.ca_file);
  assert_int_equal(kc.ca_pem.len, 5);
  assert_memory_equal(kc.ca_pem.data, "hello", 5);
  assert_null(kc.token);
  assert_string_equal(kc.token_file, "/kube/secrets/token");
  assert_string_equal(kc.client_cert_file, "/etc/cert.pem");
  assert_int_equal(kc.client_key_pem.len, 4);
  assert_memory_equal(kc.client_key_pem.data, "key!", 4);
  aw_kubeconfig_free(&kc);
  aw_reasons_free(&errs);
}

static void test_token_and_ca_file(void **state) {
  (void)state;
  const char *text =
      "current-context: c\n"
      "clusters: [{name: k, cluster: {server: 'https://[fd00::1]:443', certificate-authority: ca.crt}}]\n"
      "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
      "users: [{name: u, user: {token: abc.def}}]\n";
  aw_kubeconfig kc;
  aw_reasons errs;
  assert_int_equal(parse(text, &kc, &errs), 0);
  assert_string_equal(kc.server, "https://[fd00::1]:443");
  assert_string_equal(kc.ca_file, "/kube/ca.crt");
  assert_string_equal(kc.token, "abc.def");
  assert_null(kc.namespace_);
  aw_kubeconfig_free(&kc);
  aw_reasons_free(&errs);
}

static void expect_error(const char *text, const char *needle) {
  aw_kubeconfig kc;
  aw_reasons errs;
  assert_int_equal(parse(text, &kc, &errs), -1);
  assert_true(errs.count >= 1);
  int found = 0;
  for (size_t i = 0; i < errs.count; i++) {
    assert_non_null(strstr(errs.items[i], "kubeconfig: "));
    if (strstr(errs.items[i], needle)) found = 1;
  }
  if (!found) fail_msg("no reason contains \"%s\" (first: %s)", needle, errs.items[0]);
  assert_null(kc.server); /* freed and zeroed on failure */
  aw_reasons_free(&errs);
}

#define BASE_CLUSTER "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
#define BASE_CONTEXT "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"

static void test_errors_name_the_problem(void **state) {
  (void)state;
  expect_error("", "not a YAML mapping");
  expect_error("a: [", "not valid YAML");
  expect_error("- just\n- a list\n", "not a YAML mapping");
  expect_error(BASE_CLUSTER "users: [{name: u, user: {token: t}}]\n", "current-context is not set");
  expect_error("current-context: nope\n" BASE_CLUSTER, "no context named \"nope\"");
  expect_error(BASE_CONTEXT "users: [{name: u, user: {token: t}}]\n", "cluster \"k\" is not defined");
  expect_error(BASE_CONTEXT BASE_CLUSTER, "user \"u\" is not defined");
  expect_error(BASE_CONTEXT BASE_CLUSTER "users: [{name: u, user: {exec: {command: aws}}}]\n",
               "\"exec\" is not supported");
  expect_error(BASE_CONTEXT BASE_CLUSTER "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
               "\"auth-provider\" is not supported");
  expect_error(BASE_CONTEXT BASE_CLUSTER "users: [{name: u, user: {username: a, password: b}}]\n",
               "\"username\" is not supported");
  expect_error(BASE_CONTEXT BASE_CLUSTER "users: [{name: u, user: {}}]\n",
               "no token, tokenFile or client certificate");
  expect_error(BASE_CONTEXT BASE_CLUSTER "users: [{name: u, user: {client-certificate: c.pem}}]\n",
               "both a certificate and a key");
  expect_error(BASE_CONTEXT BASE_CLUSTER "users: [{name: u, user: {token: [1, 2]}}]\n",
               "token must be a string");
  expect_error(BASE_CONTEXT
               "clusters: [{name: k, cluster: {server: 'http://h:1'}}]\n"
               "users: [{name: u, user: {token: t}}]\n",
               "must be an https:// URL");
  expect_error(BASE_CONTEXT
               "clusters: [{name: k, cluster: {server: 'https://h:1', insecure-skip-tls-verify: true}}]\n"
               "users: [{name: u, user: {token: t}}]\n",
               "insecure-skip-tls-verify is not supported");
  expect_error(BASE_CONTEXT
               "clusters: [{name: k, cluster: {server: 'https://h:1', certificate-authority-data: '@@'}}]\n"
               "users: [{name: u, user: {token: t}}]\n",
               "certificate-authority-data is not valid base64");
}

static void test_too_large(void **state) {
  (void)state;
  size_t n = AW_KUBECONFIG_MAX_BYTES + 1;
  char *big = malloc(n);
  memset(big, '#', n);
  aw_kubeconfig kc;
  aw_reasons errs;
  aw_reasons_init(&errs);
  assert_int_equal(aw_kubeconfig_parse(big, n, "/", &kc, &errs), -1);
  assert_non_null(strstr(errs.items[0], "larger than"));
  aw_reasons_free(&errs);
  free(big);
}

static void test_base64(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *out; /* NULL: malformed */
  } cases[] = {
      {"", ""},          {"aGVsbG8=", "hello"}, {"aGVsbG8", "hello"}, {"aGVs\nbG8=", "hello"},
      {"YQ==", "a"},     {"YWI=", "ab"},        {"YWJj", "abc"},      {"Y", NULL},
      {"YQ=a", NULL},    {"a$==", NULL},        {"YR==", NULL},       {"YQ===", NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    aw_blob b;
    int rc = aw_base64_decode(cases[i].in, strlen(cases[i].in), &b);
    if (!cases[i].out) {
      if (rc != -1) fail_msg("\"%s\" should be malformed", cases[i].in);
      assert_null(b.data);
      continue;
    }
    if (rc != 0) fail_msg("\"%s\" should decode", cases[i].in);
    assert_int_equal(b.len, strlen(cases[i].out));
    assert_memory_equal(b.data, cases[i].out, b.len);
    free(b.data);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_current_context_is_used),
      cmocka_unit_test(test_token_and_ca_file),
      cmocka_unit_test(test_errors_name_the_problem),
      cmocka_unit_test(test_too_large),
      cmocka_unit_test(test_base64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
