/* Retry arithmetic and the budget after SIGTERM (pure).
 *
 * Times are milliseconds on the loop's monotonic clock. */
#ifndef ARGOWAIT_BACKOFF_H
#define ARGOWAIT_BACKOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t initial_ms;
  double factor;
  uint64_t cap_ms;
  double jitter; /* 0..1: the delay is drawn from [d*(1-jitter), d] */
} aw_backoff_policy;

/* The random source of the jitter (xorshift64*). Jitter only needs to differ
 * between the pods that retry together, so callers seed it with the clock
 * and the pid; it is no secret and not for anything else. */
typedef struct {
  uint64_t state;
} aw_jitter;

void aw_jitter_seed(aw_jitter *j, uint64_t seed); /* any seed; 0 is mapped away */
double aw_jitter_next(aw_jitter *j);              /* uniform in [0, 1) */

/* The delay before retry number attempt (0 = after the first failure).
 * rand01 is uniform in [0, 1). Never more than cap_ms, never 0. */
uint64_t aw_backoff_delay(const aw_backoff_policy *p, unsigned attempt,
                          double rand01);

/* The wall clock in ms since the epoch: for Retry-After dates and the
 * deadline, which are wall-clock instants (everything else uses the loop's
 * monotonic clock). */
int64_t aw_unix_now_ms(void);

/* A Retry-After header value: delta seconds, or an HTTP date relative to
 * now_unix_ms. Returns 0 and the delay in ms (>= 0), or -1. */
int aw_parse_retry_after(const char *value, int64_t now_unix_ms,
                         uint64_t *out_ms);

/* The one deadline. Before SIGTERM nothing is bounded (active false). */
typedef struct {
  bool active;
  uint64_t reserve_at;  /* stop waiting and uploading; report now */
  uint64_t hard_stop;   /* the last instant at which work may still run */
} aw_budget;

/* Starts the budget at now for a grace period and reserve; hard_stop keeps
 * margin_ms before the grace period ends. */
void aw_budget_start(aw_budget *b, uint64_t now, uint64_t grace_ms,
                     uint64_t reserve_ms, uint64_t margin_ms);
/* want clipped to the time left before hard_stop (0 when none is left).
 * Returns want unchanged when the budget is not active. */
uint64_t aw_budget_clip(const aw_budget *b, uint64_t now, uint64_t want);
bool aw_budget_spent(const aw_budget *b, uint64_t now);

/* The backoffs every client (API, S3, STS, Artifactory) uses: before SIGTERM
 * 200 ms doubling to 30 s (it may retry for as long as the pod lives); after
 * it 50 ms doubling to 1 s, within the budget. Both jittered by half. */
extern const aw_backoff_policy aw_policy_calm;
extern const aw_backoff_policy aw_policy_hurried;

/* The one retry rule every client follows. */
typedef struct {
  const aw_backoff_policy *calm;    /* before SIGTERM: no limit on retries */
  const aw_backoff_policy *hurried; /* after SIGTERM: short, within the budget */
  uint64_t min_attempt_ms;          /* less than this left for an attempt: give up */
} aw_retry_rules;

#define AW_RETRY_AFTER_CAP_MS 60000u

/* The wait before the next attempt after `failures` transient failures (1 =
 * the first). A Retry-After header (may be NULL) is a floor, not an
 * appointment: clients throttled together would all come back together, so
 * up to half as much again is added at random, and repeated throttling grows
 * like any other backoff. Once the budget is active, the wait is clipped to
 * leave min_attempt_ms for the attempt, and false (give up) is returned when
 * less than two of those are left. */
bool aw_retry_delay(const aw_retry_rules *r, const aw_budget *b, uint64_t now,
                    unsigned failures, const char *retry_after,
                    int64_t now_unix_ms, aw_jitter *j, uint64_t *delay_ms);

/* How an API answer is treated by the retry loop. */
typedef enum {
  AW_API_OK = 0,
  AW_API_TRANSIENT,     /* retry with backoff */
  AW_API_UNAUTHORIZED,  /* re-read the token, retry once */
  AW_API_NOT_FOUND,     /* the object is gone: create it */
  AW_API_EXISTS,        /* 409 AlreadyExists on create: patch it */
  AW_API_PERMANENT,     /* give up */
} aw_api_class;

/* transport_error: a curl-level failure (no HTTP answer); tls_verify_failed
 * marks the permanent kind of transport failure. status is the HTTP status
 * otherwise; body is the (possibly malformed) Status JSON, may be NULL. */
aw_api_class aw_api_classify(bool transport_error, bool tls_verify_failed,
                             long status, const char *body, size_t body_len);

/* Pulls "message" (and "reason") out of a Kubernetes Status body for a log
 * line or a failure reason. Returns a malloc'd one-line string, never NULL
 * (falls back to a cut, sanitized body prefix). */
char *aw_api_status_message(const char *body, size_t body_len);

#endif
