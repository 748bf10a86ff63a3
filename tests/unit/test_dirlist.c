/* Listing a folder for an artifact saved without an archive: nested folders,
 * empty files, symlinks and special files skipped and never followed (P8),
 * the caps, and filepath.Walk's order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argowait/dirlist.h"
#include "tmptree.h"

typedef struct {
  char root[64];
  char base[96]; /* the trusted folder the artifact folder lies beneath */
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  strcpy(f->root, "/tmp/aw-dirlist-XXXXXX");
  assert_non_null(mkdtemp(f->root));
  pj(f->base, sizeof(f->base), f->root, "mnt");
  assert_int_equal(mkdir(f->base, 0755), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  remove_tree(f->root);
  free(f);
  return 0;
}

static bool has_warning(const aw_dirlist *l, const char *needle) {
  for (size_t i = 0; i < l->warnings.count; i++)
    if (strstr(l->warnings.items[i], needle)) return true;
  return false;
}

static void test_nested_folder(void **state) {
  fixture *f = *state;
  mkdir_in(f->base, "dir");
  mkdir_in(f->base, "dir/sub");
  mkdir_in(f->base, "dir/sub/deeper");
  mkdir_in(f->base, "dir/emptydir");
  write_text(f->base, "dir/a.txt", "aaa");
  write_text(f->base, "dir/empty", "");
  write_text(f->base, "dir/sub/b.txt", "bb");
  write_text(f->base, "dir/sub/deeper/c", "c");
  write_text(f->base, "dir/sub-x", "x"); /* '-' sorts before '/' in bytes, not in a walk */
  aw_dirlist l;
  aw_dirlist_init(&l);
  char *err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "dir", NULL, &l, &err), 0);
  assert_null(err);
  const char *want[] = {"a.txt", "empty", "sub/b.txt", "sub/deeper/c", "sub-x"};
  assert_int_equal(l.count, 5);
  for (size_t i = 0; i < 5; i++) assert_string_equal(l.files[i], want[i]);
  assert_int_equal(l.bytes, 3 + 0 + 2 + 1 + 1);
  assert_int_equal(l.dirs, 3);
  assert_int_equal(l.skipped, 0);
  aw_dirlist_free(&l);
}

static void test_symlinks_and_fifo_skipped(void **state) {
  fixture *f = *state;
  write_text(f->base, "secret", "TOPSECRET");
  mkdir_in(f->base, "dir");
  mkdir_in(f->base, "dir/real");
  write_text(f->base, "dir/real/file", "f");
  symlink_in(f->base, "dir/up", "../secret");
  symlink_in(f->base, "dir/abs", "/etc/passwd");
  symlink_in(f->base, "dir/linkdir", "real");
  symlink_in(f->base, "dir/dangling", "nowhere");
  char p[512];
  pj(p, sizeof(p), f->base, "dir/fifo");
  assert_int_equal(mkfifo(p, 0644), 0);
  aw_dirlist l;
  aw_dirlist_init(&l);
  char *err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "dir", NULL, &l, &err), 0);
  assert_int_equal(l.count, 1);
  assert_string_equal(l.files[0], "real/file");
  assert_int_equal(l.skipped, 5);
  assert_true(has_warning(&l, "up is a symlink: skipped, never followed"));
  assert_true(has_warning(&l, "linkdir is a symlink"));
  assert_true(has_warning(&l, "fifo is not a regular file"));
  aw_dirlist_free(&l);
}

static void test_folder_behind_a_symlink_refused(void **state) {
  fixture *f = *state;
  mkdir_in(f->base, "real");
  write_text(f->base, "real/x", "x");
  symlink_in(f->base, "link", "real");
  mkdir_in(f->base, "a");
  symlink_in(f->base, "a/b", "../real");
  aw_dirlist l;
  aw_dirlist_init(&l);
  char *err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "link", NULL, &l, &err), -ELOOP);
  assert_non_null(strstr(err, "symlink"));
  free(err);
  err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "a/b", NULL, &l, &err), -ELOOP);
  free(err);
  err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "real/x", NULL, &l, &err), -ENOTDIR);
  free(err);
  err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "../mnt", NULL, &l, &err), -EINVAL);
  free(err);
  err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "missing", NULL, &l, &err), -ENOENT);
  free(err);
  assert_int_equal(l.count, 0);
  aw_dirlist_free(&l);
}

static void test_caps(void **state) {
  fixture *f = *state;
  mkdir_in(f->base, "dir");
  mkdir_in(f->base, "dir/s");
  write_text(f->base, "dir/one", "1");
  write_text(f->base, "dir/two", "2");
  write_text(f->base, "dir/s/three", "3");
  aw_dirlist l;
  aw_dirlist_init(&l);
  char *err = NULL;
  aw_dirlist_limits exact = {.max_files = 3};
  assert_int_equal(aw_dirlist_files(f->base, "dir", &exact, &l, &err), 0);
  assert_int_equal(l.count, 3);
  aw_dirlist_free(&l);

  aw_dirlist_init(&l);
  aw_dirlist_limits files = {.max_files = 2};
  assert_int_equal(aw_dirlist_files(f->base, "dir", &files, &l, &err), -E2BIG);
  assert_non_null(strstr(err, "more than 2 files"));
  free(err);
  err = NULL;
  aw_dirlist_free(&l);

  aw_dirlist_init(&l);
  aw_dirlist_limits names = {.max_name_bytes = 10};
  assert_int_equal(aw_dirlist_files(f->base, "dir", &names, &l, &err), -E2BIG);
  assert_non_null(strstr(err, "more than 10 bytes"));
  free(err);
  err = NULL;
  aw_dirlist_free(&l);

  aw_dirlist_init(&l);
  aw_dirlist_limits depth = {.max_depth = 1};
  assert_int_equal(aw_dirlist_files(f->base, "dir", &depth, &l, &err), 0);
  aw_dirlist_free(&l);
  mkdir_in(f->base, "dir/s/t");
  aw_dirlist_init(&l);
  assert_int_equal(aw_dirlist_files(f->base, "dir", &depth, &l, &err), -E2BIG);
  assert_non_null(strstr(err, "deeper than 1 levels"));
  free(err);
  aw_dirlist_free(&l);
}

static void test_default_file_cap(void **state) {
  fixture *f = *state;
  mkdir_in(f->base, "many");
  char rel[64];
  for (unsigned i = 0; i <= AW_DIRLIST_MAX_FILES; i++) {
    snprintf(rel, sizeof(rel), "many/f%05u", i);
    write_text(f->base, rel, "");
  }
  aw_dirlist l;
  aw_dirlist_init(&l);
  char *err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "many", NULL, &l, &err), -E2BIG);
  assert_non_null(strstr(err, "more than 10000 files"));
  free(err);
  aw_dirlist_free(&l);
  char last[256];
  snprintf(last, sizeof(last), "%s/many/f%05u", f->base, AW_DIRLIST_MAX_FILES);
  assert_int_equal(unlink(last), 0);
  aw_dirlist_init(&l);
  err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "many", NULL, &l, &err), 0);
  assert_int_equal(l.count, AW_DIRLIST_MAX_FILES);
  assert_string_equal(l.files[0], "f00000");
  assert_string_equal(l.files[AW_DIRLIST_MAX_FILES - 1], "f09999");
  aw_dirlist_free(&l);
}

static void test_empty_folder_and_the_base_itself(void **state) {
  fixture *f = *state;
  mkdir_in(f->base, "empty");
  aw_dirlist l;
  aw_dirlist_init(&l);
  char *err = NULL;
  assert_int_equal(aw_dirlist_files(f->base, "empty", NULL, &l, &err), 0);
  assert_int_equal(l.count, 0);
  aw_dirlist_free(&l);
  write_text(f->base, "top", "t");
  aw_dirlist_init(&l);
  assert_int_equal(aw_dirlist_files(f->base, "", NULL, &l, &err), 0);
  assert_int_equal(l.count, 1);
  assert_string_equal(l.files[0], "top");
  aw_dirlist_free(&l);
}

static void test_compare(void **state) {
  (void)state;
  assert_true(aw_dirlist_compare("a/b", "a-c") < 0);
  assert_true(aw_dirlist_compare("a-c", "a/b") > 0);
  assert_true(aw_dirlist_compare("a/b", "a0") < 0);
  assert_true(aw_dirlist_compare("a", "a/b") < 0);
  assert_true(aw_dirlist_compare("b", "a/z") > 0);
  assert_int_equal(aw_dirlist_compare("x/y", "x/y"), 0);
  assert_true(aw_dirlist_compare("\xff", "a") > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_nested_folder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_symlinks_and_fifo_skipped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_folder_behind_a_symlink_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_default_file_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_folder_and_the_base_itself, setup, teardown),
      cmocka_unit_test(test_compare),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
