/* The one place that knows which HTTP/1.1 parser ballast uses.
 *
 * Today it is Node's classic http-parser (Debian's libhttp-parser-dev). The
 * callbacks have llhttp's shape (on_message_begin, on_url, on_header_field,
 * on_header_value, on_headers_complete, on_body, on_message_complete, each
 * returning 0 to go on), so moving to llhttp changes this file and its .c only.
 */
#ifndef BALLAST_HTTPPARSE_H
#define BALLAST_HTTPPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

struct bl_hp;

struct bl_hp_callbacks {
	int (*on_message_begin)(struct bl_hp *p);
	int (*on_url)(struct bl_hp *p, const char *at, size_t len);
	int (*on_header_field)(struct bl_hp *p, const char *at, size_t len);
	int (*on_header_value)(struct bl_hp *p, const char *at, size_t len);
	int (*on_headers_complete)(struct bl_hp *p);
	int (*on_body)(struct bl_hp *p, const char *at, size_t len);
	int (*on_message_complete)(struct bl_hp *p);
};

/* An embeddable request parser. */
struct bl_hp {
	http_parser parser;                   /* the engine's own state */
	const struct bl_hp_callbacks *cb;     /* callbacks, shared by all parsers */
	void *data;                           /* the owner's pointer */
};

enum bl_hp_status {
	BL_HP_OK,     /* all bytes consumed */
	BL_HP_PAUSED, /* stopped after a complete message (bl_hp_pause in a callback) */
	BL_HP_ERROR,  /* malformed input, or a callback returned non-zero */
};

/* Prepares p to parse requests with cb, owned by data. Allocates nothing. */
void bl_hp_init(struct bl_hp *p, const struct bl_hp_callbacks *cb, void *data);

/* Prepares p to parse responses instead (the client side: scrape.c), as
 * bl_hp_init. on_url is not called; the status is bl_hp_status_code(). */
void bl_hp_init_response(struct bl_hp *p, const struct bl_hp_callbacks *cb, void *data);

/* Feeds len bytes. Sets *consumed to the bytes used; on BL_HP_PAUSED the
 * rest are the next request's and must be fed again after bl_hp_resume(). */
enum bl_hp_status bl_hp_execute(struct bl_hp *p, const char *buf, size_t len, size_t *consumed);

/* Tells the parser the peer closed its side; returns BL_HP_ERROR if a
 * request was cut short. */
enum bl_hp_status bl_hp_finish(struct bl_hp *p);

/* From inside on_message_complete: stop after this message. */
void bl_hp_pause(struct bl_hp *p);
void bl_hp_resume(struct bl_hp *p);

/* The request's method name ("GET"), HTTP version, keep-alive wish,
 * Content-Length (0 when absent: see bl_hp_has_content_length). */
const char *bl_hp_method(const struct bl_hp *p);
bool bl_hp_keep_alive(const struct bl_hp *p);
unsigned bl_hp_http_major(const struct bl_hp *p);
unsigned bl_hp_http_minor(const struct bl_hp *p);
bool bl_hp_has_content_length(const struct bl_hp *p);
uint64_t bl_hp_content_length(const struct bl_hp *p);
bool bl_hp_is_upgrade(const struct bl_hp *p);
/* A response's status code (200), from on_headers_complete on. */
unsigned bl_hp_status_code(const struct bl_hp *p);

/* A short description of the last error ("invalid HTTP method"). */
const char *bl_hp_error(const struct bl_hp *p);
/* True when the last error came from a callback returning non-zero. */
bool bl_hp_error_is_callback(const struct bl_hp *p);

#endif
