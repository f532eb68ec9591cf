/* craft_strerror() and craft_errname(): one table, two views. */
#include "craft/common.h"

const char *craft_strerror(int rv)
{
    switch (rv) {
    case 0:
        return "ok";
#define CRAFT__ERR_MSG(name, value, msg)                                       \
    case (value):                                                              \
        return (msg);
        CRAFT_ERRORS(CRAFT__ERR_MSG)
#undef CRAFT__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *craft_errname(int rv)
{
    switch (rv) {
    case 0:
        return "CRAFT_OK";
#define CRAFT__ERR_NAME(name, value, msg)                                      \
    case (value):                                                              \
        return #name;
        CRAFT_ERRORS(CRAFT__ERR_NAME)
#undef CRAFT__ERR_NAME
    default:
        return "CRAFT_E?";
    }
}
