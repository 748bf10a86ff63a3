/* The WorkflowTaskResult request bodies (pure). */
#ifndef ARGOWAIT_TASKRESULT_H
#define ARGOWAIT_TASKRESULT_H

#include <cjson/cJSON.h>

#define AW_LABEL_WORKFLOW "workflows.argoproj.io/workflow"
#define AW_LABEL_COMPLETED "workflows.argoproj.io/report-outputs-completed"
#define AW_LABEL_INSTANCE "workflows.argoproj.io/controller-instanceid"
#define AW_MESSAGE_MAX_BYTES 1024

typedef struct {
  const char *namespace_;
  const char *name;          /* ARGO_NODE_ID */
  const char *workflow_name;
  const char *workflow_uid;  /* NULL: no ownerReference */
  const char *instance_id;   /* NULL: no instance label */
} aw_tr_identity;

/* The outcome of the wait, as reported. */
typedef struct {
  const cJSON *outputs;   /* may be NULL: "outputs":{} */
  const char *failure;    /* NULL on success; else the joined reasons */
} aw_tr_report;

/* POST body of the placeholder: label "false". malloc'd JSON. */
char *aw_tr_placeholder_body(const aw_tr_identity *id);
/* POST body of a whole result (a 404 on the final patch re-creates it, and
 * a result whose placeholder never landed is created whole). */
char *aw_tr_create_body(const aw_tr_identity *id, const aw_tr_report *rep);
/* Merge-patch body of the final report: outputs, label "true", and, for a
 * failure, phase "Error" and the message cut at 1024 bytes. */
char *aw_tr_final_patch_body(const aw_tr_identity *id, const aw_tr_report *rep);
/* Merge-patch body {"progress":"N/M"}. */
char *aw_tr_progress_body(const char *progress);

/* Parses a progress line "N/M" (N, M non-negative integers, N <= M not
 * required, surrounding whitespace ignored). Returns 0 or -1. */
int aw_progress_parse(const char *line, long long *n, long long *m);
/* Finds the last non-empty line of a progress file's contents and parses
 * it. Returns 0 and writes "N/M" (normalized) to out, or -1. */
int aw_progress_last(const char *data, size_t len, char *out, size_t out_size);

#endif
