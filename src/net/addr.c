/*
 * "HOST:PORT" strings: parsing with clear errors, numeric resolution and
 * formatting.  Names other than "localhost" are deliberately not resolved:
 * getaddrinfo() blocks, and every craft address is a numeric one (the
 * loopback addresses of a test cluster or the IPs of a deployment).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "net/conn.h"
#include "net/net.h"
#include "util/assert.h"

static int addr_error(char *errmsg, size_t errmsg_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int addr_error(char *errmsg, size_t errmsg_len, const char *fmt, ...)
{
    if (errmsg != NULL && errmsg_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, errmsg_len, fmt, ap);
        va_end(ap);
    }
    return CRAFT_EINVAL;
}

int net_addr_parse(const char *s, char *host, size_t host_len, uint16_t *port,
                   int allow_port0, char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(host != NULL && host_len > 0);
    CRAFT_ASSERT(port != NULL);
    if (s == NULL || *s == '\0') {
        return addr_error(errmsg, errmsg_len, "empty address");
    }
    size_t slen = strnlen(s, NET_ADDR_STR_MAX);
    if (slen >= NET_ADDR_STR_MAX) {
        return addr_error(errmsg, errmsg_len, "address longer than %d bytes",
                          NET_ADDR_STR_MAX - 1);
    }
    const char *colon = strrchr(s, ':');
    if (colon == NULL) {
        return addr_error(errmsg, errmsg_len,
                          "'%s': expected HOST:PORT (no ':' found)", s);
    }
    const char *hbeg = s;
    const char *hend = colon;
    if (s[0] == '[') {
        if (colon == s || colon[-1] != ']') {
            return addr_error(errmsg, errmsg_len, "'%s': expected [IPV6]:PORT",
                              s);
        }
        hbeg = s + 1;
        hend = colon - 1;
    } else if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
        return addr_error(errmsg, errmsg_len,
                          "'%s': an IPv6 host must be in brackets, "
                          "as [::1]:7001",
                          s);
    }
    size_t hlen = (size_t)(hend - hbeg);
    if (hlen == 0) {
        return addr_error(errmsg, errmsg_len, "'%s': empty host", s);
    }
    if (hlen >= host_len || hlen >= NET_HOST_MAX) {
        return addr_error(errmsg, errmsg_len, "'%s': host too long", s);
    }
    const char *p = colon + 1;
    if (*p == '\0') {
        return addr_error(errmsg, errmsg_len, "'%s': empty port", s);
    }
    unsigned long v = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return addr_error(errmsg, errmsg_len,
                              "'%s': port is not a decimal number", s);
        }
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535) {
            return addr_error(errmsg, errmsg_len,
                              "'%s': port out of range 0..65535", s);
        }
    }
    if (v == 0 && !allow_port0) {
        return addr_error(errmsg, errmsg_len, "'%s': port 0 is not allowed", s);
    }
    memcpy(host, hbeg, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

/* Numeric host (or "localhost") and port into *out. */
static int host_resolve(const char *host, uint16_t port,
                        struct sockaddr_storage *out)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (strcmp(host, "localhost") == 0) {
        host = "127.0.0.1";
    }
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
    } else {
        return CRAFT_EINVAL;
    }
    *out = ss;
    return 0;
}

int net_addr_resolve(const char *s, int allow_port0,
                     struct sockaddr_storage *out, char *errmsg,
                     size_t errmsg_len)
{
    CRAFT_ASSERT(out != NULL);
    char host[NET_HOST_MAX];
    uint16_t port;
    int rv = net_addr_parse(s, host, sizeof host, &port, allow_port0, errmsg,
                            errmsg_len);
    if (rv != 0) {
        return rv;
    }
    if (host_resolve(host, port, out) != 0) {
        return addr_error(errmsg, errmsg_len,
                          "'%s': host is not a numeric IPv4/IPv6 address "
                          "or localhost",
                          s);
    }
    return 0;
}

void net_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    CRAFT_ASSERT(buf != NULL && len > 0);
    char ip[INET6_ADDRSTRLEN];
    /* Copy out rather than cast: sa may be less aligned than the family's
     * struct. */
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in4;
        memcpy(&in4, sa, sizeof in4);
        inet_ntop(AF_INET, &in4.sin_addr, ip, sizeof ip);
        snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(in4.sin_port));
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        inet_ntop(AF_INET6, &in6.sin6_addr, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%u", ip, (unsigned)ntohs(in6.sin6_port));
    } else {
        snprintf(buf, len, "?");
    }
}

int net__host_resolve(const char *host, uint16_t port,
                      struct sockaddr_storage *out)
{
    return host_resolve(host, port, out);
}
