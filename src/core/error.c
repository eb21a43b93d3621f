#include "ballast/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *bl_strerror(int err)
{
	switch (err) {
	case BL_OK:
		return "success";
#define BL_ERRNO_STR(name, msg)                                               \
	case BL_##name:                                                       \
		return msg;
		BL_ERRNO_MAP(BL_ERRNO_STR)
#undef BL_ERRNO_STR
	default:
		return "unknown error";
	}
}

const char *bl_errname(int err)
{
	switch (err) {
	case BL_OK:
		return "OK";
#define BL_ERRNO_NAME(name, msg)                                              \
	case BL_##name:                                                       \
		return #name;
		BL_ERRNO_MAP(BL_ERRNO_NAME)
#undef BL_ERRNO_NAME
	default:
		return "UNKNOWN";
	}
}

int bl_errorf(char *err, size_t errcap, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errcap) {
		va_start(ap, fmt);
		vsnprintf(err, errcap, fmt, ap);
		va_end(ap);
	}
	return code;
}
