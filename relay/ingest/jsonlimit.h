/* jsonlimit.h -- a nesting-depth check of JSON text before it is parsed.
 *
 * jansson has no depth option of its own (only a fixed internal limit), and a
 * deeply nested body costs every later walk over it (codecs, canonical ids,
 * dumps) stack and time. One pass over the bytes, without parsing, answers
 * "is any array or object nested deeper than max?". */
#ifndef RL_JSONLIMIT_H
#define RL_JSONLIMIT_H

#include <stddef.h>
#include <stdint.h>

/* 1 when `text` opens more than `max` arrays/objects inside one another outside
 * string literals, else 0. Any bytes are safe: invalid JSON is not judged here
 * (the parser refuses it), only its brackets are counted. */
int rl_json_too_deep(const uint8_t *text, size_t len, int max);

#endif
