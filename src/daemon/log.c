#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ballast/error.h"

static enum bl_log_level min_level = BL_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void bl_log_set_level(enum bl_log_level level)
{
	min_level = level;
}

enum bl_log_level bl_log_get_level(void)
{
	return min_level;
}

bool bl_log_enabled(enum bl_log_level level)
{
	return level >= min_level;
}

int bl_log_level_parse(const char *s, enum bl_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum bl_log_level)i;
			return 0;
		}
	}
	return BL_EINVAL;
}

const char *bl_log_level_name(enum bl_log_level level)
{
	return (unsigned)level < 4 ? level_names[level] : "unknown";
}

static const char *quote(char *buf, size_t cap, const char *s, bool force)
{
	size_t o = 0;
	bool bare = *s != '\0' && !force;

	if (cap == 0)
		return buf;
	for (const char *p = s; *p; p++)
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
			bare = false;
	if (bare) {
		snprintf(buf, cap, "%s", s);
		return buf;
	}
	if (cap < 3) {
		buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const char *p = s; *p && o + 5 < cap; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else if (c == '\t') {
			buf[o++] = '\\';
			buf[o++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

const char *bl_log_quote(char *buf, size_t cap, const char *s)
{
	return quote(buf, cap, s, false);
}

void bl_log(enum bl_log_level level, const char *msg, const char *kvfmt, ...)
{
	char line[4096], qmsg[512];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;

	if (!bl_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ level=%s msg=%s",
			      ts.tv_nsec / 1000000, bl_log_level_name(level),
			      quote(qmsg, sizeof qmsg, msg, true));
	if (kvfmt && *kvfmt && n + 1 < sizeof line) {
		line[n++] = ' ';
		va_start(ap, kvfmt);
		int k = vsnprintf(line + n, sizeof line - n, kvfmt, ap);
		va_end(ap);
		if (k > 0)
			n += (size_t)k < sizeof line - n ? (size_t)k : sizeof line - n - 1;
	}
	if (n >= sizeof line - 1)
		n = sizeof line - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}
