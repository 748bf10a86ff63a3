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

typedef enum {
  AW_STRATEGY_TAR = 0, /* the default: tar + gzip */
  AW_STRATEGY_NONE,
  AW_STRATEGY_ZIP,
} aw_archive_strategy;

/* The artifact repository kinds a location can name (Argo's
 * ArtifactLocation members). */
extern const char *const aw_repo_types[];

typedef struct {
  char *name; /* NULL: not configured */
  char *key;
} aw_secret_ref;

typedef struct {
  char *name;
  char *path;
  bool optional;
  aw_archive_strategy strategy;
  int compression_level; /* archive.tar.compressionLevel, -1: gzip default */
  /* The artifact names its own location: the first repository kind present
   * (a static string from aw_repo_types, NULL when none), its s3.key, and
   * whether its s3 also sets bucket or endpoint (a whole own location). */
  const char *own_type;
  char *own_key;
  bool own_s3_full;
  /* An own artifactory location: its url and credentials (NULL names when
   * absent). */
  char *own_url;
  aw_secret_ref own_username, own_password;
} aw_output_artifact;

/* template.archiveLocation: where artifacts without their own key go. */
typedef struct {
  bool present;
  const char *type; /* the repository kind (aw_repo_types), NULL when none */
  char *bucket, *endpoint, *region, *key;
  char *role_arn;
  bool insecure, create_bucket, use_sdk_creds;
  aw_secret_ref access_key, secret_key, session_token, ca;
  /* artifactory: the url that upload names are appended to, and the
   * basic-auth credentials. */
  char *url;
  aw_secret_ref username, password;
} aw_archive_location;

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
  aw_archive_location location;
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
