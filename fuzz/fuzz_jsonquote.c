/* aw_json_quote: file bytes (parameter values, the script result) as a JSON
 * string literal, the way Go's encoding/json writes them.
 *
 * Properties:
 *  - the literal is one JSON string (cJSON parses it, nothing after it);
 *  - it is valid UTF-8 with no raw control byte below 0x20 (a request body
 *    stays valid JSON);
 *  - decoding gives back exactly what Go would: the input with every byte that
 *    is not part of a valid UTF-8 character replaced by U+FFFD. In particular,
 *    for valid UTF-8 without NUL the decoded string is the input itself;
 *  - the literal is at most 6 bytes per input byte plus the quotes. */
#include <cjson/cJSON.h>

#include "argowait/jsonstr.h"
#include "fuzz_common.h"

/* What decoding the literal must give: Go's replacement of invalid bytes. */
static char *expected_decoding(const uint8_t *data, size_t size, size_t *out_len) {
  char *out = malloc(size * 3 + 1);
  if (!out) abort();
  size_t w = 0;
  for (size_t i = 0; i < size;) {
    size_t n = fuzz_utf8_char(data + i, size - i);
    if (n == 0) {
      memcpy(out + w, "\xEF\xBF\xBD", 3);
      w += 3;
      i++;
    } else {
      memcpy(out + w, data + i, n);
      w += n;
      i += n;
    }
  }
  out[w] = '\0';
  *out_len = w;
  return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *input = fuzz_exact_copy(data, size);
  char *lit = aw_json_quote(input, size);
  FUZZ_CHECK(lit != NULL, "aw_json_quote returned NULL for %zu bytes", size);
  size_t lit_len = strlen(lit);
  FUZZ_CHECK(lit_len >= 2 && lit[0] == '"' && lit[lit_len - 1] == '"',
             "not a quoted literal: %s", lit);
  FUZZ_CHECK(lit_len <= 6 * size + 2, "literal of %zu bytes for %zu input bytes",
             lit_len, size);
  FUZZ_CHECK(fuzz_utf8_valid(lit, lit_len), "literal is not valid UTF-8");
  for (size_t i = 0; i < lit_len; i++) /* JSON forbids raw U+0000..U+001F */
    FUZZ_CHECK((unsigned char)lit[i] >= 0x20, "literal holds a raw control byte at %zu", i);

  const char *end = NULL;
  cJSON *v = cJSON_ParseWithLengthOpts(lit, lit_len, &end, 0);
  FUZZ_CHECK(v != NULL && cJSON_IsString(v), "cJSON does not read the literal as a string: %s", lit);
  FUZZ_CHECK(end == lit + lit_len, "bytes after the string in the literal: %s", lit);

  size_t want_len;
  char *want = expected_decoding(data, size, &want_len);
  /* cJSON strings end at a decoded NUL: compare up to the first one. */
  size_t cut = strlen(want);
  const char *got = cJSON_GetStringValue(v);
  FUZZ_CHECK(strlen(got) == cut && memcmp(got, want, cut) == 0,
             "decoded string differs from Go's (input %zu bytes, decoded %zu, want %zu)",
             size, strlen(got), cut);
  if (!fuzz_has_nul(data, size) && fuzz_utf8_valid(input, size))
    FUZZ_CHECK(cut == size && memcmp(got, input, size) == 0,
               "valid UTF-8 without NUL did not round-trip");

  free(want);
  cJSON_Delete(v);
  free(lit);
  free(input);
  return 0;
}
