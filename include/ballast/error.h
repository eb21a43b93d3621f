/* ballast error codes.
 *
 * Actions return int: 0 on success or a negative BL_E* code. One X-macro table
 * makes both the enum and bl_strerror(), so the two never drift apart.
 */
#ifndef BALLAST_ERROR_H
#define BALLAST_ERROR_H

#define BL_ERRNO_MAP(X)                                                       \
	X(EINVAL, "invalid argument")                                         \
	X(ENOMEM, "out of memory")                                            \
	X(ENOENT, "not found")                                                \
	X(EEXIST, "already exists")                                           \
	X(ERANGE, "value out of range")                                       \
	X(ETOOBIG, "too large")                                               \
	X(EFULL, "capacity exhausted")                                        \
	X(EAGAIN, "not now: retry later")                                     \
	X(EIO, "input/output error")                                          \
	X(ECORRUPT, "data is corrupt")                                        \
	X(EVERSION, "unsupported version")                                    \
	X(ENOTSUP, "not supported")                                           \
	X(ESYNTAX, "syntax error")

enum bl_errno {
	BL_OK = 0,
#define BL_ERRNO_ENUM(name, msg) BL_##name,
	BL__ERRNO_FIRST = -1000,
	BL_ERRNO_MAP(BL_ERRNO_ENUM)
#undef BL_ERRNO_ENUM
	BL__ERRNO_LAST
};

/* Returns a static, human-readable description of err (0 or a BL_E* code).
 * Unknown codes give "unknown error". Never returns NULL. */
const char *bl_strerror(int err);

/* Returns the symbolic name of err, such as "EINVAL", or "UNKNOWN". */
const char *bl_errname(int err);

#include <stddef.h>

/* Formats a message for a person into err (errcap bytes, NUL-terminated,
 * truncated if need be; nothing when err is NULL or errcap 0) and returns
 * code: `return bl_errorf(err, errcap, BL_EINVAL, "burst: %g is ...", b);` */
int bl_errorf(char *err, size_t errcap, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
