/* Saving output artifacts and archived logs to the artifact repository.
 *
 * Runs on the loop: file work (credentials, stat, tar/zip/untar, listing a
 * folder) goes to the thread pool one step at a time, uploads go through the
 * item's store (store.h: S3 or Artifactory) one artifact at a time, in
 * template order, logs last. A folder saved without an archive is uploaded
 * one file at a time (S3 only; at most AW_DIRLIST_MAX_FILES files).
 *
 * Repositories: the template's archiveLocation (S3, with static keys or
 * temporary credentials from STS for the pod's web identity, optionally
 * chained to roleARN; or Artifactory), and an artifact's own Artifactory
 * location. Anything else is a reason per artifact. Reasons name the
 * artifact, where it goes (s3://bucket/key or the URL) and the store's (or
 * STS's) answer; never a credential. */
#ifndef ARGOWAIT_ARTIFACTS_H
#define ARGOWAIT_ARTIFACTS_H

#include <stdbool.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "argowait/backoff.h"
#include "argowait/config.h"
#include "argowait/http.h"
#include "argowait/strbuf.h"
#include "argowait/template.h"

typedef struct aw_artifacts aw_artifacts;

/* Called exactly once, from the loop, never from inside an aw_artifacts_*
 * call. saved: a cJSON array of the artifacts really saved (each the
 * template's artifact object plus its key-only location), owned by the
 * callee. reasons: what was not saved, in order; the callee may move the
 * items out (aw_reasons_move), the rest is freed with the module. */
typedef void (*aw_artifacts_done_cb)(cJSON *saved, aw_reasons *reasons, void *arg);

/* True when the template declares output artifacts or archives logs. */
bool aw_artifacts_needed(const aw_template *tmpl);

/* cfg, tmpl and budget must outlive the module. Returns NULL only when out
 * of memory (then no callback comes). */
aw_artifacts *aw_artifacts_start(uv_loop_t *loop, aw_http *http, const aw_config *cfg,
                                 const aw_template *tmpl, const aw_budget *budget,
                                 aw_artifacts_done_cb done_cb, void *arg);

/* The reserve began: cancel what has not finished (a started multipart
 * upload is aborted, given a short while to land) and report what was
 * saved. */
void aw_artifacts_reserve(aw_artifacts *a);

/* SIGTERM started the budget: clip requests in flight. */
void aw_artifacts_budget_changed(aw_artifacts *a);

/* File work is running on the thread pool (the loop cannot drain until it
 * returns). */
bool aw_artifacts_busy(const aw_artifacts *a);

/* Stops everything (no callback after this); memory still held by pool
 * work goes when that work returns. Must be called before the aw_http it
 * was given is closed. */
void aw_artifacts_free(aw_artifacts *a);

#endif
