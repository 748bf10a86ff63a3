/* Collecting the script result and output parameters from a sandbox root
 * laid out like the wait container's file system. */
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

#include "argowait/collect.h"
#include "argowait/config.h"
#include "argowait/template.h"

#define SECRET "TOPSECRET-s3-key-do-not-leak"

/* ---- stand-ins for config.c and template.c (written elsewhere; delete
 * these three when merging with the real modules) ---- */

/* ---- fixture ---- */

typedef struct {
  char root[64];
  aw_config cfg;
  aw_template tmpl;
  aw_output_param params[8];
  aw_output_artifact artifacts[4];
  aw_mirrored_path mirrored[4];
  aw_collect_output out;
  char *printed; /* the outputs as JSON text, after run() */
  char *reasons; /* the reasons joined, after run() */
} fixture;

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  strcpy(f->root, "/tmp/aw-collect-XXXXXX");
  assert_non_null(mkdtemp(f->root));
  f->cfg.root = f->root;
  f->tmpl.params = f->params;
  f->tmpl.artifacts = f->artifacts;
  f->tmpl.mirrored = f->mirrored;
  alarm(20); /* a FIFO that blocked would hang the test */
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  alarm(0);
  aw_collect_output_free(&f->out);
  cJSON_Delete(f->tmpl.outputs);
  free(f->printed);
  free(f->reasons);
  nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

/* ---- sandbox helpers (paths are relative to the sandbox root) ---- */

static void full_path(const fixture *f, const char *rel, char *out,
                      size_t size) {
  int n = snprintf(out, size, "%s/%s", f->root, rel);
  assert_true(n > 0 && (size_t)n < size);
}

static void make_dirs(const fixture *f, const char *rel) {
  char path[512];
  full_path(f, rel, path, sizeof(path));
  for (char *p = path + strlen(f->root) + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
    *p = '/';
  }
  assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
}

/* Writes a file, creating its folders. */
static void put_file(const fixture *f, const char *rel, const void *data,
                     size_t len) {
  char dir[512];
  snprintf(dir, sizeof(dir), "%s", rel);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = '\0';
    make_dirs(f, dir);
  }
  char path[512];
  full_path(f, rel, path, sizeof(path));
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static void put_text(const fixture *f, const char *rel, const char *text) {
  put_file(f, rel, text, strlen(text));
}

static void put_stdout(const fixture *f, const void *data, size_t len) {
  put_file(f, "var/run/argo/ctr/main/stdout", data, len);
}

static void put_symlink(const fixture *f, const char *target, const char *rel) {
  char path[512];
  full_path(f, rel, path, sizeof(path));
  assert_int_equal(symlink(target, path), 0);
}

/* The secret beside the folders we collect from, as the S3 key would be. */
static void put_secret(const fixture *f) {
  put_text(f, "argo/secret/s3/secretkey", SECRET);
}

/* ---- template helpers ---- */

static void set_outputs(fixture *f, const char *json) {
  f->tmpl.outputs = cJSON_Parse(json);
  assert_non_null(f->tmpl.outputs);
}

static void add_param(fixture *f, const char *name, const char *path,
                      const char *def) {
  aw_output_param *p = &f->params[f->tmpl.param_count++];
  p->name = (char *)name;
  p->path = (char *)path;
  p->default_value = (char *)def;
}

static void add_artifact(fixture *f, const char *name, const char *path,
                         bool optional) {
  aw_output_artifact *a = &f->artifacts[f->tmpl.artifact_count++];
  a->name = (char *)name;
  a->path = (char *)path;
  a->optional = optional;
}

/* Mirrors must be added longest first, as the template module sorts them. */
static void add_mirror(fixture *f, const char *path, bool from_input,
                       bool optional) {
  aw_mirrored_path *m = &f->mirrored[f->tmpl.mirrored_count++];
  m->path = (char *)path;
  m->from_input_artifact = from_input;
  m->optional = optional;
}

static void run(fixture *f, bool include_result) {
  if (!f->tmpl.outputs) set_outputs(f, "{}");
  aw_collect_input in = {&f->cfg, &f->tmpl, include_result};
  aw_collect_run(&in, &f->out);
  f->printed = cJSON_PrintUnformatted(f->out.outputs);
  assert_non_null(f->printed);
  f->reasons = aw_reasons_join(&f->out.reasons, 1u << 20);
  assert_non_null(f->reasons);
}

/* The outputs as a receiver would see them: the printed JSON parsed back. */
static cJSON *reparsed(const fixture *f) {
  cJSON *root = cJSON_Parse(f->printed);
  assert_non_null(root);
  return root;
}

/* The string at outputs.result, or NULL. malloc'd. */
static char *result_of(const fixture *f) {
  cJSON *root = reparsed(f);
  cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "result");
  char *out = cJSON_IsString(item) ? strdup(item->valuestring) : NULL;
  cJSON_Delete(root);
  return out;
}

/* The element of outputs.parameters named name, printed. malloc'd. */
static char *param_json(const fixture *f, const char *name) {
  cJSON *root = reparsed(f);
  cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "parameters");
  cJSON *el;
  char *out = NULL;
  cJSON_ArrayForEach(el, arr) {
    cJSON *n = cJSON_GetObjectItemCaseSensitive(el, "name");
    if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
      out = cJSON_PrintUnformatted(el);
  }
  cJSON_Delete(root);
  assert_non_null(out);
  return out;
}

static void assert_param_json(const fixture *f, const char *name,
                              const char *expected) {
  char *got = param_json(f, name);
  assert_string_equal(got, expected);
  free(got);
}

static void assert_result(const fixture *f, const char *expected) {
  char *got = result_of(f);
  assert_non_null(got);
  assert_string_equal(got, expected);
  free(got);
}

/* ---- the script result ---- */

static void result_strips_trailing_newline(void **state) {
  fixture *f = *state;
  put_stdout(f, "hello\n", 6);
  run(f, true);
  assert_result(f, "hello");
  assert_int_equal(f->out.reasons.count, 0);
}

static void result_without_newline_is_kept(void **state) {
  fixture *f = *state;
  put_stdout(f, "hello", 5);
  run(f, true);
  assert_result(f, "hello");
}

static void result_double_newline_keeps_one(void **state) {
  fixture *f = *state;
  put_stdout(f, "hi\n\n", 4);
  run(f, true);
  assert_result(f, "hi\n");
}

static char *make_pattern(size_t len) {
  char *data = malloc(len + 1);
  assert_non_null(data);
  for (size_t i = 0; i < len; i++) data[i] = (char)('a' + (i * 7) % 26);
  data[len] = '\0';
  return data;
}

static void result_keeps_last_256k(void **state) {
  fixture *f = *state;
  size_t len = 300000;
  char *data = make_pattern(len + 1);
  data[len] = '\n';
  put_stdout(f, data, len + 1);
  run(f, true);
  data[len] = '\0';
  assert_result(f, data + len - AW_RESULT_MAX_BYTES);
  assert_int_equal(f->out.reasons.count, 0);
  free(data);
}

static void result_of_exactly_256k_and_newline_is_whole(void **state) {
  fixture *f = *state;
  size_t len = AW_RESULT_MAX_BYTES;
  char *data = make_pattern(len + 1);
  data[len] = '\n';
  put_stdout(f, data, len + 1);
  run(f, true);
  data[len] = '\0';
  char *got = result_of(f);
  assert_int_equal(strlen(got), AW_RESULT_MAX_BYTES);
  assert_string_equal(got, data);
  free(got);
  free(data);
}

static void result_one_byte_over_256k_drops_the_first(void **state) {
  fixture *f = *state;
  size_t len = AW_RESULT_MAX_BYTES + 1;
  char *data = make_pattern(len);
  put_stdout(f, data, len);
  run(f, true);
  assert_result(f, data + 1);
  free(data);
}

static void result_keeps_nul_and_replaces_bad_utf8(void **state) {
  fixture *f = *state;
  put_stdout(f, "a\0b\xff\xc3\xa9\n", 7);
  run(f, true);
  assert_non_null(strstr(f->printed, "\"result\":\"a\\u0000b\\ufffd\xc3\xa9\""));
  cJSON *root = reparsed(f); /* still valid JSON */
  cJSON_Delete(root);
}

static void missing_stdout_gives_empty_result(void **state) {
  fixture *f = *state;
  run(f, true);
  assert_result(f, "");
  assert_int_equal(f->out.reasons.count, 0);
}

static void result_not_wanted_is_absent(void **state) {
  fixture *f = *state;
  put_stdout(f, "hello\n", 6);
  run(f, false);
  char *got = result_of(f);
  assert_null(got);
}

static void stdout_symlink_to_secret_is_refused(void **state) {
  fixture *f = *state;
  put_secret(f);
  make_dirs(f, "var/run/argo/ctr/main");
  char target[256];
  full_path(f, "argo/secret/s3/secretkey", target, sizeof(target));
  put_symlink(f, target, "var/run/argo/ctr/main/stdout");
  run(f, true);
  assert_null(strstr(f->printed, SECRET));
  assert_int_equal(f->out.reasons.count, 1);
  assert_non_null(strstr(f->reasons, "output result"));
  assert_non_null(strstr(f->reasons, "leaves its folder"));
}

/* ---- output parameters ---- */

static void param_from_base_image(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"x\",\"valueFrom\":{\"path\":"
                 "\"/tmp/x\"}}]}");
  add_param(f, "x", "/tmp/x", NULL);
  put_text(f, "var/run/argo/outputs/parameters/tmp/x", "42\n");
  run(f, false);
  assert_param_json(f, "x",
                    "{\"name\":\"x\",\"valueFrom\":{\"path\":\"/tmp/x\"},"
                    "\"value\":\"42\"}");
  assert_int_equal(f->out.params_reported, 1);
  assert_int_equal(f->out.params_defaulted, 0);
  assert_int_equal(f->out.reasons.count, 0);
}

static void param_from_volume_mount(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"a\"},{\"name\":\"b\"}]}");
  add_param(f, "a", "/work/out/a.txt", NULL);
  add_param(f, "b", "/work/./sub/../b.txt", NULL);
  add_mirror(f, "/work", false, false);
  put_text(f, "mainctrfs/work/out/a.txt", "from volume\n");
  put_text(f, "mainctrfs/work/b.txt", "bee");
  /* The emissary does not copy paths on a volume: a stale copy is ignored. */
  put_text(f, "var/run/argo/outputs/parameters/work/out/a.txt", "wrong");
  run(f, false);
  assert_param_json(f, "a", "{\"name\":\"a\",\"value\":\"from volume\"}");
  assert_param_json(f, "b", "{\"name\":\"b\",\"value\":\"bee\"}");
  assert_int_equal(f->out.params_reported, 2);
}

static void param_that_is_the_mount_itself(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"cfg\"}]}");
  add_param(f, "cfg", "/etc/app/cfg.txt", NULL);
  add_mirror(f, "/etc/app/cfg.txt", false, false);
  put_text(f, "mainctrfs/etc/app/cfg.txt", "mounted file");
  run(f, false);
  assert_param_json(f, "cfg", "{\"name\":\"cfg\",\"value\":\"mounted file\"}");
}

static void param_under_longest_mirror(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"p\"}]}");
  add_param(f, "p", "/data/in/v", NULL);
  add_mirror(f, "/data/in", true, false);
  add_mirror(f, "/data", false, false);
  put_text(f, "mainctrfs/data/in/v", "inner");
  put_text(f, "mainctrfs/data/v", "outer");
  run(f, false);
  assert_param_json(f, "p", "{\"name\":\"p\",\"value\":\"inner\"}");
}

static void optional_input_artifact_absent_uses_base_image(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"p\"}]}");
  add_param(f, "p", "/in/art/v", NULL);
  add_mirror(f, "/in/art", true, true);
  put_text(f, "var/run/argo/outputs/parameters/in/art/v", "from image");
  run(f, false);
  assert_param_json(f, "p", "{\"name\":\"p\",\"value\":\"from image\"}");
  assert_int_equal(f->out.reasons.count, 0);
}

static void assert_secret_nowhere(const fixture *f, const char *log_path) {
  assert_null(strstr(f->printed, SECRET));
  assert_null(strstr(f->reasons, SECRET));
  FILE *log = fopen(log_path, "r");
  assert_non_null(log);
  char buf[8192];
  size_t n = fread(buf, 1, sizeof(buf) - 1, log);
  fclose(log);
  buf[n] = '\0';
  assert_null(strstr(buf, SECRET));
}

/* Runs with stderr sent to a file, so the log lines can be searched. */
static void run_capturing_log(fixture *f, char *log_path, size_t size) {
  snprintf(log_path, size, "%s/stderr.log", f->root);
  fflush(stderr);
  int saved = dup(2);
  int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  run(f, false);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
}

static void symlinks_to_secret_give_reasons_not_values(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"abs\"},{\"name\":\"rel\"},"
                 "{\"name\":\"dir\"},{\"name\":\"img\"},{\"name\":\"dflt\"}]}");
  add_param(f, "abs", "/work/abs", NULL);
  add_param(f, "rel", "/work/rel", NULL);
  add_param(f, "dir", "/work/up/secret/s3/secretkey", NULL);
  add_param(f, "img", "/tmp/img", NULL);
  add_param(f, "dflt", "/work/abs", "fallback");
  add_mirror(f, "/work", false, false);
  put_secret(f);
  make_dirs(f, "mainctrfs/work");
  make_dirs(f, "var/run/argo/outputs/parameters/tmp");
  char secret[256], argo_dir[256];
  full_path(f, "argo/secret/s3/secretkey", secret, sizeof(secret));
  full_path(f, "argo", argo_dir, sizeof(argo_dir));
  put_symlink(f, secret, "mainctrfs/work/abs");
  put_symlink(f, "../../argo/secret/s3/secretkey", "mainctrfs/work/rel");
  put_symlink(f, argo_dir, "mainctrfs/work/up");
  put_symlink(f, secret, "var/run/argo/outputs/parameters/tmp/img");
  char log_path[256];
  run_capturing_log(f, log_path, sizeof(log_path));

  assert_param_json(f, "abs", "{\"name\":\"abs\"}");
  assert_param_json(f, "rel", "{\"name\":\"rel\"}");
  assert_param_json(f, "dir", "{\"name\":\"dir\"}");
  assert_param_json(f, "img", "{\"name\":\"img\"}");
  assert_param_json(f, "dflt", "{\"name\":\"dflt\",\"value\":\"fallback\"}");
  assert_int_equal(f->out.reasons.count, 4);
  assert_string_equal(
      f->out.reasons.items[0],
      "output parameter \"abs\" (/work/abs): refusing a symlink or path that "
      "leaves its folder");
  assert_non_null(strstr(f->out.reasons.items[3], "\"img\" (/tmp/img)"));
  assert_int_equal(f->out.params_reported, 0);
  assert_int_equal(f->out.params_defaulted, 1);
  assert_secret_nowhere(f, log_path);
}

static void missing_param_uses_default(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"x\",\"valueFrom\":{\"path\":"
                 "\"/tmp/x\",\"default\":\"d\\n\"}}]}");
  add_param(f, "x", "/tmp/x", "d\n");
  run(f, false);
  assert_param_json(f, "x",
                    "{\"name\":\"x\",\"valueFrom\":{\"path\":\"/tmp/x\","
                    "\"default\":\"d\\n\"},\"value\":\"d\\n\"}");
  assert_int_equal(f->out.params_defaulted, 1);
  assert_int_equal(f->out.params_reported, 0);
  assert_int_equal(f->out.reasons.count, 0);
}

static void missing_param_without_default_is_a_reason(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"x\"},{\"name\":\"y\"}]}");
  add_param(f, "x", "/tmp/x", NULL);
  add_param(f, "y", "/tmp/y", NULL);
  put_text(f, "var/run/argo/outputs/parameters/tmp/y", "why");
  run(f, false);
  assert_int_equal(f->out.reasons.count, 1);
  assert_string_equal(f->out.reasons.items[0],
                      "output parameter \"x\" (/tmp/x): no such file");
  assert_param_json(f, "x", "{\"name\":\"x\"}");
  /* Unlike Argo, the next parameter is still collected (P2). */
  assert_param_json(f, "y", "{\"name\":\"y\",\"value\":\"why\"}");
  assert_int_equal(f->out.params_reported, 1);
}

static void params_without_path_pass_through(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"s\",\"valueFrom\":{\"supplied\""
                 ":{}}},{\"name\":\"v\",\"value\":\"fixed\"},{\"name\":\"x\"}]}");
  add_param(f, "s", NULL, NULL);
  add_param(f, "v", NULL, NULL);
  add_param(f, "x", "/x", NULL);
  put_text(f, "var/run/argo/outputs/parameters/x", "ex\n\n");
  run(f, false);
  assert_string_equal(f->printed,
                      "{\"parameters\":[{\"name\":\"s\",\"valueFrom\":"
                      "{\"supplied\":{}}},{\"name\":\"v\",\"value\":\"fixed\"},"
                      "{\"name\":\"x\",\"value\":\"ex\\n\"}]}");
  assert_int_equal(f->out.params_reported, 1);
}

static void param_not_a_regular_file_is_a_reason(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"fifo\"},{\"name\":\"dir\"}]}");
  add_param(f, "fifo", "/tmp/fifo", NULL);
  add_param(f, "dir", "/tmp/dir", NULL);
  make_dirs(f, "var/run/argo/outputs/parameters/tmp/dir");
  char fifo[512];
  full_path(f, "var/run/argo/outputs/parameters/tmp/fifo", fifo, sizeof(fifo));
  assert_int_equal(mkfifo(fifo, 0644), 0);
  run(f, false);
  assert_int_equal(f->out.reasons.count, 2);
  assert_string_equal(
      f->out.reasons.items[0],
      "output parameter \"fifo\" (/tmp/fifo): not a regular file or a bad path");
  assert_non_null(strstr(f->out.reasons.items[1], "\"dir\" (/tmp/dir)"));
}

static void param_too_big_is_a_reason(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"big\"}]}");
  add_param(f, "big", "/tmp/big", NULL);
  size_t len = AW_PARAM_MAX_BYTES + 1;
  char *data = make_pattern(len);
  put_file(f, "var/run/argo/outputs/parameters/tmp/big", data, len);
  free(data);
  run(f, false);
  assert_int_equal(f->out.reasons.count, 1);
  assert_string_equal(
      f->out.reasons.items[0],
      "output parameter \"big\" (/tmp/big): file is larger than the read limit");
  assert_param_json(f, "big", "{\"name\":\"big\"}");
}

static void param_keeps_nul_and_replaces_bad_utf8(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"b\"}]}");
  add_param(f, "b", "/b", NULL);
  put_file(f, "var/run/argo/outputs/parameters/b", "\x01\0\xfe\"\n", 5);
  run(f, false);
  assert_string_equal(
      f->printed,
      "{\"parameters\":[{\"name\":\"b\",\"value\":\"\\u0001\\u0000\\ufffd\\\"\"}]}");
}

static void relative_param_path_is_a_reason(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"r\"}]}");
  add_param(f, "r", "tmp/r", NULL);
  put_text(f, "var/run/argo/outputs/parameters/tmp/r", "r");
  run(f, false);
  assert_int_equal(f->out.reasons.count, 1);
  assert_string_equal(f->out.reasons.items[0],
                      "output parameter \"r\" (tmp/r): not a regular file or a "
                      "bad path");
}

static void param_matched_by_name_not_position(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[{\"name\":\"b\"},{\"name\":\"a\","
                 "\"value\":\"stale\"}]}");
  add_param(f, "a", "/a", NULL);
  add_param(f, "b", "/b", NULL);
  add_param(f, "ghost", "/g", NULL);
  put_text(f, "var/run/argo/outputs/parameters/a", "A");
  put_text(f, "var/run/argo/outputs/parameters/b", "B");
  put_text(f, "var/run/argo/outputs/parameters/g", "G");
  run(f, false);
  assert_string_equal(f->printed,
                      "{\"parameters\":[{\"name\":\"b\",\"value\":\"B\"},"
                      "{\"name\":\"a\",\"value\":\"A\"}]}");
  assert_int_equal(f->out.params_reported, 2);
  assert_int_equal(f->out.reasons.count, 1);
  assert_string_equal(f->out.reasons.items[0],
                      "output parameter \"ghost\": not among the template's "
                      "outputs");
}

/* ---- output artifacts ---- */

static void artifacts_are_left_out(void **state) {
  fixture *f = *state;
  set_outputs(f, "{\"parameters\":[],\"artifacts\":[{\"name\":\"out\",\"path\":"
                 "\"/tmp/out\"},{\"name\":\"opt\",\"path\":\"/tmp/opt\","
                 "\"optional\":true}]}");
  add_artifact(f, "out", "/tmp/out", false);
  add_artifact(f, "opt", "/tmp/opt", true);
  run(f, false);
  /* Saving them is artifacts.c's job, after collecting. */
  assert_int_equal(f->out.reasons.count, 0);
  assert_string_equal(f->printed, "{\"parameters\":[]}");
}

static void reasons_keep_their_order(void **state) {
  fixture *f = *state;
  make_dirs(f, "var/run/argo/ctr/main");
  char fifo[512];
  full_path(f, "var/run/argo/ctr/main/stdout", fifo, sizeof(fifo));
  assert_int_equal(mkfifo(fifo, 0644), 0);
  set_outputs(f, "{\"parameters\":[{\"name\":\"x\"}],\"artifacts\":[{\"name\""
                 ":\"a\"}]}");
  add_param(f, "x", "/x", NULL);
  add_artifact(f, "a", "/a", false);
  run(f, true);
  assert_int_equal(f->out.reasons.count, 2);
  assert_non_null(strstr(f->out.reasons.items[0], "output result"));
  assert_non_null(strstr(f->out.reasons.items[1], "output parameter \"x\""));
}

static void template_without_outputs_gives_empty_object(void **state) {
  fixture *f = *state;
  f->tmpl.outputs = NULL;
  aw_collect_input in = {&f->cfg, &f->tmpl, false};
  aw_collect_run(&in, &f->out);
  assert_true(cJSON_IsObject(f->out.outputs));
  assert_null(f->out.outputs->child);
  assert_int_equal(f->out.reasons.count, 0);
}

static void strip_one_newline(void **state) {
  (void)state;
  assert_int_equal(aw_strip_one_newline("", 0), 0);
  assert_int_equal(aw_strip_one_newline("\n", 1), 0);
  assert_int_equal(aw_strip_one_newline("a\n\n", 3), 2);
  assert_int_equal(aw_strip_one_newline("a\r\n", 3), 2);
  assert_int_equal(aw_strip_one_newline("a", 1), 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(result_strips_trailing_newline),
      T(result_without_newline_is_kept),
      T(result_double_newline_keeps_one),
      T(result_keeps_last_256k),
      T(result_of_exactly_256k_and_newline_is_whole),
      T(result_one_byte_over_256k_drops_the_first),
      T(result_keeps_nul_and_replaces_bad_utf8),
      T(missing_stdout_gives_empty_result),
      T(result_not_wanted_is_absent),
      T(stdout_symlink_to_secret_is_refused),
      T(param_from_base_image),
      T(param_from_volume_mount),
      T(param_that_is_the_mount_itself),
      T(param_under_longest_mirror),
      T(optional_input_artifact_absent_uses_base_image),
      T(symlinks_to_secret_give_reasons_not_values),
      T(missing_param_uses_default),
      T(missing_param_without_default_is_a_reason),
      T(params_without_path_pass_through),
      T(param_not_a_regular_file_is_a_reason),
      T(param_too_big_is_a_reason),
      T(param_keeps_nul_and_replaces_bad_utf8),
      T(relative_param_path_is_a_reason),
      T(param_matched_by_name_not_position),
      T(artifacts_are_left_out),
      T(reasons_keep_their_order),
      T(template_without_outputs_gives_empty_object),
      cmocka_unit_test(strip_one_newline),
  };
  return cmocka_run_group_tests_name("collect", tests, NULL, NULL);
}
