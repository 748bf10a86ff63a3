/* The template JSON, reduced to what the wait executor must produce.
 *
 * Pure and fuzzable: bytes in, plain data out. The original outputs object
 * is kept (as cJSON) because the report echoes the template's parameters and
 * artifacts with values and keys filled in. */
#ifndef ARGOWAIT_TEMPLATE_H
#define ARGOWAIT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "argowait/strbuf.h"

#define AW_TEMPLATE_MAX_BYTES (4u * 1024u * 1024u)

typedef struct {
  char *name;
  char *path;        /* valueFrom.path, NULL when the parameter has none */
  char *default_value; /* valueFrom.default, NULL when absent */
} aw_output_param;

typedef struct {
  char *name;
  char *path;
  bool optional;
} aw_output_artifact;

/* A path of the main container that is mirrored under /mainctrfs: a volume
 * mount, or an input artifact's path (mounted by the legacy layout). */
typedef struct {
  char *path;           /* cleaned absolute path */
  bool from_input_artifact;
  bool optional;        /* input artifact marked optional: may be absent */
} aw_mirrored_path;

typedef struct {
  cJSON *outputs;       /* deep copy of template.outputs, or an empty object */

  char **main_containers; /* containerSet names, else {"main"} */
  size_t main_container_count;

  aw_output_param *params;
  size_t param_count;
  aw_output_artifact *artifacts;
  size_t artifact_count;

  aw_mirrored_path *mirrored; /* sorted longest path first */
  size_t mirrored_count;

  /* The template has a container whose stdout can be the result: a
   * container or script template, or a containerSet with a "main". */
  bool has_result_container;
  bool archive_logs;    /* archiveLocation.archiveLogs */
} aw_template;

/* Parses the template. On failure returns -1 and adds a reason that starts
 * with "template: " and says what is wrong. */
int aw_template_parse(const char *json, size_t len, aw_template *out,
                      aw_reasons *errs);
void aw_template_free(aw_template *t);

/* Lexically cleans an absolute path like Go's path.Clean ("/a/./b/../c" ->
 * "/a/c", ".." at the root stays at the root). Returns malloc'd, or NULL
 * when path does not start with '/'. */
char *aw_path_clean(const char *path);

/* Finds the longest mirrored path equal to or containing path (cleaned).
 * Returns its index, or -1 when the path lies in the base image. */
int aw_template_find_mirror(const aw_template *t, const char *clean_path);

#endif
