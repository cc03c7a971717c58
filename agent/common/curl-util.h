/* curl-util.h: cleanup helpers for libcurl types, for the modules that link
 * libcurl (the S3 client and its credentials; never the supervisor). */
#pragma once

#include <curl/curl.h>

static inline void slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}
