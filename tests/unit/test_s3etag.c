/* Unit tests for aw_s3_multipart_etag (src/s3.c): the ETag a completed
 * multipart upload gets, which the client compares with HeadObject's when a
 * CompleteMultipartUpload answer was lost. Expected values from Python:
 * hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest() + "-N". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "argowait/s3.h"

#define A "d41d8cd98f00b204e9800998ecf8427e"
#define B "900150983cd24fb0d6963f7d28e17f72"
#define C "5d41402abc4b2a76b9719d911017c592"

static void test_known_values(void **state) {
  (void)state;
  char out[AW_S3_ETAG_MAX];
  const char *one[] = {"\"" A "\""};
  assert_int_equal(aw_s3_multipart_etag(one, 1, out), 0);
  assert_string_equal(out, "59adb24ef3cdbe0297f05b395827453f-1");
  /* 48, 64 and 80 bytes of digests: the padding edges of an MD5 block. */
  const char *three[] = {"\"" A "\"", B, "\"" C "\""};
  assert_int_equal(aw_s3_multipart_etag(three, 3, out), 0);
  assert_string_equal(out, "f6b64de7cdb793e6cc5eb440876efaf4-3");
  const char *four[] = {A, B, C, A};
  assert_int_equal(aw_s3_multipart_etag(four, 4, out), 0);
  assert_string_equal(out, "16fb76c263aff8b36a0b1953bae6e87c-4");
  const char *five[] = {A, B, C, A, B};
  assert_int_equal(aw_s3_multipart_etag(five, 5, out), 0);
  assert_string_equal(out, "02756155d53dff2ec29553e6322c5477-5");
  const char *many[100];
  for (int i = 0; i < 100; i++) many[i] = C;
  assert_int_equal(aw_s3_multipart_etag(many, 100, out), 0);
  assert_string_equal(out, "20d1b4f59b68e28539fccb7452040777-100");
}

static void test_case_and_weak_prefix(void **state) {
  (void)state;
  char out[AW_S3_ETAG_MAX];
  const char *upper[] = {"W/\"D41D8CD98F00B204E9800998ECF8427E\""};
  assert_int_equal(aw_s3_multipart_etag(upper, 1, out), 0);
  assert_string_equal(out, "59adb24ef3cdbe0297f05b395827453f-1");
}

static void test_not_plain_md5(void **state) {
  (void)state;
  char out[AW_S3_ETAG_MAX];
  const char *kms[] = {A, "\"a1b2c3\""};
  assert_int_equal(aw_s3_multipart_etag(kms, 2, out), -1);
  assert_string_equal(out, "");
  const char *nothex[] = {"zz1d8cd98f00b204e9800998ecf8427e"};
  assert_int_equal(aw_s3_multipart_etag(nothex, 1, out), -1);
  const char *missing[] = {A, NULL};
  assert_int_equal(aw_s3_multipart_etag(missing, 2, out), -1);
  assert_int_equal(aw_s3_multipart_etag(missing, 0, out), -1);
  const char *multi[] = {"\"" A "-2\""};
  assert_int_equal(aw_s3_multipart_etag(multi, 1, out), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_values),
      cmocka_unit_test(test_case_and_weak_prefix),
      cmocka_unit_test(test_not_plain_md5),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
