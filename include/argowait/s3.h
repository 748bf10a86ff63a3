/* An S3 client on the one loop (aw_http), for artifact uploads.
 *
 * Requests are signed with libcurl's SigV4 (CURLOPT_AWS_SIGV4) and carry
 * x-amz-content-sha256: UNSIGNED-PAYLOAD. A file is streamed: pool threads
 * read it in 256 KiB chunks into a ring of four buffers per request, curl
 * takes them through its read callback (pausing when none is ready), so an
 * upload holds at most threads x 1 MiB of file data whatever the file size.
 *
 * Every operation is one logical operation with its own retries: transient
 * failures (connection errors, timeouts, 5xx, 429, SlowDown, InternalError,
 * RequestTimeout) are retried with capped, jittered backoff for as long as it
 * takes until the budget is active; then each attempt and sleep is clipped to
 * the time left and the operation gives up when too little is left. Other
 * 4xx answers and TLS verification failures are permanent. Messages name
 * s3://bucket/key and the S3 error code; they never hold a credential. */
#ifndef ARGOWAIT_S3_H
#define ARGOWAIT_S3_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "argowait/backoff.h"
#include "argowait/http.h"

#define AW_S3_DEFAULT_PART_MIB 16u
#define AW_S3_MIN_PART_MIB 5u
#define AW_S3_MAX_PART_MIB 5120u
#define AW_S3_DEFAULT_THREADS 4u
#define AW_S3_MAX_THREADS 16u

typedef struct aw_s3 aw_s3;
typedef struct aw_s3_op aw_s3_op;

typedef struct {
  const char *endpoint;      /* host[:port], no scheme */
  const char *bucket;
  const char *region;        /* NULL or "": us-east-1 */
  bool insecure;             /* plain http */
  bool path_style;           /* scheme://endpoint/bucket/key, else
                                scheme://bucket.endpoint/key */
  const char *access_key;    /* copied; wiped on free */
  const char *secret_key;
  const char *session_token; /* NULL: none */
  const char *ca_file;       /* NULL: the system's store (caSecret) */
  const char *user_agent;
  /* Optional CURLOPT_CONNECT_TO entry ("HOST:PORT:CONNECT-HOST:CONNECT-PORT",
   * empty HOST/PORT = any): tests use it to reach a virtual-host name on
   * 127.0.0.1 without DNS. Certificates are still checked for the URL's host. */
  const char *connect_to;
  uint64_t part_size;        /* bytes; 0: AW_S3_DEFAULT_PART_MIB MiB */
  unsigned threads;          /* parts in flight; 0: AW_S3_DEFAULT_THREADS */
  const aw_budget *budget;   /* the executor's; read at every step; required */
} aw_s3_config;

/* Reads ARTIFACT_S3_UPLOAD_PART_SIZE_MIB (5..5120) and
 * ARTIFACT_S3_UPLOAD_THREADS (1..16) values (either may be NULL or empty:
 * the default). Returns 0, or -1 with *err (malloc'd) for a bad value. */
int aw_s3_parse_upload_settings(const char *part_mib, const char *threads,
                                uint64_t *part_size, unsigned *threads_out,
                                char **err);

typedef enum {
  AW_S3_OK = 0,
  AW_S3_TRANSIENT, /* still failing when the budget ran out */
  AW_S3_PERMANENT, /* a 4xx answer, TLS failure, unreadable file ... */
  AW_S3_CANCELLED, /* aw_s3_cancel */
} aw_s3_status;

typedef struct {
  aw_s3_status status;
  long http_status;    /* of the answer that decided, 0 for none */
  const char *code;    /* S3 error code (e.g. "NoSuchBucket"), or NULL */
  const char *message; /* "s3://b/k: Code: Message", NULL on OK */
  unsigned attempts;   /* HTTP attempts, all requests of the operation */
  uint64_t bytes;      /* object size (put) */
  unsigned parts;      /* 0 for a single PutObject */
  bool created;        /* ensure_bucket: it was created */
} aw_s3_result;

typedef void (*aw_s3_cb)(const aw_s3_result *res, void *arg);

/* Copies the configuration. Returns NULL and sets *err (malloc'd) when it
 * is incomplete. */
aw_s3 *aw_s3_new(uv_loop_t *loop, aw_http *http, const aw_s3_config *cfg,
                 char **err);
/* Stops every operation at once (no callbacks, no AbortMultipartUpload) and
 * frees what it can; the rest goes when pending pool reads return, so the
 * loop must run on until then (uv_run after this returns quickly). */
void aw_s3_free(aw_s3 *s);

/* Uploads base_dir/rel (opened beneath base_dir on a pool thread, no
 * symlink followed: P8) to key. One PutObject up to the part size, else a
 * multipart upload with `threads` parts in flight, each retried on its own,
 * then CompleteMultipartUpload; AbortMultipartUpload when it cannot finish.
 * A CompleteMultipartUpload retry answered NoSuchUpload (S3, MinIO: an
 * earlier attempt completed it and its answer was lost) is settled by
 * HeadObject: the object with our size and multipart ETag is success.
 * cb runs exactly once, from the loop, never inside this call. */
aw_s3_op *aw_s3_put_file(aw_s3 *s, const char *key, const char *base_dir,
                         const char *rel, aw_s3_cb cb, void *arg);

/* As aw_s3_put_file, but no symlink at all is followed on the way to the
 * file, not even one that stays beneath base_dir (aw_open_beneath_walk): for
 * the files of a folder artifact, whose symlinks are skipped. */
aw_s3_op *aw_s3_put_file_nofollow(aw_s3 *s, const char *key, const char *base_dir,
                                  const char *rel, aw_s3_cb cb, void *arg);

/* HeadBucket; when it answers 404 and create is set, CreateBucket (an
 * existing bucket we own counts as success). */
aw_s3_op *aw_s3_ensure_bucket(aw_s3 *s, bool create, aw_s3_cb cb, void *arg);

/* Cancels: in-flight requests stop, a started multipart upload is aborted
 * (AbortMultipartUpload, itself retried within the budget, at most a few
 * attempts), then cb runs once with AW_S3_CANCELLED (or with the result, if
 * it had already been decided). Never calls cb from inside this call. */
void aw_s3_cancel(aw_s3_op *op);

/* The budget changed (SIGTERM, the reserve): clip attempts in flight and,
 * when now_too, wake sleeping retries at once. */
void aw_s3_budget_changed(aw_s3 *s, bool now_too);

/* The ETag S3 and MinIO give a completed multipart upload: the MD5 of the
 * parts' binary MD5s, then "-<nparts>" (e.g. "9b2cf5...-3"). part_etags are
 * the parts' ETags as answered (quotes allowed). Returns 0, or -1 when one
 * is not a plain MD5 (SSE-KMS, SSE-C) and out is "". */
#define AW_S3_ETAG_MAX 48
int aw_s3_multipart_etag(const char *const *part_etags, unsigned nparts,
                         char out[AW_S3_ETAG_MAX]);

typedef struct {
  unsigned attempts;
  unsigned retries;
  unsigned parts_uploaded;
  unsigned aborts_sent;
  uint64_t bytes_sent;     /* body bytes handed to curl, retries included */
  uint64_t buffer_bytes;   /* file buffers allocated now */
  uint64_t buffer_peak;    /* the most ever allocated at once */
} aw_s3_stats;
aw_s3_stats aw_s3_get_stats(const aw_s3 *s);

#endif
