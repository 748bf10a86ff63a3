#include "argowait/collect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/jsonstr.h"
#include "argowait/log.h"
#include "argowait/safefile.h"

/* Nothing read from a file ever goes into a reason or a log line: the main
 * container could have made that file a copy of a secret. Reasons name the
 * output, its declared path and the error only. */

size_t aw_strip_one_newline(const char *data, size_t len) {
  if (len > 0 && data[len - 1] == '\n') return len - 1;
  return len;
}

/* Sets key in obj to item, replacing what is there. Takes item. */
static int set_item(cJSON *obj, const char *key, cJSON *item) {
  if (!item) return -1;
  if (cJSON_GetObjectItemCaseSensitive(obj, key))
    return cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item) ? 0 : -1;
  return cJSON_AddItemToObject(obj, key, item) ? 0 : -1;
}

/* Quotes bytes as a JSON string literal (NUL bytes and bad UTF-8 kept as
 * escapes, which cJSON strings cannot hold) and sets it under key. */
static int set_raw_string(cJSON *obj, const char *key, const char *bytes,
                          size_t len) {
  char *literal = aw_json_quote(bytes, len);
  if (!literal) return -1;
  cJSON *item = cJSON_CreateRaw(literal);
  free(literal);
  return set_item(obj, key, item);
}

/* ---- the script result ---- */

static void collect_result(const aw_collect_input *in, aw_collect_output *out) {
  /* From the emptyDir's mount point: main shares /var/run/argo and could
   * replace ctr/main itself with a symlink. */
  char *dir = aw_config_path(in->cfg, AW_PATH_ARGO_DIR, NULL);
  if (!dir) {
    aw_reasons_add(&out->reasons, "output result: out of memory");
    return;
  }
  aw_bytes bytes = {0};
  bool cut = false;
  /* One byte more than kept, so that stripping a trailing newline still
   * leaves a full window. */
  int rc = aw_read_tail_beneath(dir, "ctr/main/stdout", AW_RESULT_MAX_BYTES + 1, &bytes,
                                &cut);
  free(dir);
  if (rc == -ENOENT) {
    aw_warn("main container's stdout was not found: the result is empty");
  } else if (rc < 0) {
    aw_reasons_add(&out->reasons, "output result (%s/main/stdout): %s",
                   AW_PATH_CTR_DIR, aw_safefile_strerror(rc));
    return;
  }
  size_t len = aw_strip_one_newline(bytes.data ? bytes.data : "", bytes.len);
  size_t skip = 0;
  if (len > AW_RESULT_MAX_BYTES) {
    skip = len - AW_RESULT_MAX_BYTES;
    cut = true;
  }
  if (cut)
    aw_warn("output is larger than the maximum allowed size of 256 kB, "
            "only the last 256 kB were saved");
  if (set_raw_string(out->outputs, "result",
                     bytes.data ? bytes.data + skip : "", len - skip) != 0)
    aw_reasons_add(&out->reasons, "output result: out of memory");
  aw_bytes_free(&bytes);
}

/* ---- output parameters ---- */

/* Where a parameter file is read from: a trusted base folder (a mount
 * point, which main cannot replace), and the rest of the path, which main
 * controls and which is resolved beneath it. */
typedef struct {
  char *base;
  char *rel;
} param_source;

static void param_source_free(param_source *src) {
  free(src->base);
  free(src->rel);
  src->base = NULL;
  src->rel = NULL;
}

/* The emissary's copy, outputs/parameters/<path without its leading '/'>,
 * resolved from /var/run/argo: main could replace outputs/parameters (or
 * outputs) with a symlink. */
static int base_image_source(const aw_config *cfg, const char *clean,
                             param_source *src) {
  src->base = aw_config_path(cfg, AW_PATH_ARGO_DIR, NULL);
  if (asprintf(&src->rel, "outputs/parameters%s", clean) < 0) src->rel = NULL;
  return src->base && src->rel ? 0 : -ENOMEM;
}

/* The outermost mirrored path holding clean: a real mount. A mirror nested
 * inside another (an input artifact under a volume mount) is a folder that
 * main can replace with a symlink, so it is never a base. */
static const char *outermost_mirror(const aw_template *t, const char *clean) {
  const char *best = NULL;
  for (size_t i = 0; i < t->mirrored_count; i++) {
    const char *m = t->mirrored[i].path;
    size_t n = strlen(m);
    bool holds = strcmp(m, "/") == 0 ||
                 (strncmp(clean, m, n) == 0 && (clean[n] == '\0' || clean[n] == '/'));
    if (holds && (!best || n < strlen(best))) best = m;
  }
  return best;
}

/* /mainctrfs/<outermost mirror>/<rest>. A path that is the mirror itself (a
 * file mounted with subPath, say) is read beneath the mirror's parent
 * instead, since openat needs a folder to start from. */
int aw_mirror_source(const aw_config *cfg, const aw_template *tmpl, const char *clean,
                     char **base, char **rel) {
  *base = *rel = NULL;
  const char *mirror = outermost_mirror(tmpl, clean);
  if (!mirror) return -EINVAL;
  size_t mlen = strlen(mirror);
  char *folder;
  if (clean[mlen] == '\0') {
    const char *last = strrchr(clean, '/');
    folder = strndup(clean, (size_t)(last - clean));
    *rel = strdup(last + 1);
  } else {
    folder = strdup(mirror);
    *rel = strdup(clean + (mlen == 1 ? 1 : mlen + 1));
  }
  if (folder && *rel) {
    /* aw_config_path wants the part after the fixed prefix without its '/'. */
    const char *rest = folder[0] == '/' ? folder + 1 : folder;
    *base = aw_config_path(cfg, AW_PATH_MAINCTRFS, *rest ? rest : NULL);
  }
  free(folder);
  if (*base) return 0;
  free(*rel);
  *rel = NULL;
  return -ENOMEM;
}

static int read_from(const param_source *src, aw_bytes *value) {
  return aw_read_beneath(src->base, src->rel, AW_PARAM_MAX_BYTES, value);
}

/* Reads one parameter file, choosing between the mirror and the emissary's
 * copy as Argo does. Returns 0 or a negative errno. */
static int read_param_file(const aw_collect_input *in, const char *clean,
                           aw_bytes *value) {
  param_source src = {0};
  int idx = aw_template_find_mirror(in->tmpl, clean);
  int rc;
  if (idx < 0) {
    rc = base_image_source(in->cfg, clean, &src);
    if (rc == 0) rc = read_from(&src, value);
    param_source_free(&src);
    return rc;
  }
  const aw_mirrored_path *m = &in->tmpl->mirrored[idx];
  rc = aw_mirror_source(in->cfg, in->tmpl, clean, &src.base, &src.rel);
  if (rc == 0) rc = read_from(&src, value);
  param_source_free(&src);
  /* An optional input artifact that was not supplied has nothing mounted
   * there; the file then lives in the base image. */
  if (rc == -ENOENT && m->from_input_artifact && m->optional) {
    rc = base_image_source(in->cfg, clean, &src);
    if (rc == 0) rc = read_from(&src, value);
    param_source_free(&src);
  }
  return rc;
}

/* The template's outputs.parameters element for params[index]: the arrays
 * are in the same order, but the name is checked rather than trusted. */
static cJSON *find_param_json(cJSON *outputs, size_t index, const char *name) {
  cJSON *arr = cJSON_GetObjectItemCaseSensitive(outputs, "parameters");
  if (!cJSON_IsArray(arr)) return NULL;
  cJSON *el = cJSON_GetArrayItem(arr, (int)index);
  cJSON *el_name = cJSON_GetObjectItemCaseSensitive(el, "name");
  if (cJSON_IsString(el_name) && strcmp(el_name->valuestring, name) == 0)
    return el;
  cJSON_ArrayForEach(el, arr) {
    el_name = cJSON_GetObjectItemCaseSensitive(el, "name");
    if (cJSON_IsString(el_name) && strcmp(el_name->valuestring, name) == 0)
      return el;
  }
  return NULL;
}

static void use_default_or_fail(const aw_output_param *p, cJSON *el, int err,
                                aw_collect_output *out) {
  const char *why = aw_safefile_strerror(err);
  if (p->default_value) {
    if (set_item(el, "value", cJSON_CreateString(p->default_value)) == 0) {
      aw_warn("output parameter \"%s\" (%s): %s; using its default", p->name,
              p->path, why);
      out->params_defaulted++;
      return;
    }
    why = "out of memory";
  }
  aw_reasons_add(&out->reasons, "output parameter \"%s\" (%s): %s", p->name,
                 p->path, why);
}

static void collect_param(const aw_collect_input *in, size_t index,
                          aw_collect_output *out) {
  const aw_output_param *p = &in->tmpl->params[index];
  cJSON *el = find_param_json(out->outputs, index, p->name);
  if (!el) {
    aw_reasons_add(&out->reasons,
                   "output parameter \"%s\": not among the template's outputs",
                   p->name);
    return;
  }
  char *clean = aw_path_clean(p->path);
  aw_bytes value = {0};
  int rc = clean ? read_param_file(in, clean, &value) : -EINVAL;
  free(clean);
  if (rc == 0) {
    size_t len = aw_strip_one_newline(value.data, value.len);
    rc = set_raw_string(el, "value", value.data, len) == 0 ? 0 : -ENOMEM;
    aw_bytes_free(&value);
  }
  if (rc == 0)
    out->params_reported++;
  else
    use_default_or_fail(p, el, rc, out);
}

static void collect_params(const aw_collect_input *in, aw_collect_output *out) {
  for (size_t i = 0; i < in->tmpl->param_count; i++) {
    /* Parameters without a path are not the executor's: passed through. */
    if (in->tmpl->params[i].path) collect_param(in, i, out);
  }
}

/* ---- output artifacts ---- */

/* Artifacts are saved after collecting (artifacts.c), which reports the
 * ones really saved: the template's list is never echoed as is. */
static void drop_artifacts(aw_collect_output *out) {
  cJSON_DeleteItemFromObjectCaseSensitive(out->outputs, "artifacts");
}

/* ---- entry points ---- */

static cJSON *copy_outputs(const aw_template *tmpl) {
  if (cJSON_IsObject(tmpl->outputs)) return cJSON_Duplicate(tmpl->outputs, 1);
  return cJSON_CreateObject();
}

void aw_collect_run(const aw_collect_input *in, aw_collect_output *out) {
  memset(out, 0, sizeof(*out));
  aw_reasons_init(&out->reasons);
  out->outputs = copy_outputs(in->tmpl);
  if (!out->outputs) {
    aw_reasons_add(&out->reasons, "outputs: out of memory");
    return;
  }
  if (in->include_result) collect_result(in, out);
  collect_params(in, out);
  drop_artifacts(out);
}

void aw_collect_output_free(aw_collect_output *out) {
  if (!out) return;
  cJSON_Delete(out->outputs);
  aw_reasons_free(&out->reasons);
  memset(out, 0, sizeof(*out));
}
