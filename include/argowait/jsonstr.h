/* File bytes as JSON string literals.
 *
 * cJSON strings end at the first NUL and pass invalid UTF-8 through; a
 * user's file may hold both. This writes a complete JSON string literal the
 * way Go's encoding/json does: invalid UTF-8 becomes U+FFFD, control
 * characters (NUL included) are escaped. Insert it with cJSON_CreateRaw. */
#ifndef ARGOWAIT_JSONSTR_H
#define ARGOWAIT_JSONSTR_H

#include <stddef.h>

/* Length of the valid UTF-8 character at s (1..4), or 0 when the bytes
 * there are not one: overlong forms, surrogates and code points past
 * U+10FFFF are invalid, as in Go's unicode/utf8. avail > 0. */
size_t aw_utf8_char_len(const unsigned char *s, size_t avail);

/* Returns a malloc'd, NUL-terminated literal including the quotes. */
char *aw_json_quote(const char *bytes, size_t len);

#endif
