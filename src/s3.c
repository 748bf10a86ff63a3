/* The S3 client: operations made of requests, requests made of attempts.
 *
 * An operation (put a file, ensure a bucket) runs requests one after the
 * other, or, for the parts of a multipart upload, several at once. Each
 * request retries on its own: attempt, classify the answer, sleep on its own
 * loop timer, attempt again, clipped to the budget as src/kube.c does.
 *
 * A request that sends a file range owns a stream: a ring of NSLOTS buffers
 * filled by pool-thread preads one at a time and drained by curl's read
 * callback, which pauses the transfer when the ring is empty; the pool job
 * that fills a buffer resumes it. A retry resets the stream to the start of
 * its range; a read still in flight for the old attempt is recognized by its
 * generation and dropped. Streams and the file outlive their request while a
 * pool read runs (a pool job cannot be called back). */
#include "argowait/s3.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argowait/log.h"
#include "argowait/safefile.h"
#include "argowait/secret.h"
#include "argowait/strbuf.h"

#define SLOT_SIZE (256u * 1024u)
#define NSLOTS 4
#define ATTEMPT_TIMEOUT_MS 30000u     /* small requests */
#define TRANSFER_TIMEOUT_MS 900000u   /* a part or a PutObject */
#define CONNECT_TIMEOUT_MS 10000u
#define LOW_SPEED_TIME_S 60L          /* no byte for this long: attempt over */
#define MIN_ATTEMPT_MS 50u
#define UPLOAD_BUFFER_BYTES (256L * 1024L) /* curl's upload buffer per request */
#define ABORT_MAX_ATTEMPTS 4u
#define MAX_PARTS 10000u
#define CODE_CAP 64u
#define MESSAGE_CAP 300u

static const aw_retry_rules retry_rules = {&aw_policy_calm, &aw_policy_hurried, MIN_ATTEMPT_MS};

enum { OUT_OK, OUT_TRANSIENT, OUT_PERMANENT };
enum { REQ_HEAD_BUCKET, REQ_CREATE_BUCKET, REQ_PUT, REQ_INIT, REQ_PART, REQ_COMPLETE, REQ_ABORT,
       REQ_HEAD_OBJECT };
static const char *const req_names[] = {"HeadBucket", "CreateBucket", "PutObject",
                                        "CreateMultipartUpload", "UploadPart",
                                        "CompleteMultipartUpload", "AbortMultipartUpload",
                                        "HeadObject"};
enum { SLOT_FREE, SLOT_READING, SLOT_READY };
enum { OP_PUT, OP_BUCKET };

typedef struct {
  int fd;
  unsigned refs;
} s3_file;

typedef struct stream {
  aw_s3 *s3; /* NULL once orphaned */
  s3_file *file;
  uint64_t start, len;
  uint64_t read_off; /* bytes of the range read for this generation */
  uint64_t sent;
  char *slot[NSLOTS];
  size_t slot_len[NSLOTS], slot_pos[NSLOTS];
  int slot_state[NSLOTS];
  int queue[NSLOTS];
  unsigned q_head, q_count;
  unsigned gen;
  int err; /* a read failed: permanent */
  bool reading, paused, orphan;
  CURL *easy; /* the attempt in flight */
  uv_work_t work;
  int w_slot;
  unsigned w_gen;
  uint64_t w_off;
  size_t w_want;
  ssize_t w_n;
  int w_err;
} stream;

typedef struct s3_req {
  aw_s3_op *op;
  int kind;
  unsigned part; /* 1-based, REQ_PART */
  char *url;
  char *body;
  size_t body_len;
  stream *st;
  unsigned max_attempts; /* 0: no limit */
  aw_http_request *inflight;
  uv_timer_t timer;
  bool sleeping;
  unsigned attempts, transient_failures;
  char *etag;
  int64_t content_length; /* of the answer, -1: none (HeadObject) */
  char *last_error; /* of the last failed attempt */
  char *s3_message; /* its S3 <Message>, if any */
  long last_status;
  struct s3_req *prev, *next;
} s3_req;

struct aw_s3_op {
  aw_s3 *s3;
  int type;
  char *key;
  char *name; /* s3://bucket/key, for messages */
  char *base_dir, *rel;
  bool nofollow; /* no symlink at all on the way to the file */
  bool create;
  aw_s3_cb cb;
  void *arg;
  unsigned refs;
  uv_timer_t kick;
  bool opening;
  uv_work_t open_work;
  int open_err, open_fd;
  uint64_t open_size;
  s3_file *file;
  uint64_t size;
  uint64_t part_size;
  unsigned nparts, next_part, parts_done, parts_inflight;
  char **etags;
  char *upload_id;
  bool completing;
  bool ending;    /* decided; only the abort may still run */
  bool cancelled;
  bool delivered;
  bool created;
  aw_s3_status status;
  long http_status;
  char *code, *message;
  unsigned attempts;
  s3_req *reqs;
  aw_s3_op *prev, *next;
};

struct aw_s3 {
  uv_loop_t *loop;
  aw_http *http;
  char *endpoint, *bucket, *region, *ca_file, *user_agent;
  char *access_key, *secret_key, *session_token;
  char *sigv4;
  struct curl_slist *connect_to;
  bool insecure, path_style;
  uint64_t part_size;
  unsigned threads;
  const aw_budget *budget;
  aw_s3_op *ops;
  aw_s3_stats stats;
  aw_jitter jitter;
};

static void start_attempt(s3_req *rq);
static void op_req_done(s3_req *rq, int outcome, const aw_http_response *res, const char *code);
static void op_end(aw_s3_op *op, aw_s3_status status);
static void op_unref(aw_s3_op *op);

/* ---- small helpers ---- */

/* Replaces every occurrence of a credential in msg by "***" (S3 does not
 * echo secrets, but a message must never carry one, whoever wrote it). */
static void scrub(const aw_s3 *s, char **msg) {
  const char *secrets[] = {s->secret_key, s->session_token, s->access_key};
  aw_secret_scrub(msg, secrets, sizeof(secrets) / sizeof(*secrets));
}

static void uri_encode(aw_strbuf *b, const char *s, bool keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      aw_strbuf_append(b, (const char *)&c, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      aw_strbuf_append(b, e, 3);
    }
  }
}

/* scheme://host/path for the bucket, the key (may be NULL) and a query that
 * is already canonical (sorted, encoded, "name=" for an empty value: curl
 * 7.88 signs the query as it is written). */
static char *make_url(const aw_s3 *s, const char *key, const char *query) {
  aw_strbuf b;
  aw_strbuf_init(&b);
  aw_strbuf_appends(&b, s->insecure ? "http://" : "https://");
  if (s->path_style) {
    aw_strbuf_appendf(&b, "%s/", s->endpoint);
    uri_encode(&b, s->bucket, false);
    aw_strbuf_appends(&b, "/");
  } else {
    aw_strbuf_appendf(&b, "%s.%s/", s->bucket, s->endpoint);
  }
  if (key) uri_encode(&b, key, true);
  if (query) aw_strbuf_appendf(&b, "?%s", query);
  return aw_strbuf_take(&b);
}

/* The text of the first <tag>...</tag> in an XML body, entities decoded,
 * control characters flattened, cut at cap bytes. NULL when absent. */
static char *xml_text(const char *body, size_t len, const char *tag, size_t cap) {
  if (!body || !len) return NULL;
  char open[32], close_[32];
  snprintf(open, sizeof(open), "<%s>", tag);
  snprintf(close_, sizeof(close_), "</%s>", tag);
  const char *a = memmem(body, len, open, strlen(open));
  if (!a) return NULL;
  a += strlen(open);
  const char *z = memmem(a, len - (size_t)(a - body), close_, strlen(close_));
  if (!z) return NULL;
  aw_strbuf b;
  aw_strbuf_init(&b);
  static const struct { const char *ent; char c; } ents[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  for (const char *p = a; p < z && b.len < cap + 8;) {
    char c = *p;
    size_t adv = 1;
    if (c == '&') {
      for (size_t i = 0; i < sizeof(ents) / sizeof(*ents); i++) {
        size_t el = strlen(ents[i].ent);
        if ((size_t)(z - p) >= el && memcmp(p, ents[i].ent, el) == 0) {
          c = ents[i].c;
          adv = el;
          break;
        }
      }
    }
    if ((unsigned char)c < 0x20 || c == 0x7f) c = ' ';
    aw_strbuf_append(&b, &c, 1);
    p += adv;
  }
  char *out = aw_strbuf_take(&b);
  if (out) out[aw_utf8_cut(out, strlen(out), cap)] = '\0';
  return out;
}

/* ---- the ETag of a completed multipart upload ---- */

/* MD5 (RFC 1321), only for the multipart ETag below: S3 and MinIO name a
 * completed upload by the MD5 of its parts' binary MD5s and "-<parts>". */
typedef struct {
  uint32_t h[4];
  uint64_t len;
  unsigned char buf[64];
  size_t n;
} md5_ctx;

static const uint32_t md5_k[64] = {
    0xd76aa478u, 0xe8c7b756u, 0x242070dbu, 0xc1bdceeeu, 0xf57c0fafu, 0x4787c62au, 0xa8304613u, 0xfd469501u,
    0x698098d8u, 0x8b44f7afu, 0xffff5bb1u, 0x895cd7beu, 0x6b901122u, 0xfd987193u, 0xa679438eu, 0x49b40821u,
    0xf61e2562u, 0xc040b340u, 0x265e5a51u, 0xe9b6c7aau, 0xd62f105du, 0x02441453u, 0xd8a1e681u, 0xe7d3fbc8u,
    0x21e1cde6u, 0xc33707d6u, 0xf4d50d87u, 0x455a14edu, 0xa9e3e905u, 0xfcefa3f8u, 0x676f02d9u, 0x8d2a4c8au,
    0xfffa3942u, 0x8771f681u, 0x6d9d6122u, 0xfde5380cu, 0xa4beea44u, 0x4bdecfa9u, 0xf6bb4b60u, 0xbebfbc70u,
    0x289b7ec6u, 0xeaa127fau, 0xd4ef3085u, 0x04881d05u, 0xd9d4d039u, 0xe6db99e5u, 0x1fa27cf8u, 0xc4ac5665u,
    0xf4292244u, 0x432aff97u, 0xab9423a7u, 0xfc93a039u, 0x655b59c3u, 0x8f0ccc92u, 0xffeff47du, 0x85845dd1u,
    0x6fa87e4fu, 0xfe2ce6e0u, 0xa3014314u, 0x4e0811a1u, 0xf7537e82u, 0xbd3af235u, 0x2ad7d2bbu, 0xeb86d391u,
};
static const unsigned char md5_s[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};

static void md5_block(md5_ctx *c, const unsigned char *p) {
  uint32_t m[16];
  for (int i = 0; i < 16; i++)
    m[i] = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 | (uint32_t)p[i * 4 + 2] << 16 |
           (uint32_t)p[i * 4 + 3] << 24;
  uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
  for (int i = 0; i < 64; i++) {
    uint32_t f;
    int g;
    if (i < 16) f = (b & cc) | (~b & d), g = i;
    else if (i < 32) f = (d & b) | (~d & cc), g = (5 * i + 1) & 15;
    else if (i < 48) f = b ^ cc ^ d, g = (3 * i + 5) & 15;
    else f = cc ^ (b | ~d), g = (7 * i) & 15;
    uint32_t t = a + f + md5_k[i] + m[g];
    unsigned r = md5_s[(i / 16) * 4 + (i & 3)];
    a = d;
    d = cc;
    cc = b;
    b = b + (t << r | t >> (32 - r));
  }
  c->h[0] += a;
  c->h[1] += b;
  c->h[2] += cc;
  c->h[3] += d;
}

static void md5_init(md5_ctx *c) {
  memset(c, 0, sizeof(*c));
  c->h[0] = 0x67452301u;
  c->h[1] = 0xefcdab89u;
  c->h[2] = 0x98badcfeu;
  c->h[3] = 0x10325476u;
}

static void md5_update(md5_ctx *c, const void *data, size_t len) {
  const unsigned char *p = data;
  c->len += len;
  while (len) {
    size_t k = 64 - c->n < len ? 64 - c->n : len;
    memcpy(c->buf + c->n, p, k);
    c->n += k;
    p += k;
    len -= k;
    if (c->n == 64) {
      md5_block(c, c->buf);
      c->n = 0;
    }
  }
}

static void md5_final(md5_ctx *c, unsigned char out[16]) {
  uint64_t bits = c->len * 8;
  unsigned char pad = 0x80, zero = 0;
  md5_update(c, &pad, 1);
  while (c->n != 56) md5_update(c, &zero, 1);
  unsigned char lenb[8];
  for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(bits >> (8 * i));
  md5_update(c, lenb, 8);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) out[i * 4 + j] = (unsigned char)(c->h[i] >> (8 * j));
}

/* The ETag without quotes or a W/ prefix: points into etag, *len set. */
static const char *etag_bare(const char *etag, size_t *len) {
  if (strncmp(etag, "W/", 2) == 0) etag += 2;
  size_t n = strlen(etag);
  if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') etag++, n -= 2;
  *len = n;
  return etag;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int aw_s3_multipart_etag(const char *const *part_etags, unsigned nparts, char out[AW_S3_ETAG_MAX]) {
  out[0] = '\0';
  if (!nparts) return -1;
  md5_ctx c;
  md5_init(&c);
  for (unsigned i = 0; i < nparts; i++) {
    size_t n;
    const char *e = part_etags[i] ? etag_bare(part_etags[i], &n) : NULL;
    if (!e || n != 32) return -1;
    unsigned char bin[16];
    for (int j = 0; j < 16; j++) {
      int hi = hexval(e[2 * j]), lo = hexval(e[2 * j + 1]);
      if (hi < 0 || lo < 0) return -1;
      bin[j] = (unsigned char)(hi << 4 | lo);
    }
    md5_update(&c, bin, sizeof(bin));
  }
  unsigned char d[16];
  md5_final(&c, d);
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  snprintf(out + 32, AW_S3_ETAG_MAX - 32, "-%u", nparts);
  return 0;
}

/* Is the object HeadObject found the one this upload made? The size must
 * match; the ETag must be the multipart ETag of our parts when those are
 * plain MD5s, else (SSE-KMS, SSE-C) at least end in "-<parts>". */
static bool object_is_ours(aw_s3_op *op, int64_t size, const char *etag) {
  if (size < 0 || (uint64_t)size != op->size || !etag) return false;
  size_t n;
  const char *got = etag_bare(etag, &n);
  char want[AW_S3_ETAG_MAX];
  if (aw_s3_multipart_etag((const char *const *)op->etags, op->nparts, want) == 0)
    return n == strlen(want) && strncasecmp(got, want, n) == 0;
  char suffix[16];
  snprintf(suffix, sizeof(suffix), "-%u", op->nparts);
  size_t sl = strlen(suffix);
  return n > sl && memcmp(got + n - sl, suffix, sl) == 0;
}

/* ---- files and streams ---- */

static void file_unref(s3_file *f) {
  if (f && --f->refs == 0) {
    close(f->fd);
    free(f);
  }
}

static void stream_free_now(stream *st) {
  for (int i = 0; i < NSLOTS; i++) {
    if (st->slot[i] && st->s3) st->s3->stats.buffer_bytes -= SLOT_SIZE;
    free(st->slot[i]);
  }
  file_unref(st->file);
  free(st);
}

static void stream_release(stream *st) {
  if (!st) return;
  st->easy = NULL;
  if (st->reading) {
    /* The pool job frees it when it returns; stats must not outlive s3. */
    for (int i = 0; i < NSLOTS; i++)
      if (st->slot[i] && st->s3) st->s3->stats.buffer_bytes -= SLOT_SIZE;
    for (int i = 0; i < NSLOTS; i++)
      if (st->slot_state[i] != SLOT_READING) {
        free(st->slot[i]);
        st->slot[i] = NULL;
      }
    st->s3 = NULL;
    st->orphan = true;
    return;
  }
  stream_free_now(st);
}

static stream *stream_new(aw_s3 *s, s3_file *f, uint64_t start, uint64_t len) {
  stream *st = calloc(1, sizeof(*st));
  if (!st) return NULL;
  st->s3 = s;
  st->file = f;
  f->refs++;
  st->start = start;
  st->len = len;
  st->work.data = st;
  return st;
}

static void read_work(uv_work_t *w) {
  stream *st = w->data;
  char *buf = st->slot[st->w_slot];
  size_t got = 0;
  st->w_err = 0;
  while (got < st->w_want) {
    ssize_t n = pread(st->file->fd, buf + got, st->w_want - got, (off_t)(st->w_off + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      st->w_err = -errno;
      break;
    }
    if (n == 0) {
      st->w_err = -ENODATA; /* the file shrank */
      break;
    }
    got += (size_t)n;
  }
  st->w_n = (ssize_t)got;
}

static void maybe_read(stream *st);

static void read_done(uv_work_t *w, int status) {
  stream *st = w->data;
  st->reading = false;
  int slot = st->w_slot;
  if (st->orphan) {
    stream_free_now(st);
    return;
  }
  if (st->w_gen != st->gen) {
    st->slot_state[slot] = SLOT_FREE;
  } else if (status != 0 || st->w_err) {
    st->slot_state[slot] = SLOT_FREE;
    st->err = status != 0 ? -ECANCELED : st->w_err;
  } else {
    st->slot_state[slot] = SLOT_READY;
    st->slot_len[slot] = st->w_want;
    st->slot_pos[slot] = 0;
    st->queue[(st->q_head + st->q_count) % NSLOTS] = slot;
    st->q_count++;
    st->read_off += st->w_want;
  }
  if (st->paused && st->easy && (st->q_count || st->err)) {
    st->paused = false;
    curl_easy_pause(st->easy, CURLPAUSE_CONT);
  }
  maybe_read(st);
}

static void maybe_read(stream *st) {
  if (st->reading || st->orphan || st->err || st->read_off >= st->len) return;
  int slot = -1;
  for (int i = 0; i < NSLOTS; i++)
    if (st->slot_state[i] == SLOT_FREE) {
      slot = i;
      break;
    }
  if (slot < 0) return;
  if (!st->slot[slot]) {
    st->slot[slot] = malloc(SLOT_SIZE);
    if (!st->slot[slot]) {
      st->err = -ENOMEM;
      return;
    }
    aw_s3_stats *stats = &st->s3->stats;
    stats->buffer_bytes += SLOT_SIZE;
    if (stats->buffer_bytes > stats->buffer_peak) stats->buffer_peak = stats->buffer_bytes;
  }
  uint64_t left = st->len - st->read_off;
  st->w_slot = slot;
  st->w_gen = st->gen;
  st->w_off = st->start + st->read_off;
  st->w_want = left < SLOT_SIZE ? (size_t)left : SLOT_SIZE;
  st->slot_state[slot] = SLOT_READING;
  if (uv_queue_work(st->s3->loop, &st->work, read_work, read_done) != 0) {
    st->slot_state[slot] = SLOT_FREE;
    st->err = -EAGAIN;
    return;
  }
  st->reading = true;
}

static void stream_reset(stream *st) {
  st->gen++;
  st->read_off = 0;
  st->sent = 0;
  st->q_head = st->q_count = 0;
  st->paused = false;
  st->easy = NULL;
  for (int i = 0; i < NSLOTS; i++)
    if (st->slot_state[i] != SLOT_READING) st->slot_state[i] = SLOT_FREE;
}

static size_t on_read(char *dst, size_t size, size_t nitems, void *arg) {
  stream *st = arg;
  size_t want = size * nitems;
  if (st->err) return CURL_READFUNC_ABORT;
  if (st->sent >= st->len) return 0;
  if (st->q_count == 0) {
    maybe_read(st);
    if (st->err) return CURL_READFUNC_ABORT;
    st->paused = true;
    return CURL_READFUNC_PAUSE;
  }
  int slot = st->queue[st->q_head];
  size_t avail = st->slot_len[slot] - st->slot_pos[slot];
  size_t n = want < avail ? want : avail;
  memcpy(dst, st->slot[slot] + st->slot_pos[slot], n);
  st->slot_pos[slot] += n;
  st->sent += n;
  if (st->s3) st->s3->stats.bytes_sent += n;
  if (st->slot_pos[slot] == st->slot_len[slot]) {
    st->slot_state[slot] = SLOT_FREE;
    st->q_head = (st->q_head + 1) % NSLOTS;
    st->q_count--;
    maybe_read(st);
  }
  return n;
}

/* ---- requests ---- */

static void req_closed(uv_handle_t *h) {
  s3_req *rq = h->data;
  aw_s3_op *op = rq->op;
  free(rq->url);
  free(rq->body);
  free(rq->etag);
  free(rq->last_error);
  free(rq->s3_message);
  free(rq);
  op_unref(op);
}

/* Stops the request (no callback) and frees it. */
static void req_drop(s3_req *rq) {
  aw_s3_op *op = rq->op;
  if (rq->st) rq->st->easy = NULL;
  if (rq->inflight) aw_http_cancel(rq->inflight);
  rq->inflight = NULL;
  stream_release(rq->st);
  rq->st = NULL;
  uv_timer_stop(&rq->timer);
  if (rq->prev) rq->prev->next = rq->next;
  else if (op->reqs == rq) op->reqs = rq->next;
  if (rq->next) rq->next->prev = rq->prev;
  rq->prev = rq->next = NULL;
  uv_close((uv_handle_t *)&rq->timer, req_closed);
}

static void on_req_sleep_done(uv_timer_t *t) {
  s3_req *rq = t->data;
  rq->sleeping = false;
  start_attempt(rq);
}

static s3_req *req_new(aw_s3_op *op, int kind, char *url, char *body, size_t body_len) {
  s3_req *rq = calloc(1, sizeof(*rq));
  if (!rq || !url) {
    free(rq);
    free(url);
    free(body);
    return NULL;
  }
  rq->op = op;
  rq->kind = kind;
  rq->url = url;
  rq->body = body;
  rq->body_len = body_len;
  uv_timer_init(op->s3->loop, &rq->timer);
  rq->timer.data = rq;
  op->refs++;
  rq->next = op->reqs;
  if (op->reqs) op->reqs->prev = rq;
  op->reqs = rq;
  return rq;
}

static uint64_t time_left(const aw_s3 *s) {
  return aw_budget_clip(s->budget, uv_now(s->loop), UINT64_MAX);
}

static void req_describe(s3_req *rq, char *buf, size_t size) {
  if (rq->kind == REQ_PART)
    snprintf(buf, size, "%s %u of %s", req_names[rq->kind], rq->part, rq->op->name);
  else
    snprintf(buf, size, "%s %s", req_names[rq->kind], rq->op->name);
}

static void req_finish(s3_req *rq, int outcome, const aw_http_response *res, const char *code) {
  op_req_done(rq, outcome, res, code);
}

static void schedule_retry(s3_req *rq, const char *retry_after) {
  aw_s3 *s = rq->op->s3;
  char what[512];
  req_describe(rq, what, sizeof(what));
  if (rq->max_attempts && rq->attempts >= rq->max_attempts) {
    req_finish(rq, OUT_TRANSIENT, NULL, NULL);
    return;
  }
  uint64_t delay;
  if (!aw_retry_delay(&retry_rules, s->budget, uv_now(s->loop), rq->transient_failures, retry_after,
                      aw_unix_now_ms(), &s->jitter, &delay)) {
    aw_warn("%s: giving up, the grace period is almost over (%s)", what,
            rq->last_error ? rq->last_error : "no answer");
    req_finish(rq, OUT_TRANSIENT, NULL, NULL);
    return;
  }
  aw_warn("%s failed (attempt %u): %s; retrying in %llu ms", what, rq->attempts,
          rq->last_error ? rq->last_error : "no answer", (unsigned long long)delay);
  s->stats.retries++;
  rq->sleeping = true;
  uv_timer_start(&rq->timer, on_req_sleep_done, delay, 0);
}

static bool is_transient_code(const char *code) {
  static const char *const codes[] = {"SlowDown", "InternalError", "RequestTimeout",
                                      "ServiceUnavailable", "OperationAborted", NULL};
  for (int i = 0; code && codes[i]; i++)
    if (strcmp(code, codes[i]) == 0) return true;
  return false;
}

static int classify(const aw_http_response *res, const char *code) {
  if (res->transport_error) return res->tls_verify_failed ? OUT_PERMANENT : OUT_TRANSIENT;
  if (res->status >= 200 && res->status < 300) {
    /* CompleteMultipartUpload can answer 200 with an <Error> body. */
    if (code) return is_transient_code(code) ? OUT_TRANSIENT : OUT_PERMANENT;
    return OUT_OK;
  }
  if (res->status == 429 || res->status >= 500) return OUT_TRANSIENT;
  if (is_transient_code(code)) return OUT_TRANSIENT;
  return OUT_PERMANENT;
}

static void on_header_line(const char *line, size_t len, void *arg) {
  s3_req *rq = arg;
  if (len > 5 && strncasecmp(line, "etag:", 5) == 0) {
    const char *v = line + 5;
    size_t n = len - 5;
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    free(rq->etag);
    rq->etag = strndup(v, n < 200 ? n : 200);
  } else if (len > 15 && strncasecmp(line, "content-length:", 15) == 0) {
    char num[32];
    size_t n = len - 15 < sizeof(num) - 1 ? len - 15 : sizeof(num) - 1;
    memcpy(num, line + 15, n);
    num[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(num, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
    rq->content_length = errno || *end || v < 0 ? -1 : (int64_t)v;
  }
}

static void on_attempt_done(const aw_http_response *res, void *arg) {
  s3_req *rq = arg;
  aw_s3 *s = rq->op->s3;
  rq->inflight = NULL;
  if (rq->st) rq->st->easy = NULL;
  rq->last_status = res->transport_error ? 0 : res->status;
  char *code = res->transport_error ? NULL : xml_text(res->body, res->body_len, "Code", CODE_CAP);
  int outcome;
  if (rq->st && rq->st->err) {
    /* The file could not be read: retrying cannot help. */
    free(rq->last_error);
    if (asprintf(&rq->last_error, "reading %s: %s", rq->op->rel,
                 rq->st->err == -ENODATA ? "the file shrank during the upload" : strerror(-rq->st->err)) < 0)
      rq->last_error = NULL;
    outcome = OUT_PERMANENT;
    free(code);
    code = NULL;
    rq->last_status = 0;
  } else {
    outcome = classify(res, code);
    if (outcome != OUT_OK) {
      char *msg = NULL;
      if (res->transport_error) {
        if (asprintf(&msg, "%s", res->error ? res->error : "transport error") < 0) msg = NULL;
      } else {
        char *m = xml_text(res->body, res->body_len, "Message", MESSAGE_CAP);
        if (asprintf(&msg, "HTTP %ld%s%s%s%s", res->status, code ? ": " : "", code ? code : "",
                     m ? ": " : "", m ? m : "") < 0)
          msg = NULL;
        scrub(s, &m);
        free(rq->s3_message);
        rq->s3_message = m;
      }
      scrub(s, &msg);
      free(rq->last_error);
      rq->last_error = msg;
    }
  }
  char what[512];
  req_describe(rq, what, sizeof(what));
  aw_debug("%s -> %ld in %llu ms", what, rq->last_status, (unsigned long long)res->elapsed_ms);
  if (outcome == OUT_TRANSIENT) {
    rq->transient_failures++;
    free(code);
    schedule_retry(rq, res->retry_after);
    return;
  }
  req_finish(rq, outcome, res, code);
  free(code);
}

static void configure_easy(CURL *e, void *arg) {
  s3_req *rq = arg;
  aw_s3 *s = rq->op->s3;
  curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s->sigv4);
  curl_easy_setopt(e, CURLOPT_USERNAME, s->access_key);
  curl_easy_setopt(e, CURLOPT_PASSWORD, s->secret_key);
  if (s->connect_to) curl_easy_setopt(e, CURLOPT_CONNECT_TO, s->connect_to);
  if (rq->kind == REQ_HEAD_BUCKET || rq->kind == REQ_HEAD_OBJECT) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  if (rq->st) {
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->st->len);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, rq->st);
    /* One ring chunk per read callback and per send, instead of curl's 64 KiB:
     * a third less CPU per GiB on loopback (BENCHMARKS.md section 5). */
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    rq->st->easy = e;
  }
}

static void start_attempt(s3_req *rq) {
  aw_s3_op *op = rq->op;
  aw_s3 *s = op->s3;
  uint64_t now = uv_now(s->loop);
  uint64_t want = rq->st ? TRANSFER_TIMEOUT_MS : ATTEMPT_TIMEOUT_MS;
  uint64_t timeout = aw_budget_clip(s->budget, now, want);
  if (timeout < MIN_ATTEMPT_MS) {
    if (!rq->last_error) rq->last_error = strdup("no time left in the grace period");
    req_finish(rq, OUT_TRANSIENT, NULL, NULL);
    return;
  }
  const char *method = "GET";
  const char *ctype = NULL;
  switch (rq->kind) {
    case REQ_HEAD_BUCKET: method = "HEAD"; break;
    case REQ_CREATE_BUCKET: method = "PUT"; ctype = "application/xml"; break;
    case REQ_PUT: method = "PUT"; ctype = "application/octet-stream"; break;
    case REQ_INIT: method = "POST"; ctype = "application/octet-stream"; break;
    case REQ_PART: method = "PUT"; break;
    case REQ_COMPLETE: method = "POST"; ctype = "application/xml"; break;
    case REQ_ABORT: method = "DELETE"; break;
    case REQ_HEAD_OBJECT: method = "HEAD"; break;
  }
  aw_strbuf tok;
  aw_strbuf_init(&tok);
  char ct[80];
  const char *headers[5];
  int nh = 0;
  headers[nh++] = "x-amz-content-sha256: UNSIGNED-PAYLOAD";
  if (s->session_token) {
    aw_strbuf_appendf(&tok, "x-amz-security-token: %s", s->session_token);
    headers[nh++] = tok.data;
  }
  if (ctype) {
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
    headers[nh++] = ct;
  }
  headers[nh] = NULL;
  if (rq->st) {
    stream_reset(rq->st);
    maybe_read(rq->st);
  }
  free(rq->etag);
  rq->etag = NULL;
  rq->content_length = -1;
  aw_http_spec spec = {
      .method = method,
      .url = rq->url,
      .headers = headers,
      .body = rq->st ? NULL : (rq->body ? rq->body : (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ? "" : NULL)),
      .body_len = rq->body_len,
      .ca_file = s->ca_file,
      .user_agent = s->user_agent,
      .deadline = now + timeout,
      .connect_timeout_ms = CONNECT_TIMEOUT_MS < timeout ? CONNECT_TIMEOUT_MS : timeout,
      .configure = configure_easy,
      .configure_arg = rq,
      .header = on_header_line,
      .header_arg = rq,
      .allow_expect_100 = true,
  };
  rq->attempts++;
  op->attempts++;
  s->stats.attempts++;
  rq->inflight = aw_http_start(s->http, &spec, on_attempt_done, rq);
  if (tok.data) memset(tok.data, 0, tok.len);
  aw_strbuf_free(&tok);
  if (!rq->inflight) {
    if (rq->st) rq->st->easy = NULL;
    free(rq->last_error);
    rq->last_error = strdup("cannot start an HTTP request");
    req_finish(rq, OUT_PERMANENT, NULL, NULL);
  }
}

/* ---- operations ---- */

static void op_free(aw_s3_op *op) {
  free(op->key);
  free(op->name);
  free(op->base_dir);
  free(op->rel);
  if (op->etags)
    for (unsigned i = 0; i < op->nparts; i++) free(op->etags[i]);
  free(op->etags);
  free(op->upload_id);
  free(op->code);
  free(op->message);
  free(op);
}

static void op_unref(aw_s3_op *op) {
  if (--op->refs == 0) op_free(op);
}

static void op_kick_closed(uv_handle_t *h) { op_unref(h->data); }

/* Out of the list, timer closed, requests dropped; memory goes with the
 * last reference (requests closing, an open job in flight). */
static void op_release(aw_s3_op *op) {
  aw_s3 *s = op->s3;
  while (op->reqs) req_drop(op->reqs);
  file_unref(op->file);
  op->file = NULL;
  if (op->prev) op->prev->next = op->next;
  else if (s && s->ops == op) s->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
  op->cb = NULL;
  uv_timer_stop(&op->kick);
  uv_close((uv_handle_t *)&op->kick, op_kick_closed);
  op_unref(op); /* the list's reference */
}

static void op_deliver(aw_s3_op *op) {
  if (op->delivered) return;
  op->delivered = true;
  aw_s3_result res = {
      .status = op->status,
      .http_status = op->http_status,
      .code = op->status == AW_S3_OK ? NULL : op->code,
      .message = op->status == AW_S3_OK ? NULL : op->message,
      .attempts = op->attempts,
      .bytes = op->size,
      .parts = op->nparts,
      .created = op->created,
  };
  aw_s3_cb cb = op->cb;
  void *arg = op->arg;
  /* Out of the client's list before the callback, which may free the
   * client; the extra reference keeps code and message alive meanwhile. */
  op->refs++;
  op_release(op);
  if (cb) cb(&res, arg);
  op_unref(op);
}

static void on_kick_deliver(uv_timer_t *t) { op_deliver(t->data); }

static void set_failure(aw_s3_op *op, long status, const char *code, const char *what) {
  free(op->code);
  free(op->message);
  op->code = code ? strdup(code) : NULL;
  op->http_status = status;
  if (asprintf(&op->message, "%s: %s", op->name, what) < 0) op->message = NULL;
  scrub(op->s3, &op->message);
}

static void start_abort(aw_s3_op *op) {
  aw_strbuf q;
  aw_strbuf_init(&q);
  aw_strbuf_appends(&q, "uploadId=");
  uri_encode(&q, op->upload_id, false);
  char *query = aw_strbuf_take(&q);
  s3_req *rq = req_new(op, REQ_ABORT, make_url(op->s3, op->key, query), NULL, 0);
  free(query);
  if (!rq) {
    op_deliver(op);
    return;
  }
  rq->max_attempts = ABORT_MAX_ATTEMPTS;
  op->s3->stats.aborts_sent++;
  aw_info("%s: aborting the multipart upload", op->name);
  start_attempt(rq);
}

/* The operation's outcome is decided: stop the other requests, abort a
 * started multipart upload unless it completed, then deliver. */
static void op_end(aw_s3_op *op, aw_s3_status status) {
  if (op->ending) return;
  op->ending = true;
  op->status = status;
  while (op->reqs) req_drop(op->reqs);
  bool can_abort = op->upload_id && status != AW_S3_OK && time_left(op->s3) >= MIN_ATTEMPT_MS * 2;
  if (op->upload_id && status != AW_S3_OK && !can_abort)
    aw_warn("%s: no time left to abort the multipart upload %s", op->name, op->upload_id);
  if (can_abort) {
    start_abort(op);
    return;
  }
  /* Never call back from inside the caller's call (aw_s3_cancel). */
  uv_timer_start(&op->kick, on_kick_deliver, 0, 0);
}

/* "s3://b/k: SignatureDoesNotMatch: The request signature ... (PutObject, HTTP 403)"
 * when S3 named a code, else "s3://b/k: UploadPart 3: <what went wrong>". */
static void record_failure(aw_s3_op *op, s3_req *rq, int outcome, const char *code) {
  char part[32] = "";
  if (rq->kind == REQ_PART) snprintf(part, sizeof(part), " %u", rq->part);
  char *msg = NULL;
  int n;
  if (code)
    n = asprintf(&msg, "%s%s%s (%s%s, HTTP %ld%s)", code, rq->s3_message ? ": " : "",
                 rq->s3_message ? rq->s3_message : "", req_names[rq->kind], part, rq->last_status,
                 outcome == OUT_TRANSIENT ? ", gave up" : "");
  else
    n = asprintf(&msg, "%s%s%s: %s", outcome == OUT_TRANSIENT ? "gave up on " : "", req_names[rq->kind],
                 part, rq->last_error ? rq->last_error : "failed");
  if (n < 0) msg = NULL;
  set_failure(op, rq->last_status, code, msg ? msg : "failed");
  free(msg);
}

static void fail_from_req(aw_s3_op *op, s3_req *rq, int outcome, const char *code) {
  record_failure(op, rq, outcome, code);
  op_end(op, outcome == OUT_TRANSIENT ? AW_S3_TRANSIENT : AW_S3_PERMANENT);
}

/* Appends "; <what>" to the failure message already recorded. */
static void append_failure(aw_s3_op *op, const char *what) {
  char *m = NULL;
  if (asprintf(&m, "%s; %s", op->message ? op->message : op->name, what) < 0) return;
  free(op->message);
  op->message = m;
  scrub(op->s3, &op->message);
}

static void pump_parts(aw_s3_op *op);

static void start_complete(aw_s3_op *op) {
  aw_strbuf b;
  aw_strbuf_init(&b);
  aw_strbuf_appends(&b, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  for (unsigned i = 0; i < op->nparts; i++) {
    aw_strbuf_appendf(&b, "<Part><PartNumber>%u</PartNumber><ETag>", i + 1);
    for (const char *p = op->etags[i]; *p; p++) {
      if (*p == '&') aw_strbuf_appends(&b, "&amp;");
      else if (*p == '<') aw_strbuf_appends(&b, "&lt;");
      else if (*p == '>') aw_strbuf_appends(&b, "&gt;");
      else aw_strbuf_append(&b, p, 1);
    }
    aw_strbuf_appends(&b, "</ETag></Part>");
  }
  aw_strbuf_appends(&b, "</CompleteMultipartUpload>");
  size_t len = b.len;
  char *body = aw_strbuf_take(&b);
  aw_strbuf q;
  aw_strbuf_init(&q);
  aw_strbuf_appends(&q, "uploadId=");
  uri_encode(&q, op->upload_id, false);
  char *query = aw_strbuf_take(&q);
  s3_req *rq = req_new(op, REQ_COMPLETE, make_url(op->s3, op->key, query), body, len);
  free(query);
  op->completing = true;
  if (!rq) {
    set_failure(op, 0, NULL, "out of memory");
    op_end(op, AW_S3_PERMANENT);
    return;
  }
  start_attempt(rq);
}

static void start_part(aw_s3_op *op, unsigned part) {
  uint64_t start = (uint64_t)(part - 1) * op->part_size;
  uint64_t len = op->size - start < op->part_size ? op->size - start : op->part_size;
  aw_strbuf q;
  aw_strbuf_init(&q);
  aw_strbuf_appendf(&q, "partNumber=%u&uploadId=", part);
  uri_encode(&q, op->upload_id, false);
  char *query = aw_strbuf_take(&q);
  s3_req *rq = req_new(op, REQ_PART, make_url(op->s3, op->key, query), NULL, 0);
  free(query);
  if (rq) rq->st = stream_new(op->s3, op->file, start, len);
  if (!rq || !rq->st) {
    set_failure(op, 0, NULL, "out of memory");
    op_end(op, AW_S3_PERMANENT);
    return;
  }
  rq->part = part;
  op->parts_inflight++;
  start_attempt(rq);
}

static void pump_parts(aw_s3_op *op) {
  while (!op->ending && op->parts_inflight < op->s3->threads && op->next_part <= op->nparts)
    start_part(op, op->next_part++);
  if (!op->ending && !op->completing && op->parts_done == op->nparts) start_complete(op);
}

static void start_single_or_multipart(aw_s3_op *op) {
  aw_s3 *s = op->s3;
  if (op->size <= s->part_size) {
    s3_req *rq = req_new(op, REQ_PUT, make_url(s, op->key, NULL), NULL, 0);
    if (rq) rq->st = stream_new(s, op->file, 0, op->size);
    if (!rq || !rq->st) {
      set_failure(op, 0, NULL, "out of memory");
      op_end(op, AW_S3_PERMANENT);
      return;
    }
    start_attempt(rq);
    return;
  }
  op->part_size = s->part_size;
  uint64_t n = (op->size + op->part_size - 1) / op->part_size;
  if (n > MAX_PARTS) {
    /* Bigger parts, whole MiB, so that 10000 are enough. */
    uint64_t mib = 1024u * 1024u;
    op->part_size = ((op->size + MAX_PARTS - 1) / MAX_PARTS + mib - 1) / mib * mib;
    n = (op->size + op->part_size - 1) / op->part_size;
  }
  op->nparts = (unsigned)n;
  op->etags = calloc(op->nparts, sizeof(char *));
  s3_req *rq = op->etags ? req_new(op, REQ_INIT, make_url(s, op->key, "uploads="), NULL, 0) : NULL;
  if (!rq) {
    set_failure(op, 0, NULL, "out of memory");
    op_end(op, AW_S3_PERMANENT);
    return;
  }
  start_attempt(rq);
}

static void op_req_done(s3_req *rq, int outcome, const aw_http_response *res, const char *code) {
  aw_s3_op *op = rq->op;
  aw_s3 *s = op->s3;
  if (rq->kind == REQ_ABORT) {
    if (outcome != OUT_OK && !(rq->last_status == 404))
      aw_warn("%s: could not abort the multipart upload: %s", op->name,
              rq->last_error ? rq->last_error : "no answer");
    req_drop(rq);
    op_deliver(op);
    return;
  }
  if (rq->kind == REQ_HEAD_BUCKET) {
    if (outcome == OUT_OK) {
      req_drop(rq);
      op_end(op, AW_S3_OK);
      return;
    }
    if (outcome == OUT_PERMANENT && rq->last_status == 404 && op->create) {
      req_drop(rq);
      aw_strbuf b;
      aw_strbuf_init(&b);
      if (strcmp(s->region, "us-east-1") != 0)
        aw_strbuf_appendf(&b,
                          "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                          "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                          s->region);
      size_t len = b.len;
      s3_req *c = req_new(op, REQ_CREATE_BUCKET, make_url(s, NULL, NULL), aw_strbuf_take(&b), len);
      if (!c) {
        set_failure(op, 0, NULL, "out of memory");
        op_end(op, AW_S3_PERMANENT);
        return;
      }
      start_attempt(c);
      return;
    }
    if (rq->last_status == 404 && !code) {
      free(rq->last_error);
      rq->last_error = strdup("HTTP 404: NoSuchBucket");
      fail_from_req(op, rq, outcome, "NoSuchBucket");
      return;
    }
    fail_from_req(op, rq, outcome, code);
    return;
  }
  if (rq->kind == REQ_CREATE_BUCKET) {
    if (outcome == OUT_OK || (code && strcmp(code, "BucketAlreadyOwnedByYou") == 0)) {
      op->created = outcome == OUT_OK;
      aw_info("s3://%s: bucket %s", s->bucket, op->created ? "created" : "already exists");
      req_drop(rq);
      op_end(op, AW_S3_OK);
      return;
    }
    fail_from_req(op, rq, outcome, code);
    return;
  }
  if (rq->kind == REQ_HEAD_OBJECT) {
    /* The failure of the CompleteMultipartUpload retry is recorded. */
    if (outcome == OUT_OK && object_is_ours(op, rq->content_length, rq->etag)) {
      aw_info("%s: CompleteMultipartUpload had succeeded, its answer was lost (the object is there, "
              "%llu bytes, ETag %s)", op->name, (unsigned long long)op->size, rq->etag);
      req_drop(rq);
      free(op->upload_id); /* completed: nothing to abort */
      op->upload_id = NULL;
      op_end(op, AW_S3_OK);
      return;
    }
    char what[400];
    if (outcome == OUT_OK)
      snprintf(what, sizeof(what), "HeadObject found another object (%lld bytes, ETag %.80s)",
               (long long)rq->content_length, rq->etag ? rq->etag : "none");
    else
      snprintf(what, sizeof(what), "HeadObject: %s%.300s",
               outcome == OUT_TRANSIENT ? "gave up: " : "the object is not there either: ",
               rq->last_error ? rq->last_error : "no answer");
    aw_warn("%s: %s", op->name, what);
    append_failure(op, what);
    req_drop(rq);
    op_end(op, outcome == OUT_TRANSIENT ? AW_S3_TRANSIENT : AW_S3_PERMANENT);
    return;
  }
  if (rq->kind == REQ_COMPLETE && outcome == OUT_PERMANENT && rq->attempts > 1 && code &&
      strcmp(code, "NoSuchUpload") == 0) {
    /* An earlier attempt got no answer (or a 5xx) and may have completed
     * the upload: S3 and MinIO then answer the retry NoSuchUpload. Whether
     * the object is there, with our size and ETag, decides. */
    record_failure(op, rq, outcome, code);
    aw_warn("%s: CompleteMultipartUpload retry answered NoSuchUpload; checking whether an earlier "
            "attempt completed it", op->name);
    req_drop(rq);
    s3_req *h = req_new(op, REQ_HEAD_OBJECT, make_url(s, op->key, NULL), NULL, 0);
    if (!h) {
      op_end(op, AW_S3_PERMANENT);
      return;
    }
    start_attempt(h);
    return;
  }
  if (outcome != OUT_OK) {
    fail_from_req(op, rq, outcome, code);
    return;
  }
  switch (rq->kind) {
    case REQ_PUT:
      req_drop(rq);
      op_end(op, AW_S3_OK);
      return;
    case REQ_INIT: {
      char *id = res ? xml_text(res->body, res->body_len, "UploadId", 1024) : NULL;
      if (!id || !*id) {
        free(id);
        free(rq->last_error);
        rq->last_error = strdup("no UploadId in the answer");
        fail_from_req(op, rq, OUT_PERMANENT, NULL);
        return;
      }
      op->upload_id = id;
      op->next_part = 1;
      req_drop(rq);
      aw_debug("%s: multipart upload of %llu bytes in %u parts", op->name,
               (unsigned long long)op->size, op->nparts);
      pump_parts(op);
      return;
    }
    case REQ_PART: {
      if (!rq->etag || !*rq->etag) {
        free(rq->last_error);
        rq->last_error = strdup("no ETag in the answer");
        fail_from_req(op, rq, OUT_PERMANENT, NULL);
        return;
      }
      op->etags[rq->part - 1] = rq->etag;
      rq->etag = NULL;
      op->parts_done++;
      op->parts_inflight--;
      s->stats.parts_uploaded++;
      req_drop(rq);
      pump_parts(op);
      return;
    }
    case REQ_COMPLETE:
      req_drop(rq);
      free(op->upload_id); /* completed: nothing to abort */
      op->upload_id = NULL;
      op_end(op, AW_S3_OK);
      return;
  }
}

static void open_work(uv_work_t *w) {
  aw_s3_op *op = w->data;
  int fd;
  {
    int dfd = open(op->base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      op->open_err = -errno;
      return;
    }
    fd = op->nofollow ? aw_open_beneath_walk(dfd, op->rel) : aw_open_beneath(dfd, op->rel);
    close(dfd);
  }
  if (fd < 0) {
    op->open_err = fd;
    return;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    op->open_err = -errno;
    close(fd);
    return;
  }
  op->open_fd = fd;
  op->open_size = (uint64_t)sb.st_size;
  op->open_err = 0;
}

static void open_done(uv_work_t *w, int status) {
  aw_s3_op *op = w->data;
  op->opening = false;
  if (status != 0) op->open_err = -ECANCELED; /* the job never ran */
  /* Freed, decided or cancelled while the pool opened the file. */
  if (!op->s3 || op->delivered || op->ending) {
    if (!op->open_err) close(op->open_fd);
    op_unref(op);
    return;
  }
  if (!op->open_err) {
    op->file = calloc(1, sizeof(*op->file));
    if (op->file) {
      op->file->fd = op->open_fd;
      op->file->refs = 1;
    } else {
      close(op->open_fd);
      op->open_err = -ENOMEM;
    }
  }
  if (op->open_err) {
    char what[600];
    snprintf(what, sizeof(what), "cannot read %s: %s", op->rel, aw_safefile_strerror(op->open_err));
    set_failure(op, 0, NULL, what);
    op_end(op, AW_S3_PERMANENT);
    op_unref(op);
    return;
  }
  op->size = op->open_size;
  start_single_or_multipart(op);
  op_unref(op);
}

static void on_kick_start(uv_timer_t *t) {
  aw_s3_op *op = t->data;
  if (op->type == OP_BUCKET) {
    s3_req *rq = req_new(op, REQ_HEAD_BUCKET, make_url(op->s3, NULL, NULL), NULL, 0);
    if (!rq) {
      set_failure(op, 0, NULL, "out of memory");
      op_end(op, AW_S3_PERMANENT);
      return;
    }
    start_attempt(rq);
    return;
  }
  op->open_work.data = op;
  op->refs++;
  op->opening = true;
  if (uv_queue_work(op->s3->loop, &op->open_work, open_work, open_done) != 0) {
    op->opening = false;
    op->refs--;
    set_failure(op, 0, NULL, "cannot queue the file read");
    op_end(op, AW_S3_PERMANENT);
  }
}

static aw_s3_op *op_new(aw_s3 *s, int type, const char *key, aw_s3_cb cb, void *arg) {
  aw_s3_op *op = calloc(1, sizeof(*op));
  if (!op) return NULL;
  op->s3 = s;
  op->type = type;
  op->cb = cb;
  op->arg = arg;
  op->refs = 2; /* the list, the timer */
  op->open_fd = -1;
  op->key = key ? strdup(key) : NULL;
  if (asprintf(&op->name, "s3://%s%s%s", s->bucket, key ? "/" : "", key ? key : "") < 0) op->name = NULL;
  uv_timer_init(s->loop, &op->kick);
  op->kick.data = op;
  op->next = s->ops;
  if (s->ops) s->ops->prev = op;
  s->ops = op;
  if ((key && !op->key) || !op->name) {
    op_release(op);
    return NULL;
  }
  return op;
}

static aw_s3_op *put_file(aw_s3 *s, const char *key, const char *base_dir, const char *rel,
                          bool nofollow, aw_s3_cb cb, void *arg) {
  if (!key || !*key || !base_dir || !rel) return NULL;
  aw_s3_op *op = op_new(s, OP_PUT, key, cb, arg);
  if (!op) return NULL;
  op->nofollow = nofollow;
  op->base_dir = strdup(base_dir);
  op->rel = strdup(rel);
  if (!op->base_dir || !op->rel) {
    op_release(op);
    return NULL;
  }
  uv_timer_start(&op->kick, on_kick_start, 0, 0);
  return op;
}

aw_s3_op *aw_s3_put_file(aw_s3 *s, const char *key, const char *base_dir, const char *rel,
                         aw_s3_cb cb, void *arg) {
  return put_file(s, key, base_dir, rel, false, cb, arg);
}

aw_s3_op *aw_s3_put_file_nofollow(aw_s3 *s, const char *key, const char *base_dir,
                                  const char *rel, aw_s3_cb cb, void *arg) {
  return put_file(s, key, base_dir, rel, true, cb, arg);
}

aw_s3_op *aw_s3_ensure_bucket(aw_s3 *s, bool create, aw_s3_cb cb, void *arg) {
  aw_s3_op *op = op_new(s, OP_BUCKET, NULL, cb, arg);
  if (!op) return NULL;
  op->create = create;
  uv_timer_start(&op->kick, on_kick_start, 0, 0);
  return op;
}

void aw_s3_cancel(aw_s3_op *op) {
  if (!op || op->delivered || op->cancelled) return;
  op->cancelled = true;
  if (op->ending) return; /* already decided; an abort may be running */
  set_failure(op, 0, "Cancelled", "cancelled");
  op_end(op, AW_S3_CANCELLED);
}

void aw_s3_budget_changed(aw_s3 *s, bool now_too) {
  uint64_t now = uv_now(s->loop);
  uint64_t left = time_left(s);
  for (aw_s3_op *op = s->ops; op; op = op->next) {
    for (s3_req *rq = op->reqs; rq; rq = rq->next) {
      if (rq->inflight) aw_http_clip_deadline(rq->inflight, now + left);
      if (!rq->sleeping) continue;
      uint64_t remaining = uv_timer_get_due_in(&rq->timer);
      uint64_t cap = now_too ? 0 : aw_policy_hurried.cap_ms;
      if (remaining > cap) uv_timer_start(&rq->timer, on_req_sleep_done, cap, 0);
    }
  }
}

aw_s3_stats aw_s3_get_stats(const aw_s3 *s) { return s->stats; }

/* ---- setup ---- */

int aw_s3_parse_upload_settings(const char *part_mib, const char *threads, uint64_t *part_size,
                                unsigned *threads_out, char **err) {
  *part_size = (uint64_t)AW_S3_DEFAULT_PART_MIB * 1024u * 1024u;
  *threads_out = AW_S3_DEFAULT_THREADS;
  if (err) *err = NULL;
  if (part_mib && *part_mib) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(part_mib, &end, 10);
    if (errno || *end || end == part_mib || part_mib[0] == '-' || v < AW_S3_MIN_PART_MIB ||
        v > AW_S3_MAX_PART_MIB) {
      if (err && asprintf(err, "ARTIFACT_S3_UPLOAD_PART_SIZE_MIB=%.40s: want a whole number of MiB in %u..%u",
                          part_mib, AW_S3_MIN_PART_MIB, AW_S3_MAX_PART_MIB) < 0)
        *err = NULL;
      return -1;
    }
    *part_size = (uint64_t)v * 1024u * 1024u;
  }
  if (threads && *threads) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(threads, &end, 10);
    if (errno || *end || end == threads || threads[0] == '-' || v < 1 || v > AW_S3_MAX_THREADS) {
      if (err && asprintf(err, "ARTIFACT_S3_UPLOAD_THREADS=%.40s: want a number in 1..%u", threads,
                          AW_S3_MAX_THREADS) < 0)
        *err = NULL;
      return -1;
    }
    *threads_out = (unsigned)v;
  }
  return 0;
}

static bool valid_host_text(const char *s) {
  if (!s || !*s) return false;
  for (const char *p = s; *p; p++)
    if (*p == '/' || *p == '?' || *p == '#' || *p == '@' || *p == ' ' || (unsigned char)*p < 0x20) return false;
  return true;
}

aw_s3 *aw_s3_new(uv_loop_t *loop, aw_http *http, const aw_s3_config *cfg, char **err) {
  const char *problem = NULL;
  if (!valid_host_text(cfg->endpoint)) problem = "the endpoint must be host[:port]";
  else if (!valid_host_text(cfg->bucket) || strchr(cfg->bucket, ':')) problem = "a bucket name is required";
  else if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key)
    problem = "the access key and the secret key are required";
  else if (!cfg->budget) problem = "a budget is required";
  else if (cfg->region && *cfg->region && !valid_host_text(cfg->region)) problem = "bad region";
  if (problem) {
    if (err && asprintf(err, "S3 configuration: %s", problem) < 0) *err = NULL;
    return NULL;
  }
  aw_s3 *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->loop = loop;
  s->http = http;
  s->endpoint = strdup(cfg->endpoint);
  s->bucket = strdup(cfg->bucket);
  s->region = strdup(cfg->region && *cfg->region ? cfg->region : "us-east-1");
  s->ca_file = cfg->ca_file && *cfg->ca_file ? strdup(cfg->ca_file) : NULL;
  s->user_agent = strdup(cfg->user_agent ? cfg->user_agent : "argowait");
  s->access_key = strdup(cfg->access_key);
  s->secret_key = strdup(cfg->secret_key);
  s->session_token = cfg->session_token && *cfg->session_token ? strdup(cfg->session_token) : NULL;
  if (asprintf(&s->sigv4, "aws:amz:%s:s3", s->region) < 0) s->sigv4 = NULL;
  if (cfg->connect_to && *cfg->connect_to) s->connect_to = curl_slist_append(NULL, cfg->connect_to);
  s->insecure = cfg->insecure;
  s->path_style = cfg->path_style;
  s->part_size = cfg->part_size ? cfg->part_size : (uint64_t)AW_S3_DEFAULT_PART_MIB * 1024u * 1024u;
  if (s->part_size < (uint64_t)AW_S3_MIN_PART_MIB * 1024u * 1024u)
    s->part_size = (uint64_t)AW_S3_MIN_PART_MIB * 1024u * 1024u;
  s->threads = cfg->threads ? cfg->threads : AW_S3_DEFAULT_THREADS;
  if (s->threads > AW_S3_MAX_THREADS) s->threads = AW_S3_MAX_THREADS;
  s->budget = cfg->budget;
  aw_jitter_seed(&s->jitter, uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL);
  if (!s->endpoint || !s->bucket || !s->region || !s->user_agent || !s->access_key ||
      !s->secret_key || !s->sigv4 || (cfg->ca_file && *cfg->ca_file && !s->ca_file) ||
      (cfg->session_token && *cfg->session_token && !s->session_token)) {
    aw_s3_free(s);
    return NULL;
  }
  return s;
}

void aw_s3_free(aw_s3 *s) {
  if (!s) return;
  while (s->ops) {
    aw_s3_op *op = s->ops;
    op->delivered = true;
    while (op->reqs) req_drop(op->reqs);
    op->s3 = NULL; /* an open job in flight sees this */
    s->ops = op->next;
    if (s->ops) s->ops->prev = NULL;
    op->prev = op->next = NULL;
    file_unref(op->file);
    op->file = NULL;
    uv_timer_stop(&op->kick);
    uv_close((uv_handle_t *)&op->kick, op_kick_closed);
    op_unref(op);
  }
  free(s->endpoint);
  free(s->bucket);
  free(s->region);
  free(s->ca_file);
  free(s->user_agent);
  aw_secret_free(s->access_key);
  aw_secret_free(s->secret_key);
  aw_secret_free(s->session_token);
  free(s->sigv4);
  curl_slist_free_all(s->connect_to);
  free(s);
}
