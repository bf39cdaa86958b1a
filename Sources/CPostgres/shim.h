// Declarations only: libpq itself is loaded with dlopen on first use (see DeploymentStore/LibPQ.swift).
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#elif __has_include(<postgresql/libpq-fe.h>)
#include <postgresql/libpq-fe.h>
#else
#error "libpq-fe.h not found: apt-get install libpq-dev"
#endif
