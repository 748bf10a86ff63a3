/* Configuration: Argo's environment, argowait's own, and the fixed paths.
 *
 * Pure: it reads only the getenv function it is given, so tests and fuzzers
 * pass their own environment. Every bad value adds a reason that names the
 * variable; loading goes on so that as much as possible is known (the
 * identity of the task result above all, so a failure marker can be sent). */
#ifndef ARGOWAIT_CONFIG_H
#define ARGOWAIT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "argowait/strbuf.h"

/* Fixed paths, relative to ARGOWAIT_ROOT (each starts with '/'). */
#define AW_PATH_ARGO_DIR "/var/run/argo"
#define AW_PATH_CTR_DIR "/var/run/argo/ctr"
#define AW_PATH_OUTPUT_PARAMS "/var/run/argo/outputs/parameters"
#define AW_PATH_OUTPUT_ARTIFACTS "/var/run/argo/outputs/artifacts"
#define AW_PATH_TEMPLATE "/var/run/argo/template"
#define AW_PATH_PROGRESS "/var/run/argo/progress"
#define AW_PATH_MAINCTRFS "/mainctrfs"
#define AW_PATH_SECRETS "/argo/secret"
#define AW_PATH_OFFLOADED_TEMPLATE "/argo/config/ARGO_TEMPLATE"
#define AW_PATH_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define AW_PATH_TERMINATION_LOG "/dev/termination-log"
#define AW_PATH_SCRATCH "/tmp/argo"

#define AW_DEFAULT_GRACE_MS 30000
#define AW_RESERVE_MIN_MS 500
#define AW_RESERVE_MAX_MS 5000

typedef const char *(*aw_getenv_fn)(const char *name);

typedef struct {
  char *root; /* ARGOWAIT_ROOT, "" when unset */

  char *pod_name; /* required */
  char *pod_uid;
  char *workflow_name;
  char *workflow_uid;
  char *node_id;
  char *instance_id; /* NULL when unset or empty */
  char *namespace_env; /* POD_NAMESPACE, NULL when unset */

  bool include_script_output;
  bool has_deadline;
  int64_t deadline_unix_ms; /* valid when has_deadline */

  /* Progress is on only when both ticks are non-zero. */
  char *progress_file; /* absolute, already under root */
  int64_t progress_patch_tick_ms;
  int64_t progress_file_tick_ms;

  int64_t grace_ms;
  int64_t reserve_ms;

  /* Where the template comes from: the JSON itself (ARGO_TEMPLATE), or a
   * file (offloaded, or /var/run/argo/template) to be read. */
  char *template_json;
  char *template_path;

  char *api_host; /* KUBERNETES_SERVICE_HOST, IPv6 kept bare; NULL if unset */
  char *api_port; /* NULL if unset (required unless --kubeconfig is given) */
} aw_config;

/* Loads everything it can; appends one reason per bad or missing value.
 * Returns 0 when no reason was added. */
int aw_config_load(aw_config *cfg, aw_getenv_fn getenv_fn, aw_reasons *errs);
void aw_config_free(aw_config *cfg);

/* True when the task result can be named and labelled: node id and
 * workflow name are known. */
bool aw_config_has_identity(const aw_config *cfg);
bool aw_config_progress_enabled(const aw_config *cfg);

/* root + fixed (+ "/" + rest when rest is not NULL). malloc'd. */
char *aw_config_path(const aw_config *cfg, const char *fixed, const char *rest);

/* The reserve: ARGOWAIT_FINALIZE_RESERVE_MS as given (text may be NULL),
 * else 20% of the grace period within [500, 5000]; never more than half the
 * grace period. Returns -1 for text that is not a non-negative integer. */
int aw_config_reserve_ms(int64_t grace_ms, const char *text, int64_t *out);

/* Go's time.ParseDuration: "1m0s", "3s", "500ms", "1.5h", "-2us", "0".
 * Returns 0 and the value in nanoseconds, or -1. */
int aw_parse_go_duration(const char *s, int64_t *out_ns);

/* RFC 3339 ("2026-11-22T14:39:00Z", fractions, offsets). Returns 0 and
 * milliseconds since the epoch (may be negative), or -1.
 * "0001-01-01T00:00:00Z" parses to AW_RFC3339_ZERO_MS. */
#define AW_RFC3339_ZERO_MS (-62135596800000LL)
int aw_parse_rfc3339(const char *s, int64_t *out_unix_ms);

/* Go's strconv.ParseBool. Returns 0 or -1. */
int aw_parse_bool(const char *s, bool *out);

/* A decimal integer with optional surrounding ASCII whitespace, within
 * [min, max]. Returns 0 or -1. */
int aw_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

#endif
