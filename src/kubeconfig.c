/* kubeconfig parsing with libyaml's document API.
 *
 * Only the current context is looked at: its cluster (server, CA) and its
 * user (token, token file, client certificate and key). Everything else in
 * the file is ignored, except the settings argowait cannot honour, which are
 * errors rather than silently different behaviour. */
#include "argowait/kubeconfig.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

typedef struct {
  yaml_document_t *doc;
  aw_reasons *errs;
  const char *base_dir;
  bool failed;
} parse_ctx;

static void fail(parse_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(parse_ctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  aw_reasons_addv(c->errs, fmt, ap);
  va_end(ap);
  c->failed = true;
}

static yaml_node_t *node_at(parse_ctx *c, int id) { return yaml_document_get_node(c->doc, id); }

static bool scalar_equals(yaml_node_t *n, const char *s) {
  return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
         memcmp(n->data.scalar.value, s, n->data.scalar.length) == 0;
}

/* The value under key in a mapping node, or NULL. */
static yaml_node_t *lookup(parse_ctx *c, yaml_node_t *map, const char *key) {
  if (!map || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
    if (scalar_equals(node_at(c, p->key), key)) return node_at(c, p->value);
  return NULL;
}

/* A scalar's text, copied; NULL when absent or not a scalar (an error then,
 * when present). */
static char *scalar_copy(parse_ctx *c, yaml_node_t *map, const char *key) {
  yaml_node_t *n = lookup(c, map, key);
  if (!n) return NULL;
  if (n->type != YAML_SCALAR_NODE) {
    fail(c, "kubeconfig: %s must be a string", key);
    return NULL;
  }
  if (n->data.scalar.length == 0) return NULL;
  return strndup((const char *)n->data.scalar.value, n->data.scalar.length);
}

/* Finds the entry named name in a list like clusters: [{name, cluster}]. */
static yaml_node_t *named_entry(parse_ctx *c, yaml_node_t *root, const char *list,
                                const char *field, const char *name) {
  yaml_node_t *seq = lookup(c, root, list);
  if (!seq || seq->type != YAML_SEQUENCE_NODE) return NULL;
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *entry = node_at(c, *it);
    if (scalar_equals(lookup(c, entry, "name"), name)) return lookup(c, entry, field);
  }
  return NULL;
}

static char *resolve_path(parse_ctx *c, char *path) {
  if (!path || path[0] == '/' || !c->base_dir) return path;
  char *full = NULL;
  if (asprintf(&full, "%s/%s", c->base_dir, path) < 0) full = NULL;
  free(path);
  return full;
}

static void decode_data(parse_ctx *c, yaml_node_t *map, const char *key, aw_blob *out) {
  char *text = scalar_copy(c, map, key);
  if (!text) return;
  if (aw_base64_decode(text, strlen(text), out) != 0) fail(c, "kubeconfig: %s is not valid base64", key);
  free(text);
}

static void read_cluster(parse_ctx *c, yaml_node_t *cluster, aw_kubeconfig *out) {
  out->server = scalar_copy(c, cluster, "server");
  if (!out->server) {
    fail(c, "kubeconfig: the current context's cluster has no server");
    return;
  }
  size_t n = strlen(out->server);
  while (n && out->server[n - 1] == '/') out->server[--n] = '\0';
  if (strncmp(out->server, "https://", 8) != 0)
    fail(c, "kubeconfig: server must be an https:// URL (TLS is always verified)");
  if (scalar_equals(lookup(c, cluster, "insecure-skip-tls-verify"), "true"))
    fail(c, "kubeconfig: insecure-skip-tls-verify is not supported: TLS is always verified");
  out->ca_file = resolve_path(c, scalar_copy(c, cluster, "certificate-authority"));
  decode_data(c, cluster, "certificate-authority-data", &out->ca_pem);
}

static void read_user(parse_ctx *c, yaml_node_t *user, aw_kubeconfig *out) {
  static const char *const unsupported[] = {"exec", "auth-provider", "username", "password",
                                            "as", "impersonate"};
  for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++)
    if (lookup(c, user, unsupported[i]))
      fail(c, "kubeconfig: the user setting \"%s\" is not supported", unsupported[i]);
  out->token = scalar_copy(c, user, "token");
  out->token_file = resolve_path(c, scalar_copy(c, user, "tokenFile"));
  out->client_cert_file = resolve_path(c, scalar_copy(c, user, "client-certificate"));
  out->client_key_file = resolve_path(c, scalar_copy(c, user, "client-key"));
  decode_data(c, user, "client-certificate-data", &out->client_cert_pem);
  decode_data(c, user, "client-key-data", &out->client_key_pem);
  bool has_cert = out->client_cert_file || out->client_cert_pem.data;
  bool has_key = out->client_key_file || out->client_key_pem.data;
  if (has_cert != has_key)
    fail(c, "kubeconfig: a client certificate needs both a certificate and a key");
  if (!out->token && !out->token_file && !has_cert)
    fail(c, "kubeconfig: the current user has no token, tokenFile or client certificate");
}

static void read_document(parse_ctx *c, aw_kubeconfig *out) {
  yaml_node_t *root = yaml_document_get_root_node(c->doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    fail(c, "kubeconfig: not a YAML mapping");
    return;
  }
  char *current = scalar_copy(c, root, "current-context");
  if (!current) {
    fail(c, "kubeconfig: current-context is not set");
    return;
  }
  yaml_node_t *context = named_entry(c, root, "contexts", "context", current);
  if (!context) {
    fail(c, "kubeconfig: no context named \"%.64s\"", current);
    free(current);
    return;
  }
  free(current);
  out->namespace_ = scalar_copy(c, context, "namespace");
  char *cluster_name = scalar_copy(c, context, "cluster");
  char *user_name = scalar_copy(c, context, "user");
  yaml_node_t *cluster = cluster_name ? named_entry(c, root, "clusters", "cluster", cluster_name) : NULL;
  yaml_node_t *user = user_name ? named_entry(c, root, "users", "user", user_name) : NULL;
  if (!cluster) fail(c, "kubeconfig: the current context's cluster \"%.64s\" is not defined",
                     cluster_name ? cluster_name : "");
  else read_cluster(c, cluster, out);
  if (!user) fail(c, "kubeconfig: the current context's user \"%.64s\" is not defined",
                  user_name ? user_name : "");
  else read_user(c, user, out);
  free(cluster_name);
  free(user_name);
}

int aw_kubeconfig_parse(const char *yaml, size_t len, const char *base_dir, aw_kubeconfig *out,
                        aw_reasons *errs) {
  memset(out, 0, sizeof(*out));
  if (len > AW_KUBECONFIG_MAX_BYTES) {
    aw_reasons_add(errs, "kubeconfig: larger than %u bytes", AW_KUBECONFIG_MAX_BYTES);
    return -1;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    aw_reasons_add(errs, "kubeconfig: cannot initialise the YAML parser");
    return -1;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    aw_reasons_add(errs, "kubeconfig: not valid YAML (%s at line %zu)",
                   parser.problem ? parser.problem : "error", parser.problem_mark.line + 1);
    yaml_parser_delete(&parser);
    return -1;
  }
  parse_ctx c = {.doc = &doc, .errs = errs, .base_dir = base_dir};
  read_document(&c, out);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (c.failed) {
    aw_kubeconfig_free(out);
    return -1;
  }
  return 0;
}

static void free_blob(aw_blob *b) {
  if (b->data) memset(b->data, 0, b->len); /* keys: do not leave them in freed heap */
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

void aw_kubeconfig_free(aw_kubeconfig *kc) {
  free(kc->server);
  free(kc->namespace_);
  free(kc->ca_file);
  free_blob(&kc->ca_pem);
  if (kc->token) memset(kc->token, 0, strlen(kc->token));
  free(kc->token);
  free(kc->token_file);
  free(kc->client_cert_file);
  free(kc->client_key_file);
  free_blob(&kc->client_cert_pem);
  free_blob(&kc->client_key_pem);
  memset(kc, 0, sizeof(*kc));
}

static int base64_value(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

int aw_base64_decode(const char *in, size_t len, aw_blob *out) {
  out->data = malloc(len / 4 * 3 + 4);
  out->len = 0;
  if (!out->data) return -1;
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)in[i];
    if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
    if (ch == '=') {
      padding++;
      continue;
    }
    int v = base64_value(ch);
    if (v < 0 || padding) goto bad; /* nothing may follow padding */
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->data[out->len++] = (char)((acc >> bits) & 0xFF);
    }
  }
  /* Leftover bits must be zero padding of the last group; a single
   * dangling character cannot encode a byte. */
  if (bits >= 6 || padding > 2 || (acc & ((1u << bits) - 1)) != 0) goto bad;
  out->data[out->len] = '\0';
  return 0;
bad:
  free(out->data);
  out->data = NULL;
  out->len = 0;
  return -1;
}
