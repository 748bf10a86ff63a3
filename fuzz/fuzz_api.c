/* API answers: the body of any HTTP answer is the server's (or a proxy's, or
 * an attacker's on the path before TLS verification fails) and may be
 * anything: a Status object, HTML, binary, truncated JSON.
 *
 * Properties:
 *  - aw_api_classify gives one of its classes, the same one twice, and the
 *    class the status allows whatever the body says: 2xx is OK, transport
 *    errors are transient unless TLS verification failed, 401/404/409 map to
 *    their classes unless the body names an etcd overload (then transient),
 *    429/500/502/503/504 are transient, anything else is permanent or (etcd)
 *    transient; a body can never make a 4xx into "not found" or "exists";
 *  - aw_api_status_message returns one non-empty line of valid UTF-8 without
 *    control bytes or surrounding blanks, at most 1024 bytes: it goes into log
 *    lines, the termination log and the failure marker. */
#include "argowait/backoff.h"
#include "fuzz_common.h"

static const long statuses[] = {-1,  0,   100, 199, 200, 201, 204, 299, 300, 304, 399, 400,
                                401, 402, 403, 404, 405, 409, 410, 415, 422, 428, 429, 499,
                                500, 501, 502, 503, 504, 505, 599, 600, 999, 100000};

static bool valid_class(aw_api_class c) { return c >= AW_API_OK && c <= AW_API_PERMANENT; }

static void check_class(long status, const char *body, size_t len) {
  aw_api_class c = aw_api_classify(false, false, status, body, len);
  FUZZ_CHECK(valid_class(c), "class %d", (int)c);
  FUZZ_CHECK(c == aw_api_classify(false, false, status, body, len), "not deterministic");
  /* A TLS flag without a transport error means nothing. */
  FUZZ_CHECK(c == aw_api_classify(false, true, status, body, len), "tls flag changed an HTTP answer");
  FUZZ_CHECK(aw_api_classify(true, false, status, body, len) == AW_API_TRANSIENT,
             "transport error not transient");
  FUZZ_CHECK(aw_api_classify(true, true, status, body, len) == AW_API_PERMANENT,
             "TLS verification failure not permanent");
  if (status >= 200 && status <= 299) {
    FUZZ_CHECK(c == AW_API_OK, "status %ld: class %d", status, (int)c);
    return;
  }
  FUZZ_CHECK(c != AW_API_OK, "status %ld classified OK", status);
  switch (status) {
    case 401: FUZZ_CHECK(c == AW_API_UNAUTHORIZED || c == AW_API_TRANSIENT, "401: %d", (int)c); break;
    case 404: FUZZ_CHECK(c == AW_API_NOT_FOUND || c == AW_API_TRANSIENT, "404: %d", (int)c); break;
    case 409:
      FUZZ_CHECK(c == AW_API_EXISTS || c == AW_API_TRANSIENT || c == AW_API_PERMANENT, "409: %d", (int)c);
      break;
    case 429: case 500: case 502: case 503: case 504:
      FUZZ_CHECK(c == AW_API_TRANSIENT, "%ld: %d", status, (int)c);
      break;
    default:
      FUZZ_CHECK(c == AW_API_PERMANENT || c == AW_API_TRANSIENT, "%ld: %d", status, (int)c);
  }
}

static void check_message(const char *body, size_t len) {
  char *m = aw_api_status_message(body, len);
  FUZZ_CHECK(m != NULL, "no message");
  size_t n = strlen(m);
  FUZZ_CHECK(n > 0, "empty message");
  FUZZ_CHECK(n <= 1024, "message of %zu bytes", n);
  FUZZ_CHECK(fuzz_utf8_valid(m, n), "message is not valid UTF-8: %s", m);
  FUZZ_CHECK(fuzz_one_line(m), "message is not one line: %s", m);
  FUZZ_CHECK(m[0] != ' ' && m[n - 1] != ' ', "message has surrounding blanks: [%s]", m);
  free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *body = fuzz_exact_copy(data, size);
  for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
    check_class(statuses[i], body, size);
    if (i % 8 == 0) check_class(statuses[i], NULL, size); /* no body at all */
  }
  check_message(body, size);
  check_message(NULL, size);
  free(body);
  return 0;
}
