#include "httpparse.h"

#include <limits.h>

#define OWNER(hp) ((struct bl_hp *)(hp)->data)

static int on_message_begin(http_parser *hp)
{
	struct bl_hp *p = OWNER(hp);
	return p->cb->on_message_begin ? p->cb->on_message_begin(p) : 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	struct bl_hp *p = OWNER(hp);
	return p->cb->on_url ? p->cb->on_url(p, at, len) : 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	struct bl_hp *p = OWNER(hp);
	return p->cb->on_header_field ? p->cb->on_header_field(p, at, len) : 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	struct bl_hp *p = OWNER(hp);
	return p->cb->on_header_value ? p->cb->on_header_value(p, at, len) : 0;
}

static int on_headers_complete(http_parser *hp)
{
	struct bl_hp *p = OWNER(hp);
	return p->cb->on_headers_complete ? p->cb->on_headers_complete(p) : 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct bl_hp *p = OWNER(hp);
	return p->cb->on_body ? p->cb->on_body(p, at, len) : 0;
}

static int on_message_complete(http_parser *hp)
{
	struct bl_hp *p = OWNER(hp);
	return p->cb->on_message_complete ? p->cb->on_message_complete(p) : 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void bl_hp_init(struct bl_hp *p, const struct bl_hp_callbacks *cb, void *data)
{
	http_parser_init(&p->parser, HTTP_REQUEST);
	p->parser.data = p;
	p->cb = cb;
	p->data = data;
}

void bl_hp_init_response(struct bl_hp *p, const struct bl_hp_callbacks *cb, void *data)
{
	http_parser_init(&p->parser, HTTP_RESPONSE);
	p->parser.data = p;
	p->cb = cb;
	p->data = data;
}

enum bl_hp_status bl_hp_execute(struct bl_hp *p, const char *buf, size_t len, size_t *consumed)
{
	size_t n = http_parser_execute(&p->parser, &settings, buf, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);

	*consumed = n;
	if (e == HPE_PAUSED)
		return BL_HP_PAUSED;
	if (e != HPE_OK)
		return BL_HP_ERROR;
	/* An Upgrade request stops the parser early; ballast speaks only HTTP/1.1. */
	if (p->parser.upgrade)
		return BL_HP_ERROR;
	return BL_HP_OK;
}

enum bl_hp_status bl_hp_finish(struct bl_hp *p)
{
	size_t n;
	return bl_hp_execute(p, NULL, 0, &n);
}

void bl_hp_pause(struct bl_hp *p)
{
	http_parser_pause(&p->parser, 1);
}

void bl_hp_resume(struct bl_hp *p)
{
	http_parser_pause(&p->parser, 0);
}

const char *bl_hp_method(const struct bl_hp *p)
{
	return http_method_str((enum http_method)p->parser.method);
}

bool bl_hp_keep_alive(const struct bl_hp *p)
{
	return http_should_keep_alive(&p->parser) != 0;
}

unsigned bl_hp_http_major(const struct bl_hp *p)
{
	return p->parser.http_major;
}

unsigned bl_hp_http_minor(const struct bl_hp *p)
{
	return p->parser.http_minor;
}

bool bl_hp_has_content_length(const struct bl_hp *p)
{
	return (p->parser.flags & F_CONTENTLENGTH) != 0;
}

uint64_t bl_hp_content_length(const struct bl_hp *p)
{
	return p->parser.content_length == ULLONG_MAX ? 0 : p->parser.content_length;
}

bool bl_hp_is_upgrade(const struct bl_hp *p)
{
	return p->parser.upgrade != 0;
}

unsigned bl_hp_status_code(const struct bl_hp *p)
{
	return p->parser.status_code;
}

const char *bl_hp_error(const struct bl_hp *p)
{
	if (p->parser.upgrade)
		return "protocol upgrade is not supported";
	return http_errno_description(HTTP_PARSER_ERRNO(&p->parser));
}

bool bl_hp_error_is_callback(const struct bl_hp *p)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
	return e >= HPE_CB_message_begin && e <= HPE_CB_chunk_complete;
}
