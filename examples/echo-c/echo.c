/*
 * echo: Hearth's example wagi function in C (WASI preview 1, wasi-libc).
 * It answers with the request's method, path and query in X-Echo-* headers
 * and echoes the request body. See build.sh.
 */
#include <stdio.h>
#include <stdlib.h>

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

int main(void) {
    const char *ct = getenv("CONTENT_TYPE");
    printf("Status: 200 OK\r\n");
    printf("Content-Type: %s\r\n", ct && *ct ? ct : "text/plain");
    printf("X-Echo-Method: %s\r\n", env("REQUEST_METHOD"));
    printf("X-Echo-Path: %s\r\n", env("PATH_INFO"));
    printf("X-Echo-Query: %s\r\n", env("QUERY_STRING"));
    printf("X-Echo-Test: %s\r\n", env("HTTP_X_TEST"));
    printf("\r\n");

    char buf[16384];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (fwrite(buf, 1, n, stdout) != n) {
            fprintf(stderr, "echo: write failed\n");
            return 1;
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "echo: read failed\n");
        return 1;
    }
    return 0;
}
