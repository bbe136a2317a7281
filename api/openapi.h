/* Private to api/: the OpenAPI document of the API (docs/openapi.yaml),
 * compiled in. api/local.mk generates api/openapi-doc.c from the file in
 * the source tree at build time, so the document nlbd serves at
 * GET /v1/openapi.yaml is always the one its code was built with; nothing
 * is read from disk at run time. Constant data: any thread. */
#ifndef NLB_API_OPENAPI_H
#define NLB_API_OPENAPI_H

#include <stddef.h>

/* The bytes of docs/openapi.yaml (not NUL-terminated). */
extern const unsigned char api_openapi_yaml[];
extern const size_t api_openapi_yaml_len;

#endif
