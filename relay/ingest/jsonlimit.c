/* jsonlimit.c -- see jsonlimit.h. Strings are skipped with their escapes so
 * that brackets inside them ("[[[[") do not count. */
#include "jsonlimit.h"

int rl_json_too_deep(const uint8_t *text, size_t len, int max)
{
    int depth = 0, in_string = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = text[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped byte cannot end the string */
            else if (c == '"')
                in_string = 0;
            continue;
        }
        switch (c) {
        case '"': in_string = 1; break;
        case '[':
        case '{':
            if (++depth > max)
                return 1;
            break;
        case ']':
        case '}':
            if (depth > 0)
                depth--;
            break;
        default: break;
        }
    }
    return 0;
}
