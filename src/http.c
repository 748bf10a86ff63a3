/* libcurl's multi interface on the libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to
 * call it back (CURLMOPT_TIMERFUNCTION); libuv polls the sockets and runs the
 * timer; both end in curl_multi_socket_action. Finished transfers are picked
 * up from curl_multi_info_read. Per-request deadlines live in one more timer
 * armed for the earliest of them, so a deadline can be moved while the
 * transfer runs (curl's own CURLOPT_TIMEOUT_MS cannot be changed then). */
#include "argowait/http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "argowait/log.h"
#include "argowait/strbuf.h"

struct aw_http_request {
  aw_http *http;
  CURL *easy;
  struct curl_slist *headers;
  aw_strbuf body;
  char *retry_after;
  char errbuf[CURL_ERROR_SIZE];
  uint64_t started;
  uint64_t deadline; /* 0: none */
  aw_http_done_cb cb;
  void *arg;
  void (*header)(const char *line, size_t len, void *arg);
  void *header_arg;
  aw_http_request *prev, *next;
};

struct aw_http {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t curl_timer;
  uv_timer_t deadline_timer;
  aw_http_request *requests;
  aw_http_stats stats;
  unsigned open_handles; /* uv handles not yet closed */
  bool closing;
  void (*close_done)(void *arg);
  void *close_arg;
};

/* One per socket curl asks us to watch. */
typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
  aw_http *http;
} socket_watch;

static void check_finished(aw_http *h);
static void rearm_deadline_timer(aw_http *h);

static void maybe_close_done(aw_http *h) {
  if (h->closing && h->open_handles == 0) {
    void (*done)(void *) = h->close_done;
    void *arg = h->close_arg;
    free(h);
    if (done) done(arg);
  }
}

static void on_handle_closed(uv_handle_t *handle) {
  aw_http *h = handle->data;
  h->open_handles--;
  maybe_close_done(h);
}

static void on_socket_watch_closed(uv_handle_t *handle) {
  socket_watch *w = handle->data;
  aw_http *h = w->http;
  free(w);
  h->open_handles--;
  maybe_close_done(h);
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  socket_watch *w = poll->data;
  aw_http *h = w->http;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(h->multi, w->fd, flags, &running);
  check_finished(h);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int action,
                          void *userp, void *socketp) {
  (void)easy;
  aw_http *h = userp;
  socket_watch *w = socketp;
  if (action == CURL_POLL_REMOVE) {
    if (w) {
      uv_poll_stop(&w->poll);
      curl_multi_assign(h->multi, fd, NULL);
      uv_close((uv_handle_t *)&w->poll, on_socket_watch_closed);
    }
    return 0;
  }
  if (!w) {
    w = calloc(1, sizeof(*w));
    if (!w) return -1;
    w->fd = fd;
    w->http = h;
    if (uv_poll_init_socket(h->loop, &w->poll, fd) != 0) {
      free(w);
      return -1;
    }
    w->poll.data = w;
    h->open_handles++;
    curl_multi_assign(h->multi, fd, w);
  }
  int events = 0;
  if (action == CURL_POLL_IN || action == CURL_POLL_INOUT) events |= UV_READABLE;
  if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT) events |= UV_WRITABLE;
  uv_poll_start(&w->poll, events, on_poll);
  return 0;
}

static void on_curl_timer(uv_timer_t *timer) {
  aw_http *h = timer->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_finished(h);
}

static int on_curl_timer_change(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  aw_http *h = userp;
  if (timeout_ms < 0) {
    uv_timer_stop(&h->curl_timer);
  } else {
    /* 0 means "call me now"; a 0 ms timer does that from the loop instead
     * of re-entering curl from its own callback. */
    uv_timer_start(&h->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
  }
  return 0;
}

aw_http *aw_http_new(uv_loop_t *loop) {
  aw_http *h = calloc(1, sizeof(*h));
  if (!h) return NULL;
  h->loop = loop;
  h->multi = curl_multi_init();
  if (!h->multi) {
    free(h);
    return NULL;
  }
  uv_timer_init(loop, &h->curl_timer);
  uv_timer_init(loop, &h->deadline_timer);
  h->curl_timer.data = h;
  h->deadline_timer.data = h;
  h->open_handles = 2;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer_change);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  return h;
}

static void unlink_request(aw_http_request *r) {
  aw_http *h = r->http;
  if (r->prev) r->prev->next = r->next;
  else h->requests = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

/* Removing the easy handle mid-transfer makes curl close that connection, so
 * a stalled or half-read connection is never handed to the next attempt. */
static void free_request(aw_http_request *r) {
  unlink_request(r);
  curl_multi_remove_handle(r->http->multi, r->easy);
  curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  aw_strbuf_free(&r->body);
  free(r->retry_after);
  free(r);
}

void aw_http_close(aw_http *h, void (*done)(void *arg), void *arg) {
  while (h->requests) free_request(h->requests);
  h->closing = true;
  h->close_done = done;
  h->close_arg = arg;
  /* Closing the multi handle closes its connections; curl reports every
   * socket as removed, which closes our poll handles. */
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  uv_close((uv_handle_t *)&h->curl_timer, on_handle_closed);
  uv_close((uv_handle_t *)&h->deadline_timer, on_handle_closed);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
  aw_http_request *r = userp;
  size_t n = size * nmemb;
  size_t room = r->body.len < AW_HTTP_BODY_CAP ? AW_HTTP_BODY_CAP - r->body.len : 0;
  /* Bytes past the cap are read and dropped: the status still counts, and
   * a huge answer cannot grow memory. */
  if (room) aw_strbuf_append(&r->body, data, n < room ? n : room);
  return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp) {
  aw_http_request *r = userp;
  size_t n = size * nmemb;
  static const char name[] = "retry-after:";
  if (n > sizeof(name) - 1 && n < 256 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
    const char *v = data + sizeof(name) - 1;
    size_t vlen = n - (sizeof(name) - 1);
    while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
    free(r->retry_after);
    r->retry_after = strndup(v, vlen);
  }
  if (r->header && n <= 1024) {
    size_t len = n;
    while (len && (data[len - 1] == '\r' || data[len - 1] == '\n')) len--;
    r->header(data, len, r->header_arg);
  }
  return n;
}

static bool is_tls_verify_failure(CURLcode code) {
  return code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE ||
         code == CURLE_SSL_PINNEDPUBKEYNOTMATCH || code == CURLE_SSL_CERTPROBLEM;
}

static void finish_request(aw_http_request *r, CURLcode code, bool timed_out) {
  aw_http *h = r->http;
  aw_http_response res;
  memset(&res, 0, sizeof(res));
  res.elapsed_ms = uv_now(h->loop) - r->started;
  res.body = r->body.data ? r->body.data : "";
  res.body_len = r->body.len;
  res.retry_after = r->retry_after;
  if (timed_out) {
    res.transport_error = true;
    res.timed_out = true;
    res.error = "no answer before the request's deadline";
  } else if (code != CURLE_OK) {
    res.transport_error = true;
    res.timed_out = code == CURLE_OPERATION_TIMEDOUT;
    res.tls_verify_failed = is_tls_verify_failure(code);
    res.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
  } else {
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
  }
  if (res.transport_error) h->stats.failed_transport++;
  else h->stats.answered++;
  aw_http_done_cb cb = r->cb;
  void *arg = r->arg;
  /* The callback may start or cancel requests; this one is already out of
   * the list when it runs, and freed right after. */
  unlink_request(r);
  curl_multi_remove_handle(h->multi, r->easy);
  cb(&res, arg);
  curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  aw_strbuf_free(&r->body);
  free(r->retry_after);
  free(r);
}

static void check_finished(aw_http *h) {
  CURLMsg *msg;
  int left;
  while (h->multi && (msg = curl_multi_info_read(h->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    aw_http_request *r = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r) finish_request(r, msg->data.result, false);
  }
  if (h->multi) rearm_deadline_timer(h);
}

static void on_deadline(uv_timer_t *timer) {
  aw_http *h = timer->data;
  uint64_t now = uv_now(h->loop);
  bool again = true;
  while (again) {
    again = false;
    for (aw_http_request *r = h->requests; r; r = r->next) {
      if (r->deadline && r->deadline <= now) {
        finish_request(r, CURLE_OPERATION_TIMEDOUT, true);
        again = true; /* the list may have changed under the callback */
        break;
      }
    }
  }
  if (h->multi) rearm_deadline_timer(h);
}

static void rearm_deadline_timer(aw_http *h) {
  uint64_t earliest = 0;
  for (aw_http_request *r = h->requests; r; r = r->next)
    if (r->deadline && (!earliest || r->deadline < earliest)) earliest = r->deadline;
  if (!earliest) {
    uv_timer_stop(&h->deadline_timer);
    return;
  }
  uint64_t now = uv_now(h->loop);
  uv_timer_start(&h->deadline_timer, on_deadline, earliest > now ? earliest - now : 0, 0);
}

static void configure_easy(aw_http_request *r, const aw_http_spec *spec) {
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, spec->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  /* Never follow a redirect: the bearer token goes to the API server only. */
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (spec->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, spec->ca_file);
  if (spec->user_agent) curl_easy_setopt(e, CURLOPT_USERAGENT, spec->user_agent);
  if (spec->connect_timeout_ms)
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)spec->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, spec->method);
  if (strcmp(spec->method, "GET") == 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
  if (spec->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)spec->body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, spec->body);
  }
  for (const char *const *hdr = spec->headers; hdr && *hdr; hdr++)
    r->headers = curl_slist_append(r->headers, *hdr);
  /* curl would add "Expect: 100-continue" for larger bodies: one more round
   * trip for nothing on an API server. */
  if (!spec->allow_expect_100) r->headers = curl_slist_append(r->headers, "Expect:");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  if (spec->configure) spec->configure(e, spec->configure_arg);
}

aw_http_request *aw_http_start(aw_http *h, const aw_http_spec *spec,
                               aw_http_done_cb cb, void *arg) {
  if (h->closing) return NULL;
  aw_http_request *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->easy = curl_easy_init();
  if (!r->easy) {
    free(r);
    return NULL;
  }
  r->http = h;
  r->cb = cb;
  r->arg = arg;
  r->started = uv_now(h->loop);
  r->deadline = spec->deadline;
  r->header = spec->header;
  r->header_arg = spec->header_arg;
  aw_strbuf_init(&r->body);
  configure_easy(r, spec);
  r->next = h->requests;
  if (h->requests) h->requests->prev = r;
  h->requests = r;
  if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
    free_request(r);
    return NULL;
  }
  h->stats.started++;
  rearm_deadline_timer(h);
  return r;
}

void aw_http_cancel(aw_http_request *r) {
  aw_http *h = r->http;
  free_request(r);
  rearm_deadline_timer(h);
}

void aw_http_clip_deadline(aw_http_request *r, uint64_t deadline) {
  if (r->deadline && r->deadline <= deadline) return;
  r->deadline = deadline;
  rearm_deadline_timer(r->http);
}

aw_http_stats aw_http_get_stats(const aw_http *h) { return h->stats; }
