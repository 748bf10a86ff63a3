/* Unit tests for src/secret.c: scrubbing secrets out of messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "argowait/secret.h"

static char *scrubbed(const char *text, const char *const *secrets, size_t count) {
  char *msg = strdup(text);
  assert_non_null(msg);
  assert_int_equal(aw_secret_scrub(&msg, secrets, count), 0);
  return msg;
}

static void test_every_occurrence_of_every_secret(void **state) {
  (void)state;
  const char *secrets[] = {"s3cr3t", NULL, "AKIDEXAMPLE"};
  char *m = scrubbed("key AKIDEXAMPLE secret s3cr3t, again s3cr3ts3cr3t", secrets, 3);
  assert_string_equal(m, "key *** secret ***, again ******");
  free(m);
}

static void test_longest_secret_wins_where_two_start(void **state) {
  (void)state;
  const char *secrets[] = {"token", "token-and-more"};
  char *m = scrubbed("[token-and-more] [token]", secrets, 2);
  assert_string_equal(m, "[***] [***]");
  free(m);
}

static void test_a_secret_made_of_stars_terminates(void **state) {
  (void)state;
  /* Replacing "***" by "***" and searching again from the start would
   * never end; one pass does. */
  const char *secrets[] = {"***", "****"};
  char *m = scrubbed("a *** b ***** c", secrets, 2);
  assert_string_equal(m, "a *** b **** c"); /* "****" then "*" */
  free(m);
}

static void test_short_and_absent_secrets_leave_the_text(void **state) {
  (void)state;
  const char *secrets[] = {"ab", "", NULL, "not-there"};
  char *before = strdup("about a cab");
  char *m = before;
  assert_int_equal(aw_secret_scrub(&m, secrets, 4), 0);
  assert_ptr_equal(m, before); /* untouched, not even copied */
  assert_string_equal(m, "about a cab");
  free(m);
}

static void test_null_message(void **state) {
  (void)state;
  const char *secrets[] = {"secret"};
  char *m = NULL;
  assert_int_equal(aw_secret_scrub(&m, secrets, 1), 0);
  assert_null(m);
  aw_secret_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_occurrence_of_every_secret),
      cmocka_unit_test(test_longest_secret_wins_where_two_start),
      cmocka_unit_test(test_a_secret_made_of_stars_terminates),
      cmocka_unit_test(test_short_and_absent_secrets_leave_the_text),
      cmocka_unit_test(test_null_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
