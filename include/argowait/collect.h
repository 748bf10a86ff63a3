/* Collecting outputs: the script result and output parameters.
 *
 * Blocking file work, run on the libuv thread pool: it only reads its
 * immutable input and fills its output, touching no loop state. */
#ifndef ARGOWAIT_COLLECT_H
#define ARGOWAIT_COLLECT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "argowait/config.h"
#include "argowait/strbuf.h"
#include "argowait/template.h"

#define AW_RESULT_MAX_BYTES 262144u
#define AW_PARAM_MAX_BYTES (1024u * 1024u)

typedef struct {
  const aw_config *cfg;
  const aw_template *tmpl;
  bool include_result; /* ARGO_INCLUDE_SCRIPT_OUTPUT and a result container */
} aw_collect_input;

typedef struct {
  cJSON *outputs;      /* the template's outputs with values filled in */
  aw_reasons reasons;  /* what could not be collected, in order */
  unsigned params_reported;
  unsigned params_defaulted;
} aw_collect_output;

void aw_collect_run(const aw_collect_input *in, aw_collect_output *out);
void aw_collect_output_free(aw_collect_output *out);

/* Where a path on a mirrored volume or input artifact is read from: a base
 * folder under /mainctrfs that is a real mount (the outermost mirror holding
 * clean; a nested one is a folder main could swap for a symlink), and the
 * rest, to be resolved beneath it. Both malloc'd. Returns 0, -EINVAL when no
 * mirror holds clean, or -ENOMEM. */
int aw_mirror_source(const aw_config *cfg, const aw_template *tmpl, const char *clean,
                     char **base, char **rel);

/* Strips exactly one trailing '\n' (as Argo does). Returns the new length. */
size_t aw_strip_one_newline(const char *data, size_t len);

#endif
