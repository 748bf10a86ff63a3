/* Temporary credentials from AWS STS (see include/argowait/sts.h).
 *
 * Four parts: the strict XML reader for STS answers, the choice of endpoint
 * and of credential source (pure, from the environment), the request, and
 * the client on the loop that runs one or two STS calls with retries. */
#include "argowait/sts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "argowait/jsonstr.h"
#include "argowait/log.h"
#include "argowait/secret.h"
#include "argowait/strbuf.h"

/* ==== the XML reader ==================================================== */

#define NAME_MAX_LEN 128
#define MESSAGE_CAP 300u
#define AKID_MIN 16u

enum { F_AKID, F_SECRET, F_TOKEN, F_EXPIRATION, F_CODE, F_MESSAGE, F_COUNT };
static const char *const field_names[F_COUNT] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                                 "Expiration", "Code", "Message"};
/* Bytes kept per field. A credential or code past its cap makes the answer
 * malformed; a message is only cut (it is prose, and the code still counts). */
static const size_t field_caps[F_COUNT] = {128, 256, 16384, 64, 64, 4096};
static const bool field_cut_ok[F_COUNT] = {false, false, false, false, false, true};

enum { ROOT_NONE, ROOT_CREDENTIALS, ROOT_ERROR_RESPONSE, ROOT_ERROR };

typedef struct {
  const char *s;
  size_t n;
} span;

typedef struct {
  const char *p, *end;
  span stack[AW_STS_MAX_DEPTH];
  int depth;
  int root;
  bool root_closed;
  int capture; /* field being read, -1 for none */
  aw_strbuf val[F_COUNT];
  bool seen[F_COUNT], cut[F_COUNT];
  const char *response_name, *result_name;
  const char *why;
} xml_reader;

static bool span_is(span a, const char *s) { return a.n == strlen(s) && memcmp(a.s, s, a.n) == 0; }

static bool fail(xml_reader *x, const char *why) {
  if (!x->why) x->why = why;
  return false;
}

static bool starts(const xml_reader *x, const char *lit) {
  size_t n = strlen(lit);
  return (size_t)(x->end - x->p) >= n && memcmp(x->p, lit, n) == 0;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void skip_space(xml_reader *x) {
  while (x->p < x->end && is_space(*x->p)) x->p++;
}

/* The document as a whole: UTF-8, and no control byte XML forbids. Checked
 * once so that the tokenizer below deals only with structure. */
static bool valid_document_bytes(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    if (u[i] < 0x20 && u[i] != '\t' && u[i] != '\n' && u[i] != '\r') return false;
    if (u[i] == 0x7f) return false;
    size_t n = aw_utf8_char_len(u + i, len - i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

static bool name_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':';
}

static bool name_char(char c) {
  return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static bool read_name(xml_reader *x, span *out) {
  if (x->p >= x->end || !name_start(*x->p)) return fail(x, "a tag without a valid name");
  const char *s = x->p;
  while (x->p < x->end && name_char(*x->p)) x->p++;
  out->s = s;
  out->n = (size_t)(x->p - s);
  if (out->n > NAME_MAX_LEN) return fail(x, "an element or attribute name is too long");
  return true;
}

static void put_utf8(char *buf, size_t *n, unsigned long cp) {
  if (cp < 0x80) {
    buf[(*n)++] = (char)cp;
  } else if (cp < 0x800) {
    buf[(*n)++] = (char)(0xC0 | (cp >> 6));
    buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    buf[(*n)++] = (char)(0xE0 | (cp >> 12));
    buf[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    buf[(*n)++] = (char)(0xF0 | (cp >> 18));
    buf[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    buf[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
  }
}

/* XML 1.0's Char production. */
static bool xml_char_ok(unsigned long cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
         (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* One reference at s (after '&', up to and with ';'), decoded into buf.
 * Returns the bytes consumed after '&', or 0 for a bad reference. */
static size_t decode_reference(const char *s, size_t avail, char *buf, size_t *n) {
  static const struct {
    const char *name;
    char c;
  } named[] = {{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}};
  for (size_t i = 0; i < sizeof(named) / sizeof(*named); i++) {
    size_t len = strlen(named[i].name);
    if (avail >= len && memcmp(s, named[i].name, len) == 0) {
      buf[(*n)++] = named[i].c;
      return len;
    }
  }
  if (avail < 3 || s[0] != '#') return 0;
  bool hex = s[1] == 'x';
  size_t i = hex ? 2 : 1, digits = 0;
  unsigned long cp = 0;
  for (; i < avail && s[i] != ';'; i++, digits++) {
    char c = s[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (hex && c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (hex && c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return 0;
    if (digits >= 8) return 0; /* long enough to overflow: never a valid Char */
    cp = cp * (hex ? 16u : 10u) + (unsigned long)d;
  }
  if (i >= avail || digits == 0 || !xml_char_ok(cp)) return 0;
  put_utf8(buf, n, cp);
  return i + 1;
}

/* Decodes character data s[0..len) (entities, references). Appends to the
 * field being captured, if any, within its cap. */
static bool take_text(xml_reader *x, const char *s, size_t len) {
  int f = x->capture;
  for (size_t i = 0; i < len;) {
    char buf[4];
    size_t n = 0, adv;
    if (s[i] == '&') {
      size_t used = decode_reference(s + i + 1, len - i - 1, buf, &n);
      if (!used) return fail(x, "an unknown or malformed entity or character reference");
      adv = used + 1;
    } else if (s[i] == '<') {
      return fail(x, "a '<' in character data");
    } else {
      buf[n++] = s[i];
      adv = 1;
    }
    i += adv;
    if (f < 0) continue;
    if (x->val[f].len + n > field_caps[f]) {
      if (!field_cut_ok[f]) return fail(x, "a field is longer than allowed");
      x->cut[f] = true;
      continue;
    }
    if (aw_strbuf_append(&x->val[f], buf, n) != 0) return fail(x, "out of memory");
  }
  return true;
}

/* "<!-- ... -->" (the leading "<!--" already matched). */
static bool skip_comment(xml_reader *x) {
  const char *z = memmem(x->p + 4, (size_t)(x->end - x->p - 4), "-->", 3);
  if (!z) return fail(x, "truncated: a comment is not closed");
  x->p = z + 3;
  return true;
}

/* "<?...?>": only the XML declaration, before the root. */
static bool skip_declaration(xml_reader *x) {
  const char *z = memmem(x->p + 2, (size_t)(x->end - x->p - 2), "?>", 2);
  if (!z) return fail(x, "truncated: the XML declaration is not closed");
  x->p = z + 2;
  return true;
}

/* Attributes are read only to be skipped (xmlns and the like), but they
 * must be well formed. */
static bool skip_attribute(xml_reader *x) {
  span name;
  if (!read_name(x, &name)) return false;
  skip_space(x);
  if (x->p >= x->end || *x->p != '=') return fail(x, "an attribute without a value");
  x->p++;
  skip_space(x);
  if (x->p >= x->end || (*x->p != '"' && *x->p != '\'')) return fail(x, "an unquoted attribute value");
  char q = *x->p++;
  const char *v = x->p;
  const char *z = memchr(v, q, (size_t)(x->end - v));
  if (!z) return fail(x, "truncated: an attribute value is not closed");
  int saved = x->capture;
  x->capture = -1;
  bool ok = take_text(x, v, (size_t)(z - v));
  x->capture = saved;
  x->p = z + 1;
  return ok;
}

/* Which field an element at the current depth is, or -1. */
static int field_at(const xml_reader *x) {
  const span *st = x->stack;
  int d = x->depth;
  const span leaf = st[d - 1];
  int first = x->root == ROOT_CREDENTIALS ? F_AKID : F_CODE;
  int last = x->root == ROOT_CREDENTIALS ? F_EXPIRATION : F_MESSAGE;
  bool path_ok = false;
  if (x->root == ROOT_CREDENTIALS)
    path_ok = d == 4 && span_is(st[1], x->result_name) && span_is(st[2], "Credentials");
  else if (x->root == ROOT_ERROR_RESPONSE)
    path_ok = (d == 3 && span_is(st[1], "Error")) ||
              (d == 4 && span_is(st[1], "Errors") && span_is(st[2], "Error"));
  else if (x->root == ROOT_ERROR)
    path_ok = d == 2;
  if (!path_ok) return -1;
  for (int f = first; f <= last; f++)
    if (span_is(leaf, field_names[f])) return f;
  return -1;
}

static bool open_element(xml_reader *x, span name, bool empty) {
  if (x->capture >= 0) return fail(x, "a field holds an element");
  if (x->depth == 0) {
    if (x->root_closed) return fail(x, "more than one root element");
    if (span_is(name, x->response_name)) x->root = ROOT_CREDENTIALS;
    else if (span_is(name, "ErrorResponse")) x->root = ROOT_ERROR_RESPONSE;
    else if (span_is(name, "Error")) x->root = ROOT_ERROR;
    else return fail(x, "an unexpected root element");
  }
  if (x->depth >= AW_STS_MAX_DEPTH) return fail(x, "elements nested too deeply");
  x->stack[x->depth++] = name;
  int f = field_at(x);
  if (f >= 0) {
    if (x->seen[f]) return fail(x, "a duplicate field");
    x->seen[f] = true;
    x->capture = f;
  }
  if (empty) {
    x->capture = -1;
    if (--x->depth == 0) x->root_closed = true;
  }
  return true;
}

static bool read_start_tag(xml_reader *x) {
  x->p++; /* '<' */
  span name;
  if (!read_name(x, &name)) return false;
  for (;;) {
    bool had_space = x->p < x->end && is_space(*x->p);
    skip_space(x);
    if (x->p >= x->end) return fail(x, "truncated inside a tag");
    if (*x->p == '>') {
      x->p++;
      return open_element(x, name, false);
    }
    if (*x->p == '/') {
      if (x->p + 1 >= x->end || x->p[1] != '>') return fail(x, "a malformed empty-element tag");
      x->p += 2;
      return open_element(x, name, true);
    }
    if (!had_space) return fail(x, "attributes not separated by white space");
    if (!skip_attribute(x)) return false;
  }
}

static bool read_end_tag(xml_reader *x) {
  x->p += 2; /* "</" */
  span name;
  if (!read_name(x, &name)) return false;
  skip_space(x);
  if (x->p >= x->end) return fail(x, "truncated inside an end tag");
  if (*x->p != '>') return fail(x, "a malformed end tag");
  x->p++;
  if (x->depth == 0) return fail(x, "an end tag without a start tag");
  span open = x->stack[x->depth - 1];
  if (open.n != name.n || memcmp(open.s, name.s, name.n) != 0) return fail(x, "mismatched tags");
  x->capture = -1;
  if (--x->depth == 0) x->root_closed = true;
  return true;
}

/* Markup that is neither a start nor an end tag. */
static bool read_other_markup(xml_reader *x) {
  if (starts(x, "<!--")) return skip_comment(x);
  if (starts(x, "<![CDATA[")) return fail(x, "CDATA sections are not accepted");
  if (starts(x, "<!")) return fail(x, "a DOCTYPE or declaration is not accepted");
  return fail(x, "a processing instruction inside the document");
}

static bool read_prolog(xml_reader *x) {
  if (starts(x, "\xEF\xBB\xBF")) x->p += 3;
  if (starts(x, "<?xml") && x->p + 5 < x->end && (is_space(x->p[5]) || x->p[5] == '?'))
    if (!skip_declaration(x)) return false;
  for (;;) {
    skip_space(x);
    if (starts(x, "<!--")) {
      if (!skip_comment(x)) return false;
      continue;
    }
    if (starts(x, "<!")) return fail(x, "a DOCTYPE or declaration is not accepted");
    if (starts(x, "<?")) return fail(x, "a processing instruction is not accepted");
    if (x->p >= x->end) return fail(x, "no root element");
    if (*x->p != '<') return fail(x, "text before the root element");
    return true;
  }
}

static bool read_document(xml_reader *x) {
  if (!read_prolog(x)) return false;
  while (x->p < x->end) {
    if (x->root_closed && x->depth == 0) {
      skip_space(x);
      if (x->p >= x->end) break;
      if (starts(x, "<!--")) {
        if (!skip_comment(x)) return false;
        continue;
      }
      return fail(x, "content after the root element");
    }
    if (*x->p == '<') {
      bool ok = starts(x, "</") ? read_end_tag(x)
                : (x->p + 1 < x->end && (x->p[1] == '!' || x->p[1] == '?')) ? read_other_markup(x)
                                                                          : read_start_tag(x);
      if (!ok) return false;
      continue;
    }
    const char *t = x->p;
    const char *z = memchr(t, '<', (size_t)(x->end - t));
    if (!z) z = x->end;
    x->p = z;
    if (!take_text(x, t, (size_t)(z - t))) return false;
  }
  if (!x->root_closed || x->depth) return fail(x, "truncated: elements are left open");
  return true;
}

static bool printable_ascii(const char *s, bool space_ok) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p > 0x7e || *p < 0x20 || (*p == ' ' && !space_ok)) return false;
  return true;
}

static bool alnum_only(const char *s) {
  for (const char *p = s; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
      return false;
  return true;
}

static bool error_code_ok(const char *s) {
  if (!*s) return false;
  for (const char *p = s; *p; p++)
    if (!(name_char(*p) && *p != ':')) return false;
  return true;
}

/* A message becomes one line: control characters (decoded \n, \t) to
 * spaces, runs of spaces folded, trimmed, cut at a character boundary. */
static char *one_line(const char *s, size_t cap) {
  aw_strbuf b;
  aw_strbuf_init(&b);
  bool space = true; /* drops leading spaces */
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    bool blank = *p <= 0x20 || *p == 0x7f;
    if (blank && space) continue;
    char c = blank ? ' ' : (char)*p;
    if (aw_strbuf_append(&b, &c, 1) != 0) break;
    space = blank;
  }
  char *out = aw_strbuf_take(&b);
  if (!out) return NULL;
  size_t n = aw_utf8_cut(out, strlen(out), cap);
  while (n && out[n - 1] == ' ') n--;
  out[n] = '\0';
  return out;
}

static char *take_field(xml_reader *x, int f) {
  if (!x->seen[f]) return NULL;
  char *s = aw_strbuf_take(&x->val[f]);
  return s;
}

static void finish_credentials(xml_reader *x, aw_sts_answer *out) {
  out->access_key_id = take_field(x, F_AKID);
  out->secret_access_key = take_field(x, F_SECRET);
  out->session_token = take_field(x, F_TOKEN);
  out->expiration = take_field(x, F_EXPIRATION);
  const char *why = NULL;
  if (!x->seen[F_AKID] || !x->seen[F_SECRET] || !x->seen[F_TOKEN])
    why = "the answer lacks AccessKeyId, SecretAccessKey or SessionToken";
  else if (!out->access_key_id || !out->secret_access_key || !out->session_token)
    why = "out of memory";
  else if (strlen(out->access_key_id) < AKID_MIN || !alnum_only(out->access_key_id))
    why = "the AccessKeyId is not a key id";
  else if (!*out->secret_access_key || !printable_ascii(out->secret_access_key, false))
    why = "the SecretAccessKey is empty or holds characters a key cannot";
  else if (!*out->session_token || !printable_ascii(out->session_token, false))
    why = "the SessionToken is empty or holds characters a token cannot";
  else if (x->seen[F_EXPIRATION] &&
           (!out->expiration || aw_parse_rfc3339(out->expiration, &out->expiration_unix_ms) != 0))
    why = "the Expiration is not an RFC 3339 time";
  if (why) {
    aw_sts_answer_free(out);
    out->why = why;
    return;
  }
  out->kind = AW_STS_ANSWER_CREDENTIALS;
}

static void finish_error(xml_reader *x, aw_sts_answer *out) {
  out->code = take_field(x, F_CODE);
  char *raw = take_field(x, F_MESSAGE);
  out->message = raw ? one_line(raw, MESSAGE_CAP) : NULL;
  free(raw);
  if (!out->code || !error_code_ok(out->code)) {
    aw_sts_answer_free(out);
    out->why = x->seen[F_CODE] ? "the error Code is not a code" : "the error answer has no Code";
    return;
  }
  out->kind = AW_STS_ANSWER_ERROR;
}

void aw_sts_parse_answer(const char *body, size_t len, const char *action, aw_sts_answer *out) {
  memset(out, 0, sizeof(*out));
  out->kind = AW_STS_ANSWER_MALFORMED;
  if (!body || !len) {
    out->why = "an empty answer";
    return;
  }
  if (len > AW_STS_ANSWER_MAX) {
    out->why = "the answer is too large";
    return;
  }
  if (!valid_document_bytes(body, len)) {
    out->why = "the answer is not UTF-8 text";
    return;
  }
  xml_reader x;
  memset(&x, 0, sizeof(x));
  x.p = body;
  x.end = body + len;
  x.capture = -1;
  for (int f = 0; f < F_COUNT; f++) aw_strbuf_init(&x.val[f]);
  char *response = NULL, *result = NULL;
  if (asprintf(&response, "%sResponse", action ? action : "") < 0) response = NULL;
  if (asprintf(&result, "%sResult", action ? action : "") < 0) result = NULL;
  x.response_name = response;
  x.result_name = result;
  if (!response || !result) out->why = "out of memory";
  else if (!read_document(&x)) out->why = x.why ? x.why : "malformed";
  else if (x.root == ROOT_CREDENTIALS) finish_credentials(&x, out);
  else finish_error(&x, out);
  for (int f = 0; f < F_COUNT; f++) {
    if (x.val[f].data) explicit_bzero(x.val[f].data, x.val[f].cap);
    aw_strbuf_free(&x.val[f]);
  }
  free(response);
  free(result);
}

static void wipe_str(char **s) {
  aw_secret_free(*s);
  *s = NULL;
}

void aw_sts_answer_free(aw_sts_answer *a) {
  wipe_str(&a->access_key_id);
  wipe_str(&a->secret_access_key);
  wipe_str(&a->session_token);
  free(a->expiration);
  free(a->code);
  free(a->message);
  a->expiration = a->code = a->message = NULL;
  a->kind = AW_STS_ANSWER_MALFORMED;
}

/* ==== the endpoint ====================================================== */

#define URL_MAX 2048
#define REGION_MAX 32

static const char *env_value(aw_getenv_fn env, const char *name) {
  const char *v = env(name);
  return v && *v ? v : NULL;
}

static bool valid_region(const char *r) {
  size_t n = strlen(r);
  if (!n || n > REGION_MAX || r[0] == '-' || r[n - 1] == '-') return false;
  for (const char *p = r; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) return false;
  return true;
}

/* The regions whose STS requests the SDKs' "legacy" mode sends to the
 * global endpoint. */
static bool legacy_global_region(const char *r) {
  static const char *const regions[] = {
      "ap-northeast-1", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "aws-global",
      "ca-central-1",   "eu-central-1", "eu-north-1",   "eu-west-1",      "eu-west-2",
      "eu-west-3",      "sa-east-1",    "us-east-1",    "us-east-2",      "us-west-1",
      "us-west-2",      NULL};
  for (int i = 0; regions[i]; i++)
    if (strcmp(r, regions[i]) == 0) return true;
  return false;
}

static bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

/* scheme://host[:port][/path]: no user info, query or fragment, nothing a
 * URL parser could read two ways. Returns the URL with a '/' path when it
 * had none, or NULL. */
static char *checked_url(const char *v) {
  size_t skip;
  if (strncasecmp(v, "https://", 8) == 0) skip = 8;
  else if (strncasecmp(v, "http://", 7) == 0) skip = 7;
  else return NULL;
  if (strlen(v) > URL_MAX) return NULL;
  const char *h = v + skip, *p = h;
  if (*p == '[') { /* an IPv6 literal */
    p++;
    while (*p && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
                  *p == ':' || *p == '.'))
      p++;
    if (*p != ']' || p == h + 1) return NULL;
    p++;
  } else {
    while (host_char(*p)) p++;
    if (p == h) return NULL;
  }
  if (*p == ':') {
    const char *d = ++p;
    unsigned long port = 0;
    while (*p >= '0' && *p <= '9' && p - d < 6) port = port * 10 + (unsigned long)(*p++ - '0');
    if (p == d || port == 0 || port > 65535) return NULL;
  }
  bool has_path = *p == '/';
  if (*p && !has_path) return NULL;
  for (const char *q = p; *q; q++)
    if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '?' || *q == '#' || *q == '@' ||
        *q == '\\')
      return NULL;
  char *out = NULL;
  if (asprintf(&out, "%s%s", v, has_path ? "" : "/") < 0) return NULL;
  return out;
}

static int set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_err(char **err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && vasprintf(err, fmt, ap) < 0) *err = NULL;
  va_end(ap);
  return -1;
}

int aw_sts_endpoint_choose(aw_getenv_fn env, const char *location_region, aw_sts_endpoint *out,
                           char **err) {
  memset(out, 0, sizeof(*out));
  if (err) *err = NULL;
  const char *region = NULL, *region_source = NULL;
  static const char *const region_vars[] = {"AWS_REGION", "AWS_DEFAULT_REGION"};
  for (size_t i = 0; i < 2 && !region; i++)
    if ((region = env_value(env, region_vars[i]))) region_source = region_vars[i];
  if (!region && location_region && *location_region) {
    region = location_region;
    region_source = "the archive location's region";
  }
  if (region && !valid_region(region))
    return set_err(err, "%s=%.40s is not a region name", region_source, region);
  const char *mode = env_value(env, "AWS_STS_REGIONAL_ENDPOINTS");
  if (mode && strcmp(mode, "regional") != 0 && strcmp(mode, "legacy") != 0)
    return set_err(err, "AWS_STS_REGIONAL_ENDPOINTS=%.40s: want regional or legacy", mode);
  static const char *const url_vars[] = {"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"};
  for (size_t i = 0; i < 2; i++) {
    const char *v = env_value(env, url_vars[i]);
    if (!v) continue;
    out->url = checked_url(v);
    if (!out->url)
      return set_err(err, "%s is not an http:// or https:// URL of a host (no user, query or fragment)",
                     url_vars[i]);
    out->source = url_vars[i];
    break;
  }
  if (!out->url) {
    bool global = !region || (mode && strcmp(mode, "legacy") == 0 && legacy_global_region(region));
    int n;
    if (global) {
      n = asprintf(&out->url, "https://sts.amazonaws.com/");
      out->source = region ? "AWS_STS_REGIONAL_ENDPOINTS=legacy" : "no region: the global endpoint";
    } else {
      n = asprintf(&out->url, "https://sts.%s.amazonaws.com%s/", region,
                   strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
      out->source = region_source;
    }
    if (n < 0) out->url = NULL;
  }
  /* The global endpoint signs as us-east-1; so does a custom one without a
   * region (what the SDKs do). */
  bool global_url = out->url && strcmp(out->url, "https://sts.amazonaws.com/") == 0;
  out->signing_region = strdup(region && !global_url ? region : "us-east-1");
  if (!out->url || !out->signing_region) {
    aw_sts_endpoint_free(out);
    return set_err(err, "out of memory");
  }
  return 0;
}

void aw_sts_endpoint_free(aw_sts_endpoint *e) {
  free(e->url);
  free(e->signing_region);
  e->url = e->signing_region = NULL;
}

/* ==== the credential source ============================================= */

#define ARN_MIN 20u
#define ARN_MAX 2048u
#define SESSION_NAME_MIN 2u
#define SESSION_NAME_MAX 64u
#define PATH_MAX_LEN 4096u

static bool valid_arn(const char *s) {
  size_t n = strlen(s);
  return n >= ARN_MIN && n <= ARN_MAX && strncmp(s, "arn:", 4) == 0 && printable_ascii(s, false);
}

/* STS's [\w+=,.@-] */
static bool session_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         strchr("_+=,.@-", c) != NULL;
}

static bool valid_session_name(const char *s) {
  size_t n = strlen(s);
  if (n < SESSION_NAME_MIN || n > SESSION_NAME_MAX) return false;
  for (const char *p = s; *p; p++)
    if (!session_char(*p)) return false;
  return true;
}

/* argowait-<pod name>, characters STS refuses replaced, cut to 64. */
static char *default_session_name(const char *pod_name) {
  char buf[SESSION_NAME_MAX + 1];
  int n = snprintf(buf, sizeof(buf), "argowait%s%s", pod_name && *pod_name ? "-" : "",
                   pod_name ? pod_name : "");
  if (n < 0) return NULL;
  for (char *p = buf; *p; p++)
    if (!session_char(*p)) *p = '-';
  return strdup(buf);
}

static const char *source_name(const aw_archive_location *loc) {
  if (loc->role_arn) return "roleARN";
  if (loc->use_sdk_creds) return "useSDKCreds";
  return "the pod's identity";
}

/* Without web identity: which other source Argo would have used, named as
 * not supported. */
static int no_web_identity(const aw_archive_location *loc, aw_getenv_fn env, char **why) {
  bool file = env_value(env, "AWS_WEB_IDENTITY_TOKEN_FILE") != NULL;
  bool role = env_value(env, "AWS_ROLE_ARN") != NULL;
  if (file != role)
    return set_err(why, "%s is set without %s: the pod's web identity needs both",
                   file ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
                   file ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
  return set_err(why,
                 "no credentials for %s: the archive location has no accessKeySecret and "
                 "secretKeySecret, and the pod has no web identity (AWS_WEB_IDENTITY_TOKEN_FILE and "
                 "AWS_ROLE_ARN, as EKS IRSA sets them); instance roles, ECS and the AWS SDK's other "
                 "sources are not supported yet",
                 source_name(loc));
}

int aw_creds_plan_make(const aw_archive_location *loc, aw_getenv_fn env, const char *pod_name,
                       aw_creds_plan *out, char **why) {
  memset(out, 0, sizeof(*out));
  if (why) *why = NULL;
  if (loc->access_key.name && loc->secret_key.name) {
    out->kind = AW_CREDS_STATIC; /* roleARN, if set, is not used: as in Argo */
    return 0;
  }
  if (loc->access_key.name || loc->secret_key.name)
    return set_err(why, "only one of accessKeySecret and secretKeySecret is set");
  /* The AWS SDK chain (roleARN's base, useSDKCreds) takes keys from the
   * environment first: using the web identity instead would act as
   * someone else. */
  if ((loc->role_arn || loc->use_sdk_creds) && env_value(env, "AWS_ACCESS_KEY_ID"))
    return set_err(why, "%s: credentials from AWS_ACCESS_KEY_ID in the environment are not "
                        "supported yet", source_name(loc));
  const char *file = env_value(env, "AWS_WEB_IDENTITY_TOKEN_FILE");
  const char *role = env_value(env, "AWS_ROLE_ARN");
  if (!file || !role) return no_web_identity(loc, env, why);
  if (file[0] != '/' || strlen(file) > PATH_MAX_LEN)
    return set_err(why, "AWS_WEB_IDENTITY_TOKEN_FILE is not an absolute path");
  if (!valid_arn(role)) return set_err(why, "AWS_ROLE_ARN=%.80s is not a role ARN", role);
  if (loc->role_arn && !valid_arn(loc->role_arn))
    return set_err(why, "roleARN %.80s is not a role ARN", loc->role_arn);
  const char *session = env_value(env, "AWS_ROLE_SESSION_NAME");
  if (session && !valid_session_name(session))
    return set_err(why, "AWS_ROLE_SESSION_NAME=%.80s: want 2 to 64 of the characters A-Z a-z 0-9 "
                        "_+=,.@-", session);
  char *endpoint_err = NULL;
  if (aw_sts_endpoint_choose(env, loc->region, &out->endpoint, &endpoint_err) != 0) {
    if (why) *why = endpoint_err;
    else free(endpoint_err);
    return -1;
  }
  out->kind = loc->role_arn ? AW_CREDS_WEB_IDENTITY_ROLE : AW_CREDS_WEB_IDENTITY;
  out->web_role_arn = strdup(role);
  out->token_file = strdup(file);
  out->session_name = session ? strdup(session) : default_session_name(pod_name);
  out->assume_role_arn = loc->role_arn ? strdup(loc->role_arn) : NULL;
  if (!out->web_role_arn || !out->token_file || !out->session_name ||
      (loc->role_arn && !out->assume_role_arn)) {
    aw_creds_plan_free(out);
    return set_err(why, "out of memory");
  }
  return 0;
}

void aw_creds_plan_free(aw_creds_plan *p) {
  free(p->web_role_arn);
  free(p->token_file);
  free(p->session_name);
  free(p->assume_role_arn);
  aw_sts_endpoint_free(&p->endpoint);
  memset(p, 0, sizeof(*p));
}

int aw_sts_read_token(const char *path, aw_bytes *out, char **why) {
  memset(out, 0, sizeof(*out));
  if (why) *why = NULL;
  int rc = aw_read_trusted(path, AW_STS_TOKEN_FILE_CAP, out);
  if (rc != 0)
    return set_err(why, "cannot read the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE=%s): %s",
                   path, rc == -EFBIG ? "larger than 64 KiB" : aw_safefile_strerror(rc));
  size_t start = 0, end = out->len;
  while (start < end && is_space(out->data[start])) start++;
  while (end > start && is_space(out->data[end - 1])) end--;
  memmove(out->data, out->data + start, end - start);
  explicit_bzero(out->data + (end - start), out->len - (end - start));
  out->len = end - start;
  out->data[out->len] = '\0';
  const char *problem = NULL;
  if (!out->len) problem = "is empty";
  else if (memchr(out->data, '\0', out->len) || !printable_ascii(out->data, false))
    problem = "holds bytes that a token cannot";
  if (problem) {
    explicit_bzero(out->data, out->len);
    aw_bytes_free(out);
    return set_err(why, "the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE=%s) %s", path, problem);
  }
  return 0;
}

/* ==== the request ======================================================= */

static void form_encode(aw_strbuf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      aw_strbuf_append(b, (const char *)&c, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      aw_strbuf_append(b, e, 3);
    }
  }
}

static void form_field(aw_strbuf *b, const char *name, const char *value) {
  if (b->len) aw_strbuf_appends(b, "&");
  aw_strbuf_appends(b, name);
  aw_strbuf_appends(b, "=");
  form_encode(b, value);
}

char *aw_sts_request_body(const char *action, const char *role_arn, const char *session_name,
                          const char *token, unsigned duration_s) {
  aw_strbuf b;
  aw_strbuf_init(&b);
  form_field(&b, "Action", action);
  form_field(&b, "Version", AW_STS_VERSION);
  form_field(&b, "RoleArn", role_arn);
  form_field(&b, "RoleSessionName", session_name);
  if (duration_s) {
    char d[16];
    snprintf(d, sizeof(d), "%u", duration_s);
    form_field(&b, "DurationSeconds", d);
  }
  if (token) form_field(&b, "WebIdentityToken", token);
  /* aw_strbuf never shrinks, so growing left no copy of the token behind
   * that outlives the buffer except through realloc, which cannot be
   * helped; the caller wipes what it is given. */
  return aw_strbuf_take(&b);
}

static bool transient_code(const char *code) {
  static const char *const codes[] = {"Throttling",         "ThrottlingException",
                                      "IDPCommunicationError", "RequestLimitExceeded",
                                      "ServiceUnavailable", "ServiceUnavailableException",
                                      "InternalFailure",    "InternalError",
                                      "RequestTimeout",     NULL};
  for (int i = 0; code && codes[i]; i++)
    if (strcmp(code, codes[i]) == 0) return true;
  return false;
}

aw_sts_status aw_sts_classify(bool transport_error, bool tls_verify_failed, long status,
                              const aw_sts_answer *answer) {
  if (transport_error) return tls_verify_failed ? AW_STS_PERMANENT : AW_STS_TRANSIENT;
  if (status == 429 || status >= 500) return AW_STS_TRANSIENT;
  if (answer && answer->kind == AW_STS_ANSWER_ERROR && transient_code(answer->code))
    return AW_STS_TRANSIENT;
  if (status >= 200 && status < 300 && answer && answer->kind == AW_STS_ANSWER_CREDENTIALS)
    return AW_STS_OK;
  return AW_STS_PERMANENT;
}

/* ==== the client on the loop ============================================ */

#define ATTEMPT_TIMEOUT_MS 30000u
#define CONNECT_TIMEOUT_MS 10000u
#define MIN_ATTEMPT_MS 50u

static const aw_retry_rules retry_rules = {&aw_policy_calm, &aw_policy_hurried, MIN_ATTEMPT_MS};

enum { STEP_WEB_IDENTITY, STEP_ASSUME_ROLE };
static const char *const step_actions[] = {"AssumeRoleWithWebIdentity", "AssumeRole"};

struct aw_sts {
  uv_loop_t *loop;
  aw_http *http;
  const aw_budget *budget;
  aw_sts_cb cb;
  void *arg;
  char *url, *sigv4, *web_role_arn, *assume_role_arn, *session_name, *user_agent;
  char *token; /* secret */
  int step;
  /* The credentials the last step got (secret): AssumeRole signs with them. */
  char *akid, *secret, *session_token, *expiration;
  aw_http_request *inflight;
  uv_timer_t timer;
  bool sleeping;
  unsigned attempts, failures;
  char *last_error;
  bool done, freed;
  aw_jitter jitter;
};

static void start_attempt(aw_sts *s);

/* Replaces every secret the client holds by "***" in msg: STS does not
 * echo them, but a message must never carry one, whoever wrote it. */
static void scrub(const aw_sts *s, char **msg) {
  const char *secrets[] = {s->token, s->secret, s->session_token, s->akid};
  aw_secret_scrub(msg, secrets, sizeof(secrets) / sizeof(*secrets));
}

static const char *step_role(const aw_sts *s) {
  return s->step == STEP_WEB_IDENTITY ? s->web_role_arn : s->assume_role_arn;
}

/* "STS AssumeRoleWithWebIdentity (role arn:..., https://sts.../): <what>" */
static char *describe(const aw_sts *s, const char *what) {
  char *m = NULL;
  if (asprintf(&m, "STS %s (role %s, %s): %s", step_actions[s->step], step_role(s), s->url, what) < 0)
    m = NULL;
  scrub(s, &m);
  return m;
}

static void set_last_error(aw_sts *s, char *msg) {
  scrub(s, &msg);
  free(s->last_error);
  s->last_error = msg;
}

static void wipe_credentials(aw_sts *s) {
  wipe_str(&s->akid);
  wipe_str(&s->secret);
  wipe_str(&s->session_token);
  free(s->expiration);
  s->expiration = NULL;
}

static void deliver(aw_sts *s, aw_sts_status status, const char *message) {
  if (s->done) return;
  s->done = true;
  uv_timer_stop(&s->timer);
  aw_sts_result res = {
      .status = status,
      .message = status == AW_STS_OK ? NULL : (message ? message : "failed"),
      .access_key_id = status == AW_STS_OK ? s->akid : NULL,
      .secret_access_key = status == AW_STS_OK ? s->secret : NULL,
      .session_token = status == AW_STS_OK ? s->session_token : NULL,
      .expiration = status == AW_STS_OK ? s->expiration : NULL,
      .attempts = s->attempts,
  };
  /* The callback may free the client: memory stays until the timer's close
   * callback runs on a later turn of the loop, and nothing is read after. */
  s->cb(&res, s->arg);
  if (!s->freed) wipe_credentials(s);
}

static void fail_with(aw_sts *s, aw_sts_status status, const char *what) {
  char *msg = describe(s, what);
  deliver(s, status, msg ? msg : "STS: out of memory");
  if (msg) explicit_bzero(msg, strlen(msg));
  free(msg);
}

static void on_timer(uv_timer_t *t) {
  aw_sts *s = t->data;
  s->sleeping = false;
  if (!s->done) start_attempt(s);
}

static uint64_t time_left(const aw_sts *s) {
  return aw_budget_clip(s->budget, uv_now(s->loop), UINT64_MAX);
}

static void give_up(aw_sts *s, const char *why_now) {
  char *what = NULL;
  if (asprintf(&what, "gave up after %u attempts, %s (last: %s)", s->attempts, why_now,
               s->last_error ? s->last_error : "no answer") < 0)
    what = NULL;
  fail_with(s, AW_STS_TRANSIENT, what ? what : "gave up");
  free(what);
}

static void schedule_retry(aw_sts *s, const char *retry_after) {
  uint64_t delay;
  if (!aw_retry_delay(&retry_rules, s->budget, uv_now(s->loop), s->failures, retry_after,
                      aw_unix_now_ms(), &s->jitter, &delay))
    return give_up(s, "the grace period is almost over");
  aw_warn("STS %s for role %s failed (attempt %u): %s; retrying in %llu ms", step_actions[s->step],
          step_role(s), s->attempts, s->last_error ? s->last_error : "no answer",
          (unsigned long long)delay);
  s->sleeping = true;
  uv_timer_start(&s->timer, on_timer, delay, 0);
}

/* "HTTP 400: InvalidIdentityToken: <message>", or the transport error. */
static char *attempt_error(const aw_http_response *res, const aw_sts_answer *ans) {
  char *m = NULL;
  int n;
  if (res->transport_error)
    n = asprintf(&m, "%s%s", res->error ? res->error : "transport error",
                 res->tls_verify_failed ? " (TLS verification failed)" : "");
  else if (ans->kind == AW_STS_ANSWER_ERROR)
    n = asprintf(&m, "%s%s%s (HTTP %ld)", ans->code, ans->message ? ": " : "",
                 ans->message ? ans->message : "", res->status);
  else if (res->status >= 300 && res->status < 400)
    n = asprintf(&m, "HTTP %ld: a redirect, which is not followed", res->status);
  else
    n = asprintf(&m, "HTTP %ld: an answer that is not STS's (%s)", res->status,
                 ans->why ? ans->why : "unexpected");
  return n < 0 ? NULL : m;
}

static void took_credentials(aw_sts *s, aw_sts_answer *ans) {
  wipe_credentials(s);
  s->akid = ans->access_key_id;
  s->secret = ans->secret_access_key;
  s->session_token = ans->session_token;
  s->expiration = ans->expiration;
  ans->access_key_id = ans->secret_access_key = ans->session_token = ans->expiration = NULL;
  aw_info("STS %s: credentials for role %s%s%s", step_actions[s->step], step_role(s),
          s->expiration ? ", valid until " : "", s->expiration ? s->expiration : "");
}

static void on_attempt_done(const aw_http_response *res, void *arg) {
  aw_sts *s = arg;
  s->inflight = NULL;
  if (s->done) return;
  aw_sts_answer ans;
  memset(&ans, 0, sizeof(ans));
  if (!res->transport_error) {
    const char *action = step_actions[s->step];
    aw_sts_parse_answer(res->body, res->body_len, action, &ans);
  }
  aw_sts_status st = aw_sts_classify(res->transport_error, res->tls_verify_failed, res->status, &ans);
  aw_debug("STS %s -> %ld in %llu ms", step_actions[s->step], res->transport_error ? 0 : res->status,
           (unsigned long long)res->elapsed_ms);
  if (st == AW_STS_OK) {
    took_credentials(s, &ans);
    aw_sts_answer_free(&ans);
    if (s->step == STEP_WEB_IDENTITY && s->assume_role_arn) {
      s->step = STEP_ASSUME_ROLE;
      s->failures = 0;
      free(s->last_error);
      s->last_error = NULL;
      start_attempt(s);
      return;
    }
    deliver(s, AW_STS_OK, NULL);
    return;
  }
  set_last_error(s, attempt_error(res, &ans));
  aw_sts_answer_free(&ans);
  if (st == AW_STS_TRANSIENT) {
    s->failures++;
    schedule_retry(s, res->retry_after);
    return;
  }
  fail_with(s, AW_STS_PERMANENT, s->last_error ? s->last_error : "failed");
}

static void configure_signing(CURL *e, void *arg) {
  aw_sts *s = arg;
  curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s->sigv4);
  curl_easy_setopt(e, CURLOPT_USERNAME, s->akid);
  curl_easy_setopt(e, CURLOPT_PASSWORD, s->secret);
}

static void start_attempt(aw_sts *s) {
  uint64_t now = uv_now(s->loop);
  uint64_t timeout = aw_budget_clip(s->budget, now, ATTEMPT_TIMEOUT_MS);
  if (timeout < MIN_ATTEMPT_MS) return give_up(s, "no time left in the grace period");
  bool signed_request = s->step == STEP_ASSUME_ROLE;
  char *body = aw_sts_request_body(step_actions[s->step], step_role(s), s->session_name,
                                   signed_request ? NULL : s->token, 0);
  aw_strbuf tok;
  aw_strbuf_init(&tok);
  const char *headers[3] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8", NULL,
                            NULL};
  if (signed_request && s->session_token) {
    aw_strbuf_appendf(&tok, "x-amz-security-token: %s", s->session_token);
    headers[1] = tok.data;
  }
  aw_http_spec spec = {
      .method = "POST",
      .url = s->url,
      .headers = headers,
      .body = body,
      .body_len = body ? strlen(body) : 0,
      .user_agent = s->user_agent,
      .deadline = now + timeout,
      .connect_timeout_ms = CONNECT_TIMEOUT_MS < timeout ? CONNECT_TIMEOUT_MS : timeout,
      .configure = signed_request ? configure_signing : NULL,
      .configure_arg = s,
      /* Signed: curl 7.88 would sign an empty "Expect:" that is never sent.
       * Unsigned: no Expect at all, so a long token costs no wait for a 100
       * Continue that a server may never send. */
      .allow_expect_100 = signed_request,
  };
  s->attempts++;
  s->inflight = body ? aw_http_start(s->http, &spec, on_attempt_done, s) : NULL;
  if (body) explicit_bzero(body, strlen(body));
  free(body);
  if (tok.data) explicit_bzero(tok.data, tok.len);
  aw_strbuf_free(&tok);
  if (!s->inflight) fail_with(s, AW_STS_PERMANENT, "cannot start an HTTP request");
}

static char *dup_or_null(const char *s, bool *oom) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *oom = true;
  return d;
}

static void free_now(aw_sts *s) {
  wipe_str(&s->token);
  wipe_credentials(s);
  free(s->url);
  free(s->sigv4);
  free(s->web_role_arn);
  free(s->assume_role_arn);
  free(s->session_name);
  free(s->user_agent);
  free(s->last_error);
  free(s);
}

aw_sts *aw_sts_start(uv_loop_t *loop, aw_http *http, const aw_budget *budget,
                     const aw_creds_plan *plan, const char *token, const char *user_agent,
                     aw_sts_cb cb, void *arg) {
  if (!plan->endpoint.url || !plan->web_role_arn || !token) return NULL;
  aw_sts *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->loop = loop;
  s->http = http;
  s->budget = budget;
  s->cb = cb;
  s->arg = arg;
  bool oom = false;
  s->url = dup_or_null(plan->endpoint.url, &oom);
  s->web_role_arn = dup_or_null(plan->web_role_arn, &oom);
  s->assume_role_arn = dup_or_null(plan->assume_role_arn, &oom);
  s->session_name = dup_or_null(plan->session_name ? plan->session_name : "argowait", &oom);
  s->user_agent = dup_or_null(user_agent ? user_agent : "argowait", &oom);
  s->token = dup_or_null(token, &oom);
  if (asprintf(&s->sigv4, "aws:amz:%s:sts",
               plan->endpoint.signing_region ? plan->endpoint.signing_region : "us-east-1") < 0) {
    s->sigv4 = NULL;
    oom = true;
  }
  if (oom) {
    free_now(s);
    return NULL;
  }
  aw_jitter_seed(&s->jitter, uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0xD1B54A32D192ED03ULL);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  aw_info("getting credentials from STS AssumeRoleWithWebIdentity for role %s at %s (%s)%s%s",
          s->web_role_arn, s->url, plan->endpoint.source ? plan->endpoint.source : "",
          s->assume_role_arn ? ", then AssumeRole for " : "",
          s->assume_role_arn ? s->assume_role_arn : "");
  /* The first attempt starts from the loop: never a callback inside this call. */
  uv_timer_start(&s->timer, on_timer, 0, 0);
  return s;
}

void aw_sts_budget_changed(aw_sts *s, bool now_too) {
  if (!s || s->done) return;
  uint64_t now = uv_now(s->loop);
  if (s->inflight) aw_http_clip_deadline(s->inflight, now + time_left(s));
  if (!s->sleeping) return;
  uint64_t cap = now_too ? 0 : aw_policy_hurried.cap_ms;
  if (uv_timer_get_due_in(&s->timer) > cap) uv_timer_start(&s->timer, on_timer, cap, 0);
}

char *aw_sts_progress(const aw_sts *s) {
  char *what = NULL;
  int n = s->last_error ? asprintf(&what, "%u attempts, the last: %s", s->attempts, s->last_error)
                        : asprintf(&what, "%u attempts, no answer yet", s->attempts);
  if (n < 0) return NULL;
  char *m = describe(s, what);
  free(what);
  return m;
}

static void on_closed(uv_handle_t *h) { free_now(h->data); }

void aw_sts_free(aw_sts *s) {
  if (!s || s->freed) return;
  s->freed = true;
  s->done = true;
  if (s->inflight) aw_http_cancel(s->inflight);
  s->inflight = NULL;
  wipe_str(&s->token);
  wipe_credentials(s);
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, on_closed);
}
