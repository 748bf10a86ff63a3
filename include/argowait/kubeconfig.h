/* A kubeconfig file, reduced to what the wait executor needs: the current
 * context's server, namespace, CA, and credentials (the controller passes
 * --kubeconfig when it is configured for a remote cluster).
 *
 * Pure: YAML bytes in (parsed with libyaml), plain data out. Relative file
 * paths are resolved against the kubeconfig's own folder, as kubectl does. */
#ifndef ARGOWAIT_KUBECONFIG_H
#define ARGOWAIT_KUBECONFIG_H

#include <stddef.h>

#include "argowait/strbuf.h"

#define AW_KUBECONFIG_MAX_BYTES (1024u * 1024u)

typedef struct {
  char *data;
  size_t len;
} aw_blob;

typedef struct {
  char *server;            /* https://host:port[/prefix], no trailing '/' */
  char *namespace_;        /* the context's namespace, or NULL */
  char *ca_file;           /* certificate-authority */
  aw_blob ca_pem;          /* certificate-authority-data, decoded */
  char *token;             /* token */
  char *token_file;        /* tokenFile (re-read: it may rotate) */
  char *client_cert_file;  /* client-certificate */
  char *client_key_file;   /* client-key */
  aw_blob client_cert_pem; /* client-certificate-data, decoded */
  aw_blob client_key_pem;  /* client-key-data, decoded */
} aw_kubeconfig;

/* Parses the kubeconfig text. base_dir resolves relative paths. On failure
 * returns -1 and adds a reason starting with "kubeconfig: ". Unsupported
 * settings (exec and auth-provider plugins, basic auth, and
 * insecure-skip-tls-verify, since TLS is always verified) are errors that
 * name the setting. */
int aw_kubeconfig_parse(const char *yaml, size_t len, const char *base_dir, aw_kubeconfig *out,
                        aw_reasons *errs);
void aw_kubeconfig_free(aw_kubeconfig *kc);

/* Standard base64 (padding optional, whitespace ignored). Returns 0 and a
 * malloc'd, NUL-terminated result, or -1 for malformed input. */
int aw_base64_decode(const char *in, size_t len, aw_blob *out);

#endif
