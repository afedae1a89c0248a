#ifndef SLUICE_CCURL_SHIM_H
#define SLUICE_CCURL_SHIM_H
/* libcurl (Debian's libcurl4-openssl-dev), for email alerts: SMTP with STARTTLS or implicit
   TLS, AUTH, and a MIME message. curl_easy_setopt and curl_easy_getinfo are variadic, which
   Swift cannot call: these typed wrappers can be. */
#include <curl/curl.h>

static inline CURLcode sluice_curl_set_long(CURL *c, CURLoption o, long v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode sluice_curl_set_string(CURL *c, CURLoption o, const char *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode sluice_curl_set_list(CURL *c, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode sluice_curl_set_mime(CURL *c, curl_mime *v) { return curl_easy_setopt(c, CURLOPT_MIMEPOST, v); }
static inline CURLcode sluice_curl_set_buffer(CURL *c, CURLoption o, char *v) { return curl_easy_setopt(c, o, v); }
static inline long sluice_curl_response_code(CURL *c) {
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    return code;
}
#endif
