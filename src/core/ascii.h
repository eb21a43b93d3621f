/* ASCII helpers shared by the core's text parsers (promtext.c,
 * ratelimit_headers.c). Locale-free on purpose: header names and number
 * spellings are ASCII whatever the process's locale. Not API. */
#ifndef BALLAST_CORE_ASCII_H
#define BALLAST_CORE_ASCII_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static inline char bl_ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive comparison of len bytes at s with the lower-case lit. */
static inline bool bl_ascii_eq_nocase(const char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	if (len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (bl_ascii_lower(s[i]) != lit[i])
			return false;
	return true;
}

#endif
