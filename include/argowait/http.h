/* HTTP on the one loop: libcurl's multi interface driven by libuv socket
 * polls and a timer (the pattern of curl's docs/examples/multi-uv.c).
 * Shared by the Kubernetes client and, later, the artifact stores.
 *
 * Each request has its own deadline on the loop clock, which can be moved
 * earlier while it runs (SIGTERM clips everything to the time left). */
#ifndef ARGOWAIT_HTTP_H
#define ARGOWAIT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>

#define AW_HTTP_BODY_CAP (256u * 1024u)

typedef struct aw_http aw_http;
typedef struct aw_http_request aw_http_request;

typedef struct {
  bool transport_error;   /* no complete HTTP answer */
  bool tls_verify_failed; /* the peer could not be verified: permanent */
  bool timed_out;
  long status;            /* 0 when transport_error */
  const char *error;      /* one line, for logs; never holds a secret */
  const char *body;       /* capped at AW_HTTP_BODY_CAP */
  size_t body_len;
  const char *retry_after; /* header value, or NULL */
  uint64_t elapsed_ms;
} aw_http_response;

typedef void (*aw_http_done_cb)(const aw_http_response *res, void *arg);

typedef struct {
  const char *method;
  const char *url;
  const char *const *headers; /* NULL-terminated, may be NULL */
  const char *body;           /* may be NULL */
  size_t body_len;
  const char *ca_file;        /* NULL: the system's store */
  const char *user_agent;
  uint64_t deadline;          /* loop ms; 0: none */
  uint64_t connect_timeout_ms;
  /* Lets a caller set more options (streams, SigV4) on the easy handle. */
  void (*configure)(CURL *easy, void *arg);
  void *configure_arg;
  /* Optional: sees every response header line (CRLF removed, capped at
   * 1 KiB), before cb; for headers such as ETag. Not called after cancel. */
  void (*header)(const char *line, size_t len, void *arg);
  void *header_arg;
  /* By default "Expect:" is sent empty so curl never waits for a 100
   * Continue. Set this to let curl send "Expect: 100-continue" on large
   * uploads (an early 4xx then saves the body), and when a signature covers
   * the headers: curl 7.88's SigV4 would sign the empty Expect line, which
   * is never sent, and S3 answers SignatureDoesNotMatch. */
  bool allow_expect_100;
} aw_http_spec;

aw_http *aw_http_new(uv_loop_t *loop);
/* Cancels what runs (no callbacks), closes the handles; done(arg) is called
 * from the loop once everything is closed. */
void aw_http_close(aw_http *h, void (*done)(void *arg), void *arg);

/* Starts one attempt. cb is called exactly once unless the request is
 * cancelled first. Returns NULL when it cannot be started. */
aw_http_request *aw_http_start(aw_http *h, const aw_http_spec *spec,
                               aw_http_done_cb cb, void *arg);
void aw_http_cancel(aw_http_request *r);
/* Moves the request's deadline (only ever earlier). */
void aw_http_clip_deadline(aw_http_request *r, uint64_t deadline);

/* Requests started and how they ended, for logs and benchmarks. */
typedef struct {
  unsigned started;
  unsigned answered;
  unsigned failed_transport;
} aw_http_stats;
aw_http_stats aw_http_get_stats(const aw_http *h);

#endif
