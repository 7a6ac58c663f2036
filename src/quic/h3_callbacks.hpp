#pragma once
// The library callbacks of an H3Connection (h3_callbacks.cpp).
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>

namespace weir::quic {

void set_callbacks(ngtcp2_callbacks& cb);   // transport (crypto from ngtcp2_crypto, ours)
void set_callbacks(nghttp3_callbacks& cb);  // HTTP/3

}  // namespace weir::quic
