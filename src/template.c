#include "argowait/template.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/jsonstr.h"

/* Field paths in messages name only fixed keys and indexes, never input
 * text, so a hostile template cannot flood the termination log. */
#define WHERE_MAX 160
/* Longest piece of a user-chosen name quoted in a message. */
#define SHOWN_NAME_MAX 63

typedef enum { WANT_OBJECT, WANT_ARRAY, WANT_STRING, WANT_BOOL } json_want;

static const char *type_name(const cJSON *v) {
  if (cJSON_IsObject(v)) return "an object";
  if (cJSON_IsArray(v)) return "an array";
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsNumber(v)) return "a number";
  if (cJSON_IsBool(v)) return "a boolean";
  if (cJSON_IsNull(v)) return "null";
  return "an unknown value";
}

static const char *want_name(json_want want) {
  switch (want) {
  case WANT_OBJECT: return "an object";
  case WANT_ARRAY: return "an array";
  case WANT_STRING: return "a string";
  case WANT_BOOL: return "a boolean";
  }
  return "?";
}

static bool has_type(const cJSON *v, json_want want) {
  switch (want) {
  case WANT_OBJECT: return cJSON_IsObject(v);
  case WANT_ARRAY: return cJSON_IsArray(v);
  case WANT_STRING: return cJSON_IsString(v) && v->valuestring;
  case WANT_BOOL: return cJSON_IsBool(v);
  }
  return false;
}

/* Bounded concatenation of where + sep + tail. The deepest field path, with
 * two 20-digit indexes, is under 100 bytes, so the cut never happens. */
static void set_where(char *buf, const char *where, const char *sep,
                      const char *tail) {
  const char *parts[] = {where, sep, tail};
  size_t n = 0;
  for (size_t p = 0; p < 3; p++)
    for (const char *c = parts[p]; *c && n < WHERE_MAX - 1; c++) buf[n++] = *c;
  buf[n] = '\0';
}

static void join_where(char *buf, const char *where, const char *key) {
  set_where(buf, where, *where ? "." : "", key);
}

static void index_where(char *buf, const char *where, size_t i) {
  char index[32];
  snprintf(index, sizeof(index), "[%zu]", i);
  set_where(buf, where, "", index);
}

static int out_of_memory(aw_reasons *errs) {
  aw_reasons_add(errs, "template: out of memory");
  return -1;
}

static int wrong_type(const char *where, const cJSON *v, json_want want,
                      aw_reasons *errs) {
  aw_reasons_add(errs, "template: %s is %s, not %s", where, type_name(v),
                 want_name(want));
  return -1;
}

/* Looks key up in obj and checks its type. Absent and null both leave *out
 * NULL: Go's decoder leaves the zero value for a null. */
static int member(const cJSON *obj, const char *where, const char *key,
                  json_want want, aw_reasons *errs, const cJSON **out) {
  *out = NULL;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v)) return 0;
  if (!has_type(v, want)) {
    char field[WHERE_MAX];
    join_where(field, where, key);
    return wrong_type(field, v, want, errs);
  }
  *out = v;
  return 0;
}

static size_t array_len(const cJSON *array) {
  size_t n = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, array) n++;
  return n;
}

/* A required, non-empty string member; *out is a malloc'd copy. */
static int required_string(const cJSON *obj, const char *where, const char *key,
                           aw_reasons *errs, char **out) {
  const cJSON *v;
  if (member(obj, where, key, WANT_STRING, errs, &v) != 0) return -1;
  if (!v || !v->valuestring[0]) {
    aw_reasons_add(errs, "template: %s%s%s is %s", where, *where ? "." : "",
                   key, v ? "empty" : "missing");
    return -1;
  }
  *out = strdup(v->valuestring);
  return *out ? 0 : out_of_memory(errs);
}

/* ---- Checks on the raw bytes ------------------------------------------- */


/* What cJSON lets through but must not reach us: it truncates strings at a
 * NUL (raw or \u0000), so a path could silently become a shorter one; it
 * accepts raw control bytes and invalid UTF-8 in strings, which Go rejects
 * or replaces and which would make our own request bodies invalid. The
 * nesting depth is checked here too, for a clearer message than cJSON's. */
static int check_json_text(const unsigned char *s, size_t len,
                           aw_reasons *errs) {
  bool in_string = false;
  size_t depth = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (!in_string) {
      if (c == '"')
        in_string = true;
      else if (c == '[' || c == '{') {
        if (++depth > CJSON_NESTING_LIMIT) {
          aw_reasons_add(errs,
                         "template: nested deeper than %d levels "
                         "(at byte %zu)",
                         CJSON_NESTING_LIMIT, i);
          return -1;
        }
      } else if ((c == ']' || c == '}') && depth > 0)
        depth--;
      else if (c == '\0') {
        aw_reasons_add(errs, "template: NUL byte at byte %zu", i);
        return -1;
      }
      continue;
    }
    if (c == '"') {
      in_string = false;
    } else if (c == '\\') {
      if (i + 5 < len && memcmp(s + i + 1, "u0000", 5) == 0) {
        aw_reasons_add(errs,
                       "template: a string holds \\u0000 (NUL) at byte "
                       "%zu, which is not supported",
                       i);
        return -1;
      }
      i++; /* the escaped character cannot end the string */
    } else if (c < 0x20) {
      aw_reasons_add(errs,
                     "template: control character in a string at "
                     "byte %zu",
                     i);
      return -1;
    } else if (c >= 0x80) {
      size_t n = aw_utf8_char_len(s + i, len - i);
      if (!n) {
        aw_reasons_add(errs, "template: invalid UTF-8 at byte %zu", i);
        return -1;
      }
      i += n - 1;
    }
  }
  return 0;
}

static bool is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static cJSON *parse_document(const char *json, size_t len, aw_reasons *errs) {
  if (!json || len == 0) {
    aw_reasons_add(errs, "template: empty");
    return NULL;
  }
  if (len > AW_TEMPLATE_MAX_BYTES) {
    aw_reasons_add(errs, "template: %zu bytes is more than the limit of %u",
                   len, AW_TEMPLATE_MAX_BYTES);
    return NULL;
  }
  if (check_json_text((const unsigned char *)json, len, errs) != 0) return NULL;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (!root) {
    size_t at = end && end >= json ? (size_t)(end - json) : 0;
    aw_reasons_add(errs, "template: not valid JSON (error near byte %zu)", at);
    return NULL;
  }
  size_t at = (size_t)(end - json);
  while (at < len && is_json_space(json[at])) at++;
  if (at < len) {
    aw_reasons_add(errs,
                   "template: unexpected data after the JSON value "
                   "(at byte %zu)",
                   at);
    cJSON_Delete(root);
    return NULL;
  }
  if (!cJSON_IsObject(root)) {
    aw_reasons_add(errs, "template: the JSON value is %s, not an object",
                   type_name(root));
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

/* ---- Paths ------------------------------------------------------------- */

char *aw_path_clean(const char *path) {
  if (!path || path[0] != '/') return NULL;
  size_t len = strlen(path);
  char *out = malloc(len + 1);
  if (!out) return NULL;
  size_t w = 1; /* out[0..w) is the cleaned prefix, always starting "/" */
  out[0] = '/';
  size_t r = 1;
  while (r < len) {
    size_t seg = strcspn(path + r, "/");
    if (seg == 0 || (seg == 1 && path[r] == '.')) {
      /* empty or "." segment: nothing to keep */
    } else if (seg == 2 && path[r] == '.' && path[r + 1] == '.') {
      while (w > 1 && out[w - 1] != '/') w--;
      if (w > 1) w--; /* drop the separator too, unless it is the root */
    } else {
      if (w > 1) out[w++] = '/';
      memcpy(out + w, path + r, seg);
      w += seg;
    }
    r += seg + (path[r + seg] == '/');
  }
  out[w] = '\0';
  return out;
}

static bool path_is_within(const char *clean_path, const char *dir) {
  if (strcmp(dir, "/") == 0) return clean_path[0] == '/';
  size_t n = strlen(dir);
  return strncmp(clean_path, dir, n) == 0 &&
         (clean_path[n] == '\0' || clean_path[n] == '/');
}

int aw_template_find_mirror(const aw_template *t, const char *clean_path) {
  if (!t || !clean_path) return -1;
  /* The list is sorted longest first, so the first hit is the longest. */
  for (size_t i = 0; i < t->mirrored_count; i++)
    if (path_is_within(clean_path, t->mirrored[i].path)) return (int)i;
  return -1;
}

/* ---- Main containers --------------------------------------------------- */

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorting a copy keeps the check O(n log n) on a hostile list. */
static int reject_duplicate_names(char **names, size_t n, aw_reasons *errs) {
  char **sorted = malloc(n * sizeof(*sorted));
  if (!sorted) return out_of_memory(errs);
  memcpy(sorted, names, n * sizeof(*sorted));
  qsort(sorted, n, sizeof(*sorted), compare_strings);
  int rc = 0;
  for (size_t i = 1; i < n && rc == 0; i++) {
    if (strcmp(sorted[i - 1], sorted[i]) != 0) continue;
    size_t shown = aw_utf8_cut(sorted[i], strlen(sorted[i]), SHOWN_NAME_MAX);
    aw_reasons_add(errs,
                   "template: containerSet.containers has the name "
                   "\"%.*s\" more than once",
                   (int)shown, sorted[i]);
    rc = -1;
  }
  free(sorted);
  return rc;
}

static int parse_container_set(const cJSON *set, aw_template *t,
                               aw_reasons *errs) {
  const cJSON *list;
  if (member(set, "containerSet", "containers", WANT_ARRAY, errs, &list))
    return -1;
  size_t n = list ? array_len(list) : 0;
  if (n == 0) {
    aw_reasons_add(errs, "template: containerSet.containers is %s",
                   list ? "empty" : "missing");
    return -1;
  }
  t->main_containers = calloc(n, sizeof(*t->main_containers));
  if (!t->main_containers) return out_of_memory(errs);
  t->main_container_count = n;
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, list) {
    char where[WHERE_MAX];
    index_where(where, "containerSet.containers", i);
    if (!cJSON_IsObject(item))
      return wrong_type(where, item, WANT_OBJECT, errs);
    if (required_string(item, where, "name", errs, &t->main_containers[i]))
      return -1;
    if (strcmp(t->main_containers[i], "main") == 0)
      t->has_result_container = true;
    i++;
  }
  return reject_duplicate_names(t->main_containers, n, errs);
}

static int parse_main_containers(const cJSON *root, aw_template *t,
                                 aw_reasons *errs) {
  const cJSON *container, *script, *set;
  if (member(root, "", "container", WANT_OBJECT, errs, &container) ||
      member(root, "", "script", WANT_OBJECT, errs, &script) ||
      member(root, "", "containerSet", WANT_OBJECT, errs, &set))
    return -1;
  if (set) return parse_container_set(set, t, errs);
  t->has_result_container = container || script;
  t->main_containers = calloc(1, sizeof(*t->main_containers));
  if (!t->main_containers) return out_of_memory(errs);
  t->main_container_count = 1;
  t->main_containers[0] = strdup("main");
  return t->main_containers[0] ? 0 : out_of_memory(errs);
}

/* ---- Output parameters and artifacts ----------------------------------- */

/* Go's strconv.FormatFloat(v, 'f', -1, 64): the shortest digits that read
 * back as v, written without an exponent. */
static char *format_go_float(double v) {
  char sci[40];
  for (int digits = 1; digits <= 17; digits++) {
    snprintf(sci, sizeof(sci), "%.*e", digits - 1, v);
    if (strtod(sci, NULL) == v) break;
  }
  char *e = strchr(sci, 'e');
  if (!e) return NULL;
  long exp10 = strtol(e + 1, NULL, 10);
  char mantissa[24];
  size_t m = 0;
  for (const char *p = sci; p < e; p++)
    if (*p >= '0' && *p <= '9' && m < sizeof(mantissa) - 1) mantissa[m++] = *p;
  mantissa[m] = '\0';

  aw_strbuf sb;
  aw_strbuf_init(&sb);
  if (sci[0] == '-') aw_strbuf_appends(&sb, "-");
  if (exp10 < 0) {
    aw_strbuf_appends(&sb, "0.");
    for (long z = -1; z > exp10; z--) aw_strbuf_appends(&sb, "0");
    aw_strbuf_appends(&sb, mantissa);
  } else {
    size_t int_digits = (size_t)exp10 + 1;
    for (size_t k = 0; k < int_digits; k++)
      aw_strbuf_append(&sb, k < m ? mantissa + k : "0", 1);
    if (m > int_digits) {
      aw_strbuf_appends(&sb, ".");
      aw_strbuf_appends(&sb, mantissa + int_digits);
    }
  }
  return aw_strbuf_take(&sb);
}

/* Argo's AnyString accepts a string, a number or a boolean. */
static int any_string(const cJSON *v, const char *where, aw_reasons *errs,
                      char **out) {
  if (cJSON_IsString(v) && v->valuestring) {
    *out = strdup(v->valuestring);
  } else if (cJSON_IsBool(v)) {
    *out = strdup(cJSON_IsTrue(v) ? "true" : "false");
  } else if (cJSON_IsNumber(v)) {
    if (!isfinite(v->valuedouble)) {
      aw_reasons_add(errs, "template: %s is a number out of range", where);
      return -1;
    }
    *out = format_go_float(v->valuedouble);
  } else {
    aw_reasons_add(errs,
                   "template: %s is %s, not a string, number or "
                   "boolean",
                   where, type_name(v));
    return -1;
  }
  return *out ? 0 : out_of_memory(errs);
}

static int parse_value_from(const cJSON *value_from, const char *where,
                            aw_output_param *p, aw_reasons *errs) {
  const cJSON *path;
  if (member(value_from, where, "path", WANT_STRING, errs, &path)) return -1;
  /* Argo skips a parameter whose path is empty, as if it had none. */
  if (path && path->valuestring[0]) {
    if (path->valuestring[0] != '/') {
      aw_reasons_add(errs, "template: %s.path is not an absolute path", where);
      return -1;
    }
    p->path = strdup(path->valuestring);
    if (!p->path) return out_of_memory(errs);
  }
  const cJSON *def = cJSON_GetObjectItemCaseSensitive(value_from, "default");
  if (!def || cJSON_IsNull(def)) return 0;
  char field[WHERE_MAX];
  join_where(field, where, "default");
  return any_string(def, field, errs, &p->default_value);
}

static int parse_param(const cJSON *item, const char *where, aw_output_param *p,
                       aw_reasons *errs) {
  if (!cJSON_IsObject(item)) return wrong_type(where, item, WANT_OBJECT, errs);
  if (required_string(item, where, "name", errs, &p->name)) return -1;
  const cJSON *value_from;
  if (member(item, where, "valueFrom", WANT_OBJECT, errs, &value_from))
    return -1;
  if (!value_from) return 0;
  char field[WHERE_MAX];
  join_where(field, where, "valueFrom");
  return parse_value_from(value_from, field, p, errs);
}

static int parse_params(const cJSON *outputs, aw_template *t,
                        aw_reasons *errs) {
  const cJSON *list;
  if (member(outputs, "outputs", "parameters", WANT_ARRAY, errs, &list))
    return -1;
  size_t n = list ? array_len(list) : 0;
  if (n == 0) return 0;
  t->params = calloc(n, sizeof(*t->params));
  if (!t->params) return out_of_memory(errs);
  t->param_count = n;
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, list) {
    char where[WHERE_MAX];
    index_where(where, "outputs.parameters", i);
    if (parse_param(item, where, &t->params[i], errs)) return -1;
    i++;
  }
  return 0;
}

const char *const aw_repo_types[] = {"s3",  "gcs",  "azure", "oss", "hdfs", "artifactory",
                                     "git", "http", "raw",   "plugin", NULL};

/* The first repository kind that obj names (an object member). */
static const char *repo_type_of(const cJSON *obj) {
  for (size_t i = 0; aw_repo_types[i]; i++)
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(obj, aw_repo_types[i])))
      return aw_repo_types[i];
  return NULL;
}

/* An optional string member; *out is a malloc'd copy, or NULL when absent
 * or empty. */
static int optional_string(const cJSON *obj, const char *where, const char *key,
                           aw_reasons *errs, char **out) {
  const cJSON *v;
  *out = NULL;
  if (member(obj, where, key, WANT_STRING, errs, &v)) return -1;
  if (!v || !v->valuestring[0]) return 0;
  *out = strdup(v->valuestring);
  return *out ? 0 : out_of_memory(errs);
}

static int optional_bool(const cJSON *obj, const char *where, const char *key,
                         aw_reasons *errs, bool *out) {
  const cJSON *v;
  if (member(obj, where, key, WANT_BOOL, errs, &v)) return -1;
  *out = cJSON_IsTrue(v);
  return 0;
}

static int parse_archive(const cJSON *item, const char *where,
                         aw_output_artifact *a, aw_reasons *errs) {
  const cJSON *archive, *tar, *none, *zip;
  a->strategy = AW_STRATEGY_TAR;
  a->compression_level = -1;
  if (member(item, where, "archive", WANT_OBJECT, errs, &archive)) return -1;
  if (!archive) return 0;
  char field[WHERE_MAX];
  join_where(field, where, "archive");
  if (member(archive, field, "tar", WANT_OBJECT, errs, &tar) ||
      member(archive, field, "none", WANT_OBJECT, errs, &none) ||
      member(archive, field, "zip", WANT_OBJECT, errs, &zip))
    return -1;
  if (none) a->strategy = AW_STRATEGY_NONE;
  else if (zip) a->strategy = AW_STRATEGY_ZIP;
  if (!tar || none || zip) return 0;
  const cJSON *level = cJSON_GetObjectItemCaseSensitive(tar, "compressionLevel");
  if (!level || cJSON_IsNull(level)) return 0;
  char lfield[WHERE_MAX];
  join_where(lfield, field, "tar.compressionLevel");
  if (!cJSON_IsNumber(level) || level->valuedouble != (double)(int)level->valuedouble ||
      level->valueint < -1 || level->valueint > 9) {
    aw_reasons_add(errs, "template: %s is not an integer from -1 to 9", lfield);
    return -1;
  }
  a->compression_level = level->valueint;
  return 0;
}

static int parse_secret_ref(const cJSON *obj, const char *where, const char *key,
                            aw_secret_ref *ref, aw_reasons *errs);

/* url, usernameSecret, passwordSecret of an artifactory location. */
static int parse_artifactory(const cJSON *art, const char *where, char **url,
                             aw_secret_ref *username, aw_secret_ref *password,
                             aw_reasons *errs) {
  return optional_string(art, where, "url", errs, url) ||
                 parse_secret_ref(art, where, "usernameSecret", username, errs) ||
                 parse_secret_ref(art, where, "passwordSecret", password, errs)
             ? -1
             : 0;
}

static int parse_own_location(const cJSON *item, const char *where,
                              aw_output_artifact *a, aw_reasons *errs) {
  a->own_type = repo_type_of(item);
  if (!a->own_type) return 0;
  char field[WHERE_MAX];
  if (strcmp(a->own_type, "artifactory") == 0) {
    join_where(field, where, "artifactory");
    return parse_artifactory(cJSON_GetObjectItemCaseSensitive(item, "artifactory"), field,
                             &a->own_url, &a->own_username, &a->own_password, errs);
  }
  if (strcmp(a->own_type, "s3") != 0) return 0;
  join_where(field, where, "s3");
  const cJSON *s3 = cJSON_GetObjectItemCaseSensitive(item, "s3");
  const cJSON *bucket, *endpoint;
  if (member(s3, field, "bucket", WANT_STRING, errs, &bucket) ||
      member(s3, field, "endpoint", WANT_STRING, errs, &endpoint))
    return -1;
  a->own_s3_full = (bucket && bucket->valuestring[0]) ||
                   (endpoint && endpoint->valuestring[0]);
  return optional_string(s3, field, "key", errs, &a->own_key);
}

static int parse_artifact(const cJSON *item, const char *where,
                          aw_output_artifact *a, aw_reasons *errs) {
  if (!cJSON_IsObject(item)) return wrong_type(where, item, WANT_OBJECT, errs);
  if (required_string(item, where, "name", errs, &a->name)) return -1;
  const cJSON *path, *optional;
  if (member(item, where, "path", WANT_STRING, errs, &path) ||
      member(item, where, "optional", WANT_BOOL, errs, &optional))
    return -1;
  a->optional = cJSON_IsTrue(optional);
  if (parse_archive(item, where, a, errs) || parse_own_location(item, where, a, errs))
    return -1;
  if (!path || !path->valuestring[0]) return 0;
  a->path = strdup(path->valuestring);
  return a->path ? 0 : out_of_memory(errs);
}

static int parse_artifacts(const cJSON *outputs, aw_template *t,
                           aw_reasons *errs) {
  const cJSON *list;
  if (member(outputs, "outputs", "artifacts", WANT_ARRAY, errs, &list))
    return -1;
  size_t n = list ? array_len(list) : 0;
  if (n == 0) return 0;
  t->artifacts = calloc(n, sizeof(*t->artifacts));
  if (!t->artifacts) return out_of_memory(errs);
  t->artifact_count = n;
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, list) {
    char where[WHERE_MAX];
    index_where(where, "outputs.artifacts", i);
    if (parse_artifact(item, where, &t->artifacts[i], errs)) return -1;
    i++;
  }
  return 0;
}

/* cJSON reads a number past the range of a double (1e400) as infinity and
 * prints infinity as null, so the report would silently carry null where the
 * template had a number (a merge patch even reads null as "delete"). Go's
 * decoder rejects such a number, and so does this: found by
 * fuzz/fuzz_template.c. The depth is bounded by check_json_text. */
static bool has_non_finite_number(const cJSON *v) {
  if (cJSON_IsNumber(v)) return !isfinite(v->valuedouble);
  const cJSON *child;
  cJSON_ArrayForEach(child, v) {
    if (has_non_finite_number(child)) return true;
  }
  return false;
}

static int parse_outputs(cJSON *root, aw_template *t, aw_reasons *errs) {
  const cJSON *outputs;
  if (member(root, "", "outputs", WANT_OBJECT, errs, &outputs)) return -1;
  if (outputs) {
    if (parse_params(outputs, t, errs) || parse_artifacts(outputs, t, errs))
      return -1;
    /* After the parameters, whose defaults get a more precise reason. */
    if (has_non_finite_number(outputs)) {
      aw_reasons_add(errs, "template: outputs holds a number out of range");
      return -1;
    }
    /* The parsed tree is ours: moving the object out is the deep copy. */
    t->outputs = cJSON_DetachItemFromObjectCaseSensitive(root, "outputs");
    cJSON_free(t->outputs->string);
    t->outputs->string = NULL;
  } else {
    t->outputs = cJSON_CreateObject();
    if (!t->outputs) return out_of_memory(errs);
  }
  return 0;
}

/* ---- Mirrored paths ---------------------------------------------------- */

typedef struct {
  aw_mirrored_path *items;
  size_t count;
  size_t cap;
} mirror_list;

static int mirror_add(mirror_list *list, char *clean, bool from_input,
                      bool optional, aw_reasons *errs) {
  if (list->count == list->cap) {
    size_t cap = list->cap ? list->cap * 2 : 8;
    aw_mirrored_path *items = realloc(list->items, cap * sizeof(*items));
    if (!items) {
      free(clean);
      return out_of_memory(errs);
    }
    list->items = items;
    list->cap = cap;
  }
  list->items[list->count++] = (aw_mirrored_path){
      .path = clean, .from_input_artifact = from_input, .optional = optional};
  return 0;
}

static int clean_absolute(const char *raw, const char *where, aw_reasons *errs,
                          char **out) {
  if (raw[0] != '/') {
    aw_reasons_add(errs, "template: %s is not an absolute path", where);
    return -1;
  }
  *out = aw_path_clean(raw);
  return *out ? 0 : out_of_memory(errs);
}

static int add_mounts(const cJSON *owner, const char *owner_where,
                      mirror_list *list, aw_reasons *errs) {
  const cJSON *mounts;
  if (member(owner, owner_where, "volumeMounts", WANT_ARRAY, errs, &mounts))
    return -1;
  if (!mounts) return 0;
  char list_where[WHERE_MAX];
  join_where(list_where, owner_where, "volumeMounts");
  size_t i = 0;
  const cJSON *mount;
  cJSON_ArrayForEach(mount, mounts) {
    char where[WHERE_MAX];
    index_where(where, list_where, i++);
    if (!cJSON_IsObject(mount))
      return wrong_type(where, mount, WANT_OBJECT, errs);
    char *raw = NULL, *clean = NULL;
    int rc = required_string(mount, where, "mountPath", errs, &raw);
    if (rc == 0) {
      char field[WHERE_MAX];
      join_where(field, where, "mountPath");
      rc = clean_absolute(raw, field, errs, &clean);
    }
    free(raw);
    if (rc == 0) rc = mirror_add(list, clean, false, false, errs);
    if (rc != 0) return -1;
  }
  return 0;
}

static int add_container_set_mounts(const cJSON *set, mirror_list *list,
                                    aw_reasons *errs) {
  if (add_mounts(set, "containerSet", list, errs)) return -1;
  const cJSON *containers;
  if (member(set, "containerSet", "containers", WANT_ARRAY, errs, &containers))
    return -1;
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, containers) {
    char where[WHERE_MAX];
    index_where(where, "containerSet.containers", i++);
    if (!cJSON_IsObject(item))
      return wrong_type(where, item, WANT_OBJECT, errs);
    if (add_mounts(item, where, list, errs)) return -1;
  }
  return 0;
}

static int add_input_artifact(const cJSON *art, const char *where,
                              mirror_list *list, aw_reasons *errs) {
  if (!cJSON_IsObject(art)) return wrong_type(where, art, WANT_OBJECT, errs);
  const cJSON *path, *optional;
  if (member(art, where, "path", WANT_STRING, errs, &path) ||
      member(art, where, "optional", WANT_BOOL, errs, &optional))
    return -1;
  if (!path || !path->valuestring[0]) return 0; /* not placed in main */
  char field[WHERE_MAX];
  join_where(field, where, "path");
  char *clean;
  if (clean_absolute(path->valuestring, field, errs, &clean)) return -1;
  return mirror_add(list, clean, true, cJSON_IsTrue(optional), errs);
}

static int add_input_artifacts(const cJSON *root, mirror_list *list,
                               aw_reasons *errs) {
  const cJSON *inputs, *arts;
  if (member(root, "", "inputs", WANT_OBJECT, errs, &inputs)) return -1;
  if (!inputs) return 0;
  if (member(inputs, "inputs", "artifacts", WANT_ARRAY, errs, &arts)) return -1;
  size_t i = 0;
  const cJSON *art;
  cJSON_ArrayForEach(art, arts) {
    char where[WHERE_MAX];
    index_where(where, "inputs.artifacts", i++);
    if (add_input_artifact(art, where, list, errs)) return -1;
  }
  return 0;
}

static int compare_mirrors(const void *a, const void *b) {
  const aw_mirrored_path *x = a, *y = b;
  size_t lx = strlen(x->path), ly = strlen(y->path);
  if (lx != ly) return lx > ly ? -1 : 1;
  return strcmp(x->path, y->path);
}

/* Sorts longest first and merges equal paths. A volume mount beats an input
 * artifact (it is there whatever was supplied), and a path is optional only
 * when every input artifact placing it there is. */
static void sort_and_merge(mirror_list *list) {
  if (list->count == 0) return;
  qsort(list->items, list->count, sizeof(*list->items), compare_mirrors);
  size_t kept = 0;
  for (size_t i = 0; i < list->count; i++) {
    aw_mirrored_path *cur = &list->items[i];
    aw_mirrored_path *last = kept ? &list->items[kept - 1] : NULL;
    if (last && strcmp(last->path, cur->path) == 0) {
      last->from_input_artifact =
          last->from_input_artifact && cur->from_input_artifact;
      last->optional =
          last->from_input_artifact && last->optional && cur->optional;
      free(cur->path);
      continue;
    }
    list->items[kept++] = *cur;
  }
  list->count = kept;
}

static int collect_mirrors(const cJSON *root, mirror_list *list,
                           aw_reasons *errs) {
  /* Their types were checked with the main containers. */
  const cJSON *container = cJSON_GetObjectItemCaseSensitive(root, "container");
  const cJSON *script = cJSON_GetObjectItemCaseSensitive(root, "script");
  const cJSON *set = cJSON_GetObjectItemCaseSensitive(root, "containerSet");
  if (cJSON_IsObject(container) &&
      add_mounts(container, "container", list, errs))
    return -1;
  if (cJSON_IsObject(script) && add_mounts(script, "script", list, errs))
    return -1;
  if (cJSON_IsObject(set) && add_container_set_mounts(set, list, errs))
    return -1;
  return add_input_artifacts(root, list, errs);
}

static int parse_mirrors(const cJSON *root, aw_template *t, aw_reasons *errs) {
  mirror_list list = {0};
  int rc = collect_mirrors(root, &list, errs);
  sort_and_merge(&list);
  /* Handed over even on failure, so that aw_template_free releases it. */
  t->mirrored = list.items;
  t->mirrored_count = list.count;
  return rc;
}

/* ---- Misc -------------------------------------------------------------- */

static int parse_secret_ref(const cJSON *s3, const char *where, const char *key,
                            aw_secret_ref *ref, aw_reasons *errs) {
  const cJSON *sel;
  if (member(s3, where, key, WANT_OBJECT, errs, &sel)) return -1;
  if (!sel) return 0;
  char field[WHERE_MAX];
  join_where(field, where, key);
  if (optional_string(sel, field, "name", errs, &ref->name) ||
      optional_string(sel, field, "key", errs, &ref->key))
    return -1;
  if (!ref->name && !ref->key) return 0;
  if (!ref->name || !ref->key) {
    aw_reasons_add(errs, "template: %s needs both name and key", field);
    return -1;
  }
  return 0;
}

static int parse_s3_location(const cJSON *s3, aw_archive_location *l,
                             aw_reasons *errs) {
  const char *w = "archiveLocation.s3";
  if (optional_string(s3, w, "bucket", errs, &l->bucket) ||
      optional_string(s3, w, "endpoint", errs, &l->endpoint) ||
      optional_string(s3, w, "region", errs, &l->region) ||
      optional_string(s3, w, "key", errs, &l->key) ||
      optional_string(s3, w, "roleARN", errs, &l->role_arn) ||
      optional_bool(s3, w, "insecure", errs, &l->insecure) ||
      optional_bool(s3, w, "createBucketIfNotPresent", errs, &l->create_bucket) ||
      optional_bool(s3, w, "useSDKCreds", errs, &l->use_sdk_creds) ||
      parse_secret_ref(s3, w, "accessKeySecret", &l->access_key, errs) ||
      parse_secret_ref(s3, w, "secretKeySecret", &l->secret_key, errs) ||
      parse_secret_ref(s3, w, "sessionTokenSecret", &l->session_token, errs) ||
      parse_secret_ref(s3, w, "caSecret", &l->ca, errs))
    return -1;
  return 0;
}

static int parse_archive_location(const cJSON *root, aw_template *t,
                                  aw_reasons *errs) {
  const cJSON *location, *archive_logs;
  if (member(root, "", "archiveLocation", WANT_OBJECT, errs, &location))
    return -1;
  if (!location) return 0;
  if (member(location, "archiveLocation", "archiveLogs", WANT_BOOL, errs,
             &archive_logs))
    return -1;
  t->archive_logs = cJSON_IsTrue(archive_logs);
  t->location.present = true;
  t->location.type = repo_type_of(location);
  if (t->location.type && strcmp(t->location.type, "s3") == 0)
    return parse_s3_location(cJSON_GetObjectItemCaseSensitive(location, "s3"),
                             &t->location, errs);
  if (t->location.type && strcmp(t->location.type, "artifactory") == 0)
    return parse_artifactory(cJSON_GetObjectItemCaseSensitive(location, "artifactory"),
                             "archiveLocation.artifactory", &t->location.url,
                             &t->location.username, &t->location.password, errs);
  return 0;
}

static void secret_ref_free(aw_secret_ref *r) {
  free(r->name);
  free(r->key);
}

static void location_free(aw_archive_location *l) {
  free(l->bucket);
  free(l->endpoint);
  free(l->region);
  free(l->key);
  free(l->role_arn);
  secret_ref_free(&l->access_key);
  secret_ref_free(&l->secret_key);
  secret_ref_free(&l->session_token);
  secret_ref_free(&l->ca);
  free(l->url);
  secret_ref_free(&l->username);
  secret_ref_free(&l->password);
}

int aw_template_parse(const char *json, size_t len, aw_template *out,
                      aw_reasons *errs) {
  if (!out) return -1;
  memset(out, 0, sizeof(*out));
  cJSON *root = parse_document(json, len, errs);
  if (!root) return -1;
  /* The first problem stops the parse: later parts look at some of the
   * same fields and would only repeat it. */
  int rc = parse_main_containers(root, out, errs);
  if (rc == 0) rc = parse_mirrors(root, out, errs);
  if (rc == 0) rc = parse_archive_location(root, out, errs);
  if (rc == 0) rc = parse_outputs(root, out, errs);
  cJSON_Delete(root);
  if (rc != 0) aw_template_free(out);
  return rc;
}

void aw_template_free(aw_template *t) {
  if (!t) return;
  cJSON_Delete(t->outputs);
  for (size_t i = 0; i < t->main_container_count; i++)
    free(t->main_containers[i]);
  free(t->main_containers);
  for (size_t i = 0; i < t->param_count; i++) {
    free(t->params[i].name);
    free(t->params[i].path);
    free(t->params[i].default_value);
  }
  free(t->params);
  for (size_t i = 0; i < t->artifact_count; i++) {
    free(t->artifacts[i].name);
    free(t->artifacts[i].path);
    free(t->artifacts[i].own_key);
    free(t->artifacts[i].own_url);
    secret_ref_free(&t->artifacts[i].own_username);
    secret_ref_free(&t->artifacts[i].own_password);
  }
  location_free(&t->location);
  free(t->artifacts);
  for (size_t i = 0; i < t->mirrored_count; i++) free(t->mirrored[i].path);
  free(t->mirrored);
  memset(t, 0, sizeof(*t));
}
