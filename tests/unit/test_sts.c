/* STS: the strict XML reader (real answers, every hostile shape we could
 * think of), the endpoint and credential-source choice, the token file, the
 * request body and the retry classification. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "argowait/strbuf.h"
#include "argowait/sts.h"

#define WEB "AssumeRoleWithWebIdentity"

/* The shape of AWS's documented answer: declaration, namespace, pretty
 * printing, fields STS sends that we do not need. */
static const char aws_answer[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleWithWebIdentityResult>\n"
    "    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>\n"
    "    <Audience>client.5498841531868486423.1548@apps.example.com</Audience>\n"
    "    <AssumedRoleUser>\n"
    "      <Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>\n"
    "      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>\n"
    "    </AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>\n"
    "      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>\n"
    "      <Expiration>2014-10-24T23:00:23Z</Expiration>\n"
    "      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
    "    </Credentials>\n"
    "    <SourceIdentity>SourceIdentityValue</SourceIdentity>\n"
    "    <Provider>www.amazon.com</Provider>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata>\n"
    "    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>\n"
    "  </ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n";

/* What moto 5 answers, byte for byte (one line, microseconds). */
static const char moto_answer[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIARZPUZDIKKI2HICLD</AccessKeyId>"
    "<SecretAccessKey>4/XG3g6h7JQkVcTJxbJsacmUgqMIRKhOqFjYZ9Mg</SecretAccessKey>"
    "<SessionToken>FQoGZXIvYXdzEBYaDO35sHJ8WR30lTXfLLwAIN9/6m2DOdL+Lcb9sxj/e4AgOGRQ=</SessionToken>"
    "<Expiration>2026-11-22T17:55:20.479716Z</Expiration></Credentials><AssumedRoleUser>"
    "<AssumedRoleId>ARO123EXAMPLE123:s1</AssumedRoleId>"
    "<Arn>arn:aws:sts::123456789012:assumed-role/argo-irsa/s1</Arn></AssumedRoleUser>"
    "<PackedPolicySize>6</PackedPolicySize></AssumeRoleWithWebIdentityResult><ResponseMetadata>"
    "<RequestId>RJwuN1fVoy793FlZd5uojsg8geGjhEp5LWIbfVjiC5nQ0YG6UIDt</RequestId></ResponseMetadata>"
    "</AssumeRoleWithWebIdentityResponse>";

static const char aws_error[] =
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <Error>\n"
    "    <Type>Sender</Type>\n"
    "    <Code>InvalidIdentityToken</Code>\n"
    "    <Message>Couldn&apos;t retrieve verification key from your identity provider,  please\n"
    "reference AssumeRoleWithWebIdentity documentation for requirements</Message>\n"
    "  </Error>\n"
    "  <RequestId>c9d4c6f5-0000-4c59-b3a6-EXAMPLE</RequestId>\n"
    "</ErrorResponse>\n";

static aw_sts_answer parse(const char *body, size_t len, const char *action) {
  /* An exact-size copy: a read past the end is caught under ASan. */
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, body, len);
  aw_sts_answer a;
  aw_sts_parse_answer(copy, len, action, &a);
  free(copy);
  return a;
}

static aw_sts_answer parse_s(const char *body) { return parse(body, strlen(body), WEB); }

static void assert_malformed(const char *body, const char *why_part) {
  aw_sts_answer a = parse_s(body);
  if (a.kind != AW_STS_ANSWER_MALFORMED) fail_msg("accepted: %s", body);
  assert_non_null(a.why);
  if (why_part && !strstr(a.why, why_part)) fail_msg("why \"%s\" lacks \"%s\" for %s", a.why, why_part, body);
  assert_null(a.access_key_id);
  assert_null(a.secret_access_key);
  assert_null(a.session_token);
  aw_sts_answer_free(&a);
}

/* A credentials answer with the given fields inside <Credentials>. */
static char *creds_doc(const char *inside) {
  char *s = NULL;
  if (asprintf(&s, "<" WEB "Response><" WEB "Result><Credentials>%s</Credentials></" WEB
               "Result></" WEB "Response>", inside) < 0)
    fail();
  return s;
}

#define GOOD_FIELDS                                                                      \
  "<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>sec/ret+KEY=</SecretAccessKey>" \
  "<SessionToken>tok+en/=</SessionToken>"

/* ---- good answers ---- */

static void test_aws_answer(void **state) {
  (void)state;
  aw_sts_answer a = parse_s(aws_answer);
  assert_int_equal(a.kind, AW_STS_ANSWER_CREDENTIALS);
  assert_string_equal(a.access_key_id, "ASgeIAIOSFODNN7EXAMPLE");
  assert_string_equal(a.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  assert_string_equal(a.session_token, "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE");
  assert_string_equal(a.expiration, "2014-10-24T23:00:23Z");
  assert_true(a.expiration_unix_ms == 1414191623000LL);
  aw_sts_answer_free(&a);
  assert_null(a.access_key_id);
}

static void test_moto_answer_and_bom_and_comments(void **state) {
  (void)state;
  aw_sts_answer a = parse_s(moto_answer);
  assert_int_equal(a.kind, AW_STS_ANSWER_CREDENTIALS);
  assert_string_equal(a.access_key_id, "ASIARZPUZDIKKI2HICLD");
  assert_string_equal(a.session_token,
                      "FQoGZXIvYXdzEBYaDO35sHJ8WR30lTXfLLwAIN9/6m2DOdL+Lcb9sxj/e4AgOGRQ=");
  aw_sts_answer_free(&a);
  char *doc = NULL;
  assert_true(asprintf(&doc, "\xEF\xBB\xBF<!-- hi -->\n%s<!-- bye -->\n", moto_answer) > 0);
  a = parse_s(doc);
  assert_int_equal(a.kind, AW_STS_ANSWER_CREDENTIALS);
  aw_sts_answer_free(&a);
  free(doc);
}

static void test_assume_role_action(void **state) {
  (void)state;
  const char *doc = "<AssumeRoleResponse><AssumeRoleResult><Credentials>" GOOD_FIELDS
                    "</Credentials></AssumeRoleResult></AssumeRoleResponse>";
  aw_sts_answer a = parse(doc, strlen(doc), "AssumeRole");
  assert_int_equal(a.kind, AW_STS_ANSWER_CREDENTIALS);
  assert_null(a.expiration);
  aw_sts_answer_free(&a);
  /* The same body is not an answer to another action. */
  assert_malformed(doc, "root");
}

static void test_entities_in_values(void **state) {
  (void)state;
  char *doc = creds_doc("<AccessKeyId>ASIA&#65;&#x42;EXAMPLEEXAMPLE</AccessKeyId>"
                        "<SecretAccessKey>a&amp;b&lt;c&gt;d&quot;e&apos;f</SecretAccessKey>"
                        "<SessionToken>t<!-- split -->ok</SessionToken>");
  aw_sts_answer a = parse_s(doc);
  assert_int_equal(a.kind, AW_STS_ANSWER_CREDENTIALS);
  assert_string_equal(a.access_key_id, "ASIAABEXAMPLEEXAMPLE");
  assert_string_equal(a.secret_access_key, "a&b<c>d\"e'f");
  assert_string_equal(a.session_token, "tok");
  aw_sts_answer_free(&a);
  free(doc);
}

/* ---- error answers ---- */

static void test_aws_error(void **state) {
  (void)state;
  aw_sts_answer a = parse_s(aws_error);
  assert_int_equal(a.kind, AW_STS_ANSWER_ERROR);
  assert_string_equal(a.code, "InvalidIdentityToken");
  assert_string_equal(a.message,
                      "Couldn't retrieve verification key from your identity provider, please "
                      "reference AssumeRoleWithWebIdentity documentation for requirements");
  assert_null(a.access_key_id);
  aw_sts_answer_free(&a);
}

static void test_other_error_shapes(void **state) {
  (void)state;
  /* moto wraps the error in <Errors>; S3-style stores answer <Error>. */
  const char *moto = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error>"
                     "<Code>SignatureDoesNotMatch</Code><Message>bad</Message><Type>Sender</Type>"
                     "</Error></Errors></ErrorResponse>";
  aw_sts_answer a = parse_s(moto);
  assert_int_equal(a.kind, AW_STS_ANSWER_ERROR);
  assert_string_equal(a.code, "SignatureDoesNotMatch");
  aw_sts_answer_free(&a);
  a = parse_s("<Error><Code>AccessDenied</Code></Error>");
  assert_int_equal(a.kind, AW_STS_ANSWER_ERROR);
  assert_string_equal(a.code, "AccessDenied");
  assert_null(a.message);
  aw_sts_answer_free(&a);
  assert_malformed("<ErrorResponse><Error><Message>no code</Message></Error></ErrorResponse>",
                   "no Code");
  assert_malformed("<ErrorResponse><Error><Code>Bad Code</Code></Error></ErrorResponse>", "not a code");
  assert_malformed("<ErrorResponse><Error><Code>x&#10;y</Code></Error></ErrorResponse>", "not a code");
  assert_malformed("<ErrorResponse><Error><Code></Code></Error></ErrorResponse>", "not a code");
  assert_malformed("<ErrorResponse><Error><Code>A</Code><Code>B</Code></Error></ErrorResponse>",
                   "duplicate");
  assert_malformed("<ErrorResponse><Error><Code>A</Code></Error><Error><Code>B</Code></Error>"
                   "</ErrorResponse>", "duplicate");
}

static void test_error_message_is_one_short_line(void **state) {
  (void)state;
  aw_strbuf b;
  aw_strbuf_init(&b);
  aw_strbuf_appends(&b, "<ErrorResponse><Error><Code>Throttling</Code><Message>  line&#10;two\t");
  for (int i = 0; i < 2000; i++) aw_strbuf_appends(&b, "\xc3\xa9"); /* é: 2 bytes */
  aw_strbuf_appends(&b, "</Message></Error></ErrorResponse>");
  aw_sts_answer a = parse(b.data, b.len, WEB);
  assert_int_equal(a.kind, AW_STS_ANSWER_ERROR);
  assert_non_null(a.message);
  assert_true(strlen(a.message) <= 300);
  assert_true(strncmp(a.message, "line two \xc3\xa9", 11) == 0);
  for (const char *p = a.message; *p; p++) assert_true((unsigned char)*p >= 0x20);
  /* Cut at a character boundary: the last byte ends an é. */
  assert_int_equal((unsigned char)a.message[strlen(a.message) - 1], 0xa9);
  aw_sts_answer_free(&a);
  aw_strbuf_free(&b);
}

/* ---- hostile answers ---- */

static void test_every_truncation_is_malformed(void **state) {
  (void)state;
  const char *docs[] = {aws_answer, moto_answer};
  for (size_t d = 0; d < 2; d++) {
    size_t full = strlen(docs[d]);
    size_t end = full;
    while (end && (docs[d][end - 1] == '\n')) end--; /* trailing blanks are not content */
    for (size_t len = 0; len < end; len++) {
      aw_sts_answer a = parse(docs[d], len, WEB);
      if (a.kind != AW_STS_ANSWER_MALFORMED) fail_msg("doc %zu cut at %zu accepted", d, len);
      aw_sts_answer_free(&a);
    }
    for (size_t len = end; len <= full; len++) {
      aw_sts_answer a = parse(docs[d], len, WEB);
      assert_int_equal(a.kind, AW_STS_ANSWER_CREDENTIALS);
      aw_sts_answer_free(&a);
    }
  }
  size_t full = strlen(aws_error);
  for (size_t len = 0; len + 1 < full; len++) {
    aw_sts_answer a = parse(aws_error, len, WEB);
    if (a.kind == AW_STS_ANSWER_CREDENTIALS) fail_msg("error cut at %zu gave credentials", len);
    aw_sts_answer_free(&a);
  }
}

static void test_sizes(void **state) {
  (void)state;
  /* The session token may be 16 KiB; one byte more is refused. */
  for (size_t n = 16383; n <= 16385; n++) {
    char *tok = malloc(n + 1);
    memset(tok, 'T', n);
    tok[n] = '\0';
    char *inner = NULL, *doc;
    assert_true(asprintf(&inner, "<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId>"
                                 "<SecretAccessKey>s</SecretAccessKey><SessionToken>%s</SessionToken>",
                         tok) > 0);
    doc = creds_doc(inner);
    aw_sts_answer a = parse_s(doc);
    assert_int_equal(a.kind, n <= 16384 ? AW_STS_ANSWER_CREDENTIALS : AW_STS_ANSWER_MALFORMED);
    aw_sts_answer_free(&a);
    free(doc);
    free(inner);
    free(tok);
  }
  /* Whole answers over 64 KiB, even well formed, are refused unread. */
  size_t big = AW_STS_ANSWER_MAX + 1;
  char *pad = malloc(big);
  memset(pad, ' ', big);
  memcpy(pad, moto_answer, strlen(moto_answer));
  aw_sts_answer a = parse(pad, big, WEB);
  assert_int_equal(a.kind, AW_STS_ANSWER_MALFORMED);
  assert_string_equal(a.why, "the answer is too large");
  aw_sts_answer_free(&a);
  a = parse(pad, AW_STS_ANSWER_MAX, WEB);
  assert_int_equal(a.kind, AW_STS_ANSWER_CREDENTIALS);
  aw_sts_answer_free(&a);
  free(pad);
  char name[200];
  memset(name, 'n', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  char *doc = NULL;
  assert_true(asprintf(&doc, "<%s/>", name) > 0);
  assert_malformed(doc, "too long");
  free(doc);
}

static void test_nesting(void **state) {
  (void)state;
  /* 16 levels are read; 17 are refused (the root counts). */
  for (int depth = 15; depth <= 17; depth++) {
    aw_strbuf b;
    aw_strbuf_init(&b);
    aw_strbuf_appends(&b, "<" WEB "Response><" WEB "Result><Credentials>" GOOD_FIELDS);
    for (int i = 3; i < depth; i++) aw_strbuf_appends(&b, "<x>");
    for (int i = 3; i < depth; i++) aw_strbuf_appends(&b, "</x>");
    aw_strbuf_appends(&b, "</Credentials></" WEB "Result></" WEB "Response>");
    aw_sts_answer a = parse(b.data, b.len, WEB);
    assert_int_equal(a.kind, depth <= AW_STS_MAX_DEPTH ? AW_STS_ANSWER_CREDENTIALS
                                                       : AW_STS_ANSWER_MALFORMED);
    if (depth > AW_STS_MAX_DEPTH) assert_non_null(strstr(a.why, "nested"));
    aw_sts_answer_free(&a);
    aw_strbuf_free(&b);
  }
  /* A field must hold text only. */
  char *doc = creds_doc("<AccessKeyId>ASIA<b>EXAMPLE</b></AccessKeyId>"
                        "<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>");
  assert_malformed(doc, "holds an element");
  free(doc);
  /* Fields at the wrong place do not count. */
  assert_malformed("<" WEB "Response><" WEB "Result>" GOOD_FIELDS "</" WEB "Result></" WEB "Response>",
                   "lacks");
  assert_malformed("<" WEB "Response><Other><Credentials>" GOOD_FIELDS "</Credentials></Other></" WEB
                   "Response>", "lacks");
}

static void test_bad_entities_and_markup(void **state) {
  (void)state;
  const char *bad_refs[] = {"&foo;", "&amp", "&#;", "&#x;", "&#0;", "&#xD800;", "&#x110000;",
                            "&#99999999999;", "&#x41", "&#1a;", "&#xFFFE;", "&#8;", "& ;",
                            "&AMP;"};
  for (size_t i = 0; i < sizeof(bad_refs) / sizeof(*bad_refs); i++) {
    char *inner = NULL;
    assert_true(asprintf(&inner, "<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId>"
                                 "<SecretAccessKey>s%s</SecretAccessKey><SessionToken>t</SessionToken>",
                         bad_refs[i]) > 0);
    char *doc = creds_doc(inner);
    assert_malformed(doc, "entity");
    free(doc);
    free(inner);
  }
  /* Entities in text we skip are still checked. */
  assert_malformed("<ErrorResponse><Error><Code>A</Code><Type>&bogus;</Type></Error></ErrorResponse>",
                   "entity");
  /* The billion laughs, and any other DTD, never get read. */
  assert_malformed("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">]>"
                   "<ErrorResponse><Error><Code>&lol;</Code></Error></ErrorResponse>",
                   "DOCTYPE");
  assert_malformed("<ErrorResponse><Error><Code><![CDATA[A]]></Code></Error></ErrorResponse>", "CDATA");
  assert_malformed("<ErrorResponse><?pi x?><Error><Code>A</Code></Error></ErrorResponse>",
                   "processing instruction");
  assert_malformed("<ErrorResponse><Error><Code>A</Code></Error></ErrorResponse><x/>", "after the root");
  assert_malformed("<ErrorResponse><Error><Code>A</Code></Error></ErrorResponse>trailing", "after the root");
  assert_malformed("text<ErrorResponse/>", "before the root");
  assert_malformed("<ErrorResponse><Error><Code>A</Code></Errors></ErrorResponse>", "mismatched");
  assert_malformed("<ErrorResponse><Error><Code>A</Code></Error></ErrorResponse></x>", "after the root");
  assert_malformed("<ErrorResponse a=b><Error><Code>A</Code></Error></ErrorResponse>", "unquoted");
  assert_malformed("<ErrorResponse a=\"<\"><Error><Code>A</Code></Error></ErrorResponse>", "'<'");
  assert_malformed("<ErrorResponse a=\"1\"b=\"2\"><Error><Code>A</Code></Error></ErrorResponse>",
                   "white space");
  assert_malformed("<ErrorResponse><Error><Code>A</Code></Error><!-- open</ErrorResponse>", "comment");
  assert_malformed("<Html><body>Bad gateway</body></Html>", "root");
  assert_malformed("", "empty");
  assert_malformed("   \n", "no root");
  assert_malformed("<>", "name");
  assert_malformed("<1a/>", "name");
}

static void test_bytes_that_are_not_text(void **state) {
  (void)state;
  char doc[] = "<Error><Code>A\x01</Code></Error>";
  assert_malformed(doc, "UTF-8");
  assert_malformed("<Error><Code>A\xff</Code></Error>", "UTF-8");
  assert_malformed("<Error><Code>A\xc3</Code></Error>", "UTF-8"); /* a cut character */
  assert_malformed("<Error><Code>\xed\xa0\x80</Code></Error>", "UTF-8"); /* a surrogate */
  static const char with_nul[] = "<Error><Code>A\0B</Code></Error>";
  aw_sts_answer a = parse(with_nul, sizeof(with_nul) - 1, WEB);
  assert_int_equal(a.kind, AW_STS_ANSWER_MALFORMED);
  aw_sts_answer_free(&a);
}

static void test_missing_duplicate_and_bad_fields(void **state) {
  (void)state;
  struct {
    const char *inside, *why;
  } cases[] = {
      {"<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>s</SecretAccessKey>", "lacks"},
      {"<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SessionToken>t</SessionToken>", "lacks"},
      {"<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>", "lacks"},
      {GOOD_FIELDS "<AccessKeyId>ASIAEXAMPLEEXAMPLE02</AccessKeyId>", "duplicate"},
      {GOOD_FIELDS "<SessionToken>t</SessionToken>", "duplicate"},
      {"<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
       "<SessionToken/>", "SessionToken"},
      {"<AccessKeyId>ASIA-EXAMPLE-EXAMPLE</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
       "<SessionToken>t</SessionToken>", "AccessKeyId"},
      {"<AccessKeyId>ASIASHORT</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
       "<SessionToken>t</SessionToken>", "AccessKeyId"},
      {"<AccessKeyId> ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
       "<SessionToken>t</SessionToken>", "AccessKeyId"},
      /* A token with CR LF would inject a header next to x-amz-security-token. */
      {"<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
       "<SessionToken>t&#13;&#10;X-Evil: 1</SessionToken>", "SessionToken"},
      {"<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>s k</SecretAccessKey>"
       "<SessionToken>t</SessionToken>", "SecretAccessKey"},
      {"<AccessKeyId>ASIAEXAMPLEEXAMPLE01</AccessKeyId><SecretAccessKey>\xc3\xa9</SecretAccessKey>"
       "<SessionToken>t</SessionToken>", "SecretAccessKey"},
      {GOOD_FIELDS "<Expiration>tomorrow</Expiration>", "Expiration"},
      {GOOD_FIELDS "<Expiration>2026-13-01T00:00:00Z</Expiration>", "Expiration"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    char *doc = creds_doc(cases[i].inside);
    assert_malformed(doc, cases[i].why);
    free(doc);
  }
  /* Two <Credentials> blocks: the second repeats every field. */
  assert_malformed("<" WEB "Response><" WEB "Result><Credentials>" GOOD_FIELDS "</Credentials>"
                   "<Credentials>" GOOD_FIELDS "</Credentials></" WEB "Result></" WEB "Response>",
                   "duplicate");
}

/* ---- the endpoint ---- */

static const char *const *fake_env;

static const char *fake_getenv(const char *name) {
  for (const char *const *e = fake_env; e && *e; e += 2)
    if (strcmp(e[0], name) == 0) return e[1];
  return NULL;
}

static void expect_endpoint(const char *const *env, const char *loc_region, const char *url,
                            const char *signing) {
  fake_env = env;
  aw_sts_endpoint e;
  char *err = NULL;
  int rc = aw_sts_endpoint_choose(fake_getenv, loc_region, &e, &err);
  if (rc != 0) fail_msg("error: %s", err ? err : "?");
  assert_string_equal(e.url, url);
  assert_string_equal(e.signing_region, signing);
  assert_non_null(e.source);
  aw_sts_endpoint_free(&e);
}

static void expect_endpoint_error(const char *const *env, const char *names) {
  fake_env = env;
  aw_sts_endpoint e;
  char *err = NULL;
  assert_int_equal(aw_sts_endpoint_choose(fake_getenv, NULL, &e, &err), -1);
  assert_non_null(err);
  if (!strstr(err, names)) fail_msg("\"%s\" does not name %s", err, names);
  assert_null(e.url);
  free(err);
}

static void test_endpoint_choice(void **state) {
  (void)state;
  const char *none[] = {NULL};
  expect_endpoint(none, NULL, "https://sts.amazonaws.com/", "us-east-1");
  expect_endpoint(none, "eu-west-3", "https://sts.eu-west-3.amazonaws.com/", "eu-west-3");
  const char *def[] = {"AWS_DEFAULT_REGION", "ap-south-1", NULL};
  expect_endpoint(def, "eu-west-3", "https://sts.ap-south-1.amazonaws.com/", "ap-south-1");
  const char *both[] = {"AWS_DEFAULT_REGION", "ap-south-1", "AWS_REGION", "us-west-2", NULL};
  expect_endpoint(both, NULL, "https://sts.us-west-2.amazonaws.com/", "us-west-2");
  const char *empty[] = {"AWS_REGION", "", "AWS_DEFAULT_REGION", "eu-north-1", NULL};
  expect_endpoint(empty, NULL, "https://sts.eu-north-1.amazonaws.com/", "eu-north-1");
  const char *china[] = {"AWS_REGION", "cn-north-1", NULL};
  expect_endpoint(china, NULL, "https://sts.cn-north-1.amazonaws.com.cn/", "cn-north-1");
  const char *legacy[] = {"AWS_REGION", "us-east-2", "AWS_STS_REGIONAL_ENDPOINTS", "legacy", NULL};
  expect_endpoint(legacy, NULL, "https://sts.amazonaws.com/", "us-east-1");
  const char *legacy_optin[] = {"AWS_REGION", "ap-east-1", "AWS_STS_REGIONAL_ENDPOINTS", "legacy", NULL};
  expect_endpoint(legacy_optin, NULL, "https://sts.ap-east-1.amazonaws.com/", "ap-east-1");
  const char *regional[] = {"AWS_REGION", "us-east-1", "AWS_STS_REGIONAL_ENDPOINTS", "regional", NULL};
  expect_endpoint(regional, NULL, "https://sts.us-east-1.amazonaws.com/", "us-east-1");
  /* An explicit URL wins; http only when written so; the path is kept. */
  const char *sts_url[] = {"AWS_ENDPOINT_URL", "https://all.example:8443",
                           "AWS_ENDPOINT_URL_STS", "http://127.0.0.1:5000", "AWS_REGION", "eu-west-1",
                           NULL};
  expect_endpoint(sts_url, NULL, "http://127.0.0.1:5000/", "eu-west-1");
  const char *all_url[] = {"AWS_ENDPOINT_URL", "https://all.example:8443/sts/", NULL};
  expect_endpoint(all_url, "ca-central-1", "https://all.example:8443/sts/", "ca-central-1");
  const char *v6[] = {"AWS_ENDPOINT_URL_STS", "http://[::1]:9000", NULL};
  expect_endpoint(v6, NULL, "http://[::1]:9000/", "us-east-1");
}

static void test_endpoint_errors(void **state) {
  (void)state;
  const char *bad_urls[] = {"sts.amazonaws.com", "ftp://host/", "https://", "https://user@host/",
                            "https://host/?Action=x", "https://host/#f", "https://host:0/",
                            "https://host:65536/", "https://host:12a/", "https://ho st/",
                            "https://host/a b", "https://[::1/", "https://host\\@evil/",
                            "https://host/\x7f"};
  for (size_t i = 0; i < sizeof(bad_urls) / sizeof(*bad_urls); i++) {
    const char *env[] = {"AWS_ENDPOINT_URL_STS", bad_urls[i], NULL};
    expect_endpoint_error(env, "AWS_ENDPOINT_URL_STS");
  }
  const char *bad_all[] = {"AWS_ENDPOINT_URL", "file:///etc/passwd", NULL};
  expect_endpoint_error(bad_all, "AWS_ENDPOINT_URL");
  const char *bad_region[] = {"AWS_REGION", "us east 1", NULL};
  expect_endpoint_error(bad_region, "AWS_REGION");
  const char *slash_region[] = {"AWS_DEFAULT_REGION", "evil.com/x", NULL};
  expect_endpoint_error(slash_region, "AWS_DEFAULT_REGION");
  const char *bad_mode[] = {"AWS_STS_REGIONAL_ENDPOINTS", "global", NULL};
  expect_endpoint_error(bad_mode, "AWS_STS_REGIONAL_ENDPOINTS");
}

/* ---- the credential source ---- */

static aw_archive_location location(bool keys) {
  aw_archive_location l;
  memset(&l, 0, sizeof(l));
  l.type = "s3";
  if (keys) {
    l.access_key.name = "cred";
    l.access_key.key = "a";
    l.secret_key.name = "cred";
    l.secret_key.key = "s";
  }
  return l;
}

#define IRSA "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token", \
             "AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/argo-artifacts"

static char *plan_error(const aw_archive_location *l, const char *const *env) {
  fake_env = env;
  aw_creds_plan p;
  char *why = NULL;
  assert_int_equal(aw_creds_plan_make(l, fake_getenv, "pod", &p, &why), -1);
  assert_non_null(why);
  return why;
}

static void test_plan_static_and_web_identity(void **state) {
  (void)state;
  const char *irsa[] = {IRSA, "AWS_REGION", "eu-central-1", NULL};
  fake_env = irsa;
  aw_archive_location l = location(true);
  aw_creds_plan p;
  char *why = NULL;
  l.role_arn = "arn:aws:iam::111122223333:role/ignored";
  assert_int_equal(aw_creds_plan_make(&l, fake_getenv, "pod", &p, &why), 0);
  assert_int_equal(p.kind, AW_CREDS_STATIC); /* keys win, as in Argo */
  aw_creds_plan_free(&p);

  l = location(false);
  assert_int_equal(aw_creds_plan_make(&l, fake_getenv, "wf-abc-main-123", &p, &why), 0);
  assert_int_equal(p.kind, AW_CREDS_WEB_IDENTITY);
  assert_string_equal(p.web_role_arn, "arn:aws:iam::111122223333:role/argo-artifacts");
  assert_string_equal(p.token_file, "/var/run/secrets/eks.amazonaws.com/serviceaccount/token");
  assert_string_equal(p.session_name, "argowait-wf-abc-main-123");
  assert_string_equal(p.endpoint.url, "https://sts.eu-central-1.amazonaws.com/");
  assert_null(p.assume_role_arn);
  aw_creds_plan_free(&p);

  l.use_sdk_creds = true; /* the SDK chain's web identity */
  assert_int_equal(aw_creds_plan_make(&l, fake_getenv, NULL, &p, &why), 0);
  assert_int_equal(p.kind, AW_CREDS_WEB_IDENTITY);
  assert_string_equal(p.session_name, "argowait");
  aw_creds_plan_free(&p);

  l = location(false);
  l.role_arn = "arn:aws:iam::444455556666:role/target";
  assert_int_equal(aw_creds_plan_make(&l, fake_getenv, "pod", &p, &why), 0);
  assert_int_equal(p.kind, AW_CREDS_WEB_IDENTITY_ROLE);
  assert_string_equal(p.assume_role_arn, "arn:aws:iam::444455556666:role/target");
  assert_string_equal(p.endpoint.signing_region, "eu-central-1");
  aw_creds_plan_free(&p);
}

static void test_session_names(void **state) {
  (void)state;
  aw_archive_location l = location(false);
  aw_creds_plan p;
  char *why = NULL;
  const char *irsa[] = {IRSA, NULL};
  fake_env = irsa;
  /* A long pod name is cut to 64; characters STS refuses are replaced. */
  const char *pod = "a-very-long-workflow-name-that-goes-on-and-on-1234567890-main-9876543210";
  assert_int_equal(aw_creds_plan_make(&l, fake_getenv, pod, &p, &why), 0);
  assert_int_equal(strlen(p.session_name), 64);
  assert_true(strncmp(p.session_name, "argowait-a-very-long", 20) == 0);
  aw_creds_plan_free(&p);
  assert_int_equal(aw_creds_plan_make(&l, fake_getenv, "p/o d", &p, &why), 0);
  assert_string_equal(p.session_name, "argowait-p-o-d");
  aw_creds_plan_free(&p);
  const char *named[] = {IRSA, "AWS_ROLE_SESSION_NAME", "my.session@x", NULL};
  fake_env = named;
  assert_int_equal(aw_creds_plan_make(&l, fake_getenv, "pod", &p, &why), 0);
  assert_string_equal(p.session_name, "my.session@x");
  aw_creds_plan_free(&p);
  const char *bad[] = {IRSA, "AWS_ROLE_SESSION_NAME", "no spaces", NULL};
  why = plan_error(&l, bad);
  assert_non_null(strstr(why, "AWS_ROLE_SESSION_NAME"));
  free(why);
  const char *one[] = {IRSA, "AWS_ROLE_SESSION_NAME", "x", NULL};
  free(plan_error(&l, one));
}

static void test_plan_errors(void **state) {
  (void)state;
  const char *none[] = {NULL};
  aw_archive_location l = location(false);
  char *why = plan_error(&l, none);
  assert_non_null(strstr(why, "the pod's identity"));
  assert_non_null(strstr(why, "AWS_WEB_IDENTITY_TOKEN_FILE"));
  assert_non_null(strstr(why, "instance roles"));
  free(why);
  l.use_sdk_creds = true;
  why = plan_error(&l, none);
  assert_non_null(strstr(why, "useSDKCreds"));
  free(why);
  l = location(false);
  l.role_arn = "arn:aws:iam::1:role/target-role-x";
  why = plan_error(&l, none);
  assert_non_null(strstr(why, "roleARN"));
  free(why);
  const char *env_keys[] = {IRSA, "AWS_ACCESS_KEY_ID", "AKIAX", NULL};
  why = plan_error(&l, env_keys);
  assert_non_null(strstr(why, "AWS_ACCESS_KEY_ID"));
  free(why);
  const char *role_only[] = {"AWS_ROLE_ARN", "arn:aws:iam::1:role/some-role", NULL};
  l = location(false);
  why = plan_error(&l, role_only);
  assert_non_null(strstr(why, "AWS_ROLE_ARN is set without AWS_WEB_IDENTITY_TOKEN_FILE"));
  free(why);
  const char *relative[] = {"AWS_WEB_IDENTITY_TOKEN_FILE", "token", "AWS_ROLE_ARN",
                            "arn:aws:iam::1:role/some-role", NULL};
  why = plan_error(&l, relative);
  assert_non_null(strstr(why, "absolute"));
  free(why);
  const char *bad_arn[] = {"AWS_WEB_IDENTITY_TOKEN_FILE", "/t", "AWS_ROLE_ARN", "role with spaces",
                           NULL};
  why = plan_error(&l, bad_arn);
  assert_non_null(strstr(why, "AWS_ROLE_ARN"));
  free(why);
  const char *bad_url[] = {IRSA, "AWS_ENDPOINT_URL_STS", "sts.local", NULL};
  why = plan_error(&l, bad_url);
  assert_non_null(strstr(why, "AWS_ENDPOINT_URL_STS"));
  free(why);
  aw_archive_location half = location(true);
  half.secret_key.name = NULL;
  why = plan_error(&half, none);
  assert_non_null(strstr(why, "only one"));
  free(why);
}

/* ---- the token file ---- */

static char *temp_file(const char *content, size_t len) {
  char tmpl[] = "/tmp/aw-sts-token-XXXXXX";
  int fd = mkstemp(tmpl);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, content, len), (ssize_t)len);
  close(fd);
  return strdup(tmpl);
}

static void test_token_file(void **state) {
  (void)state;
  char *path = temp_file("  eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n", 32);
  aw_bytes b;
  char *why = NULL;
  assert_int_equal(aw_sts_read_token(path, &b, &why), 0);
  assert_string_equal(b.data, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
  assert_int_equal(b.len, 29);
  aw_bytes_free(&b);
  unlink(path);
  assert_int_equal(aw_sts_read_token(path, &b, &why), -1);
  assert_non_null(strstr(why, "no such file"));
  assert_non_null(strstr(why, path));
  free(why);
  free(path);

  path = temp_file("\n \n", 3);
  assert_int_equal(aw_sts_read_token(path, &b, &why), -1);
  assert_non_null(strstr(why, "empty"));
  free(why);
  unlink(path);
  free(path);

  /* A token that is not text is refused without being quoted. */
  path = temp_file("SECRET-PART\x01\x02tail", 17);
  assert_int_equal(aw_sts_read_token(path, &b, &why), -1);
  assert_null(strstr(why, "SECRET"));
  assert_null(b.data);
  free(why);
  unlink(path);
  free(path);

  char *big = malloc(AW_STS_TOKEN_FILE_CAP + 1);
  memset(big, 'a', AW_STS_TOKEN_FILE_CAP + 1);
  path = temp_file(big, AW_STS_TOKEN_FILE_CAP + 1);
  assert_int_equal(aw_sts_read_token(path, &b, &why), -1);
  assert_non_null(strstr(why, "64 KiB"));
  free(why);
  unlink(path);
  free(path);
  free(big);
}

/* ---- the request and the classification ---- */

static void test_request_body(void **state) {
  (void)state;
  char *b = aw_sts_request_body(WEB, "arn:aws:iam::1:role/r", "argowait-pod", "a.b-c_d~e+f/g=h", 0);
  assert_string_equal(b, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
                         "&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&RoleSessionName=argowait-pod"
                         "&WebIdentityToken=a.b-c_d~e%2Bf%2Fg%3Dh");
  free(b);
  b = aw_sts_request_body("AssumeRole", "arn:x", "s@n", NULL, 900);
  assert_string_equal(b, "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Ax"
                         "&RoleSessionName=s%40n&DurationSeconds=900");
  free(b);
}

static void test_classify(void **state) {
  (void)state;
  aw_sts_answer ok = {.kind = AW_STS_ANSWER_CREDENTIALS};
  aw_sts_answer bad = {.kind = AW_STS_ANSWER_MALFORMED};
  aw_sts_answer throttled = {.kind = AW_STS_ANSWER_ERROR, .code = "Throttling"};
  aw_sts_answer idp = {.kind = AW_STS_ANSWER_ERROR, .code = "IDPCommunicationError"};
  aw_sts_answer denied = {.kind = AW_STS_ANSWER_ERROR, .code = "AccessDenied"};
  aw_sts_answer expired = {.kind = AW_STS_ANSWER_ERROR, .code = "ExpiredTokenException"};
  assert_int_equal(aw_sts_classify(false, false, 200, &ok), AW_STS_OK);
  assert_int_equal(aw_sts_classify(false, false, 200, &bad), AW_STS_PERMANENT);
  assert_int_equal(aw_sts_classify(false, false, 200, &denied), AW_STS_PERMANENT);
  assert_int_equal(aw_sts_classify(false, false, 400, &throttled), AW_STS_TRANSIENT);
  assert_int_equal(aw_sts_classify(false, false, 400, &idp), AW_STS_TRANSIENT);
  assert_int_equal(aw_sts_classify(false, false, 403, &denied), AW_STS_PERMANENT);
  assert_int_equal(aw_sts_classify(false, false, 400, &expired), AW_STS_PERMANENT);
  assert_int_equal(aw_sts_classify(false, false, 429, &bad), AW_STS_TRANSIENT);
  assert_int_equal(aw_sts_classify(false, false, 503, &bad), AW_STS_TRANSIENT);
  assert_int_equal(aw_sts_classify(false, false, 500, &denied), AW_STS_TRANSIENT);
  assert_int_equal(aw_sts_classify(false, false, 302, &bad), AW_STS_PERMANENT);
  assert_int_equal(aw_sts_classify(false, false, 404, &bad), AW_STS_PERMANENT);
  assert_int_equal(aw_sts_classify(true, false, 0, NULL), AW_STS_TRANSIENT);
  assert_int_equal(aw_sts_classify(true, true, 0, NULL), AW_STS_PERMANENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aws_answer),
      cmocka_unit_test(test_moto_answer_and_bom_and_comments),
      cmocka_unit_test(test_assume_role_action),
      cmocka_unit_test(test_entities_in_values),
      cmocka_unit_test(test_aws_error),
      cmocka_unit_test(test_other_error_shapes),
      cmocka_unit_test(test_error_message_is_one_short_line),
      cmocka_unit_test(test_every_truncation_is_malformed),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_nesting),
      cmocka_unit_test(test_bad_entities_and_markup),
      cmocka_unit_test(test_bytes_that_are_not_text),
      cmocka_unit_test(test_missing_duplicate_and_bad_fields),
      cmocka_unit_test(test_endpoint_choice),
      cmocka_unit_test(test_endpoint_errors),
      cmocka_unit_test(test_plan_static_and_web_identity),
      cmocka_unit_test(test_session_names),
      cmocka_unit_test(test_plan_errors),
      cmocka_unit_test(test_token_file),
      cmocka_unit_test(test_request_body),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
