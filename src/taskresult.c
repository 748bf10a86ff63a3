#include "argowait/taskresult.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/strbuf.h"

#define TR_API_VERSION "argoproj.io/v1alpha1"

static bool is_set(const char *s) { return s && *s; }

static bool identity_ok(const aw_tr_identity *id) {
  return id && id->name && id->namespace_ && id->workflow_name;
}

/* The controller's informer selects on these labels: the instance label
 * must be absent, not empty, when the controller has no instance id. */
static cJSON *make_labels(const aw_tr_identity *id, bool completed) {
  cJSON *labels = cJSON_CreateObject();
  if (!labels) return NULL;
  bool ok =
      cJSON_AddStringToObject(labels, AW_LABEL_WORKFLOW, id->workflow_name) &&
      cJSON_AddStringToObject(labels, AW_LABEL_COMPLETED,
                              completed ? "true" : "false") &&
      (!is_set(id->instance_id) ||
       cJSON_AddStringToObject(labels, AW_LABEL_INSTANCE, id->instance_id));
  if (!ok) {
    cJSON_Delete(labels);
    return NULL;
  }
  return labels;
}

/* The Workflow owns the result, so deleting the Workflow collects it. */
static bool add_owner_reference(cJSON *metadata, const aw_tr_identity *id) {
  if (!is_set(id->workflow_uid)) return true;
  cJSON *refs = cJSON_AddArrayToObject(metadata, "ownerReferences");
  cJSON *owner = cJSON_CreateObject();
  if (!refs || !owner || !cJSON_AddItemToArray(refs, owner)) {
    cJSON_Delete(owner);
    return false;
  }
  return cJSON_AddStringToObject(owner, "apiVersion", TR_API_VERSION) &&
         cJSON_AddStringToObject(owner, "kind", "Workflow") &&
         cJSON_AddStringToObject(owner, "name", id->workflow_name) &&
         cJSON_AddStringToObject(owner, "uid", id->workflow_uid);
}

static bool add_labels(cJSON *metadata, const aw_tr_identity *id,
                       bool completed) {
  cJSON *labels = make_labels(id, completed);
  if (!labels) return false;
  if (!cJSON_AddItemToObject(metadata, "labels", labels)) {
    cJSON_Delete(labels);
    return false;
  }
  return true;
}

/* A whole object, as POSTed: apiVersion, kind and full metadata. */
static cJSON *make_object(const aw_tr_identity *id, bool completed) {
  cJSON *body = cJSON_CreateObject();
  cJSON *metadata = cJSON_CreateObject();
  bool ok = body && metadata &&
            cJSON_AddStringToObject(body, "apiVersion", TR_API_VERSION) &&
            cJSON_AddStringToObject(body, "kind", "WorkflowTaskResult") &&
            cJSON_AddItemToObject(body, "metadata", metadata);
  if (!ok) {
    cJSON_Delete(body);
    cJSON_Delete(metadata);
    return NULL;
  }
  ok = cJSON_AddStringToObject(metadata, "name", id->name) &&
       cJSON_AddStringToObject(metadata, "namespace", id->namespace_) &&
       add_labels(metadata, id, completed) && add_owner_reference(metadata, id);
  if (!ok) {
    cJSON_Delete(body);
    return NULL;
  }
  return body;
}

/* A merge patch names only what it changes: the labels, not the name or
 * the owner. */
static cJSON *make_label_patch(const aw_tr_identity *id) {
  cJSON *body = cJSON_CreateObject();
  cJSON *metadata = body ? cJSON_AddObjectToObject(body, "metadata") : NULL;
  if (!metadata || !add_labels(metadata, id, true)) {
    cJSON_Delete(body);
    return NULL;
  }
  return body;
}

static bool add_outputs(cJSON *body, const cJSON *outputs) {
  if (!outputs) return cJSON_AddObjectToObject(body, "outputs") != NULL;
  if (!cJSON_IsObject(outputs)) return false;
  /* A reference is printed like a copy but never changed or freed through
   * the body, and the outputs can be megabytes of values. */
  return cJSON_AddItemReferenceToObject(body, "outputs", (cJSON *)outputs);
}

static bool add_failure(cJSON *body, const char *failure) {
  size_t cut = aw_utf8_cut(failure, strlen(failure), AW_MESSAGE_MAX_BYTES);
  char *message = strndup(failure, cut);
  bool ok = message && cJSON_AddStringToObject(body, "phase", "Error") &&
            cJSON_AddStringToObject(body, "message", message);
  free(message);
  return ok;
}

static bool add_report(cJSON *body, const aw_tr_report *rep) {
  if (!add_outputs(body, rep->outputs)) return false;
  return !rep->failure || add_failure(body, rep->failure);
}

static char *print_and_delete(cJSON *body) {
  if (!body) return NULL;
  char *text = cJSON_PrintUnformatted(body);
  cJSON_Delete(body);
  return text;
}

char *aw_tr_placeholder_body(const aw_tr_identity *id) {
  if (!identity_ok(id)) return NULL;
  return print_and_delete(make_object(id, false));
}

char *aw_tr_create_body(const aw_tr_identity *id, const aw_tr_report *rep) {
  if (!identity_ok(id) || !rep) return NULL;
  cJSON *body = make_object(id, true);
  if (body && !add_report(body, rep)) {
    cJSON_Delete(body);
    return NULL;
  }
  return print_and_delete(body);
}

char *aw_tr_final_patch_body(const aw_tr_identity *id,
                             const aw_tr_report *rep) {
  if (!identity_ok(id) || !rep) return NULL;
  cJSON *body = make_label_patch(id);
  if (body && !add_report(body, rep)) {
    cJSON_Delete(body);
    return NULL;
  }
  return print_and_delete(body);
}

char *aw_tr_progress_body(const char *progress) {
  if (!progress) return NULL;
  cJSON *body = cJSON_CreateObject();
  if (body && !cJSON_AddStringToObject(body, "progress", progress)) {
    cJSON_Delete(body);
    return NULL;
  }
  return print_and_delete(body);
}

/* ---- Progress lines ---------------------------------------------------- */

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
         c == '\f';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Digits only: a sign, a blank or anything past LLONG_MAX is rejected. */
static int parse_count(const char **cursor, const char *end, long long *out) {
  const char *s = *cursor;
  if (s == end || !is_digit(*s)) return -1;
  long long v = 0;
  for (; s < end && is_digit(*s); s++) {
    int d = *s - '0';
    if (v > (LLONG_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *cursor = s;
  *out = v;
  return 0;
}

/* The span may hold NULs (it comes from a file): they are not digits,
 * blanks or '/', so they make the line invalid. */
static int parse_progress_span(const char *s, size_t len, long long *n,
                               long long *m) {
  const char *end = s + len;
  while (s < end && is_space(*s)) s++;
  while (end > s && is_space(end[-1])) end--;
  long long done, total;
  if (parse_count(&s, end, &done) != 0 || s == end || *s != '/') return -1;
  s++;
  if (parse_count(&s, end, &total) != 0 || s != end) return -1;
  if (n) *n = done;
  if (m) *m = total;
  return 0;
}

int aw_progress_parse(const char *line, long long *n, long long *m) {
  if (!line) return -1;
  return parse_progress_span(line, strlen(line), n, m);
}

static bool is_blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!is_space(s[i])) return false;
  return true;
}

int aw_progress_last(const char *data, size_t len, char *out, size_t out_size) {
  if (!out || out_size == 0) return -1;
  out[0] = '\0';
  if (!data) return -1;
  size_t end = len;
  for (;;) {
    size_t start = end;
    while (start > 0 && data[start - 1] != '\n') start--;
    if (!is_blank(data + start, end - start)) {
      long long n, m;
      if (parse_progress_span(data + start, end - start, &n, &m) != 0)
        return -1;
      int w = snprintf(out, out_size, "%lld/%lld", n, m);
      if (w < 0 || (size_t)w >= out_size) {
        out[0] = '\0';
        return -1;
      }
      return 0;
    }
    if (start == 0) return -1;
    end = start - 1;
  }
}
