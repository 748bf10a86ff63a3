/* The Kubernetes API client: in-cluster credentials and one logical request
 * with its retries.
 *
 * The bearer token is re-read from its file (it rotates): at start, after
 * a 401 (then the request is retried once at once), and when older than a
 * minute. Transient failures are retried with capped exponential backoff and
 * jitter for as long as it takes, until a budget is active; then every
 * attempt and every sleep is clipped to the time left. */
#ifndef ARGOWAIT_KUBE_H
#define ARGOWAIT_KUBE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "argowait/backoff.h"
#include "argowait/http.h"

typedef struct aw_kube aw_kube;
typedef struct aw_kube_op aw_kube_op;

typedef struct {
  const char *base_url;   /* https://host:port */
  const char *namespace_;
  const char *user_agent;
  const aw_budget *budget; /* the executor's; read at every step */
  /* The server's CA: a file, or PEM bytes (kubeconfig data). */
  const char *ca_file;
  const char *ca_pem;
  size_t ca_pem_len;
  /* Credentials: a token file (re-read: it rotates), a fixed token, and/or
   * a client certificate and key (files, or PEM bytes). */
  const char *token_file;
  const char *token;
  const char *client_cert_file;
  const char *client_key_file;
  const char *client_cert_pem;
  size_t client_cert_pem_len;
  const char *client_key_pem;
  size_t client_key_pem_len;
} aw_kube_config;

typedef struct {
  aw_api_class cls;   /* OK, NOT_FOUND, EXISTS, PERMANENT; TRANSIENT when
                         the budget ran out, or when retry was off */
  long status;        /* of the last answer, 0 for none */
  const char *message; /* why it failed; NULL on OK */
  unsigned attempts;
} aw_kube_result;

typedef void (*aw_kube_cb)(const aw_kube_result *res, void *arg);

/* Reads the token file synchronously, if there is one (start-up, before the
 * loop runs).
 * Returns NULL and sets *err (malloc'd) on failure. */
aw_kube *aw_kube_new(uv_loop_t *loop, aw_http *http, const aw_kube_config *cfg,
                     char **err);
void aw_kube_free(aw_kube *k);

/* One logical request to /apis/argoproj.io/v1alpha1/namespaces/<ns>/
 * workflowtaskresults<suffix>. retry false: one attempt (progress). */
aw_kube_op *aw_kube_request(aw_kube *k, const char *method, const char *suffix,
                            const char *content_type, const char *body,
                            bool retry, aw_kube_cb cb, void *arg);
/* Stops an operation; its callback is not called. */
void aw_kube_cancel(aw_kube_op *op);
/* The budget changed (SIGTERM, or the reserve began): clip running
 * attempts, and, when now_too, retry sleeping operations at once. */
void aw_kube_budget_changed(aw_kube *k, bool now_too);

typedef struct {
  unsigned posts;
  unsigned patches;
  unsigned attempts;
  unsigned token_reads;
} aw_kube_stats;
aw_kube_stats aw_kube_get_stats(const aw_kube *k);

#endif
