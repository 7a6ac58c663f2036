#include "model/sticky.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace weir::model {

int StickyTable::find(std::string_view token) const {
  int found = -1;
  // Constant-time per candidate, and every candidate compared: the timing says nothing.
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].size() == token.size() &&
        CRYPTO_memcmp(tokens[i].data(), token.data(), token.size()) == 0) {
      found = static_cast<int>(i);
    }
  }
  return found;
}

void StickyTable::cookie_value(int server, bool secure, std::string& out) const {
  out.clear();
  out += cookie;
  out += '=';
  out += tokens[static_cast<size_t>(server)];
  out += "; Path=/; HttpOnly; SameSite=Lax";
  if (max_age) {
    out += "; Max-Age=";
    out += std::to_string(
        std::chrono::ceil<std::chrono::seconds>(*max_age).count());  // 500ms: 1, not 0 (delete)
  }
  if (secure) out += "; Secure";
}

std::string sticky_token(std::string_view key, std::string_view backend, std::string_view server) {
  std::string msg;
  msg.append(backend).push_back('\n');
  msg.append(server);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 16 && i < len; ++i) {
    out.push_back(hex[mac[i] >> 4]);
    out.push_back(hex[mac[i] & 15]);
  }
  return out;
}

std::string random_key() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return key;
}

}  // namespace weir::model
