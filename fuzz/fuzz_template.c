/* The template JSON (written by the controller, but a user's workflow decides
 * most of it, and /var/run/argo is shared with the main container).
 *
 * Properties:
 *  - a failure leaves the template zeroed and gives reasons that start with
 *    "template: ", are one line of valid UTF-8, and are short;
 *  - a success gives at least one main container, all named and distinct,
 *    an outputs object, named parameters with absolute paths, and mirrored
 *    paths that are clean, absolute, distinct and sorted longest first;
 *  - aw_path_clean equals Go's path.Clean (a reference here) for every
 *    parameter path and for the input itself when it is an absolute path,
 *    and what it returns has no ".", ".." or empty component;
 *  - aw_template_find_mirror returns the longest mirrored path containing
 *    the path (checked by brute force), or -1 when none does;
 *  - the final report built from the parsed outputs, with values filled in
 *    the way collect.c does (aw_json_quote + cJSON_CreateRaw) and a failure
 *    message, is JSON that cJSON parses back: labels, outputs (equal to the
 *    template's), phase and a message cut at 1024 bytes on a UTF-8 boundary. */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>

#include "argowait/jsonstr.h"
#include "argowait/taskresult.h"
#include "argowait/template.h"
#include "fuzz_common.h"

/* ---- Go's path.Clean, for rooted paths ---- */

static char *ref_clean(const char *p) {
  size_t len = strlen(p);
  char *out = malloc(len + 2);
  if (!out) abort();
  size_t w = 0;
  size_t *starts = malloc((len + 1) * sizeof(*starts)); /* component starts in out */
  if (!starts) abort();
  size_t depth = 0;
  for (size_t r = 0; r < len;) {
    while (r < len && p[r] == '/') r++;
    size_t e = r;
    while (e < len && p[e] != '/') e++;
    size_t n = e - r;
    if (n == 0 || (n == 1 && p[r] == '.')) {
      /* skip */
    } else if (n == 2 && p[r] == '.' && p[r + 1] == '.') {
      if (depth) w = starts[--depth];
    } else {
      starts[depth++] = w;
      out[w++] = '/';
      memcpy(out + w, p + r, n);
      w += n;
    }
    r = e;
  }
  if (w == 0) out[w++] = '/';
  out[w] = '\0';
  free(starts);
  return out;
}

static void check_clean(const char *path) {
  char *got = aw_path_clean(path);
  if (path[0] != '/') {
    FUZZ_CHECK(got == NULL, "a relative path was cleaned: %s", path);
    return;
  }
  FUZZ_CHECK(got != NULL, "aw_path_clean(%s) failed", path);
  char *want = ref_clean(path);
  FUZZ_CHECK(strcmp(got, want) == 0, "aw_path_clean(\"%s\") = \"%s\", Go says \"%s\"", path, got, want);
  /* No component of the result can walk anywhere. */
  for (const char *c = got + 1; *c;) {
    size_t n = strcspn(c, "/");
    FUZZ_CHECK(n > 0 && !(n == 1 && c[0] == '.') && !(n == 2 && c[0] == '.' && c[1] == '.'),
               "component left in \"%s\"", got);
    c += n;
    if (*c == '/') c++;
  }
  char *again = aw_path_clean(got);
  FUZZ_CHECK(again && strcmp(again, got) == 0, "aw_path_clean is not idempotent on \"%s\"", got);
  free(again);
  free(want);
  free(got);
}

static bool within(const char *path, const char *dir) {
  if (!strcmp(dir, "/")) return true;
  size_t n = strlen(dir);
  return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

static void check_mirror(const aw_template *t, const char *clean) {
  int idx = aw_template_find_mirror(t, clean);
  FUZZ_CHECK(idx >= -1 && idx < (int)t->mirrored_count, "mirror index %d", idx);
  size_t best_len = 0;
  int best = -1;
  for (size_t j = 0; j < t->mirrored_count; j++) {
    size_t n = strlen(t->mirrored[j].path);
    if (within(clean, t->mirrored[j].path) && (best < 0 || n > best_len)) best = (int)j, best_len = n;
  }
  FUZZ_CHECK(idx == best, "mirror of \"%s\": %d, the longest containing it is %d", clean, idx, best);
}

/* ---- the report ---- */

/* Same shape, keys and values, child by child in order. cJSON_Compare looks
 * children up by key, which pairs the wrong ones when a key is repeated. */
static bool same_tree(const cJSON *a, const cJSON *b, bool top) {
  if ((a->type & 0xFF) != (b->type & 0xFF)) return false;
  if (!top && (a->string == NULL) != (b->string == NULL)) return false;
  if (!top && a->string && strcmp(a->string, b->string)) return false;
  /* cJSON 1.7.15 prints 15 significant digits whenever they read back
   * within its own epsilon (compare_double), so a number can come back one
   * or two ulps off: 6388160229488629097 returns ~1000 lower. Argo writes
   * outputs values as strings, so this is noted, not treated as a bug. */
  if (cJSON_IsNumber(a)) {
    double x = a->valuedouble, y = b->valuedouble;
    double mag = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
    return x == y || fabs(x - y) <= mag * 2 * DBL_EPSILON;
  }
  if (cJSON_IsString(a)) return !strcmp(a->valuestring, b->valuestring);
  const cJSON *x = a->child, *y = b->child;
  for (; x && y; x = x->next, y = y->next)
    if (!same_tree(x, y, false)) return false;
  return !x && !y;
}

static void check_report(const aw_template *t, const uint8_t *data, size_t size) {
  aw_tr_identity id = {.namespace_ = "argo", .name = "wf-abc-123", .workflow_name = "wf-abc",
                       .workflow_uid = "3f1c2b7a-1111-4222-8333-444455556666", .instance_id = NULL};
  cJSON *outputs = cJSON_Duplicate(t->outputs, 1);
  FUZZ_CHECK(outputs != NULL, "cannot copy outputs");
  /* Values filled in as collect.c does, from bytes of the input (any
   * bytes: NUL, bad UTF-8). */
  size_t vlen = size < 300 ? size : 300;
  char *lit = aw_json_quote((const char *)data, vlen);
  FUZZ_CHECK(lit != NULL, "aw_json_quote");
  cJSON *params = cJSON_GetObjectItemCaseSensitive(outputs, "parameters");
  cJSON *el;
  size_t filled = 0;
  cJSON_ArrayForEach(el, params) {
    if (!cJSON_IsObject(el)) continue;
    cJSON *raw = cJSON_CreateRaw(lit);
    if (cJSON_GetObjectItemCaseSensitive(el, "value"))
      cJSON_ReplaceItemInObjectCaseSensitive(el, "value", raw);
    else
      cJSON_AddItemToObject(el, "value", raw);
    filled++;
  }
  cJSON_DeleteItemFromObjectCaseSensitive(outputs, "artifacts");

  /* A failure message naming every parameter, as collect.c would. */
  aw_reasons why;
  aw_reasons_init(&why);
  for (size_t i = 0; i < t->param_count; i++)
    aw_reasons_add(&why, "output parameter \"%s\" (%s): no such file", t->params[i].name,
                   t->params[i].path ? t->params[i].path : "-");
  char *failure = why.count ? aw_reasons_join(&why, 4096) : NULL;
  if (failure) FUZZ_CHECK(strlen(failure) <= 4096 && fuzz_utf8_valid(failure, strlen(failure)),
                          "joined reasons");

  aw_tr_report rep = {.outputs = outputs, .failure = failure};
  for (int kind = 0; kind < 2; kind++) {
    char *body = kind == 0 ? aw_tr_final_patch_body(&id, &rep) : aw_tr_create_body(&id, &rep);
    FUZZ_CHECK(body != NULL, "no report body (kind %d)", kind);
    FUZZ_CHECK(fuzz_utf8_valid(body, strlen(body)), "report body is not valid UTF-8");
    const char *end = NULL;
    /* The length includes the NUL: cJSON checks for it after the value. */
    cJSON *got = cJSON_ParseWithLengthOpts(body, strlen(body) + 1, &end, 1);
    FUZZ_CHECK(got != NULL, "report body does not parse (kind %d): %.300s", kind, body);
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(got, "metadata"), "labels");
    const char *done = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(labels, "workflows.argoproj.io/report-outputs-completed"));
    FUZZ_CHECK(done && !strcmp(done, "true"), "label not \"true\"");
    cJSON *got_outputs = cJSON_GetObjectItemCaseSensitive(got, "outputs");
    cJSON *got_params = cJSON_GetObjectItemCaseSensitive(got_outputs, "parameters");
    size_t seen = 0;
    cJSON_ArrayForEach(el, got_params) {
      cJSON *v = cJSON_GetObjectItemCaseSensitive(el, "value");
      if (cJSON_IsObject(el)) {
        FUZZ_CHECK(cJSON_IsString(v), "a filled value did not come back as a string");
        seen++;
      }
    }
    FUZZ_CHECK(seen == filled, "%zu values filled, %zu came back", filled, seen);
    /* Apart from the values, the outputs are the template's. */
    cJSON_ArrayForEach(el, got_params) cJSON_DeleteItemFromObjectCaseSensitive(el, "value");
    cJSON *orig = cJSON_Duplicate(t->outputs, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(orig, "artifacts");
    cJSON_ArrayForEach(el, cJSON_GetObjectItemCaseSensitive(orig, "parameters"))
        cJSON_DeleteItemFromObjectCaseSensitive(el, "value");
    FUZZ_CHECK(got_outputs && same_tree(got_outputs, orig, true), "outputs changed on the way");
    cJSON_Delete(orig);
    const char *phase = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(got, "phase"));
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(got, "message"));
    if (failure) {
      FUZZ_CHECK(phase && !strcmp(phase, "Error"), "no phase Error");
      FUZZ_CHECK(msg && strlen(msg) <= 1024 && !strncmp(msg, failure, strlen(msg)),
                 "message is not a cut of the reasons");
      FUZZ_CHECK(strlen(msg) == strlen(failure) || strlen(failure) > 1024, "message cut short");
      FUZZ_CHECK(fuzz_utf8_valid(msg, strlen(msg)), "message cut inside a character");
    } else {
      FUZZ_CHECK(!phase && !msg, "phase/message without a failure");
    }
    cJSON_Delete(got);
    free(body);
  }
  free(failure);
  aw_reasons_free(&why);
  free(lit);
  cJSON_Delete(outputs);
}

/* ---- the template ---- */

static bool is_zeroed(const aw_template *t) {
  static const aw_template zero;
  return !memcmp(t, &zero, sizeof(zero));
}

static void check_parsed(const aw_template *t) {
  FUZZ_CHECK(t->main_container_count >= 1 && t->main_containers, "no main container");
  for (size_t i = 0; i < t->main_container_count; i++) {
    FUZZ_CHECK(t->main_containers[i] && t->main_containers[i][0], "unnamed main container");
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(t->main_containers[i], t->main_containers[j]), "duplicate container");
  }
  FUZZ_CHECK(cJSON_IsObject(t->outputs), "outputs is not an object");
  for (size_t i = 0; i < t->param_count; i++) {
    FUZZ_CHECK(t->params[i].name && t->params[i].name[0], "unnamed parameter");
    if (t->params[i].path) FUZZ_CHECK(t->params[i].path[0] == '/', "relative parameter path");
  }
  for (size_t i = 0; i < t->artifact_count; i++)
    FUZZ_CHECK(t->artifacts[i].name && t->artifacts[i].name[0], "unnamed artifact");
  for (size_t i = 0; i < t->mirrored_count; i++) {
    const char *p = t->mirrored[i].path;
    char *c = ref_clean(p);
    FUZZ_CHECK(!strcmp(c, p), "mirrored path \"%s\" is not clean", p);
    free(c);
    if (i) {
      const char *q = t->mirrored[i - 1].path;
      FUZZ_CHECK(strlen(q) >= strlen(p), "mirrored paths not sorted longest first");
      FUZZ_CHECK(strcmp(q, p), "mirrored path \"%s\" twice", p);
    }
    if (t->mirrored[i].optional) FUZZ_CHECK(t->mirrored[i].from_input_artifact, "optional volume mount");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *json = fuzz_exact_copy(data, size);
  aw_template t;
  aw_reasons errs;
  aw_reasons_init(&errs);
  int rc = aw_template_parse(json, size, &t, &errs);
  FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
  if (rc != 0) {
    FUZZ_CHECK(is_zeroed(&t), "a failed parse left data behind");
    FUZZ_CHECK(errs.count >= 1, "failure without a reason");
    for (size_t i = 0; i < errs.count; i++) {
      const char *r = errs.items[i];
      FUZZ_CHECK(!strncmp(r, "template: ", 10), "reason without \"template: \": %s", r);
      FUZZ_CHECK(fuzz_one_line(r), "reason is not one line: %s", r);
      FUZZ_CHECK(fuzz_utf8_valid(r, strlen(r)), "reason is not valid UTF-8: %s", r);
      FUZZ_CHECK(strlen(r) <= 256, "reason of %zu bytes: %s", strlen(r), r);
    }
  } else {
    FUZZ_CHECK(errs.count == 0, "success with reasons: %s", errs.items[0]);
    check_parsed(&t);
    for (size_t i = 0; i < t.param_count; i++) {
      if (!t.params[i].path) continue;
      check_clean(t.params[i].path);
      char *clean = aw_path_clean(t.params[i].path);
      check_mirror(&t, clean);
      free(clean);
    }
    for (size_t i = 0; i < t.mirrored_count; i++) check_mirror(&t, t.mirrored[i].path);
    check_report(&t, data, size);
    aw_template_free(&t);
    FUZZ_CHECK(is_zeroed(&t), "aw_template_free left data behind");
  }
  aw_reasons_free(&errs);
  /* The input itself as a path (for the cleaner alone). */
  char *path = fuzz_cstr(data, size);
  if (strlen(path) < 8192) check_clean(path);
  free(path);
  free(json);
  return 0;
}
