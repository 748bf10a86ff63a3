/* The exitcode watcher on a real loop with real inotify, in a temp folder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argowait/watch.h"

static void test_parse_table(void **state) {
  (void)state;
  int code = -99;
  assert_int_equal(aw_exitcode_parse("", 0, &code), -1);
  assert_int_equal(aw_exitcode_parse(" \n", 2, &code), -1);
  assert_int_equal(aw_exitcode_parse("0", 1, &code), 0);
  assert_int_equal(code, 0);
  assert_int_equal(aw_exitcode_parse("137", 3, &code), 0);
  assert_int_equal(code, 137);
  assert_int_equal(aw_exitcode_parse(" 64\n", 4, &code), 0);
  assert_int_equal(code, 64);
  assert_int_equal(aw_exitcode_parse("-1", 2, &code), 0);
  assert_int_equal(code, -1);
  assert_int_equal(aw_exitcode_parse("abc", 3, &code), 1);
  assert_int_equal(aw_exitcode_parse("1 2", 3, &code), 1);
  assert_int_equal(aw_exitcode_parse("-", 1, &code), 1);
  assert_int_equal(aw_exitcode_parse("12x", 3, &code), 1);
  assert_int_equal(aw_exitcode_parse("99999999999", 11, &code), 1);
  assert_int_equal(aw_exitcode_parse("2147483648", 10, &code), 1);
  assert_int_equal(aw_exitcode_parse("1\0", 2, &code), 1);
}

typedef struct {
  uv_loop_t loop;
  char root[64];
  char ctr[96];
  aw_watch *watch;
  int calls;
  size_t last_index;
  int last_code;
  char last_error[160];
  uv_timer_t writer;
  uv_timer_t guard;
  const char *write_name;
  const char *write_data;
} fixture;

static void on_finished(size_t index, int code, const char *error, void *arg) {
  fixture *f = arg;
  f->calls++;
  f->last_index = index;
  f->last_code = code;
  snprintf(f->last_error, sizeof(f->last_error), "%s", error ? error : "");
  aw_watch_stop(f->watch);
  f->watch = NULL;
  uv_timer_stop(&f->guard);
}

static void write_file(const char *dir, const char *name, const char *data) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  if (data[0]) assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
  close(fd);
}

static void on_writer(uv_timer_t *t) {
  fixture *f = t->data;
  char dir[160];
  snprintf(dir, sizeof(dir), "%s/%s", f->ctr, f->write_name);
  write_file(dir, "exitcode", f->write_data);
}

static void on_guard(uv_timer_t *t) {
  fixture *f = t->data;
  if (f->watch) aw_watch_stop(f->watch);
  f->watch = NULL;
  uv_timer_stop(&f->writer);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  snprintf(f->root, sizeof(f->root), "/tmp/aw-watch-XXXXXX");
  if (!mkdtemp(f->root)) return -1;
  snprintf(f->ctr, sizeof(f->ctr), "%s/ctr", f->root);
  uv_loop_init(&f->loop);
  uv_timer_init(&f->loop, &f->writer);
  uv_timer_init(&f->loop, &f->guard);
  f->writer.data = f;
  f->guard.data = f;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  uv_close((uv_handle_t *)&f->writer, NULL);
  uv_close((uv_handle_t *)&f->guard, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->root);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void run_watch(fixture *f, char *const *names, size_t n) {
  char *err = NULL;
  f->watch = aw_watch_start(&f->loop, f->root, names, n, on_finished, f, &err);
  assert_non_null(f->watch);
  uv_timer_start(&f->guard, on_guard, 5000, 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void test_creates_folders_0777_and_sees_the_write(void **state) {
  fixture *f = *state;
  char *names[] = {"main"};
  f->write_name = "main";
  f->write_data = "3";
  uv_timer_start(&f->writer, on_writer, 20, 0);
  run_watch(f, names, 1);
  assert_int_equal(f->calls, 1);
  assert_int_equal(f->last_code, 3);
  assert_string_equal(f->last_error, "");
  char dir[160];
  snprintf(dir, sizeof(dir), "%s/main", f->ctr);
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0777);
}

static void test_file_already_there(void **state) {
  fixture *f = *state;
  char dir[160];
  snprintf(dir, sizeof(dir), "%s/main", f->ctr);
  mkdir(f->ctr, 0755);
  mkdir(dir, 0755);
  write_file(dir, "exitcode", "0");
  char *names[] = {"main"};
  run_watch(f, names, 1);
  assert_int_equal(f->calls, 1);
  assert_int_equal(f->last_code, 0);
}

static void test_empty_file_is_not_yet(void **state) {
  fixture *f = *state;
  char dir[160];
  snprintf(dir, sizeof(dir), "%s/main", f->ctr);
  mkdir(f->ctr, 0755);
  mkdir(dir, 0755);
  write_file(dir, "exitcode", "");
  char *names[] = {"main"};
  f->write_name = "main";
  f->write_data = "137";
  uv_timer_start(&f->writer, on_writer, 30, 0);
  run_watch(f, names, 1);
  assert_int_equal(f->calls, 1);
  assert_int_equal(f->last_code, 137);
}

static void test_malformed_does_not_echo_content(void **state) {
  fixture *f = *state;
  char *names[] = {"a", "b"};
  f->write_name = "b";
  f->write_data = "SECRET-TOKEN";
  uv_timer_start(&f->writer, on_writer, 10, 0);
  run_watch(f, names, 2);
  assert_int_equal(f->calls, 1);
  assert_int_equal(f->last_index, 1);
  assert_non_null(strstr(f->last_error, "malformed"));
  assert_null(strstr(f->last_error, "SECRET"));
}

static void test_symlinked_exitcode_is_refused(void **state) {
  fixture *f = *state;
  char dir[160], secret[160], link[200];
  snprintf(dir, sizeof(dir), "%s/main", f->ctr);
  snprintf(secret, sizeof(secret), "%s/secret", f->root);
  snprintf(link, sizeof(link), "%s/exitcode", dir);
  mkdir(f->ctr, 0755);
  mkdir(dir, 0755);
  write_file(f->root, "secret", "0");
  assert_int_equal(symlink(secret, link), 0);
  char *names[] = {"main"};
  run_watch(f, names, 1);
  assert_int_equal(f->calls, 1);
  assert_int_equal(f->last_code, -1);
  assert_non_null(strstr(f->last_error, "cannot read"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_table),
      cmocka_unit_test_setup_teardown(test_creates_folders_0777_and_sees_the_write, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_already_there, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_file_is_not_yet, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_does_not_echo_content, setup, teardown),
      cmocka_unit_test_setup_teardown(test_symlinked_exitcode_is_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
