/* jdoc.h -- a one-pass validating JSON tokenizer for request bodies.
 *
 * rl_jdoc_parse checks a body against RFC 8259 (UTF-8, escapes, surrogate
 * pairs, numbers, nesting depth) in one pass and records every value as a token
 * in a flat array: its type, its byte span in the body, its number of children
 * and the index of the token after it and its descendants. Values are named by
 * token index (the root is 0; -1 is "none"). Nothing is copied or decoded at
 * parse time: a string is decoded (escapes, \u surrogate pairs -> UTF-8) the
 * first time it is asked for, into the document's arena.
 *
 * Ownership: the document owns one allocation (tokens, then decoded strings),
 * reused by the next parse and grown when a body needs more; rl_jdoc_destroy
 * frees it. The body is borrowed: it must outlive every lookup. A string
 * returned by rl_jdoc_str stays valid until the next parse or the destroy.
 *
 * Compared with jansson's json_loadb: the same documents are refused (invalid
 * UTF-8, lone surrogates, \u0000, leading zeros, trailing bytes, ...), except
 * that numbers too big for a long long or a double are accepted (jansson says
 * "too big" / "overflow"), scalars are accepted as the root (as JSON_DECODE_ANY)
 * and depth is limited by the caller. A repeated object key: the last value
 * wins, as in jansson. */
#ifndef RL_JDOC_H
#define RL_JDOC_H

#include <stddef.h>

typedef struct rl_jdoc rl_jdoc_t;

typedef enum rl_jtype {
    RL_JNONE = 0, /* not a value (index -1 or out of range) */
    RL_JNULL,
    RL_JFALSE,
    RL_JTRUE,
    RL_JNUMBER,
    RL_JSTRING,
    RL_JARRAY,
    RL_JOBJECT,
} rl_jtype_t;

/* rl_jdoc_parse's results besides 0. */
enum { RL_JDOC_SYNTAX = -1, RL_JDOC_TOO_DEEP = -2, RL_JDOC_NOMEM = -3 };

/* A new, empty document; NULL with errstr on out-of-memory. */
rl_jdoc_t *rl_jdoc_new(char *errstr, size_t errstr_size);
/* Frees d and everything it holds; NULL-safe. */
void rl_jdoc_destroy(rl_jdoc_t *d);

/* Parses `len` bytes of `text` (borrowed, need not be NUL-terminated) with
 * arrays and objects nested at most `max_depth` deep. Returns 0, or
 * RL_JDOC_SYNTAX / RL_JDOC_TOO_DEEP / RL_JDOC_NOMEM with a reason ("... at
 * line L, column C" for syntax) in errstr. Clears the nomem flag first. */
int rl_jdoc_parse(rl_jdoc_t *d, const char *text, size_t len, int max_depth, char *errstr,
                  size_t errstr_size);

/* The bytes the document holds now (its arena). */
size_t rl_jdoc_capacity(const rl_jdoc_t *d);

/* Sticky: 1 when an allocation of the document failed since the last parse
 * began (a lookup that needed one then answered NULL). */
int rl_jdoc_nomem(const rl_jdoc_t *d);

/* The type of value v (RL_JNONE for -1 or an index that is not a value). */
rl_jtype_t rl_jdoc_type(const rl_jdoc_t *d, int v);
/* The number of elements of an array, members of an object; 0 for anything else. */
size_t rl_jdoc_count(const rl_jdoc_t *d, int v);
/* The bytes of value v in the body exactly as sent (*len set); NULL for -1. */
const char *rl_jdoc_raw(const rl_jdoc_t *d, int v, size_t *len);

/* obj[key] (the last one when the key repeats), or -1 when obj is not an object
 * or has no such member (or on out-of-memory decoding a key with escapes). */
int rl_jdoc_get(rl_jdoc_t *d, int obj, const char *key);
/* The value JSON Pointer `ptr` (RFC 6901: "" is v itself, "/a/0/b~1c" member
 * "a", element 0, member "b/c") names from value v, or -1 when it names none (a
 * member that is absent, an index past the end or not an index, a step into a
 * scalar, or a pointer that does not start with '/'). A repeated key: the last. */
int rl_jdoc_pointer(rl_jdoc_t *d, int v, const char *ptr);
/* The first element of an array, the first member's key of an object, -1 when
 * empty or neither. */
int rl_jdoc_first(const rl_jdoc_t *d, int v);
/* The value after element v (array) or the key after member key v (object): pass
 * the element or the key; -1 after the last one. `parent` is the container. */
int rl_jdoc_next(const rl_jdoc_t *d, int parent, int v);

/* The decoded text of string v: UTF-8, NUL-terminated and without NULs inside
 * (\u0000 is refused), *len set when len is not NULL. NULL when v is not a
 * string, or on out-of-memory (then rl_jdoc_nomem says so). */
const char *rl_jdoc_str(rl_jdoc_t *d, int v, size_t *len);
/* obj[key]'s text when it is a string, else NULL. */
const char *rl_jdoc_getstr(rl_jdoc_t *d, int obj, const char *key);
/* 0 with *out when v is an integer (no fraction or exponent) that fits a long
 * long; -1 otherwise. */
int rl_jdoc_int(const rl_jdoc_t *d, int v, long long *out);
/* 0 with *out for any number (strtod); -1 when v is not a number. */
int rl_jdoc_real(const rl_jdoc_t *d, int v, double *out);
/* 1 when v is a number written as an integer (no '.', 'e' or 'E'). */
int rl_jdoc_is_integer(const rl_jdoc_t *d, int v);

/* Test hooks: the next allocations succeed `n` times, then fail (n < 0: never
 * fail, the default); the number of allocations made since rl_jdoc_new. */
void rl_jdoc_test_fail_after(rl_jdoc_t *d, long n);
long rl_jdoc_test_allocs(const rl_jdoc_t *d);

#endif
