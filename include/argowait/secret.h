/* Secrets (keys, tokens, passwords) in memory and in messages.
 *
 * A secret's bytes are zeroed before their memory goes back to the
 * allocator, and no message leaves the process holding one: whatever a
 * server or a library wrote into an error text is scrubbed first. */
#ifndef ARGOWAIT_SECRET_H
#define ARGOWAIT_SECRET_H

#include <stddef.h>

/* Secrets shorter than this are not scrubbed: they would mangle ordinary
 * words of a message while hiding next to nothing. */
#define AW_SECRET_SCRUB_MIN 3u

/* Zeroes the NUL-terminated string s, then frees it (NULL is fine). */
void aw_secret_free(char *s);

/* Replaces every occurrence in *msg of any of the count secrets (NULL entries
 * and short ones are skipped) by "***", in one left-to-right pass, so a
 * secret that contains "***" cannot make it loop. The old text is zeroed and
 * freed. Returns 0, or -1 when memory ran out: *msg is then freed and NULL,
 * since a message that may still hold a secret must not be used. */
int aw_secret_scrub(char **msg, const char *const *secrets, size_t count);

#endif
