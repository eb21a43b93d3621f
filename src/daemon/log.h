/* Logs: one line per event in logfmt on stderr.
 *
 *   ts=2026-11-27T21:40:01.123Z level=info msg="listening" addr=127.0.0.1:7070
 *
 * The key/value tail is printf-formatted by the caller; values that may hold
 * spaces, quotes or newlines go through bl_log_quote().
 */
#ifndef BALLAST_LOG_H
#define BALLAST_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum bl_log_level { BL_LOG_DEBUG, BL_LOG_INFO, BL_LOG_WARN, BL_LOG_ERROR };

/* Sets the lowest level written (default info). Process-wide: the daemon has one log. */
void bl_log_set_level(enum bl_log_level level);
enum bl_log_level bl_log_get_level(void);
bool bl_log_enabled(enum bl_log_level level);

/* Parses "debug", "info", "warn" or "error". Returns 0, or BL_EINVAL. */
int bl_log_level_parse(const char *s, enum bl_log_level *out);
const char *bl_log_level_name(enum bl_log_level level);

/* Writes one line: ts, level, msg (quoted), then the formatted kv tail if any. */
void bl_log(enum bl_log_level level, const char *msg, const char *kvfmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes s into buf as a logfmt value: bare when it is safe, otherwise in
 * double quotes with \" \\ \n \t escaped and control bytes as \xNN. Truncates
 * to fit cap (always NUL-terminated) and returns buf. */
const char *bl_log_quote(char *buf, size_t cap, const char *s);

#endif
