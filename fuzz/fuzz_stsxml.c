/* STS answers: the body is whatever answered at the STS endpoint (STS, a
 * proxy, a captive portal, an attacker before TLS verification fails) and
 * its fields become credentials sent in HTTP headers, or text in the
 * failure marker.
 *
 * Properties, for the two actions argowait sends:
 *  - the kind is one of the three, the same for the same bytes, and never
 *    "credentials" for both actions (their roots differ);
 *  - credentials: three non-empty fields of printable ASCII without space
 *    (a CR, LF or NUL would split the x-amz-security-token header), an
 *    alphanumeric key id of 16..128 bytes, no error fields;
 *  - an error: a code of [A-Za-z0-9._-], at most 64 bytes; a message, if
 *    any, one line of valid UTF-8 without control bytes or surrounding
 *    blanks, at most 300 bytes; no credential;
 *  - malformed: a reason and no field at all. */
#include "argowait/sts.h"
#include "fuzz_common.h"

static bool token_text(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f) return false;
  return true;
}

static bool code_text(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64) return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

static void check(const aw_sts_answer *a) {
  switch (a->kind) {
    case AW_STS_ANSWER_CREDENTIALS: {
      FUZZ_CHECK(a->access_key_id && a->secret_access_key && a->session_token, "missing field");
      size_t n = strlen(a->access_key_id);
      FUZZ_CHECK(n >= 16 && n <= 128, "key id of %zu bytes", n);
      for (const char *p = a->access_key_id; *p; p++)
        FUZZ_CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'),
                   "key id: %s", a->access_key_id);
      FUZZ_CHECK(token_text(a->secret_access_key, 256), "secret key is not header-safe");
      FUZZ_CHECK(token_text(a->session_token, 16384), "session token is not header-safe");
      FUZZ_CHECK(!a->code && !a->message, "error fields in credentials");
      break;
    }
    case AW_STS_ANSWER_ERROR:
      FUZZ_CHECK(a->code && code_text(a->code), "code: %s", a->code ? a->code : "(null)");
      if (a->message) {
        size_t n = strlen(a->message);
        FUZZ_CHECK(n <= 300, "message of %zu bytes", n);
        FUZZ_CHECK(fuzz_utf8_valid(a->message, n), "message is not UTF-8");
        FUZZ_CHECK(fuzz_one_line(a->message), "message is not one line: %s", a->message);
        FUZZ_CHECK(n == 0 || (a->message[0] != ' ' && a->message[n - 1] != ' '), "blanks: [%s]",
                   a->message);
      }
      FUZZ_CHECK(!a->access_key_id && !a->secret_access_key && !a->session_token,
                 "credentials in an error");
      break;
    case AW_STS_ANSWER_MALFORMED:
      FUZZ_CHECK(a->why != NULL, "malformed without a reason");
      FUZZ_CHECK(!a->access_key_id && !a->secret_access_key && !a->session_token && !a->code &&
                     !a->message && !a->expiration,
                 "fields in a malformed answer");
      break;
    default:
      FUZZ_CHECK(false, "kind %d", (int)a->kind);
  }
}

static bool same(const char *x, const char *y) {
  return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *body = fuzz_exact_copy(data, size);
  static const char *const actions[] = {"AssumeRoleWithWebIdentity", "AssumeRole"};
  aw_sts_answer first[2];
  for (int i = 0; i < 2; i++) {
    aw_sts_parse_answer(body, size, actions[i], &first[i]);
    check(&first[i]);
    aw_sts_answer again;
    aw_sts_parse_answer(body, size, actions[i], &again);
    FUZZ_CHECK(again.kind == first[i].kind, "not deterministic");
    FUZZ_CHECK(same(again.session_token, first[i].session_token) && same(again.code, first[i].code) &&
                   same(again.message, first[i].message),
               "not deterministic");
    aw_sts_answer_free(&again);
  }
  FUZZ_CHECK(!(first[0].kind == AW_STS_ANSWER_CREDENTIALS && first[1].kind == AW_STS_ANSWER_CREDENTIALS),
             "credentials for two actions");
  aw_sts_answer_free(&first[0]);
  aw_sts_answer_free(&first[1]);
  free(body);
  return 0;
}
